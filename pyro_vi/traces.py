"""Low-level trace utilities: running a guide and replaying a model against it, site selection,
data-plate discovery, scaled log-densities, dependencies between sites.

Everything above this module (estimators, guides, evaluation) reads Pyro traces through these
functions, so that the rules they encode hold everywhere:

- the model is replayed against the guide's *whole* trace, subsample sites included, so that a
  subsampled plate (``pyro.plate(..., subsample_size=B)``) gives model and guide the same
  minibatch; subsample sites are pruned only afterwards;
- the data plate is the *outermost* plate shared by every observed site, in the order of their
  ``cond_indep_stack`` (plates are entered outermost first), not the one with the smallest
  ``dim``: under Pyro's automatic dims an inner feature plate gets the smaller dim;
- a site's log-density carries its own scale and mask, as Pyro applies them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.distributions import Delta
from pyro.distributions.util import scale_and_mask
from pyro.ops.provenance import ProvenanceTensor, detach_provenance, get_provenance
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites

#: Name of the plate that vectorizes particles; it sits left of every plate of the program.
PARTICLE_PLATE = "num_particles_vectorized"

__all__ = [
    "PARTICLE_PLATE",
    "DataPlate",
    "Probe",
    "ProgramTraces",
    "find_data_plate",
    "guess_plate_nesting",
    "is_deterministic",
    "is_factor",
    "is_latent",
    "is_observed",
    "is_point_mass",
    "log_prob_of",
    "no_rng_side_effects",
    "plate_names",
    "probe_program",
    "run_program",
    "sites_depending_on",
]


# -- sites ------------------------------------------------------------------------------------


def is_latent(site: dict) -> bool:
    """A sample site without an observed value (subsample sites excluded)."""
    return site["type"] == "sample" and not site["is_observed"] and not _is_subsample(site)


def is_observed(site: dict) -> bool:
    """A sample site with an observed value, ``pyro.factor`` sites included."""
    return site["type"] == "sample" and site["is_observed"]


def is_factor(site: dict) -> bool:
    """A ``pyro.factor`` site: an observed ``Unit`` site whose log-density is the factor."""
    return is_observed(site) and type(site["fn"]).__name__ == "Unit"


def is_deterministic(site: dict) -> bool:
    """An observed site that adds nothing to the density: ``pyro.deterministic``, a site that
    ``poutine.reparam`` replaced by its reparameterized value (a ``Delta`` masked out), or an
    observation masked out entirely. It records a value; it is no datum, and does not decide
    which plate holds the datapoints or whether they are coupled."""
    if not is_observed(site):
        return False
    if site["infer"].get("_deterministic") or site["mask"] is False:
        return True
    return getattr(site["fn"], "_mask", None) is False  # Distribution.mask(False)


def _is_subsample(site: dict) -> bool:
    return type(site["fn"]).__name__ == "_Subsample"


def plate_names(site: dict) -> set[str]:
    """Names of the vectorized plates a site lies in, the particle plate left out."""
    return {
        frame.name
        for frame in site["cond_indep_stack"]
        if frame.vectorized and frame.name != PARTICLE_PLATE
    }


def log_prob_of(site: dict) -> torch.Tensor:
    """The site's log-density, scaled and masked as Pyro does, computed once and cached in the
    site (``site["log_prob"]``, and ``site["unscaled_log_prob"]`` before scale and mask).

    Computed here rather than by ``Trace.compute_log_prob``, whose NaN checks force a device
    synchronization per site. Always a tensor: a site masked out entirely gives zeros.
    """
    if "log_prob" not in site:
        fn = site["fn"]
        log_prob = fn.log_prob(site["value"], *site["args"], **site["kwargs"])
        if not isinstance(log_prob, torch.Tensor):
            log_prob = torch.as_tensor(log_prob, device=_device_of(site["value"]))
        site["unscaled_log_prob"] = log_prob
        site["log_prob"] = _as_tensor_like(
            scale_and_mask(log_prob, site["scale"], site["mask"]), log_prob
        )
    return site["log_prob"]


def scaled_and_masked(value: torch.Tensor | float, site: dict) -> torch.Tensor:
    """``value`` (a per-site log-density term, e.g. a KL) scaled and masked like ``site``."""
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    return _as_tensor_like(scale_and_mask(tensor, site["scale"], site["mask"]), tensor)


def _as_tensor_like(value: Any, like: torch.Tensor) -> torch.Tensor:
    # scale_and_mask returns Python numbers for identically zero inputs.
    if isinstance(value, torch.Tensor):
        return value
    return torch.full_like(like, float(value))


def _device_of(value: Any) -> torch.device | None:
    return value.device if isinstance(value, torch.Tensor) else None


# -- running a program ------------------------------------------------------------------------


@contextmanager
def no_rng_side_effects() -> Iterator[None]:
    """Restore the random number generators afterwards: a structural run (finding plates or
    shapes) must not change what a seeded training step draws."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        yield


