"""The VAE model as a Pyro callable: shapes, Pyro interplay, likelihoods, parameter hygiene."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import Adam

from pyro_vi.architectures import conv_vae, iwae_mlp_vae, mlp_vae
from pyro_vi.models.likelihoods import (
    BernoulliImage,
    BernoulliLikelihood,
    CategoricalLikelihood,
    GaussianLikelihood,
)
from pyro_vi.models.priors import MixturePrior, StandardNormalPrior
from pyro_vi.models.vae import VAE
from pyro_vi.nets import MLPDecoder

SHAPE = (1, 8, 8)


def binary(n=10, shape=SHAPE):
    return torch.bernoulli(torch.full((n, *shape), 0.3))


@pytest.mark.parametrize("build", [mlp_vae, conv_vae], ids=["mlp", "conv"])
def test_sites_and_shapes(build):
    model, guide = build(SHAPE, latent_dim=4)
    x = binary()
    guide_trace = pyro.poutine.trace(guide).get_trace(x)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(model, guide_trace)).get_trace(x)
    assert guide_trace.nodes["z"]["value"].shape == (10, 4)
    assert model_trace.nodes["x"]["fn"].event_shape == SHAPE
    assert model_trace.nodes["x"]["is_observed"]
    for trace in (guide_trace, model_trace):
        assert [f.name for f in trace.nodes["z"]["cond_indep_stack"]] == ["data"]


def test_iwae_architecture_sizes():
    model, guide = iwae_mlp_vae()
    guide(torch.zeros(2, 1, 28, 28))  # the guide builds its encoder and heads at its first call
    linear = [m for m in guide.encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(784, 200), (200, 200)]
    assert guide.families["z"].loc_head.out_features == 50
    linear = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(50, 200), (200, 200), (200, 784)]
    assert isinstance(model.likelihood, BernoulliLikelihood)


@pytest.mark.parametrize(
    "loss",
    [
        Trace_ELBO(),
        TraceMeanField_ELBO(),
        Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1),
    ],
    ids=["trace", "meanfield", "vectorized"],
)
def test_svi_with_pyro_losses(loss):
    model, guide = mlp_vae(SHAPE, latent_dim=4, hidden=[16])
    svi = SVI(model, guide, Adam({"lr": 1e-2}), loss)
    x = binary(20)
    first = svi.evaluate_loss(x)
    for _ in range(30):
        svi.step(x)
    assert svi.evaluate_loss(x) < first


def test_num_data_scales_the_minibatch():
    model, guide = mlp_vae(SHAPE, latent_dim=4, hidden=[16])
    x = binary(10)
    pyro.poutine.trace(guide).get_trace(x)  # the guide builds its heads (random) at its first call
    pyro.set_rng_seed(3)
    unscaled = Trace_ELBO().loss(model, guide, x)
    pyro.set_rng_seed(3)
    scaled = Trace_ELBO().loss(model, guide, x, num_data=50)
    assert scaled == pytest.approx(5 * unscaled, rel=1e-5)


def test_predictive_and_a_hand_written_guide():
    model, _ = mlp_vae(SHAPE, latent_dim=4, hidden=[16])
    loc = torch.zeros(4, requires_grad=True)

    def my_guide(x, num_data=None):  # a user's own guide, with a pyro.param
        mean = pyro.param("my_loc", torch.zeros(4))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(mean, 1.0).to_event(1))

    x = binary(6)
    svi = SVI(model, my_guide, Adam({"lr": 1e-2}), Trace_ELBO())
    svi.step(x)
    assert "my_loc" in pyro.get_param_store()
    samples = Predictive(model, guide=my_guide, num_samples=3, return_sites=["z", "x"])(x)
    assert samples["z"].shape == (3, 6, 4)
    del loc


def test_hand_written_model_with_our_guide():
    _, guide = mlp_vae(SHAPE, latent_dim=4, hidden=[16])
    decoder = MLPDecoder(4, [16], SHAPE)

    def my_model(x):
        pyro.module("my_decoder", decoder)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(4), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(3), obs=x)

    loss = SVI(my_model, guide, Adam({"lr": 1e-2}), Trace_ELBO()).step(binary(5))
    assert loss > 0


def test_two_instances_do_not_share_parameters():
    # Pyro's global param store keys PyroModule parameters by name; each of our modules has a name
    # of its own, so training one model must leave another of the same class untouched.
    first, first_guide = mlp_vae(SHAPE, latent_dim=4, hidden=[16])
    second, second_guide = mlp_vae(SHAPE, latent_dim=3, hidden=[8])
    before = [p.detach().clone() for p in second.parameters()]
    svi = SVI(first, first_guide, Adam({"lr": 1e-1}), Trace_ELBO())
    for _ in range(3):
        svi.step(binary())
    SVI(second, second_guide, Adam({"lr": 1e-1}), Trace_ELBO()).evaluate_loss(binary())
    assert all(torch.equal(a, b) for a, b in zip(before, second.parameters(), strict=True))


def test_bernoulli_rejects_grey_data_with_a_clear_error():
    model, guide = mlp_vae(SHAPE, latent_dim=4, hidden=[16])
    with pytest.raises(ValueError, match="binary data"):
        Trace_ELBO().loss(model, guide, torch.full((3, *SHAPE), 0.5))


def test_bernoulli_grey_accepts_unit_interval_only():
    model, guide = mlp_vae(SHAPE, latent_dim=4, hidden=[16], likelihood="bernoulli_grey")
    assert Trace_ELBO().loss(model, guide, torch.full((3, *SHAPE), 0.5)) > 0
    model, guide = mlp_vae(SHAPE, latent_dim=4, hidden=[16], likelihood="bernoulli_grey")
    with pytest.raises(ValueError, match=r"data in \[0, 1\]"):
        Trace_ELBO().loss(model, guide, torch.full((3, *SHAPE), 2.0))


def test_gaussian_likelihood_learns_per_pixel_scale():
    model, guide = mlp_vae(SHAPE, latent_dim=4, hidden=[16], likelihood="gaussian")
    assert isinstance(model.likelihood, GaussianLikelihood)
    assert model.likelihood.scale.shape == SHAPE
    assert torch.allclose(model.likelihood.scale, torch.ones(SHAPE))
    svi = SVI(model, guide, Adam({"lr": 5e-2}), Trace_ELBO())
    x = torch.rand(20, *SHAPE) * 0.1
    for _ in range(50):
        svi.step(x)
    # Data of spread ~0.03 pulls the unit initial scale down.
    assert model.likelihood.scale.max().item() < 0.9


def test_bad_arguments():
    with pytest.raises(TypeError, match="decoder must be a torch.nn.Module"):
        VAE("decoder", 4, data_shape=SHAPE)
    with pytest.raises(ValueError, match="unknown likelihood 'laplace'"):
        mlp_vae(SHAPE, likelihood="laplace")
    with pytest.raises(ValueError, match="latent_dim"):
        mlp_vae(SHAPE, latent_dim=0)
    with pytest.raises(ValueError, match="activation must be one of"):
        mlp_vae(SHAPE, activation="sigmoidish")
    model, _ = mlp_vae(SHAPE)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        model([0.0, 1.0])


@pytest.mark.parametrize("build", [mlp_vae, conv_vae], ids=["mlp", "conv"])
def test_categorical_likelihood_gets_a_decoder_of_its_width(build):
    # One logit per grey level: the decoder outputs (C * L, H, W), not the data's shape.
    model, guide = build(SHAPE, latent_dim=2, likelihood="categorical")
    x = torch.randint(256, (4, *SHAPE)).float() / 255
    assert torch.isfinite(torch.tensor(Trace_ELBO().loss(model, guide, x)))
    assert isinstance(model.likelihood, CategoricalLikelihood)


def test_bernoulli_image_matches_torch_bernoulli():
    logits = torch.randn(4, 3, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    x = torch.bernoulli(torch.full((3, 1, 5, 5), 0.4, dtype=torch.float64))
    ours = BernoulliImage(logits, 3)
    reference = dist.Bernoulli(logits=logits).to_event(3)
    assert ours.batch_shape == (4, 3) and ours.event_shape == (1, 5, 5)
    assert torch.allclose(ours.log_prob(x), reference.log_prob(x), rtol=1e-12)
    g1 = torch.autograd.grad(ours.log_prob(x).sum(), logits)[0]
    g2 = torch.autograd.grad(reference.log_prob(x).sum(), logits)[0]
    assert torch.allclose(g1, g2, rtol=1e-12)
    assert torch.allclose(ours.mean, reference.mean)
    assert ours.sample((2,)).shape == (2, 4, 3, 1, 5, 5)
    expanded = BernoulliImage(logits[0], 3).expand([6, 3])
    assert expanded.log_prob(x).shape == (6, 3)


def test_prior_argument_keeps_the_standard_normal_by_default():
    decoder = MLPDecoder(4, [16], SHAPE)
    x = binary(5).double()
    for prior in (None, "standard_normal", StandardNormalPrior(4)):
        model = VAE(decoder, 4, data_shape=SHAPE, prior=prior).double()
        assert isinstance(model.prior, StandardNormalPrior)
        trace = pyro.poutine.trace(model).get_trace(x)
        z = trace.nodes["z"]["value"]
        # Exact identity in float64: the prior of "z" is N(0, I).
        expected = dist.Normal(torch.zeros_like(z), 1.0).log_prob(z).sum(-1)
        assert torch.allclose(trace.nodes["z"]["fn"].log_prob(z), expected, rtol=1e-12)
    model = VAE(decoder, 4, data_shape=SHAPE, prior="mixture")
    assert isinstance(model.prior, MixturePrior) and model.prior.latent_dim == 4
    with pytest.raises(ValueError, match="prior is over 3 dimensions"):
        VAE(decoder, 4, data_shape=SHAPE, prior=MixturePrior(3))
    with pytest.raises(TypeError, match="prior must be a Prior"):
        VAE(decoder, 4, data_shape=SHAPE, prior=3)


def test_likelihood_with_its_own_params_shape():
    # A categorical decoder outputs L logits per pixel: the VAE passes its output through.
    likelihood = CategoricalLikelihood(num_levels=5)
    decoder = MLPDecoder(4, [16], likelihood.params_shape(SHAPE))
    model = VAE(decoder, 4, likelihood)
    x = torch.randint(0, 5, (6, *SHAPE)) / 4
    trace = pyro.poutine.trace(model).get_trace(x)
    assert trace.nodes["x"]["fn"].event_shape == SHAPE
    assert trace.nodes["x"]["fn"].mean.shape == (6, *SHAPE)
    with pytest.raises(ValueError, match="needs data on the grid k/4"):
        VAE(decoder, 4, likelihood)(torch.full((2, *SHAPE), 0.3))
