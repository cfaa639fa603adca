"""Conditional posterior families: modules from a context h to a reparameterized q(u | h).

Each family maps h ``[..., features]`` to a distribution over u in R^dim with batch shape
``[...]``; amortized, per-datapoint and global-latent guides build on them.

===================  ==================================  ===================  ============
name                 class                               log_prob at a        closed-form
                                                         fresh value          KL
===================  ==================================  ===================  ============
``diagonal``         :class:`DiagonalNormal`             yes                  yes
``full_rank``        :class:`FullRankNormal`             yes                  yes
``low_rank``         :class:`LowRankNormal`              yes                  yes
``mixture``          :class:`DiagonalMixture`            yes                  no
``planar``           :class:`PlanarFlow`                 no (own samples)     no
``radial``           :class:`RadialFlow`                 no (own samples)     no
``householder``      :class:`HouseholderFlow`            yes                  no
``sylvester``        :class:`SylvesterFlow`              no (own samples)     no
``iaf``              :class:`InverseAutoregressiveFlow`  yes (dim passes)     no
``spline_ar``        :class:`SplineAutoregressiveFlow`   yes (dim passes)     no
``affine_coupling``  :class:`AffineCouplingFlow`         yes                  no
===================  ==================================  ===================  ============

The two columns are the class attributes ``has_tractable_inverse`` and ``closed_form_kl`` (with
``reparameterized``, true for all): the capabilities the spec checks estimators against
(:mod:`pyro_vi.spec.capabilities`).
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
