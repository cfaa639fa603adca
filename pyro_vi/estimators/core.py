"""The log-weight core: K particles of a Pyro program, decomposed per datapoint.

Every estimator of this package is a reduction of the tensor computed here,

    log w[k, i] = log p(x_i, z_ik) - log q(z_ik | x_i),   k < K particles, i < B datapoints,

where the sum over sites runs over the sites inside the *data plate* (the plate that holds the
datapoints, :func:`pyro_vi.traces.find_data_plate`), each with its own scale and mask, except the
*column scale* c: the data plate's subsampling scale N/B (and any scale shared by every site of
the data plate, such as a ``poutine.scale(N / B)`` written by hand), which is applied after the
per-datapoint reduction R over particles. A bound is then

    c * sum_i R(log w[:, i]) + offset,

with ``offset`` the (particle-independent) log-density of sites outside the data plate.

The weights are *joint*, one column (M = 1) of the whole batch with every scale inside, when
they do not split per datapoint:

- the guide has a latent outside the data plate (a global latent);
- an observed site outside the data plate depends on a latent inside it;
- the observed sites share no plate.

Steps (one function each): :func:`run_particles` runs guide and model (a vectorized particle
plate, or a loop); :func:`check_program` validates the pair on an estimator's first call;
:func:`choose_columns` decides the layout; :class:`Pass` arranges per-site terms into ``[K, M]``;
:func:`compute_log_weights` assembles the :class:`LogWeights`.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from pyro import poutine
from pyro.distributions.torch_distribution import MaskedDistribution

from pyro_vi import _noise_scoring
from pyro_vi.traces import (
    PARTICLE_PLATE,
    DataPlate,
    ProgramTraces,
    find_data_plate,
    guess_plate_nesting,
    is_deterministic,
    is_factor,
    is_latent,
    is_observed,
    is_point_mass,
    log_prob_of,
    plate_names,
    run_program,
    scaled_and_masked,
    sites_depending_on,
)
from pyro_vi.traces import guess_plate_nesting as plate_nesting  # the name callers know

__all__ = [
    "PARTICLE_PLATE",
    "Columns",
    "DataPlate",
    "LogWeights",
    "Pass",
    "VectorizationError",
    "compute_log_weights",
    "find_data_plate",
    "plate_nesting",
    "scores_fresh_values",
]


# -- layout -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Columns:
    """How the log-weights of a program are laid out.

    Attributes:
        plate: The data plate (``None`` when the observed sites share no plate).
        per_datapoint: One column per datapoint of the data plate (else one joint column).
        scale: The column scale c, applied after the reduction (1 for the joint column).
        reason: Why the weights are joint, for messages; ``""`` when per datapoint.
    """

    plate: DataPlate | None
    per_datapoint: bool
    scale: float
    reason: str = ""


def choose_columns(
    traces: ProgramTraces,
    data_plate: str | None,
    dependent_sites: set[str] | None,
) -> Columns:
    """Per-datapoint columns when the weights split over the data plate, else one joint column.

    Arguments:
        traces: One run of the program.
        data_plate: The data plate's name, or ``None`` to detect it.
        dependent_sites: Names of observed sites outside the data plate whose density depends on
            a latent inside it (``None``: unknown, assume all do).
    """
    plate = find_data_plate(traces.model_trace, data_plate)
    if plate is None:
        return Columns(None, False, 1.0, "the observed sites share no plate")
    guide_outside = sorted(
        name
        for name, site in traces.guide_trace.nodes.items()
        if site["type"] == "sample" and plate.name not in plate_names(site)
    )
    if guide_outside:
        return Columns(plate, False, 1.0, f"guide sites {guide_outside} lie outside the data plate")
    enumerated_outside = sorted(
        name
        for name, site in traces.model_trace.nodes.items()
        if _is_enumerated(site) and plate.name not in plate_names(site)
    )
    if enumerated_outside:
        return Columns(
            plate,
            False,
            1.0,
            f"enumerated sites {enumerated_outside} lie outside the data plate",
        )
    outside = _observed_outside(traces.model_trace, plate)
    dependent = outside if dependent_sites is None else outside & dependent_sites
    if dependent:
        return Columns(
            plate,
            False,
            1.0,
            f"observed sites {sorted(dependent)} outside the data plate depend on its latents",
        )
    return Columns(plate, True, _column_scale(traces, plate))


def _observed_outside(trace: poutine.Trace, plate: DataPlate) -> set[str]:
    return {
        name
        for name, site in trace.nodes.items()
        if is_observed(site) and not is_deterministic(site) and plate.name not in plate_names(site)
    }


def _column_scale(traces: ProgramTraces, plate: DataPlate) -> float:
    """The scale every site of the data plate shares, when it is one number; else the plate's
    subsampling scale N/B. Pulled out of the log-weights, it multiplies each datapoint's bound:
    a minibatch scaled by hand (``poutine.scale(scale=N / B)`` around the data plate) is then
    the same as a subsampled plate."""
    scales = set()
    for trace in (traces.model_trace, traces.guide_trace):
        for site in trace.nodes.values():
            if site["type"] == "sample" and plate.name in plate_names(site):
                scale = site["scale"]
                if isinstance(scale, torch.Tensor):
                    if scale.numel() != 1:
                        return plate.scale
                    scale = float(scale)
                scales.add(float(scale))
    if len(scales) == 1:
        (scale,) = scales
        if scale > 0:
            return scale
    return plate.scale


# -- one run, arranged ------------------------------------------------------------------------


@dataclass
class Pass:
    """One run of guide and model (``num_particles`` vectorized particles, or one particle).

    Attributes:
        traces: The run's traces.
        columns: The layout shared by every pass of a computation.
        plate_nesting: Plate dimensions of the program (the particle plate excluded).
    """

    traces: ProgramTraces
    columns: Columns
    plate_nesting: int
    model_terms: list[tuple[dict, torch.Tensor]] = field(default_factory=list, repr=False)
    guide_terms: list[tuple[dict, torch.Tensor]] = field(default_factory=list, repr=False)

    @property
    def num_particles(self) -> int:
        return self.traces.num_particles

    @property
    def model_trace(self) -> poutine.Trace:
        return self.traces.model_trace

    @property
    def guide_trace(self) -> poutine.Trace:
        return self.traces.guide_trace

    def reduce_site(self, site: dict, term: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """A per-site term (scaled and masked like the site) summed to ``[K, B]`` when the site
        lies in the data plate and the columns are per datapoint (the column scale divided
        out), else to ``[K]``. Returns (tensor, whether it is per datapoint)."""
        full = self.plate_nesting + (1 if self.traces.particle_dim is not None else 0)
        while term.dim() > full and term.shape[0] == 1:
            term = term.squeeze(0)  # an enumeration dim this site does not depend on
        if term.dim() > full:
            raise ValueError(
                f"site {site['name']!r} has batch shape {tuple(term.shape)} with dimensions left "
                f"of its plates; declare every batch dimension with a pyro.plate or move it into "
                f"the event with .to_event()"
            )
        if term.dim() < full:  # views only where needed: each is an autograd node per step
            term = term.reshape((1,) * (full - term.dim()) + tuple(term.shape))
        if self.traces.particle_dim is None:
            term = term.unsqueeze(0)  # a particle dim of size 1
            full += 1
        columns = self.columns
        local = columns.per_datapoint and columns.plate.name in plate_names(site)
        keep = [0]
        if local:
            if columns.scale != 1.0:  # dividing by 1 would only add an operation to the graph
                term = term / columns.scale
            keep.append(full + columns.plate.dim)
        summed = [d for d in range(full) if d not in keep]
        if summed:
            term = term.sum(summed)
        shape = (self.num_particles, columns.plate.size) if local else (self.num_particles,)
        return (term if term.shape == shape else term.expand(shape)), local

    def arrange(
        self, terms: Sequence[tuple[dict, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-site terms (sign included) arranged like ``log_w``: ``([K, M], offset)``.

        The offset collects terms outside the data plate when the columns are per datapoint
        (they do not depend on the particles' latents; their mean over particles is taken);
        ``None`` when there are none.
        """
        local, outside = None, None
        for site, term in terms:
            value, is_local = self.reduce_site(site, term)
            if is_local:
                local = value if local is None else local + value
            else:
                outside = value if outside is None else outside + value
        count = self.num_particles
        if not self.columns.per_datapoint:
            joint = self.zero.expand(count) if outside is None else outside
            if local is not None:  # not reached: joint columns have no local terms
                joint = joint + local.sum(-1)
            return joint.unsqueeze(-1), None
        if local is None:
            local = self.zero.expand(count, self.columns.plate.size)
        return local, None if outside is None else outside.mean(0)

    @property
    def zero(self) -> torch.Tensor:
        """A zero of the program's float dtype and device."""
        for trace in (self.model_trace, self.guide_trace):
            for site in trace.nodes.values():
                if site["type"] == "sample" and "log_prob" in site:
                    return site["log_prob"].new_zeros(())
        return torch.zeros(())

    def latent_sites(self) -> list[dict]:
        """The guide's latent sites (auxiliary ones included), in the order drawn."""
        return [site for site in self.guide_trace.nodes.values() if is_latent(site)]

    def broadcast_to_site(self, site: dict, table: torch.Tensor) -> torch.Tensor:
        """A ``[K, M]`` table of this pass reshaped to broadcast against ``site["value"]``: the
        particle entry on the particle dim, the datapoint entry on the data plate's dim."""
        value = site["value"]
        batch_dims = value.dim() - site["fn"].event_dim
        shape = [1] * value.dim()
        count, columns = table.shape
        particle_dim = self.traces.particle_dim
        if particle_dim is None:
            table = table[0]
        else:
            shape[batch_dims + particle_dim] = count
        if columns > 1:
            shape[batch_dims + self.columns.plate.dim] = columns
        return table.reshape(shape)