def is_point_mass(fn: Any) -> bool:
    """Whether ``fn`` is a ``Delta`` (through any wrapping distributions): a guide site whose
    value is a function of the guide's parameters with no noise, such as ``AutoDelta``'s (MAP)."""
    while fn is not None:
        if isinstance(fn, Delta):
            return True
        fn = getattr(fn, "base_dist", None)
    return False


class _DetachSamples(Messenger):
    """Detach every latent value as it is drawn, before the program reads it.

    Applied *outside* the trace handler so that the trace records the detached value too (the
    outer handler post-processes a message first). Used for score-function estimators that treat
    every latent as non-reparameterized: a site that depends on an earlier latent must then see
    that latent as a constant, or its score would carry the earlier latent's path.

    A point mass (``Delta``, ``AutoDelta``'s MAP value) keeps its path: it draws nothing, and
    its log-density does not move with its parameters (its score is 0), so its value's path is
    the only gradient its parameters have; detached, they would get none.

    What a distribution attached to its sample is carried over, detached as well: Pyro's
    straight-through relaxations keep the soft sample in ``value._unquantize`` and score it
    there; without it they would score the hard value (a wrong log q, NaN for the one-hot one).
    """

    def _pyro_post_sample(self, msg: dict) -> None:
        value = msg["value"]
        if msg["is_observed"] or not isinstance(value, torch.Tensor) or is_point_mass(msg["fn"]):
            return
        detached = value.detach()
        for key, item in getattr(value, "__dict__", {}).items():
            setattr(detached, key, item.detach() if isinstance(item, torch.Tensor) else item)
        msg["value"] = detached


class _FirstOfSequence(Messenger):
    """Give each site marked ``infer={"enumerate": "sequential"}`` the first value of its
    support, as the first of the runs Pyro's TraceEnum_ELBO makes one value at a time (with
    ``expand=False`` the value keeps a size-1 dim for each batch dim). Only for runs that look
    at a program's structure: code checking its shapes then sees what it was written for."""

    def _pyro_sample(self, msg: dict) -> None:
        if msg["done"] or msg["is_observed"] or msg["infer"].get("enumerate") != "sequential":
            return
        support = msg["fn"].enumerate_support(expand=msg["infer"].get("expand", False))
        msg["value"] = support[0]
        msg["done"] = True


@dataclass
class ProgramTraces:
    """The guide's trace and the model's trace replayed against it, subsample sites pruned.

    Attributes:
        model_trace, guide_trace: The pruned traces.
        raw_model_trace, raw_guide_trace: The same traces before pruning (subsample sites kept;
            Pyro's ``check_model_guide_match`` reads them).
        particle_dim: The dim of the particle plate, ``None`` when the run had no particle plate
            (one particle).
        num_particles: Particles of this run.
    """

    model_trace: poutine.Trace
    guide_trace: poutine.Trace
    raw_model_trace: poutine.Trace
    raw_guide_trace: poutine.Trace
    particle_dim: int | None
    num_particles: int


