"""The log-weight core: one vectorized pass over K particles, decomposed per datapoint.

Every estimator of this package is a reduction of the tensor computed here,

    log w[k, i] = log p(x_i, z_ik) - log q(z_ik | x_i),   k < K particles, i < B datapoints,

where the sum over sites runs over the sites inside the *data plate* (the plate that holds the
datapoints), with each site's own scale (e.g. from ``poutine.scale``) but *without* the
minibatch scale N/B of the data plate, which is applied after the per-datapoint reduction.

Sites outside the data plate make the weight joint over the batch. When the guide has a latent
site outside the data plate (a global latent), the only valid weight is the joint one,

    log w[k] = log p(x, z_k) - log q(z_k | x)  (all sites, the data plate scaled by N/B),

and the core returns it as a single column (M = 1) with scale 1. Otherwise it returns B columns
with scale N/B, plus the contribution of observed sites outside the data plate, averaged over the
particles, as an offset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_site_shape

PARTICLE_PLATE = "num_particles_vectorized"


def _is_latent(site: dict) -> bool:
    return site["type"] == "sample" and not site["is_observed"]


def plate_nesting(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> int:
    """How many plate dimensions model and guide use (the particle plate goes left of them).

    Found by running guide and model once; the random number generators are restored afterwards,
    so that a seeded first step draws what every later seeded step would.
    """
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices), poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    dims = [
        -frame.dim
        for trace in (prune_subsample_sites(model_trace), prune_subsample_sites(guide_trace))
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    ]
    return max(dims, default=0)


@dataclass(frozen=True)
class DataPlate:
    """The plate holding the datapoints: its name, dim, minibatch size B and scale N/B."""

    name: str
    dim: int
    size: int
    scale: float


def find_data_plate(model_trace: poutine.Trace, name: str | None) -> DataPlate | None:
    """The plate named ``name``, or else the outermost vectorized plate shared by every observed
    site; ``None`` when the observed sites share no plate (the whole batch is one datapoint)."""
    observed = [
        site
        for site in model_trace.nodes.values()
        if site["type"] == "sample" and site["is_observed"]
    ]
    frames: dict[str, Any] = {}
    common: set[str] | None = None
    for site in observed:
        names = set()
        for frame in site["cond_indep_stack"]:
            if frame.vectorized and frame.name != PARTICLE_PLATE:
                frames[frame.name] = frame
                names.add(frame.name)
        common = names if common is None else common & names
    if name is not None:
        if name not in frames:
            raise ValueError(
                f"data_plate={name!r} is not a plate of the model's observed sites; their plates "
                f"are {sorted(frames)}"
            )
        frame = frames[name]
    elif not common:
        return None
    else:
        frame = min((frames[n] for n in common), key=lambda f: f.dim)  # the outermost
    scale = 1.0 if frame.full_size is None else frame.full_size / frame.size
    return DataPlate(frame.name, frame.dim, int(frame.size), float(scale))


@dataclass
class LogWeights:
    """The per-particle log-weights of one vectorized pass, arranged for reduction.

    A bound is ``scale * sum_m R(log_w[:, m]) + offset`` for the estimator's reduction R over the
    particle dimension.

    Attributes:
        log_w: ``[K, M]``: M = B datapoints (latents local to the data plate) or M = 1 (the joint
            weight, when there are global latents).
        scale: N/B for per-datapoint columns, 1 for the joint column.
        offset: Scalar: sites outside the data plate in per-datapoint mode (mean over particles).
        score_log_q: ``[K, M]``: log q of the latents that need score-function gradients
            (their values carry no gradient), arranged like ``log_w``; zeros when there are none.
        has_score_sites: Whether any such latent exists.
        model_trace, guide_trace: The vectorized traces.
        data_plate: The data plate, or ``None``.
    """

    log_w: torch.Tensor
    scale: float
    offset: torch.Tensor
    score_log_q: torch.Tensor
    has_score_sites: bool
    model_trace: poutine.Trace
    guide_trace: poutine.Trace
    data_plate: DataPlate | None
    num_particles: int
    plate_nesting: int
    _arrange: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] = field(
        repr=False, default=None
    )

    def arrange(self, per_site: list[tuple[dict, torch.Tensor]]) -> tuple[torch.Tensor, Any]:
        """Arrange per-site log-densities (sign included) like ``log_w``: ([K, M], offset)."""
        return self._arrange(per_site)

    def stl_log_w(self) -> torch.Tensor:
        """``log_w`` with the same value but gradients through the sampled latents only.

        Each guide site's log q(z) is replaced by log q(z) + log q'(z) - log q(stop(z)), where q' is
        evaluated at stop(z): the explicit dependence of log q on the guide's parameters (the
        score term, whose expectation is zero) drops out of the gradient, and the path through
        z remains (Roeder et al. 2017).
        """
        terms = []
        for site in self.guide_trace.nodes.values():
            if _is_latent(site):
                if not scores_fresh_values(site["fn"]):
                    raise ValueError(
                        f"the guide's distribution at site {site['name']!r} can only score its own "
                        "samples (a flow without a closed-form inverse, such as planar, radial or "
                        "sylvester), but the STL/DReG gradients evaluate log q at a detached "
                        "sample; use 'elbo', 'iwae' or another estimator, or a family with an "
                        "inverse"
                    )
                log_q = site["fn"].log_prob(site["value"].detach())
                log_q = _scale_and_mask(log_q, site)
                terms.append((site, log_q - log_q.detach()))
        correction, _ = self.arrange(terms)
        return self.log_w + correction


def scores_fresh_values(fn: Any) -> bool:
    """Whether ``fn.log_prob`` works at a value that ``fn`` did not sample itself.

    Reads the ``has_tractable_inverse`` flag of the posterior families through any wrapping
    distributions (transformed, expanded, independent); distributions without it can.
    """
    while fn is not None:
        if getattr(fn, "has_tractable_inverse", True) is False:
            return False
        fn = getattr(fn, "base_dist", None)
    return True


def _scale_and_mask(log_prob: torch.Tensor, site: dict) -> torch.Tensor:
    """Apply the site's scale and mask, as Pyro does for its own ``log_prob``."""
    return scale_and_mask(log_prob, site["scale"], site["mask"])


