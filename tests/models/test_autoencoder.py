"""The plain autoencoder pair: its loss is the reconstruction NLL, and it has no prior."""

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch.nn.functional import binary_cross_entropy_with_logits

from pyro_vi import estimators
from pyro_vi.models.autoencoder import (
    Autoencoder,
    AutoencoderGuide,
    DeterministicEncoder,
    FlatPrior,
    NoPriorError,
)
from pyro_vi.nets import MLPDecoder, MLPEncoder
from pyro_vi.report import sample_prior

SHAPE = (1, 4, 4)
LATENT_DIM = 3


def binary(n=8, dtype=torch.float32):
    return torch.bernoulli(torch.full((n, *SHAPE), 0.3, dtype=dtype))


def ae_pair(dtype=torch.float32):
    model = Autoencoder(MLPDecoder(LATENT_DIM, [8], SHAPE), LATENT_DIM).to(dtype)
    guide = AutoencoderGuide(MLPEncoder(SHAPE, [8]), LATENT_DIM).to(dtype)
    return model, guide


def reconstruction_nll(model, guide, x):
    """-log p(x | z = enc(x)), summed over the batch, from the definitions."""
    logits = model.decoder(guide.encode(x))
    return float(binary_cross_entropy_with_logits(logits, x, reduction="sum").detach())


@pytest.mark.parametrize("loss", ["estimator", "pyro"])
def test_loss_is_exactly_the_reconstruction_nll(loss):
    model, guide = ae_pair(torch.float64)
    x = binary(dtype=torch.float64)
    elbo = estimators.get("elbo") if loss == "estimator" else Trace_ELBO()
    # float64; log p(z) = log q(z | x) = 0, so only summation order differs (~1e-13).
    assert elbo.loss(model, guide, x) == pytest.approx(
        reconstruction_nll(model, guide, x), abs=1e-10
    )


def test_sites_live_in_the_data_plate():
    model, guide = ae_pair()
    x = binary()
    guide_trace = pyro.poutine.trace(guide).get_trace(x)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(model, guide_trace)).get_trace(x)
    assert torch.equal(guide_trace.nodes["z"]["value"], guide.encode(x))
    assert isinstance(model_trace.nodes["z"]["fn"], FlatPrior)
    for trace in (guide_trace, model_trace):
        assert [f.name for f in trace.nodes["z"]["cond_indep_stack"]] == ["data"]


def test_sample_prior_raises_no_prior_error():
    model, _ = ae_pair()
    with pytest.raises(NoPriorError, match="an autoencoder has no prior to sample from"):
        sample_prior(model, binary())
    assert issubclass(NoPriorError, NotImplementedError)


def test_flat_prior_log_density_is_zero_like_the_value():
    prior = FlatPrior(pyro.distributions.constraints.real, (), (LATENT_DIM,)).expand([4])
    log_prob = prior.log_prob(torch.randn(2, 4, LATENT_DIM, dtype=torch.float64))
    assert log_prob.shape == (2, 4) and log_prob.dtype == torch.float64 and not log_prob.any()


def test_training_lowers_the_reconstruction_loss():
    model, guide = ae_pair()
    x = binary(16)
    svi = SVI(model, guide, Adam({"lr": 3e-2}), Trace_ELBO())
    first = svi.evaluate_loss(x)
    for _ in range(40):
        svi.step(x)
    # The loss starts near 16 * 16 * log 2 = 177 nats and about halves in 40 steps (seeds 0-4:
    # to 64-96 nats), so asking for a 10% drop leaves a wide margin.
    assert svi.evaluate_loss(x) < 0.9 * first


def test_deterministic_encoder_is_the_guide():
    assert DeterministicEncoder is AutoencoderGuide


def test_bad_arguments():
    with pytest.raises(TypeError, match="decoder must be a torch.nn.Module"):
        Autoencoder("decoder", LATENT_DIM, data_shape=SHAPE)
    with pytest.raises(ValueError, match="latent_dim must be an integer >= 1"):
        Autoencoder(MLPDecoder(LATENT_DIM, [8], SHAPE), 0)
    with pytest.raises(ValueError, match="data_shape is needed"):
        Autoencoder(torch.nn.Linear(LATENT_DIM, 16), LATENT_DIM)
    with pytest.raises(TypeError, match="encoder must be a torch.nn.Module"):
        AutoencoderGuide("encoder", LATENT_DIM)
    with pytest.raises(ValueError, match="features is needed"):
        AutoencoderGuide(torch.nn.Flatten(), LATENT_DIM)
    model, _ = ae_pair()
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        model([0.0, 1.0])
