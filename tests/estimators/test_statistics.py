"""Statistical properties on a guide that is not the posterior (fixed seeds, justified margins)."""

import itertools
import math

import pyro
import pytest
import torch
from cases import LocalGaussianGuide
from conjugate_cases import total_evidence
from pyro.infer import RenyiELBO

from pyro_vi.estimators import get


def bound_draws(name, model, guide, x, draws, **options):
    """``draws`` independent bound estimates (the bound, not minus it), float64."""
    estimator = get(name, **options)
    return torch.tensor([-estimator.loss(model.model, guide, x) for _ in range(draws)])


def test_bounds_are_ordered_in_expectation(normal_normal):
    # Burda et al. (2016), Theorem 1: ELBO <= E IWAE_K <= E IWAE_K' <= log p(x) for K < K'.
    # The guide is shifted and too wide, so the gaps are nats wide. Each consecutive pair of means
    # (400 draws each) must differ by more than 4 standard errors of their difference, a false
    # alarm probability below 1e-4 had the true gap been zero.
    # The ELBO's expectation does not depend on K: 50 particles only shrink its variance.
    model, x = normal_normal
    guide = LocalGaussianGuide(model, x, shift=0.8, stretch=1.8)
    evidence = total_evidence(model, x).item()
    draws = [
        bound_draws("elbo", model, guide, x, 400, num_particles=50),
        bound_draws("iwae", model, guide, x, 400, num_particles=5),
        bound_draws("iwae", model, guide, x, 400, num_particles=50),
    ]
    means = [d.mean().item() for d in draws] + [evidence]
    variances = [d.var().item() / len(d) for d in draws] + [0.0]
    for i in range(3):
        margin = 4 * math.sqrt(variances[i] + variances[i + 1])
        assert means[i] + margin < means[i + 1]


def test_renyi_bound_decreases_in_alpha_on_every_draw(normal_normal):
    # For fixed log-weights, L_alpha is a power mean of the weights of order 1 - alpha, which is
    # non-decreasing in the order (the power-mean inequality): so on every draw, with the same
    # particles, vrmax >= L_{-1} >= IWAE (alpha 0) >= L_0.5 >= ELBO (alpha 1).
    model, x = normal_normal
    guide = LocalGaussianGuide(model, x, shift=0.5, stretch=1.5)
    estimator = get("iwae", num_particles=20)
    for seed in range(5):
        pyro.set_rng_seed(seed)
        log_w = estimator.log_weights(model.model, guide, x).log_w.detach()
        values = [get("vrmax").bound(log_w)]
        values += [get("renyi", alpha=a).bound(log_w) for a in (-1.0, 0.0, 0.5)]
        values.append(get("elbo").bound(log_w))
        for higher, lower in itertools.pairwise(values):
            assert bool((higher >= lower - 1e-12).all())


def test_renyi_alpha_zero_is_iwae_and_ciwae_interpolates(normal_normal):
    model, x = normal_normal
    guide = LocalGaussianGuide(model, x, shift=0.5)
    log_w = get("iwae", num_particles=7).log_weights(model.model, guide, x).log_w.detach()
    iwae, elbo = get("iwae").bound(log_w), get("elbo").bound(log_w)
    assert torch.allclose(get("renyi", alpha=0.0).bound(log_w), iwae, rtol=1e-12)
    assert torch.allclose(get("ciwae", beta=0.25).bound(log_w), 0.25 * elbo + 0.75 * iwae)
    assert torch.allclose(get("miwae", num_outer=1, num_inner=7).bound(log_w), iwae)
    assert torch.allclose(get("miwae", num_outer=7, num_inner=1).bound(log_w), elbo)


def guide_gradients(name, model, guide, x, draws, **options):
    estimator = get(name, **options)
    grads = []
    for _ in range(draws):
        loss = estimator.differentiable_loss(model.model, guide, x)
        grads.append(torch.autograd.grad(loss, [pyro.param("guide_loc").unconstrained()])[0])
    return torch.stack(grads)


