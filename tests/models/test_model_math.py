"""Regression tests from a review of the models' math against independent float64 computations.

The bugs they pin: a learned scale (or inverse dispersion) that started at infinity, integer or
other-dtype data that crashed deep in torch, data of a shape the decoder does not produce (scored
by broadcasting every x_j against every z_i instead of refused), and a conjugate model's sampler
that ignored its device. Two guards go with them: the new shape check leaves particle dimensions
and the categorical likelihood's layout alone, and the learned Gaussian scale keeps its floor.
"""

import math

import pyro
import pytest
import torch
from pyro import poutine
from torch.nn.functional import softplus

from pyro_vi.architectures import mlp_vae
from pyro_vi.models import (
    VAE,
    VQVAE,
    Autoencoder,
    ConditionalVAE,
    HierarchicalVAE,
    SigmoidBeliefNet,
)
from pyro_vi.models.conjugate import FactorAnalysis
from pyro_vi.models.likelihoods import (
    CategoricalLikelihood,
    GaussianLikelihood,
    NegativeBinomialLikelihood,
    make_likelihood,
)
from pyro_vi.models.priors import MixturePrior
from pyro_vi.nets import MLPDecoder

F64 = torch.float64


@pytest.mark.parametrize("init", [0.5, 20.0, 100.0, 1e4])
def test_learned_scale_and_dispersion_start_where_asked(init):
    # softplus^-1(y) was log(expm1(y)) in float32, which is inf for y > ~88.7: the scale (or r)
    # then started at inf, and every log-density was -inf or nan.
    gaussian = GaussianLikelihood((3,), init_scale=init)
    negative_binomial = NegativeBinomialLikelihood((3,), init_total_count=init)
    for value in (gaussian.scale, negative_binomial.total_count):
        assert torch.isfinite(value).all()
        # float32 parameters: the round trip softplus(softplus^-1(y)) is exact to a few ulps.
        assert value.detach().double() == pytest.approx(torch.full((3,), init, dtype=F64), rel=1e-5)


def _tiny_models(likelihood, data_shape):
    params_shape = make_likelihood(likelihood, data_shape).params_shape(data_shape)
    return {
        "vae": VAE(MLPDecoder(3, [4], params_shape), 3, likelihood, data_shape),
        "vae_mixture": VAE(
            MLPDecoder(3, [4], params_shape), 3, likelihood, data_shape, prior=MixturePrior(3)
        ),
        "hierarchical": HierarchicalVAE(
            MLPDecoder(3, [4], params_shape),
            (3, 2),
            (4,),
            likelihood=likelihood,
            data_shape=data_shape,
        ),
        "sbn": SigmoidBeliefNet(MLPDecoder(3, [4], params_shape), 3, likelihood, data_shape),
        "sbn_concrete": SigmoidBeliefNet(
            MLPDecoder(3, [4], params_shape), 3, likelihood, data_shape, relaxation="concrete"
        ),
    }


@pytest.mark.parametrize("likelihood", ["poisson", "negative_binomial", "bernoulli"])
def test_integer_data_runs_the_model_from_its_prior(likelihood):
    # The counts likelihoods accept integer counts, but the prior was built "like x": a long
    # N(0, 1) (or long mixture/Bernoulli logits) failed in torch's normal kernel.
    x = torch.tensor([[0, 1, 1, 0], [1, 0, 1, 1]])
    for name, model in _tiny_models(likelihood, (4,)).items():
        trace = poutine.trace(model).get_trace(x)
        trace.compute_log_prob()
        latent = "z2" if name == "hierarchical" else "z"
        assert trace.nodes[latent]["value"].dtype == torch.float32, name
        assert torch.isfinite(trace.log_prob_sum()), name


def test_the_latents_take_the_models_dtype_not_the_datas():
    # float64 data (what numpy gives) with a float32 model, and the reverse: the prior drew z in
    # the data's dtype and the decoder's matmul failed on the mismatch.
    for model_dtype, data_dtype in [(torch.float32, F64), (F64, torch.float32)]:
        x = torch.bernoulli(torch.full((2, 4), 0.5, dtype=data_dtype))
        for name, model in _tiny_models("bernoulli", (4,)).items():
            model.to(model_dtype)
            trace = poutine.trace(model).get_trace(x)
            latent = "z2" if name == "hierarchical" else "z"
            assert trace.nodes[latent]["value"].dtype == model_dtype, name


def test_a_vae_trains_on_integer_counts_and_scores_them_like_float_counts():
    pyro.set_rng_seed(0)
    counts = torch.poisson(torch.full((6, 5), 2.0))
    model, guide = mlp_vae((5,), 2, hidden=[4], likelihood="poisson")
    guide_trace = poutine.trace(guide).get_trace(counts.long())
    as_long = poutine.trace(poutine.replay(model, guide_trace)).get_trace(counts.long())
    as_float = poutine.trace(poutine.replay(model, guide_trace)).get_trace(counts)
    assert torch.equal(as_long.log_prob_sum(), as_float.log_prob_sum())


