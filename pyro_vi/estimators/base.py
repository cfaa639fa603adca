"""The base class of every estimator: one ``pyro.infer.ELBO`` subclass, many reductions.

A subclass implements

- ``bound(log_w) -> Tensor``: its reduction of log-weights ``[K, M]`` over the particle
  dimension, one bound per column ``[M]``; its gradient is the estimator's gradient for
  reparameterized latents;

and may override

- ``surrogate(weights) -> Tensor | None``: one surrogate whose gradient is the estimator's
  gradient for every parameter (STL; DReG when it can), instead of the bound's;
- ``guide_surrogate(weights) -> Tensor | None``: a surrogate whose gradient replaces the bound's
  for the parameters that only the guide uses (DReG with several latent sites, PIWAE); the
  parameters the model uses (including any it shares with the guide) keep the bound's gradient,
  at the price of two gradient passes;
- ``score_signal(log_w) -> Tensor``: the learning signal ``[K, M]`` that multiplies the score
  grad log q(z_k) of latents without ``rsample`` (default: a leave-one-out baseline, VIMCO);
- ``particles() -> int``: how many particles one computation draws (default ``num_particles``).

Everything else (running the program, the per-datapoint decomposition, minibatch scaling,
score-function terms, validation, ``loss``/``loss_and_grads``/``differentiable_loss``) is here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pyro.infer import ELBO, TraceEnum_ELBO

from pyro_vi._checks import check_int, describe
from pyro_vi.estimators.core import (
    LogWeights,
    Structure,
    VectorizationError,
    check_program,
    compute_log_weights,
)
from pyro_vi.estimators.groups import parameter_groups
from pyro_vi.traces import Probe, ProgramTraces, is_latent, is_point_mass, probe_program

# How many (model, guide) pairs an estimator remembers the structure of.
_CACHE_SIZE = 8


class Estimator(ELBO):
    """Base class; see the module docstring. ``loss`` is *minus* the bound, a float.

    Arguments:
        num_particles: K, the particles of one computation (>= 1).
        vectorize_particles: Draw the K particles in one run, in a plate left of the program's
            plates (fast); ``False`` runs the program K times, for programs that cannot be
            vectorized (shape checks, Python branching on sampled values). One particle never
            adds a plate: the program runs as written.
        data_plate: Name of the plate holding the datapoints; detected when ``None`` (the
            outermost plate that every observed site lies in).
        max_plate_nesting: Plate dimensions of model and guide; found by running them once when
            ``None``.
    """

    #: Name in the registry (:func:`pyro_vi.estimators.get`).
    name: str = ""
    #: Whether every latent must be reparameterized.
    requires_reparam: bool = True
    #: Treat every latent as non-reparameterized (score-function gradients only).
    detach_latents: bool = False
    #: Use closed-form KL(q || p) where registered.
    analytic_kl: bool = False
    #: Whether guide sites marked for enumeration are summed out (by Pyro's TraceEnum_ELBO).
    enumerates_guide: bool = False
    #: Whether a ``pyro.factor`` in the guide is accepted (not by gradients that score the guide's
    #: density at fixed latents).
    guide_factors: bool = True
    #: Whether a parameter that reaches the model through a ``Delta`` guide site (a MAP value)
    #: counts as the model's, taking the bound's gradient rather than ``guide_surrogate``'s.
    point_masses_follow_bound: bool = False

    #: Whether a score site's ``infer={"baseline": ...}`` is used (the ELBO family); the others
    #: use the leave-one-out signal of their bound and warn that the site's baseline is not.
    site_baselines: bool = False

    #: Every estimator class with a ``name``, by name, in the order they were defined.
    registry: ClassVar[dict[str, type[Estimator]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            Estimator.registry[cls.name] = cls

    def __init__(
        self,
        num_particles: int = 1,
        *,
        vectorize_particles: bool = True,
        data_plate: str | None = None,
        max_plate_nesting: int | None = None,
    ) -> None:
        num_particles = check_int("num_particles", num_particles, minimum=1)
        if not isinstance(vectorize_particles, bool):
            raise TypeError(
                f"vectorize_particles must be True or False, got {describe(vectorize_particles)}"
            )
        if data_plate is not None and not isinstance(data_plate, str):
            raise TypeError(f"data_plate must be a plate name or None, got {describe(data_plate)}")
        if max_plate_nesting is not None:
            max_plate_nesting = check_int("max_plate_nesting", max_plate_nesting, minimum=0)
        super().__init__(num_particles=num_particles, vectorize_particles=vectorize_particles)
        self.data_plate = data_plate
        self.max_plate_nesting = max_plate_nesting
        self._programs: dict[Any, _Program] = {}
        # One TraceEnum_ELBO per plate nesting: programs of another depth need their own.
        self._enumerators: dict[int, ELBO] = {}

    # -- what subclasses implement ------------------------------------------------------------

    def bound(self, log_w: torch.Tensor) -> torch.Tensor:
        """The bound of each column: ``[K, M] -> [M]``; see the subclass for its math."""
        raise NotImplementedError

    def particles(self) -> int:
        """Particles drawn per computation."""
        return self.num_particles

    def surrogate(self, weights: LogWeights) -> torch.Tensor | None:
        """A single surrogate with the estimator's whole gradient, or ``None`` for the bound's."""
        return None

    def guide_surrogate(self, weights: LogWeights) -> torch.Tensor | None:
        """A surrogate for the guide-only parameters' gradient, or ``None`` for the bound's."""
        return None

    def score_signal(self, log_w: torch.Tensor) -> torch.Tensor:
        """The learning signal ``[K, M]`` of each particle's score term (detached inputs).

        The leave-one-out signal of the bound (:func:`leave_one_out_signal`); one particle has
        no others, and its signal is the bound minus :meth:`single_particle_baseline`.
        """
        if log_w.shape[0] == 1:
            return self.bound(log_w).unsqueeze(0) - self.single_particle_baseline(log_w)
        return leave_one_out_signal(log_w, self.bound)

    def guide_score_signal(self, log_w: torch.Tensor) -> torch.Tensor:
        """The score signal of the guide's own surrogate (estimators with ``guide_surrogate``
        whose bound differs from :meth:`bound`, such as PIWAE, override it)."""
        return self.score_signal(log_w)

    def single_particle_baseline(self, log_w: torch.Tensor) -> torch.Tensor | float:
        """The baseline of a one-particle score term (none by default)."""
        return 0.0

    # -- the shared machinery -----------------------------------------------------------------

    def log_weights(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> LogWeights:
        """The :class:`~pyro_vi.estimators.core.LogWeights` of one computation.

        The program is validated (Pyro's checks and this package's) on the first call for a
        (model, guide) pair; what is learned then (plate nesting, dependencies) is reused.
        """
        program = self._program(model, guide, args, kwargs)
        if program.probe.guide_enumerated:
            raise ValueError(self._guide_enumeration_refusal(program.probe))

        def compute(vectorize: bool) -> LogWeights:
            return compute_log_weights(
                model,
                guide,
                args,
                kwargs,
                num_particles=self.particles(),
                plate_nesting=program.nesting,
                data_plate=self.data_plate,
                detach_latents=self.detach_latents,
                analytic_kl=self.analytic_kl,
                vectorize=vectorize,
                enumerate_model=bool(program.probe.model_enumerated),
                structure=program.structure,
                validate=self._validate if program.structure is None else None,
            )

        try:
            weights = compute(self.vectorize_particles and not program.loop)
        except VectorizationError as error:
            # A program written for particles drawn one at a time (Pyro's own default: it
            # checks its shapes, or branches on sampled values) runs as written, in a loop.
            # Should the loop fail as well, its error is the program's own: the failure says
            # nothing about vectorization (a NaN parameter that Pyro's validation refuses, say),
            # so the program is not switched to the loop, nor is it warned about.
            weights = compute(False)
            warnings.warn(
                f"the program fails with its {self.particles()} particles vectorized "
                f"({error.reason()}); the {self.name!r} "
                "estimator runs them one at a time instead (pass vectorize_particles=False to "
                "say so and silence this warning)",
                stacklevel=2,
            )
            program.loop = True
        program.structure = weights.structure
        return weights

    def _program(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> _Program:
        """What is known of a (model, guide) pair, probed by one run on its first call."""
        key = _key(model, guide, args, kwargs)
        known = self._programs.get(key) if key is not None else None
        if known is not None:
            return known
        particles = self.particles() if self.vectorize_particles else 1
        probe = probe_program(
            model,
            guide,
            args,
            kwargs,
            num_particles=particles,
            plate_nesting=self.max_plate_nesting,
        )
        program = _Program(probe.plate_nesting, probe)
        if key is not None:
            if len(self._programs) >= _CACHE_SIZE:
                self._programs.pop(next(iter(self._programs)))
            self._programs[key] = program
        return program

    def _guide_enumeration_refusal(self, probe: Probe) -> str:
        return (
            f"the guide marks {list(probe.guide_enumerated)} for enumeration "
            "(infer={'enumerate': ...}); the "
            f"{self.name!r} estimator sums out enumerated sites of the model only (mark the "
            "model's site and leave it out of the guide), and 'elbo' sums out the guide's through "
            "Pyro's TraceEnum_ELBO"
        )

    def _enumerating(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> ELBO | None:
        """Pyro's TraceEnum_ELBO for a guide with enumerated sites, for estimators that delegate
        them (``enumerates_guide``); ``None`` for every other program."""
        if not self.enumerates_guide:
            return None
        program = self._program(model, guide, args, kwargs)
        if not program.probe.guide_enumerated:
            return None
        enumerator = self._enumerators.get(program.nesting)
        if enumerator is None:
            warnings.warn(
                f"the guide marks {list(program.probe.guide_enumerated)} for enumeration: the "
                f"{self.name!r} estimator hands this program to Pyro's TraceEnum_ELBO, which "
                "sums them out exactly",
                stacklevel=3,
            )
            enumerator = self._enumerators[program.nesting] = TraceEnum_ELBO(
                num_particles=self.num_particles,
                max_plate_nesting=program.nesting,
                vectorize_particles=self.vectorize_particles and self.num_particles > 1,
            )
        return enumerator

    def _validate(self, traces: ProgramTraces, nesting: int) -> None:
        check_program(
            traces,
            nesting,
            estimator=self.name,
            requires_reparam=self.requires_reparam,
            analytic_kl=self.analytic_kl,
            detach_latents=self.detach_latents,
            guide_factors_allowed=self.guide_factors,
            alternatives=tuple(
                name for name, cls in self.registry.items() if not cls.requires_reparam
            ),
        )
        self._check_baselines(traces)

    def _check_baselines(self, traces: ProgramTraces) -> None:
        """Refuse malformed ``infer={"baseline": ...}`` options of the guide's sites; warn where
        this estimator does not use them (only the ELBO family takes a site's baseline)."""
        from pyro_vi.estimators.elbo import check_baseline_options

        unused = []
        for name, site in traces.guide_trace.nodes.items():
            if not is_latent(site) or "baseline" not in site["infer"]:
                continue
            check_baseline_options(name, site["infer"]["baseline"])
            fn = site["fn"]
            scored = (self.detach_latents or not fn.has_rsample) and not is_point_mass(fn)
            if scored and not self.site_baselines:
                unused.append(name)
        if unused:
            users = [name for name, cls in self.registry.items() if cls.site_baselines]
            warnings.warn(
                f"the guide's sites {unused} set infer['baseline'], which the {self.name!r} "
                "estimator does not use: its score terms take the leave-one-out signal of its "
                "bound (VIMCO's), and a baseline network there is not trained; the estimators "
                f"{users} use a site's baseline",
                stacklevel=5,
            )

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> tuple:
        """(model trace, guide trace) of one computation, as Pyro's ELBO API expects."""
        weights = self.log_weights(model, guide, *args, **kwargs)
        return weights.model_trace, weights.guide_trace

    def total(self, weights: LogWeights, bounds: torch.Tensor) -> torch.Tensor:
        """Per-column bounds ``[M]`` -> the bound of the batch: c * sum_m bounds_m + offset."""
        total = bounds.sum()
        # Multiplying by 1 and adding a zero offset would only add operations to every step.
        if weights.scale != 1.0:
            total = weights.scale * total
        if not weights.offset_is_zero:
            total = total + weights.offset
        return total

    def _score_surrogate(self, weights: LogWeights, guide: bool = False) -> torch.Tensor:
        """Zero-valued term whose gradient is the score-function part for latents without
        ``rsample``: sum_k grad log q(z_k) * signal_k per column (see :meth:`score_signal`;
        with ``guide``, the signal of the bound the guide's own surrogate follows)."""
        log_w = weights.log_w.detach()
        signal = (self.guide_score_signal(log_w) if guide else self.score_signal(log_w)).detach()
        log_q = weights.score_log_q
        term = ((log_q - log_q.detach()) * signal).sum(0).sum()
        return term if weights.scale == 1.0 else weights.scale * term

    def _prepare(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> tuple[torch.Tensor, torch.Tensor, tuple | None]:
        """(bound value, surrogate, groups). With ``groups = None`` the surrogate's gradient is the
        estimator's gradient for every parameter; otherwise ``groups`` is (model parameters,
        guide-only parameters, guide surrogate), and each group takes its own surrogate's."""
        weights = self.log_weights(model, guide, *args, **kwargs)
        bound = self.total(weights, self.bound(weights.log_w))
        single = self.surrogate(weights)
        surrogate = bound if single is None else bound.detach() + single - single.detach()
        if weights.has_score_sites:
            surrogate = surrogate + self._score_surrogate(weights)
        guide_surrogate = None if single is not None else self.guide_surrogate(weights)
        if guide_surrogate is None:
            return bound.detach(), surrogate, None
        if weights.has_score_sites:
            guide_surrogate = guide_surrogate + self._score_surrogate(weights, guide=True)
        model_params, guide_params = parameter_groups(
            weights,
            [surrogate, guide_surrogate],
            point_masses_are_parameters=self.point_masses_follow_bound,
        )
        return bound.detach(), surrogate, (model_params, guide_params, guide_surrogate)

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Minus the bound as a tensor whose gradient is the estimator's gradient."""
        enumerator = self._enumerating(model, guide, args, kwargs)
        if enumerator is not None:
            try:
                return enumerator.differentiable_loss(model, guide, *args, **kwargs)
            except ValueError as error:
                # TraceEnum_ELBO refuses a program with nothing to differentiate; the contract
                # here is a tensor (without a graph) all the same.
                if "cannot be differentiated" not in str(error):
                    raise
                return torch.as_tensor(enumerator.loss(model, guide, *args, **kwargs))
        bound, surrogate, groups = self._prepare(model, guide, args, kwargs)
        if groups is None:
            return -surrogate
        # Separate gradients for two groups of parameters, assembled into one zero-valued term
        # sum_p <p, g_p> - stop(...), so that backward() delivers g_p to each parameter p.
        params, grads = _group_gradients(surrogate, groups)
        linear = sum(((p * g).sum() for p, g in zip(params, grads, strict=True)), bound * 0)
        return -(bound + linear - linear.detach())

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """Minus the bound, a float (no gradients are computed)."""
        enumerator = self._enumerating(model, guide, args, kwargs)
        if enumerator is not None:
            return enumerator.loss(model, guide, *args, **kwargs)
        with torch.no_grad():
            weights = self.log_weights(model, guide, *args, **kwargs)
            return -float(self.total(weights, self.bound(weights.log_w)))

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """Minus the bound, a float; accumulates the estimator's gradient into ``.grad``.

        A program with nothing to train (no parameter reaches the bound) gets no backward pass.
        """
        enumerator = self._enumerating(model, guide, args, kwargs)
        if enumerator is not None:
            return enumerator.loss_and_grads(model, guide, *args, **kwargs)
        bound, surrogate, groups = self._prepare(model, guide, args, kwargs)
        if groups is None:
            if surrogate.requires_grad:
                (-surrogate).backward()
        else:
            params, grads = _group_gradients(surrogate, groups)
            for param, grad in zip(params, grads, strict=True):
                param.grad = -grad if param.grad is None else param.grad - grad
        loss = -float(bound)
        if loss != loss:
            warnings.warn(f"the {self.name!r} loss is NaN", stacklevel=2)
        return loss


@dataclass
class _Program:
    """What an estimator knows of a (model, guide) pair after its first call."""

    nesting: int
    probe: Probe
    structure: Structure | None = None
    loop: bool = False  # its particles failed vectorized and run one at a time


def leave_one_out_signal(
    log_w: torch.Tensor, bound: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Each particle's learning signal R(log w) - R(log w^(-k)) for a bound R of K >= 2 particles.

    log w^(-k) has particle k's log-weight replaced by the mean of the others' (VIMCO's
    leave-one-out baseline, Mnih & Rezende 2016): the baseline does not depend on z_k, so the
    score term sum_k grad log q(z_k) * signal_k stays unbiased, and it removes most of the
    variance that R(log w) alone would carry. For the mean (the ELBO) the signal is
    (log w_k - mean_{j != k} log w_j) / K.

    Arguments:
        log_w: ``[K, M]`` log-weights (detached).
        bound: R, ``[K, *] -> [*]`` over the first dimension.

    Returns:
        ``[K, M]``.
    """
    count, columns = log_w.shape
    others = (log_w.sum(0, keepdim=True) - log_w) / (count - 1)  # [K, M]
    replaced = log_w.unsqueeze(0).repeat(count, 1, 1)  # [k, j, M]: copy k, particle j
    index = torch.arange(count, device=log_w.device)
    replaced[index, index] = others
    left_out = bound(replaced.transpose(0, 1).reshape(count, count * columns))
    return bound(log_w).unsqueeze(0) - left_out.reshape(count, columns)


def _key(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> Any:
    """A dictionary key for a (model, guide) pair called with arguments of this kind, or
    ``None`` when they are not hashable.

    The arguments enter by kind (:func:`_kind`): a program whose sites depend on them, such as
    a semi-supervised model called with labels (``y`` observed) and without (``y=None``, a
    latent to sample or sum out), has a different structure for each and must be validated and
    probed for each; minibatches of another size or content keep the key.
    """
    key = (model, guide, tuple(_kind(item) for item in args), _kind(kwargs))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _kind(value: Any) -> Any:
    """What of an argument can change a program's structure without changing its identity:
    ``None`` or not, flags and names by value, tensors by their number of dims, containers
    entry by entry, anything else by its type."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, torch.Tensor):
        return ("tensor", value.dim())
    if isinstance(value, (tuple, list)):
        kinds = [_kind(item) for item in value]
        if len(kinds) > 1 and all(kind == kinds[0] for kind in kinds):
            # A list of like items (per-sequence tensors, say): its length is a size, and a
            # key per length would probe the program again at each new one.
            return (type(value).__name__, "*", kinds[0])
        return (type(value).__name__, *kinds)
    if isinstance(value, dict):
        return ("dict", *sorted((str(k), _kind(v)) for k, v in value.items()))
    return type(value).__name__


def _group_gradients(
    surrogate: torch.Tensor, groups: tuple
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Each group's gradient from its own surrogate: (parameters, gradients)."""
    model_params, guide_params, guide_surrogate = groups
    grads = _grads(surrogate, model_params, retain_graph=True)
    grads += _grads(guide_surrogate, guide_params, retain_graph=False)
    return model_params + guide_params, grads


def _grads(
    output: torch.Tensor, inputs: list[torch.Tensor], retain_graph: bool
) -> list[torch.Tensor]:
    if not inputs or not output.requires_grad:
        return [torch.zeros_like(p) for p in inputs]
    grads = torch.autograd.grad(output, inputs, retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(inputs, grads, strict=True)]
