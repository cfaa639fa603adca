"""Priors p(z): exact densities, shapes, gradients, and a VAE trained with a mixture prior."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from pyro_vi.architectures import mlp_vae
from pyro_vi.estimators import get
from pyro_vi.guides.amortized import AmortizedGuide
from pyro_vi.models.priors import (
    PRIORS,
    MixturePrior,
    StandardNormalPrior,
    make_prior,
    prior_options,
    resolve_prior,
)
from pyro_vi.models.vae import VAE
from pyro_vi.nets import MLPDecoder

F64 = torch.float64
SHAPE = (1, 4, 4)


def hand_mixture_log_prob(prior, z):
    """log sum_c pi_c prod_d N(z_d; mu_cd, sigma_cd^2), written out with logsumexp."""
    log_pi = prior.logits - torch.logsumexp(prior.logits, 0)
    scales = prior.log_scales.exp()
    standard = (z.unsqueeze(-2) - prior.means) / scales  # [..., C, D]
    log_normal = -0.5 * standard**2 - prior.log_scales - 0.5 * math.log(2 * math.pi)
    return torch.logsumexp(log_pi + log_normal.sum(-1), dim=-1)


@pytest.mark.parametrize("name", PRIORS)
def test_contract_shapes_device_and_dtype(name):
    prior = make_prior(name, 3)
    like = torch.zeros(5, 2, dtype=F64)
    fn = prior.double()(like)
    assert fn.batch_shape == () and fn.event_shape == (3,)
    z = fn.sample((4, 5))
    assert z.shape == (4, 5, 3) and z.dtype == F64
    assert fn.log_prob(z).shape == (4, 5)
    assert fn.expand([5]).log_prob(z).shape == (4, 5)  # as in a data plate of size 5


def test_standard_normal_is_the_unit_gaussian():
    z = torch.randn(6, 3, dtype=F64)
    fn = StandardNormalPrior(3)(z)
    expected = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    assert torch.allclose(fn.log_prob(z), expected, rtol=1e-12)
    assert list(StandardNormalPrior(3).parameters()) == []


def test_mixture_log_prob_is_the_hand_logsumexp():
    prior = MixturePrior(3, num_components=4).double()
    with torch.no_grad():  # distinct weights and scales, so that every term matters
        prior.logits.copy_(torch.randn(4, dtype=F64))
        prior.log_scales.copy_(0.3 * torch.randn(4, 3, dtype=F64))
    z = 2 * torch.randn(2, 5, 3, dtype=F64)
    ours = prior(z).log_prob(z)
    # Exact identity in float64: only rounding differs.
    assert torch.allclose(ours, hand_mixture_log_prob(prior, z), rtol=1e-12)


def test_mixture_starts_spread_and_trains_every_parameter():
    prior = MixturePrior(2, num_components=10)
    assert torch.equal(prior.log_scales, torch.zeros(10, 2))
    assert torch.equal(prior.logits, torch.zeros(10))
    assert float(torch.cdist(prior.means, prior.means).max().detach()) > 1.0  # not all at one point
    z = torch.randn(7, 2)
    prior(z).log_prob(z).sum().backward()
    for name, parameter in prior.named_parameters():
        assert parameter.grad is not None and float(parameter.grad.abs().sum()) > 0, name


def test_options_and_errors():
    assert prior_options("mixture") == {"num_components": 10}
    assert prior_options("standard_normal") == {}
    assert make_prior("mixture", 4, num_components=3).means.shape == (3, 4)
    with pytest.raises(ValueError, match=r"unknown prior 'vamp'; the priors are \["):
        make_prior("vamp", 4)
    with pytest.raises(ValueError, match=r"takes no option 'components'; its options are"):
        make_prior("mixture", 4, components=3)
    with pytest.raises(ValueError, match="num_components must be an integer >= 1"):
        make_prior("mixture", 4, num_components=0)
    with pytest.raises(ValueError, match="latent_dim"):
        make_prior("standard_normal", 0)
    with pytest.raises(ValueError, match="over 3 dimensions but the model's latent has 4"):
        resolve_prior(MixturePrior(3), 4)
    with pytest.raises(TypeError, match="prior must be a Prior"):
        resolve_prior(dist.Normal(0.0, 1.0), 4)


def test_vae_prior_argument():
    decoder = MLPDecoder(4, [8], SHAPE)
    assert isinstance(VAE(decoder, 4, data_shape=SHAPE).prior, StandardNormalPrior)
    assert isinstance(
        VAE(decoder, 4, data_shape=SHAPE, prior="standard_normal").prior, StandardNormalPrior
    )
    mixture = MixturePrior(4, num_components=3)
    assert VAE(decoder, 4, data_shape=SHAPE, prior=mixture).prior is mixture
    with pytest.raises(ValueError, match="unknown prior 'flow'"):
        VAE(decoder, 4, data_shape=SHAPE, prior="flow")


@pytest.mark.parametrize(
    "estimator",
    [("elbo", {}), ("iwae", {"num_particles": 3}), ("meanfield", {})],
    ids=["elbo", "iwae", "meanfield"],
)
def test_vae_with_a_mixture_prior_trains(estimator):
    name, options = estimator
    model, guide = mlp_vae(SHAPE, latent_dim=2, hidden=[8])
    model = VAE(model.decoder, 2, model.likelihood, prior="mixture")
    x = torch.bernoulli(torch.full((10, *SHAPE), 0.4))
    before = {k: v.detach().clone() for k, v in model.prior.named_parameters()}
    svi = SVI(model, guide, Adam({"lr": 1e-2}), loss=get(name, **options))
    loss = svi.step(x, num_data=40)
    assert math.isfinite(loss)
    # The prior's parameters are in Pyro's param store and move with the step.
    for key, value in model.prior.named_parameters():
        assert not torch.equal(value, before[key]), key
    stored = " ".join(pyro.get_param_store().keys())  # names like "VAE_3.prior$$$logits"
    assert all(f"{model._pyro_name}.prior$$${k}" in stored for k in before)


def test_meanfield_falls_back_to_monte_carlo_for_the_mixture():
    # No closed-form KL(Normal || mixture) exists, so "meanfield" must compute exactly the Monte
    # Carlo ELBO: same seed, same draws, same number.
    model, guide = mlp_vae(SHAPE, latent_dim=2, hidden=[8])
    model = VAE(model.decoder, 2, model.likelihood, prior="mixture")
    x = torch.bernoulli(torch.full((10, *SHAPE), 0.4))
    pyro.set_rng_seed(1)
    elbo = get("elbo", num_particles=2).loss(model, guide, x)
    pyro.set_rng_seed(1)
    meanfield = get("meanfield", num_particles=2).loss(model, guide, x)
    assert meanfield == elbo


def test_the_automatic_guide_handles_a_mixture_prior():
    # AmortizedGuide picks each latent's transform from its support: the mixture must report
    # real vectors (torch's MixtureSameFamily reports a constraint that biject_to rejects).
    model, _ = mlp_vae(SHAPE, latent_dim=2, hidden=[8])
    model = VAE(model.decoder, 2, model.likelihood, prior="mixture")
    x = torch.bernoulli(torch.full((10, *SHAPE), 0.4))
    assert model.prior(x).expand([10]).support is dist.constraints.real_vector
    guide = AmortizedGuide(model, [8], family="diagonal")
    svi = SVI(model, guide, Adam({"lr": 1e-2}), loss=get("iwae", num_particles=2))
    assert math.isfinite(svi.step(x))