def test_dreg_is_unbiased_and_has_lower_variance_than_iwae(normal_normal):
    # Tucker et al. (2018): the same expected guide gradient as IWAE with lower variance.
    # 400 draws at K = 10: the difference of the two means is compared with 4 of its standard
    # errors (a false alarm probability below 1e-4 per entry, 24 entries), and the variance
    # ratio measured here is ~10x, far from the 1x that the test demands to beat.
    model, x = normal_normal
    guide = LocalGaussianGuide(model, x, shift=0.4, stretch=1.3)
    iwae = guide_gradients("iwae", model, guide, x, 400, num_particles=10)
    dreg = guide_gradients("dreg", model, guide, x, 400, num_particles=10)
    difference = iwae.mean(0) - dreg.mean(0)
    standard_error = ((iwae.var(0) + dreg.var(0)) / len(iwae)).sqrt()
    assert bool((difference.abs() < 4 * standard_error).all())
    assert dreg.var(0).sum() < 0.5 * iwae.var(0).sum()


def test_stl_is_unbiased_for_the_elbo_gradient(normal_normal):
    model, x = normal_normal
    guide = LocalGaussianGuide(model, x, shift=0.4, stretch=1.3)
    elbo = guide_gradients("elbo", model, guide, x, 400, num_particles=2)
    stl = guide_gradients("stl", model, guide, x, 400, num_particles=2)
    standard_error = ((elbo.var(0) + stl.var(0)) / len(elbo)).sqrt()
    assert bool(((elbo.mean(0) - stl.mean(0)).abs() < 4 * standard_error).all())


def test_score_function_is_unbiased_for_the_elbo_gradient(normal_normal):
    # REINFORCE with a leave-one-out baseline has the ELBO's expected gradient, with more noise:
    # 1500 draws keep its standard error small enough for a 4-sigma comparison.
    model, x = normal_normal
    guide = LocalGaussianGuide(model, x, shift=0.4, stretch=1.3)
    elbo = guide_gradients("elbo", model, guide, x, 400, num_particles=4)
    score = guide_gradients("score", model, guide, x, 1500, num_particles=4)
    standard_error = (elbo.var(0) / len(elbo) + score.var(0) / len(score)).sqrt()
    assert bool(((elbo.mean(0) - score.mean(0)).abs() < 4 * standard_error).all())
    assert score.var(0).sum() > elbo.var(0).sum()


def test_iwae_matches_pyro_renyi_on_one_datapoint(normal_normal):
    # Pyro's RenyiELBO(alpha=0) is the IWAE bound when the model has a single datapoint (with
    # several, some plate structures make it mix datapoints in one log-sum-exp). Same seed,
    # same vectorized draws: the values and the model gradients agree to float64 rounding.
    model, x = normal_normal
    x = x[:1]
    guide = LocalGaussianGuide(model, x, shift=0.4, stretch=1.3)
    ours = get("iwae", num_particles=7, max_plate_nesting=1)
    pyros = RenyiELBO(alpha=0.0, num_particles=7, vectorize_particles=True, max_plate_nesting=1)
    pyro.set_rng_seed(3)
    our_loss = ours.differentiable_loss(model.model, guide, x)
    params = [*model.parameters(), pyro.param("guide_loc").unconstrained()]
    our_grads = torch.autograd.grad(our_loss, params)
    pyro.set_rng_seed(3)
    pyro_loss = pyros.loss(model.model, guide, x)
    assert our_loss.item() == pytest.approx(pyro_loss, rel=1e-10)
    pyro.set_rng_seed(3)
    for p in params:
        p.grad = None
    pyros.loss_and_grads(model.model, guide, x)
    for p, g in zip(params, our_grads, strict=True):
        assert torch.allclose(p.grad, g, rtol=1e-8, atol=1e-10)
