"""The mixture's pathwise gradient: Pyro's where Pyro's is right, unbiased, finite in high dim."""

from types import SimpleNamespace

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vi.guides.families.mixture import StableMixtureOfDiagNormals, _MixtureSample


def mixture_parameters(batch, components, dim, dtype=torch.float64):
    locs = 2 * torch.randn(*batch, components, dim, dtype=dtype)
    scales = torch.rand(*batch, components, dim, dtype=dtype) + 0.3
    logits = torch.randn(*batch, components, dtype=dtype)
    return [t.requires_grad_() for t in (locs, scales, logits)]


def test_same_samples_and_gradients_as_pyro_where_pyro_is_right():
    # Pyro's rsample is right without a batch shape; with the same seed both draw the same z,
    # and the log-space backward must give Pyro's gradient up to float64 rounding (~1e-15).
    parameters = mixture_parameters((), components=3, dim=4)
    weights = torch.randn(50, 4, dtype=torch.float64)
    results = []
    for cls in (dist.MixtureOfDiagNormals, StableMixtureOfDiagNormals):
        pyro.set_rng_seed(1)
        z = cls(*parameters).rsample(torch.Size([50]))
        results.append((z, torch.autograd.grad((z * weights).sum(), parameters)))
    (z_pyro, grads_pyro), (z_ours, grads_ours) = results
    assert torch.equal(z_pyro, z_ours)
    for ours, theirs in zip(grads_ours, grads_pyro, strict=True):
        assert torch.allclose(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("samples", [2, 5])
def test_sample_shape_with_a_batch_draws_from_each_batch_element(samples):
    # Well-separated components with tiny scales: every draw must sit on a mean of its own
    # batch element (Pyro's gather takes other batch elements' means with fewer samples than
    # batch elements, and fails with more).
    locs = 10 * torch.arange(3 * 3 * 2, dtype=torch.float32).reshape(3, 3, 2)
    q = StableMixtureOfDiagNormals(locs, torch.full_like(locs, 1e-3), torch.zeros(3, 3))
    z = q.rsample([samples])
    assert z.shape == (samples, 3, 2)
    distance = (z.unsqueeze(-2) - locs).norm(dim=-1).min(-1).values
    assert bool((distance < 0.1).all())


@pytest.mark.parametrize("dim", [1, 3])
def test_pathwise_gradient_is_unbiased(dim):
    # E|z|^2 = sum_c pi_c (|mu_c|^2 + |sigma_c|^2), so the exact gradients are
    # d/dmu_c = 2 pi_c mu_c, d/dsigma_c = 2 pi_c sigma_c, d/dlogit_c = pi_c (m_c - sum_d pi_d m_d).
    # A batch of 2 mixtures, with parameters copied per particle (as Pyro's particle plate
    # expands them), so that one pass gives each particle's own gradient of |z|^2.
    pyro.set_rng_seed(0)
    locs, scales, logits = mixture_parameters((2,), components=3, dim=dim)
    particles = 20000
    copies = [
        t.detach().expand(particles, *t.shape).clone().requires_grad_()
        for t in (locs, scales, logits)
    ]
    z = StableMixtureOfDiagNormals(*copies).rsample()
    per_particle = torch.cat(
        [g.flatten(1) for g in torch.autograd.grad((z**2).sum(), copies)], dim=1
    )

    with torch.no_grad():
        pis = logits.softmax(-1)
        moments = (locs**2 + scales**2).sum(-1)
        exact = torch.cat(
            [
                (2 * pis.unsqueeze(-1) * locs).flatten(),
                (2 * pis.unsqueeze(-1) * scales).flatten(),
                (pis * (moments - (pis * moments).sum(-1, keepdim=True))).flatten(),
            ]
        )
    # each coordinate's mean over 20000 independent particles is within 5 standard errors of
    # the exact gradient (the CLT: p < 1e-6 per coordinate, and the seed is fixed); the floor
    # covers coordinates whose estimator has almost no variance
    standard_error = per_particle.std(0) / particles**0.5
    assert bool(((per_particle.mean(0) - exact).abs() <= 5 * standard_error + 1e-9).all())


@pytest.mark.parametrize(("dim", "scale"), [(100, 1.0), (50, 0.02)])
def test_gradient_is_finite_and_accurate_in_high_dimension_float32(dim, scale):
    # Pyro's backward forms q_j(z) = exp(log q_j) directly, which under- or overflows float32
    # here (NaN); the log-space form must stay finite and agree with the float64 backward at
    # the same draw.
    locs, scales, logits = mixture_parameters((4,), components=3, dim=dim, dtype=torch.float32)
    with torch.no_grad():
        scales.fill_(scale)
    z = StableMixtureOfDiagNormals(locs, scales, logits).expand([8, 4]).rsample()
    assert bool(torch.autograd.grad((z**2).sum(), locs)[0].isfinite().all())

    # what the autograd Function saved: the draw and the parameters expanded to its shape
    saved = [z.detach()] + [t.detach().expand(8, *t.shape) for t in (locs, scales, logits)]
    grads = {}
    for dtype in (torch.float32, torch.float64):
        context = SimpleNamespace(saved_tensors=[t.to(dtype) for t in saved])
        grads[dtype] = _MixtureSample.backward(context, 2 * z.detach().to(dtype))[:3]
    for single, double in zip(grads[torch.float32], grads[torch.float64], strict=True):
        assert bool(single.isfinite().all())
        # float32 rounding in sums over 100 coordinates: ~1e-5 relative to the largest entry;
        # gradients below float32's range (~1e-38, here the logits' ~1e-85) become 0
        tolerance = 1e-4 * double.abs().max() + 1e-30
        assert torch.allclose(single.double(), double, rtol=0, atol=tolerance)