# -- the weights ------------------------------------------------------------------------------


@dataclass
class LogWeights:
    """The per-particle log-weights of a program, arranged for reduction.

    A bound is ``scale * sum_m R(log_w[:, m]) + offset`` for the estimator's reduction R over the
    particle dimension.

    Attributes:
        log_w: ``[K, M]``: M = B datapoints, or M = 1 (joint weights).
        scale: The column scale c (N/B for a subsampled data plate; 1 for joint weights).
        offset: Scalar: sites outside the data plate, when the columns are per datapoint.
        offset_is_zero: No site lies outside the data plate (the offset is a placeholder zero
            that a bound need not add).
        score_log_q: ``[K, M]``: log q of the guide sites that need score-function gradients
            (no ``rsample``, or every site for a score-function estimator), arranged like
            ``log_w``; zeros when there are none.
        score_sites: Names of those sites.
        passes: The runs behind the weights (one vectorized pass, or one per particle).
        columns: The layout.
        plate_nesting: Plate dimensions of the program.
    """

    log_w: torch.Tensor
    scale: float
    offset: torch.Tensor
    offset_is_zero: bool
    score_log_q: torch.Tensor
    score_sites: tuple[str, ...]
    passes: list[Pass]
    columns: Columns
    plate_nesting: int
    structure: Structure | None = None
    _guide_call: tuple = field(default=(), repr=False)
    _stl: torch.Tensor | None = field(default=None, repr=False)

    @property
    def has_score_sites(self) -> bool:
        return bool(self.score_sites)

    @property
    def num_particles(self) -> int:
        return self.log_w.shape[0]

    @property
    def data_plate(self) -> DataPlate | None:
        return self.columns.plate if self.columns.per_datapoint else None

    @property
    def model_trace(self) -> poutine.Trace:
        """The model trace of the first pass (the only one when particles are vectorized)."""
        return self.passes[0].model_trace

    @property
    def guide_trace(self) -> poutine.Trace:
        return self.passes[0].guide_trace

    def traces(self) -> list[tuple[poutine.Trace, poutine.Trace]]:
        """(model trace, guide trace) of every pass."""
        return [(p.model_trace, p.guide_trace) for p in self.passes]

    def stl_log_w(self) -> torch.Tensor:
        """``log_w`` with the same value, whose gradient reaches the guide's parameters only
        through the sampled latents ("sticking the landing", Roeder et al. 2017).

        Adds ``log q_phi(stop z) - stop(log q_phi(stop z))`` for the guide's log-density with
        *every* latent held fixed: its gradient is the explicit (score) part of d log q / d phi,
        which cancels the score part of ``-log q`` in ``log_w`` and leaves the path derivative
        through every sample, also through a latent that another latent's distribution depends
        on (q(z2 | z1): z1's path into q(z2 | .) is kept). With one latent site the guide's own
        distribution object serves; with several the guide is replayed with detached values.
        """
        if self._stl is None:
            guide, args, kwargs = self._guide_call
            rows = []
            for run in self.passes:
                log_q = _log_q_at_fixed_latents(run, guide, args, kwargs)
                correction, _ = run.arrange([(site, term - term.detach()) for site, term in log_q])
                rows.append(correction)
            correction = torch.cat(rows) if len(rows) > 1 else rows[0]
            self._stl = self.log_w + correction
        return self._stl

    def score_tables(self) -> list[tuple[str, dict, torch.Tensor, torch.Tensor]]:
        """For each guide site that needs a score-function term: (name, its infer dict, log q of
        the site ``[K, M]``, its *downstream cost* ``[K, M]``).

        The downstream cost of site s is the part of log w that can depend on z_s: the guide's
        terms from s on, in the guide's order, and the model's terms from the first model site
        whose value or distribution can read z_s on (the model's copy of s or of a latent the
        guide draws after s, in the model's order). Terms before that do not depend on z_s,
        and leaving them out of s's score term (Rao-Blackwellization by execution order, as
        Pyro's TraceGraph_ELBO does) removes their variance without bias; the data plate's
        columns already separate datapoints.
        """
        tables = []
        for name in self.score_sites:
            log_q, costs = [], []
            for run in self.passes:
                guide_names = [
                    n for n, site in run.guide_trace.nodes.items() if site["type"] == "sample"
                ]
                after = set(guide_names[guide_names.index(name) :])
                model_names = [
                    n for n, site in run.model_trace.nodes.items() if site["type"] == "sample"
                ]
                reached = [i for i, n in enumerate(model_names) if n in after]
                first = min(reached) if reached else len(model_names)
                model_after = set(model_names[first:])
                chosen = [
                    (site, term)
                    for site, term in run.model_terms
                    if site["name"] in model_after or site["name"] not in run.model_trace.nodes
                ]
                chosen += [(site, term) for site, term in run.guide_terms if site["name"] in after]
                costs.append(run.arrange(chosen)[0])
                site = run.guide_trace.nodes[name]
                log_q.append(run.arrange([(site, log_prob_of(site))])[0])
            infer = self.passes[0].guide_trace.nodes[name]["infer"]
            tables.append((name, infer, _rows(log_q), _rows(costs)))
        return tables