def compute_log_weights(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    *,
    num_particles: int,
    plate_nesting: int,
    data_plate: str | None = None,
    detach_latents: bool = False,
    analytic_kl: bool = False,
    require_reparam: str | None = None,
    validate: bool = True,
) -> LogWeights:
    """Run guide and model once over ``num_particles`` vectorized particles; return log-weights.

    Arguments:
        model, guide: Pyro callables taking ``*args, **kwargs``.
        num_particles: K.
        plate_nesting: Plate dimensions that model and guide use; particles go at
            ``dim = -plate_nesting - 1``.
        data_plate: Name of the data plate, or ``None`` to detect it.
        detach_latents: Treat every latent as non-reparameterized (score-function gradients).
        analytic_kl: Replace log p(z) - log q(z) of a latent by -KL(q || p) where registered.
        require_reparam: When set (the estimator's name), raise ``ValueError`` naming any latent
            whose guide distribution has no ``rsample``.
        validate: Check that model and guide sites match and that every batch dimension is a
            plate's. Estimators do it on their first call only: the structure of a model rarely
            changes between steps, and the checks cost Python time on every step.

    Returns:
        The :class:`LogWeights`.
    """
    particle_dim = -plate_nesting - 1

    def vectorized(fn: Callable) -> Callable:
        def wrapped(*a: Any, **k: Any) -> Any:
            with pyro.plate(PARTICLE_PLATE, num_particles, dim=particle_dim):
                return fn(*a, **k)

        return wrapped

    guide_trace = poutine.trace(vectorized(guide)).get_trace(*args, **kwargs)
    guide_trace = prune_subsample_sites(guide_trace)
    if validate:
        _check_guide_sites(guide_trace, require_reparam, detach_latents)
    if detach_latents:
        for site in guide_trace.nodes.values():
            if _is_latent(site):
                site["value"] = site["value"].detach()
    model_trace = poutine.trace(poutine.replay(vectorized(model), trace=guide_trace)).get_trace(
        *args, **kwargs
    )
    model_trace = prune_subsample_sites(model_trace)
    # Scaled and masked log-densities of every site, stored where Pyro keeps them. Computed here
    # rather than by Trace.compute_log_prob, whose NaN checks force a device sync per site.
    for trace in (guide_trace, model_trace):
        for site in trace.nodes.values():
            if site["type"] == "sample" and "log_prob" not in site:
                log_prob = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
                site["unscaled_log_prob"] = log_prob
                site["log_prob"] = _scale_and_mask(log_prob, site)
    if validate:
        _check_sites_match(model_trace, guide_trace)
    if validate and pyro.infer.util.is_validation_enabled():
        # Pyro's own check: every batch dimension of a site must belong to a plate.
        for trace in (guide_trace, model_trace):
            for site in trace.nodes.values():
                if site["type"] == "sample":
                    check_site_shape(site, plate_nesting + 1)
    plate = find_data_plate(model_trace, data_plate)

    global_latent = plate is None or any(
        _is_latent(site) and plate.name not in {f.name for f in site["cond_indep_stack"]}
        for site in guide_trace.nodes.values()
    )

    def reduce_site(site: dict, log_prob: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """[K, B] for a site in the data plate (unscaled by N/B), else [K]; ``log_prob`` comes
        scaled and masked like the site."""
        full = plate_nesting + 1
        if log_prob.dim() > full:
            raise ValueError(
                f"site {site['name']!r} has batch shape {tuple(log_prob.shape)} with dimensions "
                f"left of its plates; declare every batch dimension with a pyro.plate or move it "
                f"into the event with .to_event()"
            )
        log_prob = log_prob.reshape((1,) * (full - log_prob.dim()) + tuple(log_prob.shape))
        in_plate = plate is not None and plate.name in {f.name for f in site["cond_indep_stack"]}
        keep = [0]
        if in_plate:
            log_prob = log_prob / plate.scale
            keep.append(full + plate.dim)
        summed = [d for d in range(full) if d not in keep]
        if summed:
            log_prob = log_prob.sum(summed)
        if in_plate:
            return log_prob.expand(num_particles, plate.size), True
        return log_prob.expand(num_particles), False

    zero = _a_zero(model_trace)

    def arrange(per_site: list[tuple[dict, torch.Tensor]]) -> tuple[torch.Tensor, Any]:
        local, glob = None, None
        for site, log_prob in per_site:
            value, is_local = reduce_site(site, log_prob)
            if is_local:
                local = value if local is None else local + value
            else:
                glob = value if glob is None else glob + value
        if global_latent:
            joint = zero.expand(num_particles)
            if local is not None:
                joint = joint + local.sum(-1) * (plate.scale if plate else 1.0)
            if glob is not None:
                joint = joint + glob
            return joint.unsqueeze(-1), zero
        if local is None:
            local = zero.expand(num_particles, plate.size)
        offset = glob.mean(0) if glob is not None else zero
        return local, offset

    terms, score_terms = [], []
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample":
            continue
        if _is_latent(site):
            guide_site = guide_trace.nodes[name]
            if analytic_kl:
                kl = _analytic_kl(guide_site, site)
                if kl is not None:
                    terms.append((site, -_scale_and_mask(kl, site)))
                    continue
            terms.append((guide_site, -guide_site["log_prob"]))
        terms.append((site, site["log_prob"]))
    for site in guide_trace.nodes.values():
        if _is_latent(site) and (detach_latents or not site["fn"].has_rsample):
            score_terms.append((site, site["log_prob"]))
    log_w, offset = arrange(terms)
    if score_terms:
        score_log_q, _ = arrange(score_terms)
    else:
        score_log_q = torch.zeros_like(log_w)
    return LogWeights(
        log_w=log_w,
        scale=1.0 if global_latent else plate.scale,
        offset=offset,
        score_log_q=score_log_q,
        has_score_sites=bool(score_terms),
        model_trace=model_trace,
        guide_trace=guide_trace,
        data_plate=plate,
        num_particles=num_particles,
        plate_nesting=plate_nesting,
        _arrange=arrange,
    )


def _a_zero(trace: poutine.Trace) -> torch.Tensor:
    for site in trace.nodes.values():
        if site["type"] == "sample" and isinstance(site["value"], torch.Tensor):
            value = site["value"]
            dtype = value.dtype if value.is_floating_point() else torch.get_default_dtype()
            return torch.zeros((), dtype=dtype, device=value.device)
    return torch.zeros(())


def _analytic_kl(guide_site: dict, model_site: dict) -> torch.Tensor | None:
    """KL(q || p) with the shape of q's batch, or ``None`` when no closed form is registered."""
    try:
        return torch.distributions.kl_divergence(guide_site["fn"], model_site["fn"])
    except NotImplementedError:
        return None


def _check_guide_sites(trace: poutine.Trace, require_reparam: str | None, detached: bool) -> None:
    if require_reparam is None or detached:
        return
    for name, site in trace.nodes.items():
        if _is_latent(site) and not site["fn"].has_rsample:
            raise ValueError(
                f"the {require_reparam!r} estimator needs reparameterized latents, but the guide's "
                f"site {name!r} has a {type(site['fn']).__name__} distribution without rsample; "
                "use 'elbo' or 'score' (score-function gradients) for such sites"
            )


def _check_sites_match(model_trace: poutine.Trace, guide_trace: poutine.Trace) -> None:
    model_latents = {name for name, site in model_trace.nodes.items() if _is_latent(site)}
    guide_latents = {name for name, site in guide_trace.nodes.items() if _is_latent(site)}
    model_observed = {
        name
        for name, site in model_trace.nodes.items()
        if site["type"] == "sample" and site["is_observed"]
    }
    for name in sorted(model_latents - guide_latents):
        raise ValueError(
            f"the model samples latent site {name!r} but the guide does not; every latent of the "
            f"model needs a guide site of the same name (the guide has {sorted(guide_latents)})"
        )
    for name in sorted(guide_latents - model_latents - model_observed):
        raise ValueError(
            f"the guide samples site {name!r} but the model has no site of that name (the "
            f"model's latent sites are {sorted(model_latents)})"
        )
    for name in sorted(guide_latents & model_observed):
        raise ValueError(
            f"the guide samples site {name!r}, which the model observes; a guide samples "
            "latents only"
        )
