"""Conditional posterior families: modules from a context h to a reparameterized q(u | h).

Each family maps h ``[..., features]`` to a distribution over u in R^dim with batch shape
``[...]``; amortized, per-datapoint and global-latent guides build on them.

===================  ================================  ==================================
name                 class                             log_prob at a fresh value
===================  ================================  ==================================
``diagonal``         :class:`DiagonalNormal`           yes
``full_rank``        :class:`FullRankNormal`           yes
``low_rank``         :class:`LowRankNormal`            yes
``mixture``          :class:`DiagonalMixture`          yes
``planar``           :class:`PlanarFlow`               no (own samples only)
``radial``           :class:`RadialFlow`               no (own samples only)
``householder``      :class:`HouseholderFlow`          yes
``sylvester``        :class:`SylvesterFlow`            no (own samples only)
``iaf``              :class:`InverseAutoregressiveFlow` yes (dim sequential passes)
``spline_ar``        :class:`SplineAutoregressiveFlow`  yes (dim sequential passes)
``affine_coupling``  :class:`AffineCouplingFlow`        yes
===================  ================================  ==================================
"""

from pyro_vi.guides.families.base import FAMILIES, Family, make_family, options
from pyro_vi.guides.families.coupling import AffineCouplingFlow
from pyro_vi.guides.families.diagonal import DiagonalNormal
from pyro_vi.guides.families.flow import Flow, FlowDistribution
from pyro_vi.guides.families.full_rank import FullRankNormal
from pyro_vi.guides.families.householder import HouseholderFlow
from pyro_vi.guides.families.iaf import InverseAutoregressiveFlow
from pyro_vi.guides.families.low_rank import LowRankNormal
from pyro_vi.guides.families.mixture import DiagonalMixture, StableMixtureOfDiagNormals
from pyro_vi.guides.families.planar import PlanarFlow
from pyro_vi.guides.families.radial import RadialFlow
from pyro_vi.guides.families.spline import SplineAutoregressiveFlow
from pyro_vi.guides.families.sylvester import SylvesterFlow

__all__ = [
    "FAMILIES",
    "AffineCouplingFlow",
    "DiagonalMixture",
    "DiagonalNormal",
    "Family",
    "Flow",
    "FlowDistribution",
    "FullRankNormal",
    "HouseholderFlow",
    "InverseAutoregressiveFlow",
    "LowRankNormal",
    "PlanarFlow",
    "RadialFlow",
    "SplineAutoregressiveFlow",
    "StableMixtureOfDiagNormals",
    "SylvesterFlow",
    "make_family",
    "options",
]
