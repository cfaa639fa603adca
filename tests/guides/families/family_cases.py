"""Shared configurations and reference densities for the family tests."""

from __future__ import annotations

import pyro
import torch
from torch.autograd.functional import jacobian
from torch.distributions import MultivariateNormal, Normal

from pyro_vi.guides.families import FAMILIES, Family, Flow, make_family

NAMES = sorted(FAMILIES)
DIM, FEATURES, BATCH, PARTICLES = 3, 5, 4, 2

# Small networks keep the whole folder fast; two steps exercise the permutations between steps.
OPTIONS: dict[str, dict] = {
    "diagonal": {},
    "full_rank": {},
    "low_rank": {"rank": 2},
    "mixture": {"components": 3},
    "planar": {"num_steps": 2, "hidden": [8]},
    "radial": {"num_steps": 2, "hidden": [8]},
    "householder": {"num_reflections": 2, "hidden": [8]},
    "sylvester": {"num_steps": 2, "num_reflections": 2, "hidden": [8]},
    "iaf": {"num_steps": 2, "hidden": [8]},
    "spline_ar": {"num_steps": 2, "hidden": [8], "count_bins": 4},
    "affine_coupling": {"num_steps": 2, "hidden": [8]},
}


def build(name: str, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> Family:
    """The test configuration of family ``name``, initialized from ``seed``."""
    pyro.set_rng_seed(seed)
    return make_family(name, DIM, FEATURES, **OPTIONS[name]).to(dtype)


@torch.no_grad()
def perturb_(family: Family, scale: float = 0.3) -> Family:
    """Add noise to every parameter, so that flows are far from their near-identity start."""
    for parameter in family.parameters():
        parameter.add_(scale * torch.randn_like(parameter))
    return family


def flow_reference(q, base_value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, log q(z)) for z = f(base_value), with log|det df| from an autograd Jacobian.

    ``q`` must have no batch shape (one context row), so that the Jacobian is [dim, dim].
    """

    def flow(u: torch.Tensor) -> torch.Tensor:
        for transform in q.transforms:
            u = transform(u)
        return u

    log_det = torch.linalg.slogdet(jacobian(flow, base_value)).logabsdet
    # applied last, so the transforms' caches hold this very z for q.log_prob
    z = flow(base_value)
    return z, q.base_dist.log_prob(base_value) - log_det


def explicit_log_prob(family: Family, context: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """log q(value | context) from the family's parameters with textbook densities."""
    name = family.name
    if name == "diagonal":
        loc, scale = family.loc_scale(context)
        return MultivariateNormal(loc, covariance_matrix=torch.diag_embed(scale**2)).log_prob(value)
    if name == "full_rank":
        loc, tril = family.loc_scale_tril(context)
        return MultivariateNormal(loc, covariance_matrix=tril @ tril.mT).log_prob(value)
    if name == "low_rank":
        loc, factor, diagonal = family.loc_factor_diagonal(context)
        covariance = factor @ factor.mT + torch.diag_embed(diagonal)
        return MultivariateNormal(loc, covariance_matrix=covariance).log_prob(value)
    if name == "mixture":
        locs, scales, logits = family.locs_scales_logits(context)
        per_component = Normal(locs, scales).log_prob(value.unsqueeze(-2)).sum(-1)
        return torch.logsumexp(logits.log_softmax(-1) + per_component, -1)
    raise ValueError(f"no explicit density for {name!r}")


def is_flow(name: str) -> bool:
    return issubclass(FAMILIES[name], Flow)
