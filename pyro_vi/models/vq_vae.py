"""The VQ-VAE (van den Oord et al. 2017) as a Pyro model/guide pair, trainable by SVI.

The latent of datapoint i is n code vectors z_i = (e_{k_i1}, ..., e_{k_in}) from a learned codebook
{e_1, ..., e_K} in R^D, with a uniform prior over the codes at every position. The guide is the
paper's encoder: a continuous output z_e(x) in R^{n x D} snapped to its nearest codes z_q(x),
i.e. a one-hot posterior q(k | x) = 1[k = argmin_j ||z_e - e_j||^2] per position. Hence

    ELBO(x) = E_q[log p(x | z)] - KL(q(k | x) || Uniform{1..K}^n) = log p(x | z_q(x)) - n log K,

a true lower bound on log p(x) = log K^-n sum_k p(x | e_k): the one-hot KL is log K per position.

The argmin has no gradient, so training adds the paper's two vector-quantization losses, which
enter the guide's site as its log-density (log q) *in training mode only*:

    train loss = -ELBO + ||sg(z_e) - z_q||^2 + beta ||z_e - sg(z_q)||^2   (module.train())
    eval loss  = -ELBO exactly                                           (module.eval())

The first (codebook) loss moves the codes toward the encoder outputs, the second (commitment,
weight beta) keeps the encoder close to its codes; the reconstruction gradient reaches the
encoder through the straight-through estimator. Losses reported in training mode are therefore
*above* minus the bound; :func:`pyro_vi.train.evaluate_loss` (eval mode) reports minus the bound.

References:
    van den Oord, Vinyals & Kavukcuoglu, "Neural Discrete Representation Learning" (NeurIPS 2017).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import nn

from pyro_vi._checks import check_float, check_int, describe
from pyro_vi._module import UniquePyroModule
from pyro_vi.models.autoencoder import _check_x
from pyro_vi.models.likelihoods import Likelihood
from pyro_vi.models.vae import check_decoder_output, resolve_likelihood
from pyro_vi.nets import encoder_features
from pyro_vi.plates import data_plate

__all__ = [
    "VQVAE",
    "UniformCodebook",
    "VQGuide",
    "nearest_codes",
    "perplexity",
    "straight_through",
    "vq_penalty",
]


class UniformCodebook(dist.TorchDistribution):
    """The VQ-VAE prior: n positions, each holding one of K code vectors, uniformly.

    log p(z) = -n log K for z in the codebook^n. ``log_prob`` returns this constant without
    checking that ``value`` consists of code vectors: in a VQ-VAE it does by construction (the
    guide quantizes), and the check would cost a nearest-code search per call.

    Arguments:
        codebook: The codes ``[K, D]``.
        num_latents: n, the number of code vectors in one latent.
        batch_shape: The batch shape (plates expand it).

    Example:
        >>> prior = UniformCodebook(torch.randn(512, 64), num_latents=16)
        >>> prior.sample((3,)).shape
        torch.Size([3, 16, 64])
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = False

    def __init__(
        self,
        codebook: torch.Tensor,
        num_latents: int,
        batch_shape: torch.Size | Sequence[int] = (),
    ) -> None:
        if not isinstance(codebook, torch.Tensor) or codebook.dim() != 2:
            raise TypeError(f"codebook must be a tensor of shape [K, D], got {describe(codebook)}")
        self.codebook = codebook
        self.num_latents = check_int("num_latents", num_latents, minimum=1)
        event_shape = (self.num_latents, codebook.shape[-1])
        super().__init__(torch.Size(batch_shape), event_shape, validate_args=False)

    def expand(
        self, batch_shape: torch.Size | Sequence[int], _instance: UniformCodebook | None = None
    ) -> UniformCodebook:
        new = self._get_checked_instance(UniformCodebook, _instance)
        new.codebook = self.codebook
        new.num_latents = self.num_latents
        super(UniformCodebook, new).__init__(
            torch.Size(batch_shape), self.event_shape, validate_args=False
        )
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        batch_shape = torch.broadcast_shapes(value.shape[:-2], self.batch_shape)
        log_prob = -self.num_latents * math.log(self.codebook.shape[0])
        return value.new_full((), log_prob).expand(batch_shape)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            codebook = self.codebook.detach()
            index = torch.randint(len(codebook), shape[:-1], device=codebook.device)
            return codebook[index]


