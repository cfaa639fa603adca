"""``model.kind = "autoencoder"``: the plain autoencoder, the baseline for the VAE.

Built by :func:`pyro_vi.architectures.autoencoder`. Keys of ``[model]``: ``latent_dim``,
``likelihood``, ``decoder``; ``[guide]`` takes ``encoder``. Its "prior" is flat and improper, so
minus its loss is a reconstruction loss, not a bound: it reports neither a test ELBO nor a
log-likelihood, and has no samples to draw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from pyro_vi import architectures
from pyro_vi.spec.kinds.base import ModelKind

if TYPE_CHECKING:
    from pyro_vi.spec.build import DataInfo
    from pyro_vi.spec.resolve import Spec


class AutoencoderKind(ModelKind):
    """The autoencoder: a flat improper prior and a deterministic encoder."""

    name = "autoencoder"
    description = "a plain autoencoder (reconstruction loss, no bound)"
    no_family = "autoencoder has a deterministic encoder: no family"
    has_prior = False
    deterministic_encoder = True

    def build(self, spec: Spec, info: DataInfo) -> tuple[nn.Module, nn.Module]:
        model = spec.model
        return architectures.autoencoder(
            info.shape,
            model["latent_dim"],
            likelihood=model["likelihood"],
            decoder=model["decoder"],
            encoder=spec.guide["encoder"],
        )