@pytest.mark.parametrize("likelihood", ["bernoulli", "bernoulli_grey", "continuous_bernoulli"])
def test_logit_likelihoods_score_integer_values_like_floats(likelihood):
    # binary_cross_entropy_with_logits refused a long target ("result type Float can't be cast").
    logits = torch.randn(3, 4, dtype=F64)
    values = torch.tensor([[0, 1, 1, 0]] * 3)
    fn = make_likelihood(likelihood, (4,))(logits, 1)
    assert torch.equal(fn.log_prob(values), fn.log_prob(values.to(F64)))


def _every_model_kind(data_shape):
    return {
        "vae": VAE(MLPDecoder(3, [4], data_shape), 3),
        "conditional": ConditionalVAE(MLPDecoder(5, [4], data_shape), 3, 2),
        "hierarchical": HierarchicalVAE(MLPDecoder(3, [4], data_shape), (3, 2), (4,)),
        "sbn": SigmoidBeliefNet(MLPDecoder(3, [4], data_shape), 3),
        "autoencoder": Autoencoder(MLPDecoder(3, [4], data_shape), 3),
        "vq_vae": VQVAE(MLPDecoder(6, [4], data_shape), 4, 2, 3),
    }


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("shape", [(4, 4), (16,), (1, 4, 4, 1)], ids=["no-channel", "flat", "5d"])
def test_data_the_decoder_does_not_produce_is_refused_by_name(shape, batch):
    # Images [N, 4, 4] for a decoder of (1, 4, 4) were broadcast against its [N, 1, 4, 4]
    # output: the site "x" scored log p(x_j | z_i) for every pair (i, j), a [N, N] log-density
    # whose sum is a plausible wrong number; flat data failed inside Pyro's plate.
    x = torch.bernoulli(torch.full((batch, *shape), 0.5))
    for name, model in _every_model_kind((1, 4, 4)).items():
        args = (x, torch.zeros(batch, dtype=torch.long)) if name == "conditional" else (x,)
        # The autoencoder's flat "prior" cannot be sampled: give it a code.
        code = {"z": torch.zeros(batch, 3)} if name == "autoencoder" else {}
        with pytest.raises(ValueError, match=r"x holds datapoints of shape .* decoder"):
            poutine.trace(poutine.condition(model, data=code)).get_trace(*args)


def test_the_shape_check_leaves_particles_and_the_categorical_layout_alone():
    x = torch.randint(0, 3, (5, 1, 4, 4)).float() / 2
    model = VAE(MLPDecoder(3, [4], (3, 4, 4)), 3, CategoricalLikelihood(3))
    z = torch.randn(7, 5, 3)  # seven particles of a batch of five
    trace = poutine.trace(poutine.condition(model, data={"z": z})).get_trace(x)
    assert trace.nodes["x"]["fn"].batch_shape == (7, 5)


def test_factor_analysis_samples_on_its_own_device():
    # sample() drew with torch.randn on the default (CPU) device: a model moved to another
    # device failed in the matmul. The meta device stands in for CUDA on a CPU-only machine.
    model = FactorAnalysis(torch.randn(4, 2, dtype=F64)).to("meta")
    draws = model.sample(3)
    assert draws.device.type == "meta" and draws.shape == (3, 4) and draws.dtype == F64


def test_learned_scale_floor_and_gaussian_density():
    # The learned scale is min_scale + softplus(s) >= min_scale, and the density is N(mu, s^2).
    likelihood = GaussianLikelihood((2,), init_scale=0.5, min_scale=0.01).double()
    with torch.no_grad():
        likelihood.raw_scale.fill_(-800.0)  # softplus underflows to 0: the floor remains
    assert torch.equal(likelihood.scale, torch.full((2,), 0.01, dtype=F64))
    mean, x = torch.tensor([0.3, -1.0], dtype=F64), torch.tensor([0.31, -1.02], dtype=F64)
    expected = sum(
        -0.5 * ((v - m) / 0.01) ** 2 - math.log(0.01) - 0.5 * math.log(2 * math.pi)
        for v, m in zip(x.tolist(), mean.tolist(), strict=True)
    )
    assert float(likelihood(mean, 1).log_prob(x).detach()) == pytest.approx(expected, rel=1e-13)
    assert float(softplus(torch.tensor(-800.0, dtype=F64))) == 0.0


def test_the_categorical_grid_check_holds_with_many_levels():
    # A tolerance of 1e-4 in data units exceeds half the grid's spacing above ~5,000 levels:
    # any data passed and was rounded to levels.
    from pyro_vi.models.likelihoods import CategoricalLikelihood

    with pytest.raises(ValueError):
        CategoricalLikelihood(65536).check_data(torch.tensor([0.123456789, 0.5, 0.25, 0.75]))
    CategoricalLikelihood(65536).check_data(torch.tensor([0.0, 1.0, 21845 / 65535]))
