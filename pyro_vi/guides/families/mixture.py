"""q(u | h) = sum_c pi_c(h) N(mu_c(h), diag sigma_c(h)^2): a mixture with pathwise gradients.

Sampling a component is discrete, so the reparameterization gradient comes from the implicit
"transport" derivative of Jankowiak & Karaletsos (2019), as in Pyro's ``MixtureOfDiagNormals``.
Two things about Pyro's ``rsample`` needed rewriting (its ``log_prob`` and ``expand`` are used
as they are):

- with a batch shape *and* a sample shape it gathers component means with misaligned indices
  (an error when the sample shape exceeds the batch, silently wrong samples otherwise);
- its backward pass forms the densities q_j(z) and their sum with ``exp``, which overflows or
  underflows in float32 once dim reaches about 60 (or dim 50 with scales of 0.05), giving NaN
  gradients. The same gradient is computed here with every density divided by the mixture
  density inside one ``exp`` (a log-space normalization), which stays finite.

Pyro's docstring excludes dim = 1; the same gradient is right there too (the tests check its
unbiasedness at dim 1 and 3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import nn
from torch.autograd import Function
from torch.autograd.function import once_differentiable
from torch.nn.functional import softplus

from pyro_vi._checks import check_float, check_int
from pyro_vi.guides.families.base import Family

_LOG_2PI = math.log(2 * math.pi)


class _MixtureSample(Function):
    """z ~ the mixture given the drawn components; backward: the implicit pathwise gradient.

    Every input shares the leading shape ``[...]`` of the sample (``rsample`` expands them), so
    the backward pass is per sample and autograd sums the gradients over the expansion.
    """

    @staticmethod
    def forward(ctx, locs, scales, logits, which):  # [..., C, D], [..., C, D], [..., C], [...]
        index = which[..., None, None].expand((*which.shape, 1, locs.size(-1)))
        loc = locs.gather(-2, index).squeeze(-2)
        scale = scales.gather(-2, index).squeeze(-2)
        z = loc + scale * torch.randn_like(loc)
        ctx.save_for_backward(z, locs, scales, logits)
        return z

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        z, locs, scales, logits = ctx.saved_tensors
        dim = z.size(-1)
        log_pis = logits.log_softmax(-1)
        pis = log_pis.exp()
        offset = z.unsqueeze(-2) - locs  # [..., C, D]
        eps = offset / scales
        log_q = (-0.5 * eps**2 - 0.5 * _LOG_2PI - scales.log()).sum(-1)
        log_q_mix = torch.logsumexp(log_pis + log_q, -1)[..., None, None]
        # the (D - 1)-dimensional Gaussian constant of both transport terms, kept inside exp
        log_norm = -0.5 * (dim - 1) * _LOG_2PI - log_q_mix

        responsibility = (log_pis + log_q).unsqueeze(-1).sub(log_q_mix).exp()  # pi_j q_j / q
        grad_locs = responsibility * grad.unsqueeze(-2)
        grad_scales = grad_locs * eps

        # logits, first term: coordinate-wise transport between each component and the
        # narrowest-scale reference, r_ji^2 = sum_{k<i} eps_jk^2 + sum_{k>i} shifted_jk^2
        min_scale = scales.min(-2, keepdim=True).values
        shifted = offset / min_scale
        after = (shifted**2).sum(-1, keepdim=True) - (shifted**2).cumsum(-1)
        before = (eps**2).cumsum(-1) - eps**2
        log_scales, log_min_scale = scales.log(), min_scale.log()
        log_volume = (log_scales.cumsum(-1) - log_scales) + (
            log_min_scale.sum(-1, keepdim=True) - log_min_scale.cumsum(-1)
        )
        erf_gap = torch.erf(eps / math.sqrt(2)) - torch.erf(shifted / math.sqrt(2))
        density = (-0.5 * (before + after) - log_volume + log_norm).exp()
        term = -0.5 * pis * (erf_gap * density * grad.unsqueeze(-2)).sum(-1)
        grad_logits = term - term.sum(-1, keepdim=True) * pis

        # logits, second term: transport along the line between each pair of component means
        between = locs.unsqueeze(-2) - locs.unsqueeze(-3)  # [..., C, C, D], mu_c - mu_d
        length = between.norm(dim=-1, keepdim=True)
        direction = between / torch.where(length > 0, length, torch.ones_like(length))
        loc_along = (locs.unsqueeze(-2) * direction).sum(-1)  # [..., C, C]
        z_along = (z[..., None, None, :] * direction).sum(-1)
        z_across = ((z[..., None, None, :] - z_along.unsqueeze(-1) * direction) ** 2).sum(-1)
        gap = torch.erf((z_along - loc_along) / math.sqrt(2)) - torch.erf(
            (z_along + loc_along.transpose(-1, -2)) / math.sqrt(2)
        )
        grad_along = (grad[..., None, None, :] * direction).sum(-1)
        density = (-0.5 * z_across + log_norm).exp()
        flow = -0.5 * gap * density * grad_along * pis.unsqueeze(-2)
        grad_logits = grad_logits + pis * flow.sum(-1)
        return grad_locs, grad_scales, grad_logits, None


class StableMixtureOfDiagNormals(dist.MixtureOfDiagNormals):
    """Pyro's ``MixtureOfDiagNormals`` with an ``rsample`` that is right for any batch and sample
    shape and whose gradient stays finite in high dimension (see the module docstring)."""

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(StableMixtureOfDiagNormals, _instance)
        return super().expand(batch_shape, _instance=new)

    def rsample(self, sample_shape: Sequence[int] = ()) -> torch.Tensor:
        sample_shape = torch.Size(sample_shape)
        shape = sample_shape + self.batch_shape
        which = self.categorical.sample(sample_shape)
        locs = self.locs.expand(shape + self.locs.shape[-2:])
        scales = self.coord_scale.expand(shape + self.coord_scale.shape[-2:])
        logits = self.component_logits.expand(shape + self.component_logits.shape[-1:])
        return _MixtureSample.apply(locs, scales, logits, which)


class DiagonalMixture(Family):
    r"""q(u | h) = sum_c pi_c(h) N(mu_c(h), diag sigma_c(h)^2), ``components`` Gaussians.

    Linear heads give the component means, scales (``min_scale + softplus(.)``) and the mixture
    logits. ``rsample`` has pathwise gradients to all of them and to the context (implicit
    reparameterization, Jankowiak & Karaletsos 2019); ``log_prob`` is exact at any value. There is
    no closed-form KL to a Gaussian prior: the analytic-KL ``meanfield`` estimator falls back to
    its Monte Carlo estimate for this family. The backward pass costs O(components^2 dim) per
    sample. Two components with exactly equal means get no transport term between them (the
    direction between them is undefined; Pyro's gradient is NaN there).

    Arguments:
        dim: Size of the latent vector.
        features: Size of the context.
        components: Number of mixture components (>= 1).
        min_scale: Floor of the component scales (>= 0).

    References:
        Jankowiak & Karaletsos, Pathwise Derivatives for Multivariate Distributions (2019),
        arXiv:1806.01856.

    Example:
        >>> q = DiagonalMixture(dim=4, features=16, components=3)(torch.randn(8, 16))
        >>> q.expand([5, 8]).rsample().shape
        torch.Size([5, 8, 4])
    """

    name = "mixture"

    def __init__(
        self, dim: int, features: int, *, components: int = 3, min_scale: float = 1e-5
    ) -> None:
        super().__init__(dim, features)
        self.components = check_int("components", components, minimum=1)
        self.min_scale = check_float("min_scale", min_scale, minimum=0.0)
        self.loc_head = nn.Linear(self.features, self.components * self.dim)
        self.scale_head = nn.Linear(self.features, self.components * self.dim)
        self.logit_head = nn.Linear(self.features, self.components)

    def locs_scales_logits(
        self, context: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Means and scales ``[..., components, dim]`` and logits ``[..., components]``."""
        shape = (self.components, self.dim)
        locs = self.loc_head(context).unflatten(-1, shape)
        scales = self.min_scale + softplus(self.scale_head(context)).unflatten(-1, shape)
        return locs, scales, self.logit_head(context)

    def _posterior(self, context: torch.Tensor) -> dist.TorchDistribution:
        return StableMixtureOfDiagNormals(*self.locs_scales_logits(context))