def run_program(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    *,
    num_particles: int = 1,
    plate_nesting: int = 0,
    detach_samples: bool = False,
    enumerate_model: bool = False,
    enumerate_guide: bool = False,
    minibatch_of: ProgramTraces | None = None,
) -> ProgramTraces:
    """Run ``guide``, then ``model`` replayed against the guide's whole trace.

    With ``num_particles > 1`` both run inside a particle plate at ``dim = -plate_nesting - 1``,
    left of every plate of the program; with one particle they run as written, so that user code
    sees the shapes it was written for.

    Arguments:
        model, guide: Pyro callables taking ``*args, **kwargs``.
        num_particles: Particles drawn in one vectorized run.
        plate_nesting: How many plate dimensions the program uses.
        detach_samples: Detach every latent as it is drawn (score-function estimators).
        enumerate_model: Enumerate the model's latents marked ``infer={"enumerate":
            "parallel"}`` that the guide does not sample, in dims left of every plate (the
            particle plate included): their values are all of their support, broadcast.
        enumerate_guide: Enumerate the guide's marked sites the same way, a sequential one at
            its first value (the context of Pyro's TraceEnum_ELBO; used to probe a program, not
            to compute weights).
        minibatch_of: An earlier run whose subsample indices this run reuses, the guide's and
            those of plates only the model enters (the particles of a bound computed one run
            per particle must score the same datapoints).

    Returns:
        The :class:`ProgramTraces`.
    """
    particle_dim = -plate_nesting - 1 if num_particles > 1 else None

    def vectorized(fn: Callable) -> Callable:
        if particle_dim is None:
            return fn

        def wrapped(*a: Any, **k: Any) -> Any:
            with pyro.plate(PARTICLE_PLATE, num_particles, dim=particle_dim):
                return fn(*a, **k)

        return wrapped

    first_dim = -plate_nesting - (2 if particle_dim is not None else 1)
    guided = vectorized(guide)
    if enumerate_guide:
        # The enum handler sees each site first (and books a sequential one in its markov
        # scopes), as under TraceEnum_ELBO's queue, which lies outside its enum handler.
        guided = _FirstOfSequence()(poutine.enum(guided, first_available_dim=first_dim))
    if minibatch_of is not None:
        indices = poutine.Trace()
        for name, site in minibatch_of.raw_guide_trace.nodes.items():
            if site["type"] == "sample" and _is_subsample(site):
                indices.add_node(name, **site)
        guided = poutine.replay(guided, trace=indices)
    guide_run = poutine.trace(guided)
    if detach_samples:
        with _DetachSamples():
            raw_guide = guide_run.get_trace(*args, **kwargs)
    else:
        raw_guide = guide_run.get_trace(*args, **kwargs)
    # The whole guide trace, subsample sites included: the model's subsampled plates then reuse
    # the guide's indices, and each latent meets its own datapoint's likelihood.
    replayed = vectorized(model)
    if enumerate_model:
        # Outside the particle plate, so that a site's distribution is broadcast over the
        # particles before its support is enumerated (as Pyro's TraceEnum_ELBO orders them).
        # After an enumerated guide, the model's dims go left of the guide's: the allocator
        # keeps its state, as in TraceEnum_ELBO (a program checking its shapes expects that).
        start = None if enumerate_guide else first_dim
        replayed = poutine.enum(replayed, first_available_dim=start)
    replay_trace = raw_guide
    if minibatch_of is not None:
        # A subsampled plate that only the model enters (its local latents enumerated out, or
        # observed sites only) draws its indices in the model: replay those too.
        own = [
            (name, site)
            for name, site in minibatch_of.raw_model_trace.nodes.items()
            if site["type"] == "sample" and _is_subsample(site) and name not in raw_guide.nodes
        ]
        if own:
            replay_trace = raw_guide.copy()
            for name, site in own:
                replay_trace.add_node(name, **site)
    raw_model = poutine.trace(poutine.replay(replayed, trace=replay_trace)).get_trace(
        *args, **kwargs
    )
    return ProgramTraces(
        model_trace=prune_subsample_sites(raw_model),
        guide_trace=prune_subsample_sites(raw_guide),
        raw_model_trace=raw_model,
        raw_guide_trace=raw_guide,
        particle_dim=particle_dim,
        num_particles=num_particles,
    )


@dataclass(frozen=True)
class Probe:
    """What one structural run of a program shows.

    Attributes:
        plate_nesting: The largest ``-dim`` of the vectorized plates of model and guide.
        model_enumerated: Latent sites of the model, absent from the guide, marked
            ``infer={"enumerate": "parallel"}``: they are summed out of log p.
        guide_enumerated: Sites of the guide marked for enumeration.
    """

    plate_nesting: int
    model_enumerated: tuple[str, ...] = ()
    guide_enumerated: tuple[str, ...] = ()


