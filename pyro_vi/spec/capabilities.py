"""Which estimator works with which model and guide: capabilities, checked with one table.

Every part declares what it offers instead of the spec listing special cases:

- a guide family (:class:`~pyro_vi.guides.families.Family`): ``reparameterized``,
  ``has_tractable_inverse`` (it can score a value it did not sample), ``closed_form_kl``;
- a prior (:class:`~pyro_vi.models.priors.Prior`): ``closed_form_kl``;
- a model kind (:mod:`pyro_vi.spec.kinds`): a deterministic encoder, discrete latents, and the
  :class:`Capabilities` of its model and guide for a given spec;
- an estimator: its class attributes ``requires_reparam``, ``analytic_kl`` and
  ``guide_factors`` (``False``: it re-scores log q at a detached copy of its sample), read from
  :data:`pyro_vi.estimators.ESTIMATORS` (:class:`Needs`).

:data:`CHECKS` is the table: each row is something an estimator may need and the capability
that provides it. :func:`check_capabilities` goes through it in order and raises one
:class:`~pyro_vi.spec.schema.SpecError` for the first need that the spec's parts cannot meet,
naming the estimator, the part that lacks the capability, why, and what is allowed instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pyro_vi import estimators
from pyro_vi.spec.schema import SpecError


@dataclass(frozen=True)
class Missing:
    """Why a spec's model or guide lacks a capability, for the error message.

    Attributes:
        part: The spec keys that decide it, e.g. ``"guide.family = 'planar'"``.
        reason: Why, e.g. ``"that flow has no inverse to do so"``.
        allowed: What would work instead, a whole clause: ``"allowed families: [...]"``.
    """

    part: str
    reason: str
    allowed: str


@dataclass(frozen=True)
class Capabilities:
    """What a spec's model and guide offer an estimator; ``None`` means offered, a
    :class:`Missing` says why not.

    Attributes:
        stochastic_encoder: q(z | x) is not a point mass, so several particles and gradient
            estimators other than the plain ELBO's mean something.
        reparameterized: Every latent of the guide has ``rsample``.
        closed_form_kl: KL(q || p) has a closed form for every latent.
        scores_fresh_values: The guide can score a value it did not sample (an inverse).
    """

    stochastic_encoder: Missing | None = None
    reparameterized: Missing | None = None
    closed_form_kl: Missing | None = None
    scores_fresh_values: Missing | None = None


@dataclass(frozen=True)
class Needs:
    """What the spec's estimator needs, read from its class in
    :data:`pyro_vi.estimators.ESTIMATORS` and its options.

    Attributes:
        name: The estimator's name.
        options: Its resolved options (the spec's ``[estimator]`` table without ``name``).
        plain_elbo: It is the one-particle ELBO with its ordinary gradient.
        requires_reparam: Class attribute ``requires_reparam``.
        analytic_kl: Class attribute ``analytic_kl``.
        rescores: ``not guide_factors``: it scores the guide at a detached copy of its sample.
    """

    name: str
    options: Mapping[str, Any]
    plain_elbo: bool
    requires_reparam: bool
    analytic_kl: bool
    rescores: bool

    @classmethod
    def of(cls, table: Mapping[str, Any]) -> Needs:
        """The needs of the estimator a spec's ``[estimator]`` table describes."""
        name = table["name"]
        estimator = estimators.ESTIMATORS[name]
        options = {k: v for k, v in table.items() if k != "name"}
        return cls(
            name=name,
            options=options,
            plain_elbo=name == "elbo" and options.get("num_particles", 1) == 1,
            requires_reparam=bool(estimator.requires_reparam),
            analytic_kl=bool(estimator.analytic_kl),
            rescores=not estimator.guide_factors,
        )


def _deterministic(needs: Needs, missing: Missing) -> str:
    why = (
        "there is no KL in closed form for a point mass"
        if needs.analytic_kl
        else "every particle is the same, so multi-sample bounds and other gradient "
        "estimators add cost and nothing else (stl/dreg would even drop the VQ losses)"
    )
    table = {"name": needs.name, **needs.options}
    return (
        f"invalid spec: estimator = {table} with {missing.part}: {missing.reason} and {why}; "
        f"{missing.allowed}"
    )


def _reparameterized(needs: Needs, missing: Missing) -> str:
    return (
        f"invalid spec: estimator.name = {needs.name!r} with {missing.part}: {needs.name} needs "
        f"reparameterized latents, and {missing.reason}; {missing.allowed}"
    )


def _closed_form_kl(needs: Needs, missing: Missing) -> str:
    return (
        f"invalid spec: estimator.name = {needs.name!r} (analytic KL) with {missing.part}: "
        f"{missing.reason}; {missing.allowed}"
    )


def _fresh_values(needs: Needs, missing: Missing) -> str:
    return (
        f"invalid spec: estimator.name = {needs.name!r} with {missing.part}: {needs.name} scores "
        f"the guide at a detached copy of its sample, and {missing.reason}; {missing.allowed}"
    )


@dataclass(frozen=True)
class Check:
    """One row of :data:`CHECKS`: when the estimator ``needs`` it, the parts must offer
    ``capability``; otherwise ``message`` is the error."""

    needs: Callable[[Needs], bool]
    capability: str
    message: Callable[[Needs, Missing], str]


#: The table, in the order it is checked:
#:
#: ==========================================  ========================  =================
#: the estimator ...                           needs the parts to offer  e.g. refused
#: ==========================================  ========================  =================
#: is more than the one-particle ELBO          ``stochastic_encoder``    iwae + VQ-VAE
#: requires reparameterized latents            ``reparameterized``       stl + binary SBN
#: uses the KL in closed form                  ``closed_form_kl``        meanfield + iaf
#: scores the guide at a detached sample       ``scores_fresh_values``   dreg + planar
#: ==========================================  ========================  =================
CHECKS: tuple[Check, ...] = (
    Check(lambda needs: not needs.plain_elbo, "stochastic_encoder", _deterministic),
    Check(lambda needs: needs.requires_reparam, "reparameterized", _reparameterized),
    Check(lambda needs: needs.analytic_kl, "closed_form_kl", _closed_form_kl),
    Check(lambda needs: needs.rescores, "scores_fresh_values", _fresh_values),
)


def check_capabilities(estimator: Mapping[str, Any], offered: Capabilities) -> None:
    """Raise :class:`~pyro_vi.spec.schema.SpecError` for the first row of :data:`CHECKS` whose
    need the estimator has and whose capability the parts lack.

    Arguments:
        estimator: The spec's resolved ``[estimator]`` table.
        offered: What the model and guide offer (:meth:`ModelKind.capabilities
            <pyro_vi.spec.kinds.ModelKind.capabilities>`).
    """
    needs = Needs.of(estimator)
    for check in CHECKS:
        missing = getattr(offered, check.capability)
        if missing is not None and check.needs(needs):
            raise SpecError(check.message(needs, missing))


def estimators_without(attribute: str) -> list[str]:
    """The estimators whose class attribute ``attribute`` is false (for "allowed" lists)."""
    return [name for name, cls in estimators.ESTIMATORS.items() if not getattr(cls, attribute)]
