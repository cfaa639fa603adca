"""``model.kind = "sbn"``: the sigmoid belief net, binary latents, and their relaxations.

Built by :func:`pyro_vi.architectures.sigmoid_belief_net`. Keys of ``[model]``: ``latent_dim``,
``likelihood``, ``decoder``, ``relaxation``, ``temperature``, ``prior_temperature``; ``[guide]``
takes ``encoder``. The binary latent has no ``rsample``, so it takes the estimators with
score-function or VIMCO gradients; a relaxation is reparameterized, has no closed-form KL, and is
judged as the discrete model with the trained parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from pyro_vi import architectures
from pyro_vi.models import sbn
from pyro_vi.spec.capabilities import Capabilities, Missing, estimators_without
from pyro_vi.spec.kinds.base import ModelKind
from pyro_vi.spec.schema import Field, SpecError

if TYPE_CHECKING:
    from pyro_vi.spec.build import DataInfo
    from pyro_vi.spec.resolve import Spec

_RELAXED = list(sbn.RELAXATIONS[1:])


class SigmoidBeliefNetKind(ModelKind):
    """The sigmoid belief net: z in {0, 1}^D with a learned Bernoulli prior, Bernoulli guide."""

    name = "sbn"
    description = "a sigmoid belief net: binary latents, or their Concrete relaxation"
    fields: ClassVar[Mapping[str, Field]] = {
        "relaxation": Field(
            "str",
            "none",
            "'none': binary latents (score-function/VIMCO gradients); 'concrete' or "
            "'straight_through': their binary Concrete relaxation (pathwise gradients, biased)",
            choices=sbn.RELAXATIONS,
        ),
        "temperature": Field(
            "float",
            None,
            f"the relaxed guide's temperature (default {sbn.DEFAULT_TEMPERATURE:.4g} with a "
            "relaxation)",
            minimum=0.0,
            exclusive=True,
        ),
        "prior_temperature": Field(
            "float",
            None,
            "the relaxed prior's temperature (default: model.temperature)",
            minimum=0.0,
            exclusive=True,
        ),
    }
    no_family = "sbn has a Bernoulli guide (relaxed with model.relaxation): no family"

    def complete(self, model: dict[str, Any]) -> dict[str, Any]:
        if model["relaxation"] != "none":
            # Filled in so that the run folder's spec says which temperatures trained the model.
            model["temperature"], model["prior_temperature"] = sbn.relaxed_temperatures(
                model["relaxation"], model["temperature"], model["prior_temperature"]
            )
        return model

    def check(self, spec: Spec, raw: Mapping[str, Any]) -> None:
        if spec.model["relaxation"] != "none":
            return
        for key in ("temperature", "prior_temperature"):
            if key in raw["model"]:
                raise SpecError(
                    f"invalid spec: model.{key} = {raw['model'][key]!r} with model.relaxation = "
                    f"'none': a temperature belongs to a relaxation; allowed: leave model.{key} "
                    f"out, or set model.relaxation to one of {_RELAXED}"
                )

    def capabilities(self, spec: Spec) -> Capabilities:
        relaxation = spec.model["relaxation"]
        part = f"model.kind = 'sbn' and model.relaxation = {relaxation!r}"
        if relaxation == "none":
            # Discrete latents: no pathwise gradient, but a Bernoulli KL in closed form.
            return Capabilities(
                reparameterized=Missing(
                    part,
                    "the Bernoulli latent 'z' has none",
                    "allowed: an estimator with score-function or VIMCO gradients "
                    f"{estimators_without('requires_reparam')}, or model.relaxation in "
                    f"{_RELAXED}",
                )
            )
        return Capabilities(
            closed_form_kl=Missing(
                part,
                "KL(q || p) between binary Concrete distributions has no closed form",
                "allowed: estimator.name = 'elbo' (or any other estimator), or model.relaxation "
                "= 'none' (the Bernoulli KL is in closed form)",
            )
        )

    def build(self, spec: Spec, info: DataInfo) -> tuple[nn.Module, nn.Module]:
        model = spec.model
        return architectures.sigmoid_belief_net(
            info.shape,
            model["latent_dim"],
            likelihood=model["likelihood"],
            decoder=model["decoder"],
            encoder=spec.guide["encoder"],
            relaxation=model["relaxation"],
            temperature=model["temperature"],
            prior_temperature=model["prior_temperature"],
        )

    def for_evaluation(self, model: nn.Module, guide: nn.Module) -> tuple[nn.Module, nn.Module]:
        """The discrete model and guide with the trained parameters: a relaxed run is judged as
        the discrete model, so that runs trained either way compare on one scale."""
        return model.discrete(), guide.discrete()

    def describe_guide(self, spec: Spec) -> str:
        relaxation = spec.model["relaxation"]
        if relaxation == "none":
            return "bernoulli"
        return f"{relaxation} (temperature {spec.model['temperature']:g})"