def probe_program(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    *,
    num_particles: int = 1,
    plate_nesting: int | None = None,
) -> Probe:
    """Run the guide and the model replayed against it once, and describe their structure.

    With ``plate_nesting`` unknown, the program runs as written (as Pyro guesses it), and its
    plates give the nesting. With it known, the program runs in the context of the real
    computation, so that code checking its shapes sees what it will see there: the
    ``num_particles`` particle plate, and enumeration of the sites marked for it (in the guide,
    as Pyro's TraceEnum_ELBO runs it, and in the model).

    Nothing is recorded by outer handlers and the random number generators are restored, so a
    seeded first step draws what every later seeded step would.

    Raises:
        TypeError: ``guide`` is a ``GuideMessenger`` (``AutoNormalMessenger``, ...), which runs
            the model itself instead of being replayed against it.
    """
    if isinstance(poutine.unwrap(guide), Messenger):
        raise TypeError(
            f"guide is a {type(poutine.unwrap(guide)).__name__}, a GuideMessenger that runs the "
            "model itself; pyro_vi's estimators replay the model against a guide function's "
            "trace: use an autoguide such as AutoNormal or AutoMultivariateNormal, or a "
            "hand-written guide"
        )
    in_context = {}
    if plate_nesting is not None:
        in_context = {
            "num_particles": num_particles,
            "plate_nesting": plate_nesting,
            "enumerate_model": True,
            "enumerate_guide": True,
        }
    with no_rng_side_effects(), poutine.block():
        try:
            traces = run_program(model, guide, args, kwargs, **in_context)
        except Exception:
            if not in_context:
                raise
            # The program does not run in that context: perhaps it is written for one particle
            # (enumerated as Pyro's TraceEnum_ELBO would, or not at all). Its structure in the
            # first context it runs in decides (a real pass will then say what is wrong).
            fallbacks = [{**in_context, "num_particles": 1}, {}]
            if num_particles == 1:
                fallbacks.pop(0)
            for context in fallbacks:
                try:
                    traces = run_program(model, guide, args, kwargs, **context)
                except Exception:
                    continue
                in_context = {}
                break
            if in_context:
                raise
    dims = [
        -frame.dim
        for trace in (traces.model_trace, traces.guide_trace)
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized and frame.name != PARTICLE_PLATE
    ]
    if plate_nesting is not None and max(dims, default=0) > plate_nesting:
        # Too small a nesting puts the particle plate or the enumerated dims on a plate's dim,
        # where Pyro fails with a shape mismatch that does not say why.
        deepest = {
            frame.name: frame.dim
            for trace in (traces.model_trace, traces.guide_trace)
            for site in trace.nodes.values()
            if site["type"] == "sample"
            for frame in site["cond_indep_stack"]
            if frame.vectorized and frame.name != PARTICLE_PLATE and -frame.dim > plate_nesting
        }
        raise ValueError(
            f"max_plate_nesting={plate_nesting}, but the program has plates at dims "
            f"{dict(sorted(deepest.items()))}; max_plate_nesting must be at least "
            f"{max(dims)} (or None, to find it)"
        )

    def marked(trace: poutine.Trace, exclude: poutine.Trace | None) -> tuple[str, ...]:
        return tuple(
            name
            for name, site in trace.nodes.items()
            if is_latent(site)
            and site["infer"].get("enumerate")
            and (exclude is None or name not in exclude.nodes)
        )

    return Probe(
        plate_nesting=max(dims, default=0) if plate_nesting is None else plate_nesting,
        model_enumerated=marked(traces.model_trace, traces.guide_trace),
        guide_enumerated=marked(traces.guide_trace, None),
    )


