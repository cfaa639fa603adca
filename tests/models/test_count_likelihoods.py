"""Poisson and negative-binomial likelihoods for tables of counts: densities against torch's, the
learned inverse dispersion, integer data, the data check, and a VAE on a [N, D] table."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vi.architectures import mlp_vae
from pyro_vi.models import NegativeBinomialLikelihood, PoissonLikelihood
from pyro_vi.models.likelihoods import likelihood_options, make_likelihood
from pyro_vi.train import fit

F64 = torch.float64


def test_poisson_is_torchs_poisson_of_exp_log_rate():
    log_rate = torch.randn(3, 5, 7, dtype=F64)
    x = torch.poisson(torch.full((5, 7), 4.0, dtype=F64))
    ours = make_likelihood("poisson", (7,))(log_rate, 1)
    reference = dist.Poisson(log_rate.exp()).to_event(1)
    # Exact identities in float64: only rounding separates the two sides.
    assert torch.allclose(ours.log_prob(x), reference.log_prob(x), rtol=1e-12)
    assert torch.allclose(ours.mean, log_rate.exp()) and torch.allclose(ours.variance, ours.mean)


@pytest.mark.parametrize("total_count", [0.3, 2.5, 1e3])
def test_negative_binomial_is_torchs_with_mean_exp_log_rate(total_count):
    log_rate = torch.randn(2, 4, 6, dtype=F64)
    x = torch.poisson(torch.full((4, 6), 3.0, dtype=F64))
    ours = make_likelihood("negative_binomial", (6,), total_count=total_count)(log_rate, 1)
    # torch's NegativeBinomial(r, logits) has mean r * exp(logits): logits = l - log r.
    r = torch.tensor(total_count, dtype=F64)
    reference = dist.NegativeBinomial(r, logits=log_rate - r.log()).to_event(1)
    assert torch.allclose(ours.log_prob(x), reference.log_prob(x), rtol=1e-10)
    mean = log_rate.exp()
    assert torch.allclose(ours.mean, mean) and torch.allclose(ours.variance, mean + mean**2 / r)


def test_negative_binomial_stays_finite_at_extreme_log_rates():
    fn = make_likelihood("negative_binomial", (3,), total_count=2.0)(
        torch.tensor([[-80.0, 0.0, 80.0]]), 1
    )
    assert torch.isfinite(fn.log_prob(torch.tensor([[0.0, 3.0, 1e6]]))).all()


def test_learned_inverse_dispersion_per_feature():
    likelihood = make_likelihood("negative_binomial", (5,))
    assert isinstance(likelihood, NegativeBinomialLikelihood)
    assert [p.shape for p in likelihood.parameters()] == [(5,)]
    assert torch.allclose(likelihood.total_count, torch.ones(5))  # starts at r = 1
    assert list(make_likelihood("negative_binomial", (5,), total_count=3.0).parameters()) == []
    assert likelihood_options("negative_binomial") == {"total_count": None}
    assert likelihood_options("poisson") == {}
    with pytest.raises(ValueError, match="total_count must be > 0"):
        make_likelihood("negative_binomial", (5,), total_count=0.0)


@pytest.mark.parametrize("name", ["poisson", "negative_binomial"])
def test_integer_counts_score_like_float_counts(name):
    fn = make_likelihood(name, (4,), **({"total_count": 2.0} if name != "poisson" else {}))(
        torch.randn(3, 4), 1
    )
    counts = torch.randint(0, 9, (3, 4))
    assert torch.equal(fn.log_prob(counts), fn.log_prob(counts.float()))
    draws = fn.sample((2,))
    assert draws.shape == (2, 3, 4) and bool((draws == draws.round()).all())


@pytest.mark.parametrize("name", ["poisson", "negative_binomial"])
@pytest.mark.parametrize(
    ("values", "bad"),
    [([0.0, 1.5], "1.5"), ([0.0, -1.0], "-1"), ([1.0, math.nan], "nan")],
    ids=["fraction", "negative", "nan"],
)
def test_the_data_must_be_counts(name, values, bad):
    with pytest.raises(ValueError, match=f"needs counts \\(integers >= 0\\), got the value {bad}"):
        make_likelihood(name, (2,)).check_data(torch.tensor([values]))
    make_likelihood(name, (2,)).check_data(torch.tensor([[0, 3]]))  # int64 counts are fine


def test_a_vae_on_a_table_of_counts_trains():
    pyro.set_rng_seed(0)
    rates = torch.rand(200, 1) * torch.linspace(1.0, 8.0, 10)  # rank one
    counts = torch.poisson(rates)
    model, guide = mlp_vae((10,), 2, (32,), likelihood="negative_binomial")
    history = fit(
        model, guide, counts, test_data=counts[:50], epochs=5, batch_size=50, progress=False
    )
    assert history.train_loss[-1] < history.train_loss[0]
    assert isinstance(make_likelihood("poisson", (10,)), PoissonLikelihood)
