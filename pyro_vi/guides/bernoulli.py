"""The guide of the sigmoid belief net: q(z | x) = prod_d Bernoulli(z_d; sigmoid(c_d(x))).

c(x) = W h(x) + b, a linear head on an encoder's features h(x). The discrete guide has no
``rsample``: the estimators give its site score-function or VIMCO gradients. With a
``temperature`` the site is the binary Concrete relaxation of the same Bernoulli in logit space,
:class:`~pyro_vi.models.sbn.LogitConcrete` (c(x), temperature), which is reparameterized, so every
estimator (``stl`` and ``dreg`` included) trains it. It pairs with
:class:`~pyro_vi.models.sbn.SigmoidBeliefNet` of the same relaxation.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vi._checks import check_int, describe
from pyro_vi._module import UniquePyroModule
from pyro_vi.models.sbn import LogitConcrete, check_temperature
from pyro_vi.nets import encoder_features
from pyro_vi.plates import data_plate

__all__ = ["BernoulliGuide"]


class BernoulliGuide(UniquePyroModule):
    """q(z_i | x_i) = prod_d Bernoulli(z_id; sigmoid(c_d(x_i))), or its relaxation, at site ``"z"``.

    The site is sampled inside the data plate, scaled by N / B when the guide is called with
    ``num_data=N``, like the model's.

    - ``temperature=None``: the discrete guide, z in {0, 1}^D (no ``rsample``).
    - ``temperature=lambda``: the site holds logits y ~ LogitConcrete(c(x), lambda), whose sign
      1[y > 0] is distributed as the discrete guide's z for every lambda (reparameterized).

    Arguments:
        encoder: Maps x ``[B, ...]`` to features ``[B, F]``; needs an ``out_features`` attribute
            or an explicit ``features``.
        latent_dim: D.
        temperature: ``None`` for the discrete guide, or lambda > 0 for the relaxed one.
        features: F, when the encoder has no ``out_features``.
        head: The map from features ``[..., F]`` to logits ``[..., D]``; a fresh
            ``nn.Linear(F, D)`` when ``None`` (pass another guide's to share it).

    References:
        Mnih & Rezende, "Variational inference for Monte Carlo objectives" (ICML 2016);
        Maddison, Mnih & Teh, "The Concrete Distribution" (ICLR 2017).

    Example:
        >>> guide = BernoulliGuide(MLPEncoder((1, 28, 28), [200]), latent_dim=200)
        >>> guide(x)  # [B, 200] of 0s and 1s
    """

    def __init__(
        self,
        encoder: nn.Module,
        latent_dim: int,
        *,
        temperature: float | None = None,
        features: int | None = None,
        head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        features = encoder_features(encoder, features)
        self.encoder = encoder
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        if head is None:
            head = nn.Linear(features, self.latent_dim)
        elif not isinstance(head, nn.Module):
            raise TypeError(f"head must be a torch.nn.Module or None, got {describe(head)}")
        self.head = head
        self.temperature = (
            None if temperature is None else check_temperature("temperature", temperature)
        )
        # The discrete view (see discrete()), kept out of the module tree: it shares every
        # parameter with this guide.
        self.__dict__["_discrete"] = None

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """c(x), the log-odds of each unit being on: ``[B, D]``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {describe(x)}")
        return self.head(self.encoder(x))

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q(z | x) for the batch: batch shape ``[B]``, event shape ``[D]``."""
        logits = self.logits(x)
        if self.temperature is None:
            return dist.Bernoulli(logits=logits).to_event(1)
        return LogitConcrete(logits, self.temperature).to_event(1)

    def discrete(self) -> BernoulliGuide:
        """The discrete guide with this guide's parameters (itself when it is discrete)."""
        if self.temperature is None:
            return self
        if self._discrete is None:
            view = BernoulliGuide(self.encoder, self.latent_dim, head=self.head)
            view.train(self.training)
            self.__dict__["_discrete"] = view
        return self._discrete

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        q = self.posterior(x)
        with data_plate(x, num_data):
            return pyro.sample("z", q)

    def extra_repr(self) -> str:
        relaxed = "" if self.temperature is None else f", temperature={self.temperature:g}"
        return f"latent_dim={self.latent_dim}{relaxed}"
