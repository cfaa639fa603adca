"""``model.kind = "vq_vae"``: the VQ-VAE, a codebook and a quantizing deterministic encoder.

Built by :func:`pyro_vi.architectures.vq_vae`. Keys of ``[model]``: ``likelihood``, ``decoder``,
``num_codes``, ``code_dim``, ``num_latents``, ``commitment``; ``[guide]`` takes ``encoder``. Its
posterior is a point mass on the nearest codes: trained by the one-particle ELBO, its IWAE-K
equals its ELBO (not reported twice), and it reports the codebook's perplexity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from pyro_vi import architectures
from pyro_vi.models.vq_vae import perplexity
from pyro_vi.spec.kinds.base import ModelKind
from pyro_vi.spec.schema import Field

if TYPE_CHECKING:
    from pyro_vi.spec.build import Built, DataInfo
    from pyro_vi.spec.resolve import Spec

#: Datapoints per pass when counting code use: bounds memory, not the result.
_BATCH = 500


class VQVAEKind(ModelKind):
    """The VQ-VAE: z uniform over the codebook, x ~ likelihood(decoder(z)), z = nearest codes."""

    name = "vq_vae"
    description = "a VQ-VAE: codebook, straight-through gradient, commitment loss"
    shared_keys = ("likelihood", "decoder")
    fields: ClassVar[Mapping[str, Field]] = {
        "num_codes": Field("int", 64, "codebook size K", minimum=2),
        "code_dim": Field("int", 8, "size D of each code vector", minimum=1),
        "num_latents": Field("int", 4, "code vectors n per datapoint", minimum=1),
        "commitment": Field("float", 0.25, "commitment-loss weight beta", minimum=0.0),
    }
    no_family = "vq_vae has a deterministic encoder: no family"
    deterministic_encoder = True
    # Its latent is n code vectors, not units whose posterior mean varies.
    reports_active_units = False

    def latent_dims(self, model: Mapping[str, Any]) -> list[int]:
        return [model["num_latents"] * model["code_dim"]]

    def build(self, spec: Spec, info: DataInfo) -> tuple[nn.Module, nn.Module]:
        model = spec.model
        return architectures.vq_vae(
            info.shape,
            num_codes=model["num_codes"],
            code_dim=model["code_dim"],
            num_latents=model["num_latents"],
            commitment=model["commitment"],
            likelihood=model["likelihood"],
            decoder=model["decoder"],
            encoder=spec.guide["encoder"],
        )

    def extra_metrics(self, built: Built, test: tuple[torch.Tensor, ...]) -> dict[str, Any]:
        """``codebook_perplexity`` (exp of the entropy of code use, 1 .. K) and
        ``codebook_size`` (K)."""
        images = test[0]
        with torch.no_grad():
            counts = sum(
                built.guide.code_usage(images[start : start + _BATCH])
                for start in range(0, len(images), _BATCH)
            )
        return {
            "codebook_perplexity": float(perplexity(counts)),
            "codebook_size": built.spec.model["num_codes"],
        }