def guess_plate_nesting(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> int:
    """How many plate dimensions model and guide use (:func:`probe_program`)."""
    return probe_program(model, guide, args, kwargs).plate_nesting


# -- the data plate ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DataPlate:
    """The plate holding the datapoints.

    Attributes:
        name: The plate's name.
        dim: Its (negative) dim.
        size: Datapoints in this run, B (the subsample size when subsampled).
        scale: Its subsampling scale N / B (1 when not subsampled).
    """

    name: str
    dim: int
    size: int
    scale: float


def find_data_plate(trace: poutine.Trace, name: str | None = None) -> DataPlate | None:
    """The data plate of a (model) trace.

    The plate named ``name`` when given; otherwise the outermost vectorized plate that every
    observed site in a plate lies in, outermost meaning first in each site's
    ``cond_indep_stack`` (observations outside every plate are shared by all datapoints and do
    not take part). Returns ``None`` when those sites share no plate (the whole batch is then
    one datapoint).

    Raises:
        ValueError: ``name`` is not a plate of the observed sites; or the observed sites disagree
            on which shared plate is outermost (they nest the shared plates in different orders),
            so that the data plate must be named.
    """
    observed = [
        site
        for site in trace.nodes.values()
        if is_observed(site)
        and not _is_subsample(site)
        and not is_factor(site)
        and not is_deterministic(site)
    ]
    if not observed:  # a model of factors only: its factors play the observations' role
        observed = [site for site in trace.nodes.values() if is_factor(site)]
    frames: dict[str, Any] = {}
    stacks = []
    for site in observed:
        stack = [
            frame
            for frame in site["cond_indep_stack"]
            if frame.vectorized and frame.name != PARTICLE_PLATE
        ]
        frames.update((frame.name, frame) for frame in stack)
        stacks.append([frame.name for frame in stack])
    if name is not None:
        if name not in frames:
            raise ValueError(
                f"data_plate={name!r} is not a plate of the model's observed sites; their plates "
                f"are {sorted(frames)}"
            )
        return _data_plate(frames[name])
    # Observations outside every plate are shared by all datapoints: they do not decide which
    # plate holds the datapoints (whether they couple the datapoints is the caller's question).
    stacks = [stack for stack in stacks if stack]
    if not stacks:
        return None
    common = set(stacks[0]).intersection(*stacks[1:])
    if not common:
        return None
    outermost = {next(n for n in stack if n in common) for stack in stacks}
    if len(outermost) > 1:
        raise ValueError(
            f"the observed sites share the plates {sorted(common)} but nest them in different "
            f"orders, so the outermost one (the data plate) is ambiguous: "
            f"{sorted(outermost)}; name it with data_plate=..."
        )
    return _data_plate(frames[outermost.pop()])


def _data_plate(frame: Any) -> DataPlate:
    scale = 1.0 if frame.full_size is None else frame.full_size / frame.size
    return DataPlate(frame.name, frame.dim, int(frame.size), float(scale))


# -- dependencies -----------------------------------------------------------------------------


class _TrackLatents(Messenger):
    """Tag the value of each latent in ``names`` with its name (provenance tracking)."""

    def __init__(self, names: set[str]) -> None:
        super().__init__()
        self.names = names

    def _pyro_post_sample(self, msg: dict) -> None:
        if msg["name"] in self.names and isinstance(msg["value"], torch.Tensor):
            value = detach_provenance(msg["value"])
            msg["value"] = ProvenanceTensor(value, frozenset({msg["name"]}))


def sites_depending_on(
    model: Callable,
    guide_trace: poutine.Trace,
    args: tuple,
    kwargs: dict,
    latents: set[str],
    sites: set[str],
) -> set[str] | None:
    """Which of the model's ``sites`` have a log-density that depends on the values of
    ``latents``, found by replaying the model against ``guide_trace`` with those values tagged
    (Pyro's provenance tracking: every torch operation carries its inputs' tags).

    Returns ``None`` when the program cannot be run with tagged tensors; callers then assume
    that every site depends on every latent.
    """
    if not latents or not sites:
        return set()
    try:
        with (
            no_rng_side_effects(),
            torch.no_grad(),
            poutine.block(),
            pyro.validation_enabled(False),
        ):
            tracked = _TrackLatents(latents)
            with tracked:
                trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
                    *args, **kwargs
                )
            found = set()
            for name in sites:
                site = trace.nodes.get(name)
                if site is None:
                    continue
                log_prob = site["fn"].log_prob(site["value"])
                if get_provenance(log_prob) & latents:
                    found.add(name)
            return found
    except Exception:  # any failure means "unknown", which callers handle conservatively
        return None
