"""Bad input: each a clear error at construction or at the first call, naming what is wrong."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vi.estimators import get


def test_unknown_name_and_option():
    with pytest.raises(ValueError, match=r"unknown estimator 'iwea'.*'iwae'"):
        get("iwea")
    with pytest.raises(ValueError, match=r"takes no option 'alpha'.*num_particles"):
        get("iwae", alpha=0.5)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("iwae", {"num_particles": 0}, "num_particles must be an integer >= 1, got 0"),
        ("elbo", {"num_particles": 2.5}, "num_particles must be an integer"),
        ("ciwae", {"beta": 1.5}, "beta must be <= 1.0, got 1.5"),
        ("ciwae", {"beta": -0.1}, "beta must be >= 0.0"),
        ("miwae", {"num_outer": 0}, "num_outer must be an integer >= 1"),
        ("renyi", {"alpha": float("nan")}, "alpha must be finite"),
    ],
)
def test_bad_options(name, options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        get(name, **options)


def discrete_pair():
    def model(x):
        with pyro.plate("data", len(x)):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(c, 1.0), obs=x)

    def guide(x):
        probs = pyro.param(
            "probs", torch.full((len(x),), 0.5), constraint=dist.constraints.unit_interval
        )
        with pyro.plate("data", len(x)):
            pyro.sample("c", dist.Bernoulli(probs))

    return model, guide


@pytest.mark.parametrize("name", ["dreg", "stl"])
def test_reparameterization_is_required(name):
    # The refusal names the site and the estimators that take it.
    model, guide = discrete_pair()
    with pytest.raises(
        ValueError, match=rf"'{name}' estimator needs reparameterized.*site 'c'.*'iwae'.*'vimco'"
    ):
        get(name).loss(model, guide, torch.randn(4))


@pytest.mark.parametrize("name", ["elbo", "score"])
def test_score_function_estimators_take_discrete_latents(name):
    model, guide = discrete_pair()
    loss = get(name, num_particles=3).differentiable_loss(model, guide, torch.randn(4))
    loss.backward()
    assert pyro.param("probs").unconstrained().grad.abs().sum() > 0


def test_sites_must_match():
    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide_missing(x):
        pass

    def guide_extra(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("w", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="the model samples latent site 'z' but the guide"):
        get("iwae").loss(model, guide_missing, torch.randn(3))
    with pytest.raises(ValueError, match="the guide samples site 'w' but the model has no site"):
        get("iwae").loss(model, guide_extra, torch.randn(3))


def test_unknown_data_plate_is_named():
    def model(x):
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)

    with pytest.raises(ValueError, match="data_plate='batch' is not a plate"):
        get("elbo", data_plate="batch").loss(model, lambda x: None, torch.randn(3))
