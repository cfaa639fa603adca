"""The conjugate reference models: exact evidence, exact posteriors, exact ELBO identities."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from conjugate_cases import CONJUGATE, F64, total_evidence
from conjugate_cases import make_conjugate as make
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import ClippedAdam

from pyro_vi.guides import AmortizedGuide
from pyro_vi.models.conjugate import FactorAnalysis, NormalNormal

MODELS = CONJUGATE


@pytest.mark.parametrize("name", MODELS)
def test_evidence_shape(name):
    model = make(name)
    x = model.sample(6)
    expected = (6,) if model.local else ()
    assert model.log_evidence(x).shape == expected
    assert x.dtype == F64


def test_global_evidence_matches_dense_gaussian():
    # Marginally each coordinate column is N(mu0_d 1, s^2 I + s0^2 11^T): a dense check of the
    # closed form that the model computes with sufficient statistics.
    model = make("normal_normal_global")
    x = model.sample(5)
    n = len(x)
    covariance = model.noise_scale**2 * torch.eye(n, dtype=F64)
    covariance = covariance + model.prior_scale**2 * torch.ones(n, n, dtype=F64)
    dense = sum(
        dist.MultivariateNormal(model.prior_loc[d].expand(n), covariance).log_prob(x[:, d])
        for d in range(model.dim)
    )
    assert torch.allclose(model.log_evidence(x), dense, rtol=1e-12, atol=1e-10)


def test_local_evidence_matches_quadrature():
    # One dimension: integrate p(z) p(x|z) on a fine grid; the trapezoid rule on a Gaussian
    # integrand over +-12 sd with 20001 points is accurate far beyond the 1e-8 asked.
    model = NormalNormal(torch.tensor([0.4], dtype=F64), 1.3, 0.7)
    x = torch.tensor([[1.1]], dtype=F64)
    z = torch.linspace(-16, 16, 20001, dtype=F64)
    with torch.no_grad():
        # Every parameter a float64 tensor: dist.Normal(0.4, 1.3) from Python floats would hold
        # float32 parameters, whose rounding (~1e-8 relative) is the size of the tolerance.
        prior = dist.Normal(torch.tensor(0.4, dtype=F64), torch.tensor(1.3, dtype=F64))
        noise = torch.tensor(0.7, dtype=F64)
        density = (prior.log_prob(z) + dist.Normal(z, noise).log_prob(x[0, 0])).exp()
        numeric = torch.trapezoid(density, z).log()
        assert abs(float(model.log_evidence(x)[0]) - float(numeric)) < 1e-8


def test_factor_analysis_posterior_is_correlated():
    model = make("factor_analysis")
    with torch.no_grad():
        covariance = model.posterior(model.sample(1)).covariance_matrix[0]
    assert abs(float(covariance[0, 1])) > 1e-3


@pytest.mark.parametrize("num_data", [None, 40])
@pytest.mark.parametrize("name", MODELS)
def test_trace_elbo_is_exact_on_every_draw(name, num_data):
    # With q = p(z|x), log p(x, z) - log q(z|x) = log p(x) for every z: each single-sample loss
    # equals minus the evidence to float64 rounding (1e-10 on numbers of size ~100).
    model = make(name)
    x = model.sample(8)
    evidence = total_evidence(model, x, num_data).item()
    for seed in range(5):
        pyro.set_rng_seed(seed)
        loss = Trace_ELBO().loss(model.model, model.guide, x, num_data=num_data)
        assert loss == pytest.approx(-evidence, rel=1e-12, abs=1e-10)


@pytest.mark.parametrize("name", MODELS)
def test_trace_elbo_gradient_is_exact(name):
    # f(theta, z) = log p(x, z) - log q(z|x) = log p(x) identically in z and theta, so the gradient
    # of a single-sample loss w.r.t. every parameter is the gradient of the exact log evidence.
    model = make(name)
    x = model.sample(8)
    params = list(model.parameters())
    loss = Trace_ELBO().differentiable_loss(model.model, model.guide, x)
    estimated = torch.autograd.grad(loss, params)
    exact = torch.autograd.grad(-total_evidence(model, x), params)
    for got, want in zip(estimated, exact, strict=True):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", MODELS)
def test_mean_field_elbo_exact_identity_per_draw(name):
    # TraceMeanField_ELBO replaces log p(z) - log q(z) by -KL(q || p) where the KL is analytic, so
    # one draw is not exact; it differs from the exact Trace_ELBO draw by the known amount
    # sum_i [log q(z_i) - log p(z_i) - KL_i], computed here from the same z.
    model = make(name)
    x = model.sample(8)
    evidence = total_evidence(model, x).item()
    for seed in range(3):
        pyro.set_rng_seed(seed)
        guide_trace = pyro.poutine.trace(model.guide).get_trace(x)
        model_trace = pyro.poutine.trace(
            pyro.poutine.replay(model.model, trace=guide_trace)
        ).get_trace(x)
        q = guide_trace.nodes["z"]["fn"]
        p = model_trace.nodes["z"]["fn"]
        z = guide_trace.nodes["z"]["value"]
        try:
            kl = torch.distributions.kl_divergence(q, p)
            correction = (q.log_prob(z) - p.log_prob(z) - kl).sum().item()
        except NotImplementedError:  # no analytic KL registered: Pyro falls back to Monte Carlo
            correction = 0.0
        pyro.set_rng_seed(seed)
        loss = TraceMeanField_ELBO().loss(model.model, model.guide, x)
        assert loss == pytest.approx(-evidence - correction, rel=1e-12, abs=1e-10)


@pytest.mark.parametrize("name", MODELS)
def test_mean_field_elbo_is_exact_in_expectation(name):
    model = make(name)
    x = model.sample(8)
    evidence = total_evidence(model, x).item()
    losses = torch.tensor(
        [TraceMeanField_ELBO().loss(model.model, model.guide, x) for _ in range(400)], dtype=F64
    )
    # The mean of 400 draws is within 5 standard errors of -log p(x) with probability > 0.9999.
    standard_error = float(losses.std()) / math.sqrt(len(losses)) + 1e-12
    assert abs(float(losses.mean()) + evidence) < 5 * standard_error


def test_amortized_guide_recovers_posterior_by_svi():
    # A linear encoder can represent the exact posterior of NormalNormal (mean linear in x, scale
    # constant), so SVI should find it. Tolerances: the learning rate decays from 0.05 to ~0.0025
    # over 3000 steps, after which the gradient noise of 4-particle Trace_ELBO leaves errors of
    # ~1e-2 in mean and scale; 0.05 is five times that.
    model = NormalNormal(torch.tensor([0.5, -1.0], dtype=F64), 1.5, 0.8)
    x = model.sample(200)
    guide = AmortizedGuide(model.model, torch.nn.Identity(), "diagonal")
    svi = SVI(
        model.model,
        guide,
        ClippedAdam({"lr": 0.05, "lrd": 0.999}),
        Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1),
    )
    for _ in range(3000):
        svi.step(x)
    with torch.no_grad():
        (site,) = guide.structure.sites
        fitted, exact = guide.posterior(site, guide.context(x)), model.posterior(x)
        assert float((fitted.mean - exact.mean).abs().max()) < 0.05
        scale_error = (fitted.base_dist.scale / exact.base_dist.scale - 1).abs().max()
        assert float(scale_error) < 0.05
        elbo = -Trace_ELBO(num_particles=200, vectorize_particles=True, max_plate_nesting=1).loss(
            model.model, guide, x
        )
        gap = (model.log_evidence(x).sum().item() - elbo) / len(x)
        # The ELBO is below log p(x), and by under 0.01 nats per datapoint once fitted.
        assert -0.01 < gap < 0.01


@pytest.mark.parametrize("name", MODELS)
def test_rejects_data_of_the_wrong_shape(name):
    model = make(name)
    with pytest.raises(ValueError, match="x must have shape"):
        model.log_evidence(torch.zeros(4, 7, dtype=F64))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        model.posterior([[1.0, 2.0, 3.0]])


def test_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="prior_scale"):
        NormalNormal([0.0, 0.0], prior_scale=-1.0)
    with pytest.raises(ValueError, match="prior_loc must be a non-empty vector"):
        NormalNormal(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="weight must be a matrix"):
        FactorAnalysis(torch.zeros(3))
    with pytest.raises(ValueError, match="noise_variance must be positive"):
        FactorAnalysis(torch.ones(3, 2), noise_variance=torch.tensor([1.0, -1.0, 1.0]))