def _rows(tables: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(tables) if len(tables) > 1 else tables[0]


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


def _log_q_at_fixed_latents(
    run: Pass, guide: Callable, args: tuple, kwargs: dict
) -> list[tuple[dict, torch.Tensor]]:
    """[(site, log q of the site at the detached sample)] for the guide's latent sites, with the
    distributions built from detached upstream latents (a replay of the guide when there are
    several latent sites, since one may depend on another)."""
    latents = run.latent_sites()
    for site in latents:
        if not scores_fresh_values(site["fn"]):
            raise ValueError(
                f"the guide's distribution at site {site['name']!r} can only score its own "
                "samples (a flow without a closed-form inverse, such as planar, radial or "
                "sylvester), but the STL/DReG gradients evaluate log q at a detached sample; "
                "use 'elbo', 'iwae' or another estimator, or a family with an inverse"
            )
    if len(latents) <= 1:
        return [
            (site, scaled_and_masked(site["fn"].log_prob(site["value"].detach()), site))
            for site in latents
        ]
    fixed = poutine.Trace()
    for name, site in run.traces.raw_guide_trace.nodes.items():
        if site["type"] == "sample":
            value = site["value"]
            fixed.add_node(
                name, **{**site, "value": value.detach() if torch.is_tensor(value) else value}
            )
    particle_dim = run.traces.particle_dim

    def replayed(*a: Any, **k: Any) -> Any:
        if particle_dim is None:
            return guide(*a, **k)
        import pyro

        with pyro.plate(PARTICLE_PLATE, run.num_particles, dim=particle_dim):
            return guide(*a, **k)

    with poutine.block():
        trace = poutine.trace(poutine.replay(replayed, trace=fixed)).get_trace(*args, **kwargs)
    return [(site, log_prob_of(trace.nodes[site["name"]])) for site in latents]


# -- validation -------------------------------------------------------------------------------


def check_program(
    traces: ProgramTraces,
    plate_nesting: int,
    *,
    estimator: str,
    requires_reparam: bool,
    analytic_kl: bool,
    detach_latents: bool,
    guide_factors_allowed: bool = True,
    alternatives: tuple[str, ...] = ("elbo", "score"),
) -> None:
    """Validate a model/guide pair the way Pyro does, and refuse what the estimator cannot do.

    Pyro's ``check_model_guide_match`` runs first (its warnings and errors: shapes and event
    dims that disagree, plates in the guide but not in the model, guide factors without
    ``has_rsample``), then this package's own checks, each a ``ValueError`` naming the site.
    """
    from pyro.util import check_model_guide_match, check_site_shape

    model_trace, guide_trace = traces.model_trace, traces.guide_trace
    for name, site in model_trace.nodes.items():
        mark = site["type"] == "sample" and site["infer"].get("enumerate")
        if mark and name not in guide_trace.nodes and mark != "parallel":
            raise NotImplementedError(
                f"site {name!r} is marked infer={{'enumerate': {mark!r}}}: the model's latents "
                "are summed out in parallel only; mark it 'parallel'"
            )
    nesting = plate_nesting + (1 if traces.particle_dim is not None else 0)
    check_model_guide_match(traces.raw_model_trace, traces.raw_guide_trace, nesting)
    _check_sites_match(model_trace, guide_trace)
    _check_values(model_trace, guide_trace)
    _check_masks(model_trace, guide_trace)
    for name, site in guide_trace.nodes.items():
        if is_observed(site) and not is_factor(site) and not is_deterministic(site):
            raise ValueError(
                f"the guide observes site {name!r}; a guide samples latents only (a log-density "
                "term of the guide is written pyro.factor(name, value, has_rsample=...))"
            )
        if is_factor(site) and not guide_factors_allowed:
            raise ValueError(
                f"the guide has the factor {name!r}; the {estimator!r} estimator's gradient "
                "scores the guide's density at fixed latents, which a factor's value does not "
                "describe; use 'elbo', 'iwae' or another estimator without a guide-side "
                "gradient correction"
            )
        if (
            requires_reparam
            and not detach_latents
            and is_latent(site)
            and not site["fn"].has_rsample
        ):
            raise ValueError(
                f"the {estimator!r} estimator needs reparameterized latents, but the guide's "
                f"site {name!r} has a {_describe_fn(site['fn'])} distribution without rsample; "
                f"the estimators {list(alternatives)} take such sites (score-function "
                "gradients)"
            )
    for trace in (guide_trace, model_trace):
        for site in trace.nodes.values():
            if site["type"] == "sample":
                log_prob_of(site)
                check_site_shape(site, nesting)
                _check_undeclared_dims(site, nesting, traces.particle_dim)
    if not guide_factors_allowed:  # the estimators that re-score log q at detached samples
        _check_fresh_scoring(guide_trace, estimator)
    if analytic_kl:
        unordered = _unordered_sites(model_trace, guide_trace)
        if unordered:
            warnings.warn(
                f"the guide draws {unordered} after latents that the model draws after them "
                "(model and guide visit sites in different orders), so the closed-form KL of "
                "those sites would be taken against the wrong conditionals; they use the Monte "
                "Carlo term log p - log q instead. Draw sites in the model's order to use the "
                "closed form.",
                stacklevel=4,
            )


def _check_undeclared_dims(site: dict, nesting: int, particle_dim: int | None) -> None:
    """Refuse the particles broadcast against themselves.

    With vectorized particles, an operation written for one particle over a fixed dim (such as
    ``z.sum(-1)`` over a data plate at dim -1) moves the particles to that dim, where they meet the
    particle plate and make a K x K table of log-densities, summed as if independent: a wrong
    bound with no error. Its mark is a dimension of size K that is none of the site's plates.
    Other undeclared dimensions are let through as Pyro does (they are summed in the site's
    log-density, which is right when they index conditionally independent observations).
    """
    if particle_dim is None:
        return
    shape = site["log_prob"].shape
    if len(shape) < -particle_dim:
        return
    count = shape[particle_dim]
    dims = {frame.dim for frame in site["cond_indep_stack"] if frame.vectorized}
    for dim in range(-min(len(shape), nesting), 0):
        if count > 1 and shape[dim] == count and dim not in dims:
            raise VectorizationError(
                f"site {site['name']!r} has a log-density of shape {tuple(shape)}: its dim {dim} "
                f"holds {count} entries, as many as the particles vectorized in a plate at "
                f"dim={particle_dim}, but is none of its plates' dims {sorted(dims)}. An "
                "operation over a fixed dim (such as .sum(-1)) written for one particle moves the "
                "particles there, where they broadcast against themselves; write it so that it "
                "leaves the particle dim in place (keepdim=True, a reduction over the plate's "
                "own dim) or pass vectorize_particles=False. If that dim is a plate of yours, "
                "declare it on the site with pyro.plate."
            )


def _check_sites_match(model_trace: poutine.Trace, guide_trace: poutine.Trace) -> None:
    model_latents = {
        name
        for name, site in model_trace.nodes.items()
        if is_latent(site) and not _is_enumerated(site)
    }
    guide_latents = {name for name, site in guide_trace.nodes.items() if is_latent(site)}
    auxiliary = {
        name
        for name, site in guide_trace.nodes.items()
        if is_latent(site) and site["infer"].get("is_auxiliary")
    }
    model_observed = {name for name, site in model_trace.nodes.items() if is_observed(site)}
    for name in sorted(model_latents - guide_latents):
        raise ValueError(
            f"the model samples latent site {name!r} but the guide does not; every latent of the "
            f"model needs a guide site of the same name (the guide has {sorted(guide_latents)})"
        )
    for name in sorted(guide_latents & model_observed):
        raise ValueError(
            f"the guide samples site {name!r}, which the model observes; a guide samples "
            "latents only"
        )
    for name in sorted(guide_latents - model_latents - auxiliary):
        raise ValueError(
            f"the guide samples site {name!r} but the model has no site of that name (the "
            f"model's latent sites are {sorted(model_latents)}); a guide-only variable must be "
            "marked infer={'is_auxiliary': True}"
        )


def _describe_fn(fn: Any) -> str:
    """A distribution's class with its wrappers, e.g. ``Independent(Bernoulli)``."""
    names = []
    while fn is not None:
        names.append(type(fn).__name__)
        fn = getattr(fn, "base_dist", None)
    return "(".join(names) + ")" * (len(names) - 1)


def _check_fresh_scoring(guide_trace: poutine.Trace, estimator: str) -> None:
    """For gradients that re-score log q at a detached copy of each sample (STL, DReG): the
    guide's distributions must give a detached copy the density they give the sample itself.
    Some do not (a flow without an inverse; Pyro's straight-through relaxations, which keep the
    soft sample in an attribute the copy loses) and would give a plausible, wrong gradient."""
    for name, site in guide_trace.nodes.items():
        if not is_latent(site):
            continue
        fn = site["fn"]
        if not scores_fresh_values(fn):
            reason = "it has no closed-form inverse (planar, radial and sylvester flows)"
        else:
            # The sample itself scored by the general formula too: a density that scores its
            # own sample from the noise (NoiseNormal) skips z's rounding, which in float32 at
            # |loc| / scale ~ 1e4 alone exceeds the tolerance.
            with torch.no_grad(), _noise_scoring.through_samples():
                fresh = fn.log_prob(site["value"].detach(), *site["args"], **site["kwargs"])
                own = fn.log_prob(site["value"], *site["args"], **site["kwargs"])
                same = torch.allclose(fresh, own, rtol=1e-4, atol=1e-4)
            if same:
                continue
            reason = "its log_prob at a detached copy of the sample differs from the sample's"
        raise ValueError(
            f"the {estimator!r} estimator scores the guide's density at a detached copy of each "
            f"sample, but the {_describe_fn(fn)} distribution at site {name!r} cannot: {reason}; "
            "use 'elbo', 'iwae' or another estimator without a path-derivative gradient, or a "
            "distribution that scores any value"
        )


def _check_masks(model_trace: poutine.Trace, guide_trace: poutine.Trace) -> None:
    """Warn where the model masks out entries of a latent that the guide scores: their log q
    counts although the model ignores their values (obs_mask's "x_unobserved" site, for one)."""
    for name, site in model_trace.nodes.items():
        mask = site.get("mask")
        if not is_latent(site) or not isinstance(mask, torch.Tensor) or name not in guide_trace:
            continue
        guide_mask = guide_trace.nodes[name].get("mask")
        if guide_mask is None or (
            isinstance(guide_mask, torch.Tensor)
            and bool((guide_mask & ~mask.expand_as(guide_mask)).any())
        ):
            warnings.warn(
                f"the model masks out entries of the latent {name!r} that the guide scores: their "
                "log q counts in the bound although the model ignores them; mask the guide's "
                "site the same way (with poutine.mask(mask=...))",
                stacklevel=4,
            )


def _check_values(model_trace: poutine.Trace, guide_trace: poutine.Trace) -> None:
    """The guide's value at each latent lies in the model's plates and has the shape the model's
    distribution expects."""
    for name, site in model_trace.nodes.items():
        if not is_latent(site) or name not in guide_trace.nodes:
            continue
        model_plates, guide_plates = plate_names(site), plate_names(guide_trace.nodes[name])
        if model_plates != guide_plates:
            raise ValueError(
                f"site {name!r} lies in the plates {sorted(guide_plates)} in the guide but in "
                f"{sorted(model_plates)} in the model; a latent must lie in the same plates in "
                "both (same names), or its conditional independence differs between them"
            )
        value = site["value"]
        if not isinstance(value, torch.Tensor):
            continue
        fn = site["fn"]
        expected = tuple(fn.batch_shape) + tuple(fn.event_shape)
        event = tuple(fn.event_shape)
        shape = tuple(value.shape)
        event_ok = shape[len(shape) - len(event) :] == event if event else True
        if (
            not event_ok
            or len(shape) > len(expected)
            or shape != expected[len(expected) - len(shape) :]
        ):
            raise ValueError(
                f"the guide's value at site {name!r} has shape {shape}, but the model's "
                f"distribution there has batch shape {tuple(fn.batch_shape)} and event shape "
                f"{event}: log p would be broadcast over a value of the wrong shape"
            )


def _unordered_sites(model_trace: poutine.Trace, guide_trace: poutine.Trace) -> list[str]:
    """Latents whose closed-form KL would be wrong: the model draws another latent before them
    that the guide draws after them."""
    guide_order = [name for name, site in guide_trace.nodes.items() if is_latent(site)]
    model_order = [
        name
        for name, site in model_trace.nodes.items()
        if is_latent(site) and name in guide_trace.nodes
    ]
    position = {name: i for i, name in enumerate(guide_order)}
    bad = []
    for i, name in enumerate(model_order):
        before = set(model_order[:i])
        if any(position.get(other, -1) > position.get(name, -1) for other in before):
            bad.append(name)
    return bad


# -- assembling -------------------------------------------------------------------------------


@dataclass
class Structure:
    """What an estimator learns about a program on its first call and reuses after.

    Attributes:
        dependent_sites: Observed sites outside the data plate that depend on its latents
            (``None``: unknown, treated as all).
        unordered: Latents whose closed-form KL is not used (see :func:`check_program`).
    """

    dependent_sites: set[str] | None = None
    unordered: frozenset[str] = frozenset()


def learn_structure(
    model: Callable,
    traces: ProgramTraces,
    args: tuple,
    kwargs: dict,
    data_plate: str | None,
) -> Structure:
    """Find, once, the facts about a program that are costly to find on every step."""
    structure = Structure(
        unordered=frozenset(_unordered_sites(traces.model_trace, traces.guide_trace))
    )
    plate = find_data_plate(traces.model_trace, data_plate)
    if plate is None:
        return structure
    outside = _observed_outside(traces.model_trace, plate)
    if not outside:
        structure.dependent_sites = set()
        return structure
    local = {
        name
        for name, site in traces.guide_trace.nodes.items()
        if is_latent(site) and plate.name in plate_names(site)
    }
    structure.dependent_sites = sites_depending_on(
        model, traces.raw_guide_trace, args, kwargs, local, outside
    )
    return structure


class VectorizationError(ValueError):
    """The program failed when its particles ran vectorized in a particle plate (it may run
    them one at a time: ``vectorize_particles=False``)."""

    def reason(self) -> str:
        """The program's own error in one line ("ValueError: ..."), without the trace-shape
        table Pyro appends to it."""
        cause = self.__cause__ or self
        line = (str(cause).splitlines() or [""])[0]
        return f"{type(cause).__name__}: {line}" if line else type(cause).__name__


def run_particles(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    *,
    num_particles: int,
    plate_nesting: int,
    vectorize: bool = True,
    detach_latents: bool = False,
    enumerate_model: bool = False,
) -> list[ProgramTraces]:
    """The runs behind K particles: one vectorized run, or K runs of one particle."""
    options = {
        "plate_nesting": plate_nesting,
        "detach_samples": detach_latents,
        "enumerate_model": enumerate_model,
    }
    if vectorize or num_particles == 1:
        try:
            return [run_program(model, guide, args, kwargs, num_particles=num_particles, **options)]
        except torch.cuda.OutOfMemoryError:
            raise  # not the program's shapes: K particles do not fit (a smaller K, or a loop)
        except (RuntimeError, ValueError, IndexError, AssertionError) as error:
            if num_particles == 1:
                raise
            raise VectorizationError(
                f"{error}\n(raised as {type(error).__name__}: pyro_vi ran the program with "
                f"{num_particles} particles vectorized in a plate at dim={-plate_nesting - 1}, "
                "left of its plates; a program that "
                "cannot be vectorized over particles, e.g. one that checks shapes or branches on "
                "sampled values, needs vectorize_particles=False)"
            ) from error
    # One run per particle, all on the first run's minibatch: a multi-sample bound reduces each
    # datapoint's particles, so every particle must score the same datapoints (as the particle
    # plate of a vectorized run does).
    first = run_program(model, guide, args, kwargs, num_particles=1, **options)
    runs = [first]
    for _ in range(num_particles - 1):
        runs.append(
            run_program(model, guide, args, kwargs, num_particles=1, minibatch_of=first, **options)
        )
    return runs


def compute_log_weights(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    *,
    num_particles: int,
    plate_nesting: int | None = None,
    data_plate: str | None = None,
    detach_latents: bool = False,
    analytic_kl: bool = False,
    vectorize: bool = True,
    enumerate_model: bool = False,
    structure: Structure | None = None,
    validate: Callable[[ProgramTraces, int], None] | None = None,
) -> LogWeights:
    """Run guide and model over ``num_particles`` particles and return their log-weights.

    Arguments:
        model, guide: Pyro callables taking ``*args, **kwargs``.
        num_particles: K.
        plate_nesting: Plate dimensions of the program (found by a run when ``None``).
        data_plate: Name of the data plate, or ``None`` to detect it.
        detach_latents: Treat every latent as non-reparameterized (score-function gradients).
        analytic_kl: Replace log p(z) - log q(z) of a latent by -KL(q || p) where torch has
            the closed form, except for latents in ``structure.unordered``.
        vectorize: One run with a particle plate (else K runs of one particle).
        enumerate_model: Sum the model's latents marked ``infer={"enumerate": "parallel"}`` (and
            absent from the guide) out of log p, exactly: log p(x, z) = log sum_c p(x, z, c).
        structure: Facts learned on a first call (:func:`learn_structure`); learned here when
            ``None``.
        validate: Called with the first run's traces and the plate nesting (an estimator's
            :func:`check_program` on its first call).

    Returns:
        The :class:`LogWeights`.
    """
    if plate_nesting is None:
        plate_nesting = guess_plate_nesting(model, guide, args, kwargs)
    runs = run_particles(
        model,
        guide,
        args,
        kwargs,
        num_particles=num_particles,
        plate_nesting=plate_nesting,
        vectorize=vectorize,
        detach_latents=detach_latents,
        enumerate_model=enumerate_model,
    )
    if validate is not None:
        validate(runs[0], plate_nesting)
    if structure is None:
        structure = learn_structure(model, runs[0], args, kwargs, data_plate)
    columns = choose_columns(runs[0], data_plate, structure.dependent_sites)
    passes = [Pass(run, columns, plate_nesting) for run in runs]
    rows, score_rows, offsets = [], [], []
    offset_is_zero = True  # no site outside the data plate: the bound need not add an offset
    score_sites: tuple[str, ...] = ()
    for run in passes:
        run.model_terms, run.guide_terms = _log_weight_terms(run, analytic_kl, structure.unordered)
        log_w, offset = run.arrange(run.model_terms + run.guide_terms)
        rows.append(log_w)
        offsets.append(run.zero if offset is None else offset)
        offset_is_zero = offset_is_zero and offset is None
        score_terms = [
            (site, log_prob_of(site))
            for site in run.guide_trace.nodes.values()
            if site["type"] == "sample"
            and (is_latent(site) or is_factor(site))
            and (detach_latents or not site["fn"].has_rsample)
            and not is_point_mass(site["fn"])  # no score: its path is its gradient
        ]
        score_sites = tuple(site["name"] for site, _ in score_terms)
        if score_terms:
            score_rows.append(run.arrange(score_terms)[0])
    log_w = torch.cat(rows) if len(rows) > 1 else rows[0]
    offset = offsets[0] if len(offsets) == 1 else torch.stack(offsets).mean(0)
    score_log_q = (
        (torch.cat(score_rows) if len(score_rows) > 1 else score_rows[0])
        if score_rows
        else torch.zeros_like(log_w)
    )
    return LogWeights(
        log_w=log_w,
        scale=columns.scale if columns.per_datapoint else 1.0,
        offset=offset,
        offset_is_zero=offset_is_zero,
        score_log_q=score_log_q,
        score_sites=score_sites,
        passes=passes,
        columns=columns,
        plate_nesting=plate_nesting,
        structure=structure,
        _guide_call=(guide, args, kwargs),
    )


def _log_weight_terms(
    run: Pass, analytic_kl: bool, unordered: frozenset[str]
) -> tuple[list[tuple[dict, torch.Tensor]], list[tuple[dict, torch.Tensor]]]:
    """Signed per-site terms of log w, (model's, guide's), each in its trace's order: + log p of
    every model site, - log q of every guide site (or - KL(q || p) for a latent with a
    closed-form KL when ``analytic_kl``); the model's sites that depend on enumerated latents are
    summed over them into one term, first."""
    terms, marginalized = _marginalized_terms(run)
    with_kl = set()
    for name, site in run.model_trace.nodes.items():
        if site["type"] != "sample" or name in marginalized:
            continue
        if analytic_kl and is_latent(site) and name not in unordered:
            guide_site = run.guide_trace.nodes[name]
            kl = _analytic_kl(guide_site, site)
            if kl is not None and _same_scale_and_mask(site, guide_site):
                terms.append((site, -scaled_and_masked(kl, guide_site)))
                with_kl.add(name)
                continue
            if kl is not None:
                # Model and guide weigh the site differently (KL annealing written in the model
                # only, a mask on one side): E_q[c_p log p - c_q log q] = -c_p KL + (c_p - c_q)
                # E_q[log q], with the last expectation by Monte Carlo; the guide's own term
                # -c_q log q stays below.
                log_prob_of(guide_site)  # caches the unscaled log q too
                log_q = guide_site["unscaled_log_prob"]
                terms.append((site, scaled_and_masked(log_q - kl, site)))
                continue
        terms.append((site, log_prob_of(site)))
    guide_terms = [
        (site, -log_prob_of(site))
        for name, site in run.guide_trace.nodes.items()
        if site["type"] == "sample" and name not in with_kl
    ]
    return terms, guide_terms


def _same_scale_and_mask(model_site: dict, guide_site: dict) -> bool:
    """Whether two sites surely carry the same scale and mask (read without a device sync: the
    same Python number or object); when unsure, the general form is exact as well."""
    for key in ("scale", "mask"):
        first, second = model_site[key], guide_site[key]
        if first is second:
            continue
        if isinstance(first, torch.Tensor) or isinstance(second, torch.Tensor) or first != second:
            return False
    return True


def _is_enumerated(site: dict) -> bool:
    return site["type"] == "sample" and site["infer"].get("_enumerate_dim") is not None


def _marginalized_terms(run: Pass) -> tuple[list[tuple[dict, torch.Tensor]], set[str]]:
    """log sum_c p(x, z, c) over the model's enumerated latents c, as one term in the plates the
    columns keep (the particle plate, and the data plate for per-datapoint columns); the other
    plates are contracted as products, by Pyro's tensor variable elimination.

    Returns ([(pseudo-site, term)], names of the sites summed into it); no term and an empty
    set without enumerated sites.
    """
    trace = run.model_trace
    if not any(_is_enumerated(site) for site in trace.nodes.values()):
        return [], set()
    from pyro.ops import packed
    from pyro.ops.contract import contract_to_tensor

    sites = [site for site in trace.nodes.values() if site["type"] == "sample"]
    for site in sites:
        log_prob_of(site)
    trace.pack_tensors()
    sum_dims = {site["infer"]["_enumerate_symbol"] for site in sites if _is_enumerated(site)}
    factors: dict[frozenset, list] = {}
    involved, scales = [], set()
    for site in sites:
        log_prob = site["packed"]["unscaled_log_prob"]
        if not sum_dims & set(log_prob._pyro_dims):
            continue
        # The mask inside the sum, the scale outside it (as Pyro's TraceEnum_ELBO does). An
        # enumerated site's own log p(c | .) is summed unmasked: masked or not, its values must
        # sum to one, or a padded step of a masked HMM (poutine.mask around x_t and y_t) would
        # count each of its H values with weight 1, adding log H to the bound per padded step
        # and, upstream of unmasked steps, dropping its prior (TraceEnum_ELBO does the same).
        if _is_enumerated(site):
            masked = log_prob
        else:
            masked = packed.scale_and_mask(log_prob, mask=site["packed"]["mask"])
        ordinal = frozenset(
            trace.plate_to_symbol[frame.name]
            for frame in site["cond_indep_stack"]
            if frame.vectorized
        )
        factors.setdefault(ordinal, []).append(masked)
        involved.append(site)
        scale = site["scale"]
        scales.add(
            float(scale) if not isinstance(scale, torch.Tensor) else float(scale.reshape(-1)[0])
        )
        if isinstance(scale, torch.Tensor) and scale.numel() > 1:
            raise ValueError(
                f"site {site['name']!r} depends on an enumerated latent and has a tensor scale; "
                "enumeration takes one scalar scale for the sites it sums"
            )
    if len(scales) > 1:
        raise ValueError(
            f"the sites {[site['name'] for site in involved]} depend on enumerated latents but "
            f"have different scales {sorted(scales)}; enumeration needs one common scale"
        )
    kept = [
        frame
        for frame in involved[0]["cond_indep_stack"]
        if frame.vectorized
        and (
            frame.name == PARTICLE_PLATE
            or (run.columns.per_datapoint and frame.name == run.columns.plate.name)
        )
    ]
    # A kept plate of size 1 has no dim in the packed tensors (Pyro packs only dims > 1), and
    # contracting to a plate no factor has fails: keep only the plates that are there.
    present = {dim for terms in factors.values() for term in terms for dim in term._pyro_dims}
    target = frozenset(
        symbol
        for symbol in (trace.plate_to_symbol[frame.name] for frame in kept)
        if symbol in present
    )
    tree = OrderedDict(sorted(factors.items(), key=lambda item: len(item[0])))
    log_marginal = contract_to_tensor(tree, sum_dims, target_ordinal=target)
    log_marginal = packed.unpack(log_marginal, trace.symbol_to_dim)
    (scale,) = scales
    pseudo = {
        "type": "sample",
        "name": "+".join(site["name"] for site in involved),
        "cond_indep_stack": tuple(kept),
        "scale": scale,
        "mask": None,
    }
    return [(pseudo, log_marginal * scale)], {site["name"] for site in involved}


def _analytic_kl(guide_site: dict, model_site: dict) -> torch.Tensor | None:
    """KL(q || p) with the shape of q's batch, or ``None`` when no closed form is registered or
    the two distributions are masked differently."""
    model_masks, guide_masks = _fn_masks(model_site["fn"]), _fn_masks(guide_site["fn"])
    if len(model_masks) != len(guide_masks) or any(
        a is not b for a, b in zip(model_masks, guide_masks, strict=True)
    ):
        # ``.mask(m)`` on one side only, or other masks: torch's KL of two masked distributions
        # masks by m_p & m_q, which is not E_q[m_p log p - m_q log q]; Monte Carlo is.
        return None
    try:
        return torch.distributions.kl_divergence(guide_site["fn"], model_site["fn"])
    except NotImplementedError:
        return None


def _fn_masks(fn: Any) -> list:
    """The masks of the masked distributions ``fn`` wraps, outermost first."""
    masks = []
    while fn is not None:
        if isinstance(fn, MaskedDistribution):
            masks.append(fn._mask)
        fn = getattr(fn, "base_dist", None)
    return masks
