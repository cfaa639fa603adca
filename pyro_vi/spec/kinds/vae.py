"""``model.kind = "vae"``: the VAE, its conditional and two-layer variants, with any guide family.

Built by :func:`pyro_vi.architectures.vae`. Keys of ``[model]``: ``latent_dim`` (an integer, or
``[D1, D2]`` for two stochastic layers), ``likelihood``, ``prior``, ``decoder``, ``conditional``
and, with two layers, ``stochastic_hidden``; ``[guide]`` takes ``family``, ``options`` and
``encoder``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from pyro_vi import architectures
from pyro_vi import data as datasets
from pyro_vi.guides import families
from pyro_vi.models.priors import PRIORS
from pyro_vi.spec.capabilities import Capabilities, Missing
from pyro_vi.spec.kinds.base import ModelKind
from pyro_vi.spec.schema import Field, SpecError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pyro_vi.spec.build import Built, DataInfo
    from pyro_vi.spec.resolve import Spec


class VAEKind(ModelKind):
    """The VAE: z ~ p(z), x ~ likelihood(decoder(z)), q(z | x) from any family."""

    name = "vae"
    description = "a VAE (conditional, or with two stochastic layers), any guide family"
    shared_keys = ("latent_dim", "likelihood", "prior", "decoder")
    fields: ClassVar[Mapping[str, Field]] = {
        "conditional": Field("bool", False, "condition decoder and encoder on the label"),
        "stochastic_hidden": Field(
            "ints", [100, 100], "deterministic layers between two stochastic layers", minimum=1
        ),
    }
    guide_keys = ("family", "options", "encoder")
    max_layers = 2

    def complete(self, model: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(model.get("latent_dim"), list):
            # Only two stochastic layers use it; a one-layer spec that sets it is refused by
            # check(), and the resolved spec leaves it out.
            model.pop("stochastic_hidden", None)
        return model

    def check(self, spec: Spec, raw: Mapping[str, Any]) -> None:
        model, data = spec.model, spec.data
        # A path's labels are known once it is read: load_data checks those.
        named = data["name"] is not None
        if model["conditional"] and named and not datasets.DATASETS[data["name"]].labelled:
            labelled = [name for name, dataset in datasets.DATASETS.items() if dataset.labelled]
            raise SpecError(
                f"invalid spec: model.conditional = true needs labels, and data.name = "
                f"{data['name']!r} has none; allowed datasets: {labelled}"
            )
        layers = len(self.latent_dims(model))
        if model["conditional"] and layers == 2:
            raise SpecError(
                f"invalid spec: model.conditional = true with model.latent_dim = "
                f"{model['latent_dim']}; the conditional VAE has one stochastic layer: give an "
                "integer"
            )
        if "stochastic_hidden" in raw["model"] and layers == 1:
            raise SpecError(
                "invalid spec: model.stochastic_hidden is only used with two stochastic layers "
                "(model.latent_dim = [D1, D2])"
            )

    def conditional(self, model: Mapping[str, Any]) -> bool:
        return bool(model["conditional"])

    def capabilities(self, spec: Spec) -> Capabilities:
        family_name, prior_name = spec.guide["family"], spec.model["prior"]["name"]
        family = families.FAMILIES[family_name]
        part = f"guide.family = {family_name!r}"
        closed_form = [name for name, cls in families.FAMILIES.items() if cls.closed_form_kl]
        invertible = [name for name, cls in families.FAMILIES.items() if cls.has_tractable_inverse]
        closed_form_kl = None
        if not family.closed_form_kl:
            closed_form_kl = Missing(
                part,
                "KL(q || p) has no closed form for that family",
                f"allowed: a Gaussian family {closed_form}, or an estimator without analytic KL "
                "('elbo', 'stl', 'iwae', ...)",
            )
        elif not PRIORS[prior_name].closed_form_kl:
            closed_form_kl = Missing(
                f"model.prior = {prior_name!r}",
                "KL(q || p) has no closed form for a mixture prior",
                "allowed: model.prior = 'standard_normal', or estimator.name = 'elbo'",
            )
        reparameterized = None
        if not family.reparameterized:
            pathwise = [name for name, cls in families.FAMILIES.items() if cls.reparameterized]
            reparameterized = Missing(
                part, "that family has no rsample", f"allowed families: {pathwise}"
            )
        scores_fresh_values = None
        if not family.has_tractable_inverse:
            scores_fresh_values = Missing(
                part, "that flow has no inverse to do so", f"allowed families: {invertible}"
            )
        return Capabilities(
            reparameterized=reparameterized,
            closed_form_kl=closed_form_kl,
            scores_fresh_values=scores_fresh_values,
        )

    def build(self, spec: Spec, info: DataInfo) -> tuple[nn.Module, nn.Module]:
        model, guide = spec.model, spec.guide
        dims = self.latent_dims(model)
        num_classes = None
        if model["conditional"]:
            if info.num_classes is None:
                raise ValueError("a conditional model needs DataInfo.num_classes, got None")
            num_classes = info.num_classes
        return architectures.vae(
            info.shape,
            dims[0] if len(dims) == 1 else tuple(dims),
            likelihood=model["likelihood"],
            prior=model["prior"],
            decoder=model["decoder"],
            encoder=guide["encoder"],
            family=guide["family"],
            family_options=guide["options"],
            num_classes=num_classes,
            stochastic_hidden=model.get("stochastic_hidden", (100, 100)),
        )

    def latent_sites(self, spec: Spec) -> list[str]:
        return ["z1", "z2"] if len(self.latent_dims(spec.model)) == 2 else ["z"]

    def sample_grid(
        self, built: Built, like: torch.Tensor, labels: list[int] | None = None
    ) -> Figure:
        from pyro_vi import report

        if not self.conditional(built.spec.model):
            return report.sample_grid(built.model, like)
        chosen = list(range(built.info.num_classes or 1)) if labels is None else list(labels)
        return report.sample_grid(built.model, like, labels=chosen)

    def describe_guide(self, spec: Spec) -> str:
        return spec.guide["family"]
