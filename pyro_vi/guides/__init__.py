"""Guides: q(z | x) for the models of :mod:`pyro_vi.models`, or for any Pyro model.

===========================  ===============================================================
name                         what
===========================  ===============================================================
:class:`AmortizedGuide`      any model, any family, one call: finds the model's latents and
                             amortizes the local ones with an encoder
:class:`LocalGuide`          free parameters per datapoint (stochastic VI)
:class:`HierarchicalGuide`   q(z1 | x) q(z2 | z1) for the two-layer VAE
:class:`BernoulliGuide`      binary latents of the sigmoid belief net, or their relaxation
:mod:`.families`             the posterior families q(u | h): Gaussians, mixture, flows
                             (:data:`FAMILIES`, :func:`make_family`)
``AmortizedDiagonalNormal``  deprecated: ``AmortizedGuide(model, encoder, "diagonal")``
===========================  ===============================================================
"""

from pyro_vi.guides.amortized import AmortizedGuide
from pyro_vi.guides.bernoulli import BernoulliGuide
from pyro_vi.guides.families import (
    FAMILIES,
    AffineCouplingFlow,
    DiagonalMixture,
    DiagonalNormal,
    Family,
    Flow,
    FullRankNormal,
    HouseholderFlow,
    InverseAutoregressiveFlow,
    LowRankNormal,
    PlanarFlow,
    RadialFlow,
    SplineAutoregressiveFlow,
    SylvesterFlow,
    make_family,
)
from pyro_vi.guides.gaussian import AmortizedDiagonalNormal
from pyro_vi.guides.hierarchical import HierarchicalGuide
from pyro_vi.guides.local import LocalGuide

__all__ = [
    "FAMILIES",
    "AffineCouplingFlow",
    "AmortizedDiagonalNormal",
    "AmortizedGuide",
    "BernoulliGuide",
    "DiagonalMixture",
    "DiagonalNormal",
    "Family",
    "Flow",
    "FullRankNormal",
    "HierarchicalGuide",
    "HouseholderFlow",
    "InverseAutoregressiveFlow",
    "LocalGuide",
    "LowRankNormal",
    "PlanarFlow",
    "RadialFlow",
    "SplineAutoregressiveFlow",
    "SylvesterFlow",
    "make_family",
]