def nearest_codes(z_e: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """k = argmin_j ||z_e - e_j||^2 for every vector of ``z_e``; ties go to the lowest index.

    Arguments:
        z_e: Vectors ``[..., D]``.
        codebook: Codes ``[K, D]``.

    Returns:
        Indices ``[...]`` (long) into the codebook.

    Example:
        >>> nearest_codes(torch.tensor([[0.9], [-2.0]]), torch.tensor([[0.0], [1.0]]))
        tensor([1, 0])
    """
    with torch.no_grad():
        # ||z||^2 - 2 z.e + ||e||^2: a matrix product instead of a [..., K, D] difference tensor.
        # ||z||^2 is the same for every code, so it is left out of the argmin.
        distances = (codebook**2).sum(-1) - 2 * z_e @ codebook.T
        return distances.argmin(-1)


def straight_through(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """z_q in the forward pass, the identity to z_e in the backward pass (no gradient to z_q).

    Written sg(z_q) + (z_e - sg(z_e)) rather than the paper's z_e + sg(z_q - z_e): the value is
    then z_q bit for bit (z_e - z_e is exactly 0, while z_e + (z_q - z_e) can round), so the
    model's prior and decoder see exact code vectors.

    Arguments:
        z_e: Encoder outputs, any shape.
        z_q: Their quantized values, same shape.

    Returns:
        A tensor equal to ``z_q`` whose gradient flows to ``z_e``.
    """
    return z_q.detach() + (z_e - z_e.detach())


def vq_penalty(z_e: torch.Tensor, z_q: torch.Tensor, commitment: float) -> torch.Tensor:
    """The VQ-VAE's training losses, per datapoint: codebook loss + beta * commitment loss.

        ||sg(z_e) - z_q||^2 + beta ||z_e - sg(z_q)||^2, summed over the last two dims (n, D).

    The first term's gradient reaches the codes only, the second's the encoder only.

    Arguments:
        z_e: Encoder outputs ``[..., n, D]``.
        z_q: Their nearest codes ``[..., n, D]`` (with gradient to the codebook).
        commitment: beta >= 0 (0.25 in the paper).

    Returns:
        The penalty ``[...]``.
    """
    codebook_loss = (z_e.detach() - z_q).pow(2).sum((-2, -1))
    commitment_loss = (z_e - z_q.detach()).pow(2).sum((-2, -1))
    return codebook_loss + commitment * commitment_loss


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(H(p)) of the code frequencies p = counts / sum(counts): the effective number of codes.

    K when all K codes are used equally, 1 when one code takes every assignment.

    Arguments:
        counts: Non-negative counts per code ``[K]`` (e.g. :meth:`VQGuide.code_usage`).

    Returns:
        A scalar tensor (floating point).

    Example:
        >>> perplexity(torch.tensor([5, 5, 5, 5]))
        tensor(4.)
    """
    if not isinstance(counts, torch.Tensor) or counts.dim() != 1:
        raise TypeError(f"counts must be a 1-D tensor of counts per code, got {describe(counts)}")
    if not counts.is_floating_point():
        counts = counts.to(torch.get_default_dtype())
    total = counts.sum()
    if bool((counts < 0).any()) or not bool(total > 0):
        raise ValueError(f"counts must be non-negative with a positive sum, got {counts.tolist()}")
    probs = counts / total
    # xlogy gives 0 log 0 = 0: unused codes add nothing to the entropy.
    return torch.exp(-torch.special.xlogy(probs, probs).sum())


class VQVAE(UniquePyroModule):
    """Generative model of a VQ-VAE: z_i ~ Uniform(codebook)^n, x_i | z_i ~ likelihood(dec(z_i)).

    Sample sites, in the data plate: ``"z"`` (shape ``[B, n, D]``, a :class:`UniformCodebook`)
    and ``"x"`` (observed). The decoder reads the n codes flattened, ``[..., n * D]``. The
    codebook (a parameter of this model, initialized uniformly in [-1/K, 1/K] as in the paper)
    is trained through :class:`VQGuide`'s codebook loss. See the module docstring for the bound.

    Arguments:
        decoder: Maps ``[..., n * D]`` to likelihood parameters ``[..., *data_shape]``.
        num_codes: K, the codebook size.
        code_dim: D, the size of one code vector.
        num_latents: n, the code vectors per datapoint.
        likelihood: A :class:`~pyro_vi.models.likelihoods.Likelihood` or one of
            :data:`~pyro_vi.models.likelihoods.LIKELIHOODS`.
        data_shape: Shape of one datapoint; needed to build a likelihood by name when the
            decoder has no ``data_shape`` attribute.

    Example:
        >>> model = VQVAE(MLPDecoder(4 * 8, [64], (1, 8, 8)), num_codes=32, code_dim=8,
        ...               num_latents=4)
        >>> guide = VQGuide(model, MLPEncoder((1, 8, 8), [64]))
        >>> SVI(model, guide, Adam({"lr": 1e-3}), Trace_ELBO()).step(x)
    """

    def __init__(
        self,
        decoder: nn.Module,
        num_codes: int,
        code_dim: int,
        num_latents: int,
        likelihood: Likelihood | str = "bernoulli",
        data_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(decoder, nn.Module):
            raise TypeError(f"decoder must be a torch.nn.Module, got {describe(decoder)}")
        self.decoder = decoder
        self.num_codes = check_int("num_codes", num_codes, minimum=1)
        self.code_dim = check_int("code_dim", code_dim, minimum=1)
        self.num_latents = check_int("num_latents", num_latents, minimum=1)
        self.likelihood = resolve_likelihood(likelihood, decoder, data_shape)
        bound = 1.0 / self.num_codes
        codebook = torch.empty(self.num_codes, self.code_dim).uniform_(-bound, bound)
        self.codebook = nn.Parameter(codebook)
        self._checked_data = False

    def prior(self) -> UniformCodebook:
        """p(z) for one datapoint: uniform over the codebook at each of the n positions."""
        return UniformCodebook(self.codebook, self.num_latents)

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        _check_x(x)
        if not self._checked_data:
            # Once: a full pass over the data's support on every step would cost a device sync.
            self.likelihood.check_data(x)
            self._checked_data = True
        # Reading self.codebook inside forward records it as a param site of the model's trace,
        # which is how SVI finds it, although only the guide's codebook loss moves it.
        prior = self.prior()
        with data_plate(x, num_data):
            z = pyro.sample("z", prior)
            codes = z.flatten(-2)
            params = self.decoder(codes)
            check_decoder_output(params, codes, x, self.likelihood)
            pyro.sample("x", self.likelihood(params, x.dim() - 1), obs=x)
        return z


class VQGuide(UniquePyroModule):
    """The VQ-VAE encoder as a guide: z = nearest codes of z_e(x), with straight-through gradient.

    A linear head on the encoder's features gives z_e ``[B, n, D]``; each vector is replaced by
    its nearest code (:func:`nearest_codes`) and site ``"z"`` is a point mass there,
    ``Delta(straight_through(z_e, z_q), log_density=penalty, event_dim=2)``, in the data plate.
    ``penalty`` is :func:`vq_penalty` in training mode and 0 in eval mode, so minus the ELBO is
    the training loss of the paper while training and exactly minus the bound in eval mode (see
    the module docstring).

    The codebook belongs to ``model``; the model is kept out of this module's tree (it is not a
    submodule, so its parameters are neither registered twice nor moved by ``guide.to``). SVI
    still updates the codebook: the model's trace records it as a parameter, and the codebook
    loss computed here reaches it through autograd.

    Gradient estimators that alter the guide's gradient (``"stl"``, ``"dreg"``) drop the
    explicit dependence of log q on the guide's parameters, and with it the commitment loss;
    train a VQ-VAE with ``"elbo"`` (the posterior is a point mass, so K > 1 particles or
    IWAE-type bounds give the same value as K = 1).

    Arguments:
        model: The :class:`VQVAE` whose codebook quantizes.
        encoder: Maps data ``[B, ...]`` to features ``[B, F]``; needs an ``out_features``
            attribute or an explicit ``features``.
        commitment: beta, the weight of the commitment loss (0.25 in the paper).
        features: F, when the encoder has no ``out_features``.

    Example:
        >>> guide = VQGuide(model, MLPEncoder((1, 8, 8), [64]), commitment=0.25)
        >>> perplexity(guide.code_usage(x))  # effective number of codes in use
    """

    def __init__(
        self,
        model: VQVAE,
        encoder: nn.Module,
        commitment: float = 0.25,
        *,
        features: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, VQVAE):
            raise TypeError(f"model must be a VQVAE, got {describe(model)}")
        features = encoder_features(encoder, features)
        # Not a submodule: the codebook is the model's parameter (see the class docstring).
        self.__dict__["_model"] = model
        self.encoder = encoder
        self.head = nn.Linear(features, model.num_latents * model.code_dim)
        self.commitment = check_float("commitment", commitment, minimum=0.0)

    @property
    def model(self) -> VQVAE:
        """The model whose codebook this guide quantizes with."""
        return self._model

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z_e(x), the continuous encoder outputs ``[B, n, D]``."""
        shape = (self._model.num_latents, self._model.code_dim)
        return self.head(self.encoder(x)).unflatten(-1, shape)

    def quantize(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices ``[..., n]``, nearest codes z_q ``[..., n, D]``); z_q carries the codebook's
        gradient."""
        codebook = self._model.codebook
        index = nearest_codes(z_e, codebook)
        return index, codebook[index]

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        _check_x(x)
        z_e = self.encode(x)
        _, z_q = self.quantize(z_e)
        if self.training:
            penalty = vq_penalty(z_e, z_q, self.commitment)
        else:
            penalty = z_e.new_zeros(z_e.shape[:-2])
        # No argument validation: shapes are right by construction, and checking the values
        # would sync the device on every step.
        q = dist.Delta(straight_through(z_e, z_q), penalty, event_dim=2, validate_args=False)
        with data_plate(x, num_data):
            return pyro.sample("z", q)

    @torch.no_grad()
    def code_usage(self, x: torch.Tensor) -> torch.Tensor:
        """How often each code is the nearest one over the batch ``x``: counts ``[K]`` (long),
        summing to B * n. See :func:`perplexity`."""
        _check_x(x)
        index = nearest_codes(self.encode(x), self._model.codebook)
        return torch.bincount(index.flatten(), minlength=self._model.num_codes)

    @torch.no_grad()
    def initialize_codebook(self, x: torch.Tensor) -> None:
        """Optional data-dependent initialization: the codes become K encoder outputs z_e of the
        batch ``x``, drawn without replacement from its B * n vectors.

        Codes initialized far from every encoder output are never selected and never trained
        (dead codes); starting them on encoder outputs avoids that. The training loop does not
        call this; call it once before training if wanted.
        """
        _check_x(x)
        vectors = self.encode(x).reshape(-1, self._model.code_dim)
        if len(vectors) < self._model.num_codes:
            raise ValueError(
                f"initialize_codebook needs at least num_codes={self._model.num_codes} encoder "
                f"outputs, but x gives {len(vectors)} (batch {len(x)} x num_latents "
                f"{self._model.num_latents}); pass a larger batch"
            )
        pick = torch.randperm(len(vectors), device=vectors.device)[: self._model.num_codes]
        self._model.codebook.copy_(vectors[pick])
