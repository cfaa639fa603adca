"""The conditional VAE: a VAE whose decoder (and encoder) also read a class label.

p(x_i | y_i) = int p(z_i) p(x_i | z_i, y_i) dz_i with p(x_i | z_i, y_i) =
likelihood(decoder([z_i, onehot(y_i)])). The latent is free to encode what the label does not
(style), and ``poutine.uncondition(model)(x_like, y)`` draws images of chosen classes.

References:
    Sohn, Lee & Yan, "Learning structured output representation using deep conditional
    generative models" (NeurIPS 2015); Kingma et al., "Semi-supervised learning with deep
    generative models" (NeurIPS 2014), model M2 with observed labels.
"""

from __future__ import annotations

import pyro
import torch
from torch import nn
from torch.nn.functional import one_hot

from pyro_vi._checks import check_int, describe
from pyro_vi.models.likelihoods import Likelihood
from pyro_vi.models.priors import Prior
from pyro_vi.models.vae import DeepLatentModel
from pyro_vi.nets import encoder_features
from pyro_vi.plates import data_plate


def check_labels(y: torch.Tensor, batch_size: int, num_classes: int, values: bool = True) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``y`` is an int64 tensor ``[batch_size]`` of
    labels in ``[0, num_classes)``; ``values=False`` skips the range check (a device sync)."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor of int64 labels, got {describe(y)}")
    if y.dtype != torch.int64:
        raise TypeError(f"y must hold int64 labels (torch.long), got dtype {y.dtype}")
    if tuple(y.shape) != (batch_size,):
        raise ValueError(
            f"y must have shape [{batch_size}] (one label per datapoint of x), got {tuple(y.shape)}"
        )
    if values and batch_size and bool(((y < 0) | (y >= num_classes)).any()):
        raise ValueError(
            f"y must hold labels in [0, {num_classes}) (num_classes={num_classes}), got values "
            f"in [{int(y.min())}, {int(y.max())}]"
        )


def append_one_hot(features: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[features, onehot(y)] along the last dimension.

    The one-hot ``[B, C]`` is broadcast over the leading dimensions of ``features`` ``[..., B, F]``
    (particles of the multi-sample estimators), giving ``[..., B, F + C]``.
    """
    codes = one_hot(y, num_classes).to(features.dtype)
    codes = codes.expand(*features.shape[:-1], num_classes)
    return torch.cat([features, codes], dim=-1)


class ConditionalVAE(DeepLatentModel):
    """z_i ~ p(z), x_i | z_i, y_i ~ likelihood(decoder([z_i, onehot(y_i)])).

    Sample sites ``"z"`` (``[B, D]``) and ``"x"`` (observed), both in the data plate, as in
    :class:`~pyro_vi.models.vae.VAE`; the labels ``y`` are observed inputs, not a site.

    Arguments:
        decoder: Maps ``[..., latent_dim + num_classes]`` (the latent, then the one-hot label) to
            likelihood parameters, e.g. ``MLPDecoder(latent_dim + num_classes, ...)``.
        latent_dim: D.
        num_classes: C, the number of labels.
        likelihood: A Likelihood or one of :data:`~pyro_vi.models.likelihoods.LIKELIHOODS`.
        data_shape: Shape of one datapoint; needed to build a likelihood by name.
        prior: p(z), as in :class:`~pyro_vi.models.vae.VAE`.

    Example:
        >>> model = ConditionalVAE(MLPDecoder(8 + 10, [64], (1, 8, 8)), 8, 10)
        >>> guide = AmortizedGuide(model, ConditionalEncoder(MLPEncoder((1, 8, 8), [64]), 10),
        ...                        data_arg=(0, 1))
        >>> SVI(model, guide, Adam({"lr": 1e-3}), loss=get("elbo")).step(x, y)
        >>> images = pyro.poutine.uncondition(model)  # then trace it on (x_like, labels)
    """

    def __init__(
        self,
        decoder: nn.Module,
        latent_dim: int,
        num_classes: int,
        likelihood: Likelihood | str = "bernoulli",
        data_shape: tuple[int, ...] | None = None,
        prior: Prior | str | None = None,
    ) -> None:
        latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        super().__init__(decoder, likelihood, data_shape, prior, latent_dim)
        self.latent_dim = latent_dim
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        self._checked_labels = False

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, num_data: int | None = None
    ) -> torch.Tensor:
        self.check_data(x)
        check_labels(y, x.shape[0], self.num_classes, values=not self._checked_labels)
        self._checked_labels = True
        event_dim = x.dim() - 1
        prior = self.prior(self.latent_like(x))
        with data_plate(x, num_data):
            z = pyro.sample("z", prior)
            self.observe(x, append_one_hot(z, y, self.num_classes), event_dim)
        return z


class ConditionalEncoder(nn.Module):
    """Features of (x, y) for a conditional guide: [encoder(x), onehot(y)].

    Wraps an encoder of x alone (one with an ``out_features`` attribute, such as
    :class:`~pyro_vi.nets.MLPEncoder`) so that q(z | x, y) sees the label; pass it to
    :class:`~pyro_vi.guides.amortized.AmortizedGuide` with ``data_arg=(0, 1)``.

    Arguments:
        encoder: Maps x ``[B, ...]`` to features ``[B, F]``.
        num_classes: C.

    Attributes:
        out_features: F + C.

    Example:
        >>> encoder = ConditionalEncoder(MLPEncoder((1, 8, 8), [64]), num_classes=10)
        >>> encoder(x, y).shape  # [B, 74]
    """

    def __init__(self, encoder: nn.Module, num_classes: int) -> None:
        super().__init__()
        features = encoder_features(encoder)
        self.encoder = encoder
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        self.out_features = features + self.num_classes

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Shapes only: the model checks the label values once, and a range check here would
        # cost a device sync on every step.
        check_labels(y, x.shape[0], self.num_classes, values=False)
        return append_one_hot(self.encoder(x), y, self.num_classes)
