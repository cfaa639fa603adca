"""Evaluation on user-written programs: exact answers where they are known, clear refusals of
data it cannot score (each refusal was an error deep in torch or Pyro before)."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vi.evaluation import active_units, log_likelihood, refine
from pyro_vi.guides.amortized import AmortizedGuide

LATENT, FEATURES, NOISE = 2, 3, 0.7
_generator = torch.Generator().manual_seed(0)
W = torch.randn(FEATURES, LATENT, generator=_generator, dtype=torch.float64)
B = torch.randn(FEATURES, generator=_generator, dtype=torch.float64)
X = 2 * torch.randn(30, FEATURES, generator=_generator, dtype=torch.float64)


def model(x):
    # The data plate at dim -2, an inner feature plate for the observations, a name not "data".
    with pyro.plate("rows", x.shape[0], dim=-2):
        z = pyro.sample("z", dist.Normal(torch.zeros(LATENT, dtype=x.dtype), 1.0).to_event(1))
        with pyro.plate("features", FEATURES, dim=-1):
            pyro.sample("x", dist.Normal((z @ W.T + B).squeeze(-2), NOISE), obs=x)


def exact_guide(x):
    precision = torch.eye(LATENT, dtype=x.dtype) + W.T @ W / NOISE**2
    covariance = torch.linalg.inv(precision)
    mean = (covariance @ W.T @ (x - B).T).T / NOISE**2
    with pyro.plate("rows", x.shape[0], dim=-2):
        pyro.sample("z", dist.MultivariateNormal(mean.unsqueeze(-2), covariance))


def test_log_likelihood_is_exact_with_the_exact_posterior():
    # With q the exact posterior every weight equals p(x_i): any S, chunking or batching gives
    # log p(x_i) up to float64 rounding.
    evidence = dist.MultivariateNormal(
        B, W @ W.T + NOISE**2 * torch.eye(FEATURES, dtype=X.dtype)
    ).log_prob(X)
    estimate = log_likelihood(model, exact_guide, X, num_samples=7, chunk_size=3, batch_size=11)
    assert torch.allclose(estimate, evidence, rtol=0, atol=1e-10)


@pytest.mark.parametrize("evaluate", ["log_likelihood", "active_units", "refine"])
def test_empty_or_non_finite_data_is_refused(evaluate):
    guide = AmortizedGuide(model, [8])
    run = {
        "log_likelihood": lambda x: log_likelihood(model, guide, x, num_samples=3),
        "active_units": lambda x: active_units(model, guide, x),
        "refine": lambda x: refine(model, guide, x, num_steps=1),
    }[evaluate]
    with pytest.raises(ValueError, match="argument 0 has no datapoints"):
        run(X[:0])
    bad = X.clone()
    bad[4, 2] = float("nan")
    with pytest.raises(ValueError, match=r"argument 0 holds 1 NaN .* index \[4, 2\]"):
        run(bad)
