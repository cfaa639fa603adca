"""Inspecting a model once: which latent sites it has, their shapes, supports and plates.

Shared by the automatic guides: each latent is either *local* (it lies in the data plate, one
value per datapoint, and possibly in further plates nested with it, e.g. one value per datapoint
and feature) or *global* (outside every plate).

The data plate is found by :func:`pyro_vi.estimators.core.find_data_plate` (the outermost plate
shared by the observed sites, unless named). Its layout is recorded as the model declares it: its
``dim`` (explicit or allocated by Pyro), and whether the model draws its own minibatch
(``pyro.plate(name, N, subsample_size=B)``), in which case the guide opens the same plate and
Pyro replays the guide's indices into the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.transforms import biject_to
from pyro.poutine.util import prune_subsample_sites

from pyro_vi._checks import check_int
from pyro_vi.traces import PARTICLE_PLATE, find_data_plate


@dataclass(frozen=True)
class InnerPlate:
    """A plate that a local latent lies in besides the data plate (e.g. a feature plate)."""

    name: str
    dim: int
    size: int


@dataclass(frozen=True)
class LatentSite:
    """One latent site of a model, as a guide needs to know it.

    Attributes:
        name: The site's name.
        local: Whether it lies in the data plate (one value per datapoint).
        event_shape: Shape of one value (per datapoint, and per element of its inner plates,
            when local).
        unconstrained_shape: Shape of one value mapped to the reals by ``biject_to(support)``.
        support: The site distribution's support.
        data_dim: The data plate's dim when local, else ``None``.
        inner_plates: The other plates a local latent lies in, ordered by dim (leftmost first).
    """

    name: str
    local: bool
    event_shape: tuple[int, ...]
    unconstrained_shape: tuple[int, ...]
    support: dist.constraints.Constraint
    data_dim: int | None = None
    inner_plates: tuple[InnerPlate, ...] = ()

    @property
    def dim(self) -> int:
        """Size of the flat unconstrained vector the posterior family works on."""
        return math.prod(self.unconstrained_shape)

    @property
    def inner_size(self) -> int:
        """Elements per datapoint over the inner plates: prod of their sizes (1 without any)."""
        return math.prod(plate.size for plate in self.inner_plates)

    def batch_shape(self, batch_size: int) -> tuple[int, ...]:
        """The site's batch shape for ``batch_size`` datapoints: each plate's size at its dim,
        1 at dims of no plate of the site, as Pyro broadcasts it; ``()`` for a global site."""
        if not self.local:
            return ()
        dims = {self.data_dim: batch_size} | {p.dim: p.size for p in self.inner_plates}
        return tuple(dims.get(d, 1) for d in range(min(dims), 0))

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
    """The latent sites of a model and its data plate, found by one prior run.

    Attributes:
        sites: The latent sites in the model's order.
        plate_name: The data plate's name (``None`` without one).
        plate_dim: Its dim.
        plate_size: N, its size in that run (all datapoints, also when subsampled).
        subsample_size: B when the model draws its own minibatch of the data plate
            (``pyro.plate(name, N, subsample_size=B)``), else ``None``.
    """

    sites: tuple[LatentSite, ...]
    plate_name: str | None
    plate_dim: int | None
    plate_size: int | None = None
    subsample_size: int | None = None


def inspect_model(
    model: Callable, args: tuple, kwargs: dict, data_plate: str | None = None
) -> ModelStructure:
    """Run ``model`` once from its prior (nothing is recorded in the param store's gradients) and
    describe its latent sites.

    Raises:
        ValueError: a global latent lies in a plate other than the data plate; a local latent
            also lies in a subsampled plate; a latent has batch dimensions that are not its
            plates'; the data plate takes explicit ``subsample=`` indices; or the model has no
            latent.
    """
    with torch.no_grad(), poutine.block(), torch.random.fork_rng(devices=_cuda_devices()):
        raw = poutine.trace(model).get_trace(*args, **kwargs)
    trace = prune_subsample_sites(raw)
    plate = find_data_plate(trace, data_plate)
    data_frame = None if plate is None else _frames(trace)[plate.name]
    sites = tuple(
        _describe_site(name, site, data_frame)
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"]
    )
    if not sites:
        raise ValueError("the model has no latent sample site: there is nothing to guide")
    if data_frame is None:
        return ModelStructure(sites, None, None)
    full_size = data_frame.size if data_frame.full_size is None else data_frame.full_size
    subsample_size = None
    if full_size != data_frame.size:
        # The plate's _Subsample site keeps the subsample_size the model asked for; it is None
        # when the model passed explicit indices, which the guide has no way to know.
        subsample_size = getattr(raw.nodes[data_frame.name]["fn"], "subsample_size", None)
        if subsample_size is None:
            raise ValueError(
                f"the model's data plate {data_frame.name!r} takes explicit subsample= indices "
                f"({data_frame.size} of {full_size}), which the guide cannot know; use "
                f"pyro.plate({data_frame.name!r}, {full_size}, subsample_size="
                f"{data_frame.size}) (the guide then draws the indices and Pyro replays them "
                "into the model), or pass the minibatch itself with num_data="
            )
        subsample_size = int(subsample_size)
    return ModelStructure(sites, data_frame.name, data_frame.dim, int(full_size), subsample_size)


def _frames(trace: poutine.Trace) -> dict[str, Any]:
    """Every vectorized plate frame of the trace's sample sites, by name."""
    return {
        frame.name: frame
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized and frame.name != PARTICLE_PLATE
    }


def _describe_site(name: str, site: dict, data_frame: Any) -> LatentSite:
    """The :class:`LatentSite` of one latent, or a ValueError saying why it cannot be guided."""
    frames = [f for f in site["cond_indep_stack"] if f.vectorized and f.name != PARTICLE_PLATE]
    local = data_frame is not None and any(f.name == data_frame.name for f in frames)
    others = sorted((f for f in frames if not local or f.name != data_frame.name), key=_dim)
    data_name = None if data_frame is None else data_frame.name
    if others and not local:
        raise ValueError(
            f"latent site {name!r} lies in the plate(s) {[f.name for f in others]}, not in the "
            f"data plate {data_name!r}; the automatic guides handle latents in the data plate "
            "(possibly nested with further plates) or outside every plate (global); if "
            f"{name!r} is per datapoint, name its plate with data_plate="
        )
    subsampled = [f.name for f in others if f.full_size is not None and f.full_size != f.size]
    if subsampled:
        raise ValueError(
            f"latent site {name!r} lies in the subsampled plate(s) {subsampled} besides the data "
            f"plate {data_name!r}; the amortized guide subsamples the data plate only: declare "
            f"{subsampled} without subsample_size"
        )
    inner = tuple(InnerPlate(f.name, f.dim, int(f.size)) for f in others)
    fn = site["fn"]
    value = site["value"]
    event_shape = tuple(value.shape[value.dim() - len(fn.event_shape) :])
    support = fn.support
    one = value.reshape((-1, *event_shape))[0] if event_shape else value.reshape(-1)[0]
    unconstrained = tuple(biject_to(support).inv(one).shape)
    described = LatentSite(
        name,
        local,
        event_shape,
        unconstrained,
        support,
        data_dim=data_frame.dim if local else None,
        inner_plates=inner,
    )
    expected = described.batch_shape(int(data_frame.size)) if local else ()
    if _strip_ones(tuple(fn.batch_shape)) != _strip_ones(expected):
        plates = {f.name: f.dim for f in frames}
        raise ValueError(
            f"latent site {name!r} has batch shape {tuple(fn.batch_shape)}, but its plates "
            f"{plates} (name: dim) make it {expected}; the automatic guides need every batch "
            "dimension of a latent to be one of its plates' (move the others into the event "
            "with .to_event())"
        )
    return described


def _dim(frame: Any) -> int:
    return frame.dim


def _strip_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    # Leading 1s of a batch shape are broadcasting, not a plate.
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


def _cuda_devices() -> list[int]:
    return [torch.cuda.current_device()] if torch.cuda.is_initialized() else []


def plate_for(structure: ModelStructure, x: torch.Tensor, num_data: int | None) -> pyro.plate:
    """The data plate as the model declares it, over the rows of ``x`` (the data argument).

    - the model subsamples (``subsample_size=B``): ``pyro.plate(name, len(x), subsample_size=B)``,
      whose indices (the value of ``with ... as index``) pick the rows the guide encodes;
    - ``num_data=N`` (the package's minibatch convention): ``x`` is the minibatch of B rows,
      scaled by N / B;
    - otherwise a plate of ``len(x)`` datapoints.

    Raises:
        ValueError: ``num_data`` is given for a model that draws its own minibatch.
    """
    size = x.shape[0]
    name, dim = structure.plate_name, structure.plate_dim
    if structure.subsample_size is not None:
        if num_data is not None:
            raise ValueError(
                f"num_data={num_data!r} was given, but the model's data plate {name!r} draws its "
                f"own minibatch (subsample_size={structure.subsample_size}): pass all "
                "datapoints without num_data, or a minibatch with num_data to a model that does "
                "not subsample"
            )
        return pyro.plate(
            name, size, subsample_size=structure.subsample_size, dim=dim, device=x.device
        )
    if num_data is None:
        return pyro.plate(name, size, dim=dim)
    num_data = check_int("num_data", num_data, minimum=size)
    # An explicit subsample applies the scale N / B without drawing indices: the caller has
    # already chosen the minibatch.
    subsample = torch.arange(size, device=x.device)
    return pyro.plate(name, num_data, subsample=subsample, dim=dim)


@contextmanager
def inner_plates(site: LatentSite, opened: dict[str, pyro.plate] | None = None) -> Iterator[None]:
    """The site's plates besides the data plate, opened at the model's dims and sizes.

    ``opened`` keeps the plates made so far in one run of the guide, by name: Pyro records a
    plate's site when the plate is made, so two latents in the same plate must enter one plate
    object (a second ``pyro.plate`` of that name is "Multiple sample sites named ...")."""
    opened = {} if opened is None else opened
    with ExitStack() as stack:
        for plate in site.inner_plates:
            if plate.name not in opened:
                opened[plate.name] = pyro.plate(plate.name, plate.size, dim=plate.dim)
            stack.enter_context(opened[plate.name])
        yield
