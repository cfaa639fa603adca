"""Inspecting a model once: which latent sites it has, their shapes, supports and plates.

Shared by the automatic guides: each latent is either *local* (it lies in the data plate, one
value per datapoint) or *global* (outside every plate).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.transforms import biject_to
from pyro.poutine.util import prune_subsample_sites

from pyro_vi.estimators.core import find_data_plate


@dataclass(frozen=True)
class LatentSite:
    """One latent site of a model, as a guide needs to know it.

    Attributes:
        name: The site's name.
        local: Whether it lies in the data plate (one value per datapoint).
        event_shape: Shape of one value (per datapoint when local).
        unconstrained_shape: Shape of one value mapped to the reals by ``biject_to(support)``.
        support: The site distribution's support.
    """

    name: str
    local: bool
    event_shape: tuple[int, ...]
    unconstrained_shape: tuple[int, ...]
    support: dist.constraints.Constraint

    @property
    def dim(self) -> int:
        """Size of the flat unconstrained vector the posterior family works on."""
        return math.prod(self.unconstrained_shape)

    @property
    def is_flat_real(self) -> bool:
        """Whether the site already is a flat real vector, so that the family's distribution
        can be used as it is, without a transform (faster, and it keeps a closed-form mean)."""
        identity = dist.transforms.identity_transform
        unconstrained = biject_to(self.support)
        while isinstance(unconstrained, dist.transforms.IndependentTransform):
            unconstrained = unconstrained.base_transform
        return self.unconstrained_shape == (self.dim,) and unconstrained == identity

    def transform(self) -> dist.transforms.Transform:
        """Flat unconstrained vector [dim] -> a value of the site (reshape, then biject_to)."""
        reshape = dist.transforms.ReshapeTransform((self.dim,), self.unconstrained_shape)
        return dist.transforms.ComposeTransform([reshape, biject_to(self.support)]).with_cache()


@dataclass(frozen=True)
class ModelStructure:
    """The latent sites of a model and its data plate (name, dim), found by one prior run."""

    sites: tuple[LatentSite, ...]
    plate_name: str | None
    plate_dim: int | None


def inspect_model(
    model: Callable, args: tuple, kwargs: dict, data_plate: str | None = None
) -> ModelStructure:
    """Run ``model`` once from its prior (nothing is recorded in the param store's gradients) and
    describe its latent sites.

    Raises:
        ValueError: a latent lies in a plate other than the data plate (not supported by the
            automatic guides), or the model has no latent site.
    """
    with torch.no_grad(), poutine.block(), torch.random.fork_rng(devices=_cuda_devices()):
        trace = poutine.trace(model).get_trace(*args, **kwargs)
    trace = prune_subsample_sites(trace)
    plate = find_data_plate(trace, data_plate)
    sites = []
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        frames = [f for f in site["cond_indep_stack"] if f.vectorized]
        names = [f.name for f in frames]
        local = plate is not None and plate.name in names
        others = [n for n in names if plate is None or n != plate.name]
        if others:
            raise ValueError(
                f"latent site {name!r} lies in the plate(s) {others}, not only in the data plate "
                f"{plate.name if plate else None!r}; the automatic guides handle latents that are "
                "either in the data plate alone (local) or outside every plate (global)"
            )
        value = site["value"]
        event_shape = tuple(value.shape[value.dim() - len(site["fn"].event_shape) :])
        if local and tuple(site["fn"].batch_shape) != (plate.size,):
            raise ValueError(
                f"latent site {name!r} has batch shape {tuple(site['fn'].batch_shape)}; the "
                f"automatic guides need local latents with batch shape [B] = [{plate.size}], the "
                "data plate at dim=-1 and every other dimension in the event (.to_event())"
            )
        support = site["fn"].support
        one = value.reshape((-1, *event_shape))[0] if event_shape else value.reshape(-1)[0]
        unconstrained = biject_to(support).inv(one)
        sites.append(LatentSite(name, local, event_shape, tuple(unconstrained.shape), support))
    if not sites:
        raise ValueError("the model has no latent sample site: there is nothing to guide")
    return ModelStructure(tuple(sites), plate.name if plate else None, plate.dim if plate else None)


def _cuda_devices() -> list[int]:
    return [torch.cuda.current_device()] if torch.cuda.is_initialized() else []


def plate_for(structure: ModelStructure, x: torch.Tensor, num_data: int | None) -> pyro.plate:
    """The data plate at the model's dim, scaled by ``num_data / len(x)`` when given."""
    size = x.shape[0]
    if num_data is None:
        return pyro.plate(structure.plate_name, size, dim=structure.plate_dim)
    subsample = torch.arange(size, device=x.device)
    return pyro.plate(structure.plate_name, num_data, subsample=subsample, dim=structure.plate_dim)
