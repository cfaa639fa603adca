"""The VQ-VAE pair: quantization, straight-through gradients, the exact bound, training with SVI."""

import math

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch.nn.functional import binary_cross_entropy_with_logits

from pyro_vi import estimators
from pyro_vi.models.vq_vae import (
    VQVAE,
    UniformCodebook,
    VQGuide,
    nearest_codes,
    perplexity,
    straight_through,
    vq_penalty,
)
from pyro_vi.nets import MLPDecoder, MLPEncoder
from pyro_vi.report import sample_prior
from pyro_vi.train import fit

SHAPE = (1, 4, 4)
NUM_CODES, CODE_DIM, NUM_LATENTS = 5, 2, 3


def binary(n=8, dtype=torch.float32):
    return torch.bernoulli(torch.full((n, *SHAPE), 0.3, dtype=dtype))


def vq_pair(commitment=0.25, dtype=torch.float32):
    decoder = MLPDecoder(NUM_LATENTS * CODE_DIM, [8], SHAPE)
    model = VQVAE(decoder, NUM_CODES, CODE_DIM, NUM_LATENTS).to(dtype)
    guide = VQGuide(model, MLPEncoder(SHAPE, [8]), commitment=commitment).to(dtype)
    return model, guide


def brute_force_codes(z_e, codebook):
    return (z_e.unsqueeze(-2) - codebook).pow(2).sum(-1).argmin(-1)


def by_hand(model, guide, x):
    """(log p(x | z_q) - n log K, ||z_e - z_q||^2) per datapoint, straight from the definitions."""
    z_e = guide.encode(x)
    z_q = model.codebook[brute_force_codes(z_e, model.codebook)]
    logits = model.decoder(z_q.flatten(-2))
    log_lik = -binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    bound = log_lik - NUM_LATENTS * math.log(NUM_CODES)
    return bound.detach(), (z_e - z_q).pow(2).sum((-2, -1)).detach()


# -- exact identities -------------------------------------------------------------------------


def test_nearest_codes_match_brute_force():
    z_e = torch.randn(6, 3, 4, dtype=torch.float64)
    codebook = torch.randn(7, 4, dtype=torch.float64)
    assert torch.equal(nearest_codes(z_e, codebook), brute_force_codes(z_e, codebook))


def test_nearest_codes_break_ties_to_the_lowest_index():
    codebook = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    # (0, 1) is equally far from all three codes; (2, 0) from codes 0 and 2 (duplicates).
    z_e = torch.tensor([[0.0, 1.0], [2.0, 0.0]], dtype=torch.float64)
    assert nearest_codes(z_e, codebook).tolist() == [0, 0]


def test_straight_through_value_is_z_q_and_gradient_passes_to_z_e():
    z_e = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    codebook = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    z_q = codebook[nearest_codes(z_e, codebook)]
    z_st = straight_through(z_e, z_q)
    assert torch.equal(z_st, z_q)

    def loss(z):  # any smooth function of the latent, standing in for the decoder's loss
        return (torch.sin(z) * torch.arange(z.numel(), dtype=z.dtype).view_as(z)).sum()

    (grad_e,) = torch.autograd.grad(loss(z_st), z_e, retain_graph=True)
    z_q_leaf = z_q.detach().requires_grad_()
    (grad_q,) = torch.autograd.grad(loss(z_q_leaf), z_q_leaf)
    assert torch.equal(grad_e, grad_q)
    # The reconstruction gradient does not reach the codebook (only the codebook loss does).
    assert torch.autograd.grad(loss(z_st), codebook, allow_unused=True)[0] is None


def test_guide_samples_the_nearest_codes_exactly():
    model, guide = vq_pair(dtype=torch.float64)
    x = binary(dtype=torch.float64)
    site = pyro.poutine.trace(guide).get_trace(x).nodes["z"]
    expected = model.codebook[brute_force_codes(guide.encode(x), model.codebook)]
    assert site["value"].shape == (8, NUM_LATENTS, CODE_DIM)
    assert torch.equal(site["value"], expected)
    assert [f.name for f in site["cond_indep_stack"]] == ["data"]


@pytest.mark.parametrize("loss", ["estimator", "pyro"])
def test_eval_loss_is_exactly_minus_the_bound(loss):
    model, guide = vq_pair(dtype=torch.float64)
    x = binary(dtype=torch.float64)
    guide.eval()
    elbo = estimators.get("elbo") if loss == "estimator" else Trace_ELBO()
    bound, _ = by_hand(model, guide, x)
    # float64 throughout; the only differences are summation orders (~1e-13 on values ~100).
    assert elbo.loss(model, guide, x) == pytest.approx(-float(bound.sum()), abs=1e-10)


@pytest.mark.parametrize("loss", ["estimator", "pyro"])
def test_train_loss_adds_codebook_and_commitment_losses(loss):
    model, guide = vq_pair(commitment=0.3, dtype=torch.float64)
    x = binary(dtype=torch.float64)
    elbo = estimators.get("elbo") if loss == "estimator" else Trace_ELBO()
    bound, distance = by_hand(model, guide, x)
    # Both losses have the value ||z_e - z_q||^2; they differ in where their gradients go.
    expected = -bound + (1 + 0.3) * distance
    assert elbo.loss(model, guide, x) == pytest.approx(float(expected.sum()), abs=1e-10)
    differentiable = elbo.differentiable_loss(model, guide, x)
    assert float(differentiable.detach()) == pytest.approx(float(expected.sum()), abs=1e-10)


def test_num_data_scales_the_minibatch_loss():
    model, guide = vq_pair(dtype=torch.float64)
    x = binary(dtype=torch.float64)
    elbo = estimators.get("elbo")
    assert elbo.loss(model, guide, x, num_data=32) == pytest.approx(
        4 * elbo.loss(model, guide, x), rel=1e-12
    )


def test_penalty_gradients_codebook_loss_moves_codes_commitment_moves_encoder():
    z_e = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    codebook = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    index = nearest_codes(z_e, codebook)
    z_q = codebook[index]
    beta = 0.4
    grad_e, grad_codebook = torch.autograd.grad(vq_penalty(z_e, z_q, beta).sum(), (z_e, codebook))
    # d/dz_e: the commitment loss only, 2 beta (z_e - z_q).
    assert torch.allclose(grad_e, 2 * beta * (z_e - z_q), rtol=1e-12, atol=0)
    # d/de_k: the codebook loss only, sum over the vectors assigned to k of 2 (e_k - z_e).
    expected = torch.zeros_like(codebook).index_add_(
        0, index.flatten(), 2 * (z_q - z_e).reshape(-1, 2)
    )
    assert torch.allclose(grad_codebook, expected, rtol=1e-12, atol=1e-15)
    # Without commitment, the penalty leaves the encoder alone.
    grad_e = torch.autograd.grad(vq_penalty(z_e, z_q, 0.0).sum(), z_e, allow_unused=True)[0]
    assert grad_e is None or not grad_e.any()


def test_guide_penalty_gradient_reaches_the_codebook_and_with_commitment_the_head():
    model, guide = vq_pair(commitment=0.0)
    x = binary()
    penalty = pyro.poutine.trace(guide).get_trace(x).nodes["z"]["fn"].log_density.sum()
    grads = torch.autograd.grad(penalty, [model.codebook, guide.head.weight], allow_unused=True)
    assert grads[0].abs().sum() > 0
    assert grads[1] is None or not grads[1].any()
    guide.commitment = 0.25
    penalty = pyro.poutine.trace(guide).get_trace(x).nodes["z"]["fn"].log_density.sum()
    assert torch.autograd.grad(penalty, guide.head.weight)[0].abs().sum() > 0


def test_eval_mode_has_no_penalty():
    _, guide = vq_pair()
    guide.eval()
    log_density = pyro.poutine.trace(guide).get_trace(binary()).nodes["z"]["fn"].log_density
    assert torch.equal(log_density, torch.zeros(8))


# -- training with Pyro -----------------------------------------------------------------------


def test_pyro_svi_step_updates_codebook_encoder_head_and_decoder():
    model, guide = vq_pair()
    before = {
        "codebook": model.codebook.detach().clone(),
        "head": guide.head.weight.detach().clone(),
        "decoder": model.decoder.mlp[0].weight.detach().clone(),
    }
    SVI(model, guide, Adam({"lr": 1e-2}), Trace_ELBO()).step(binary())
    after = {
        "codebook": model.codebook,
        "head": guide.head.weight,
        "decoder": model.decoder.mlp[0].weight,
    }
    for name, value in after.items():
        assert not torch.equal(before[name], value), name
    # The codebook is registered once, under the model's name: the guide holds no copy of it.
    names = [n for n in pyro.get_param_store() if n.endswith("codebook")]
    assert names == [f"{model._pyro_name}.codebook"]
    assert not any(p is model.codebook for p in guide.parameters())


def test_one_fit_epoch_with_our_estimator_stays_finite():
    model, guide = vq_pair()
    data = binary(24)
    codebook = model.codebook.detach().clone()
    history = fit(
        model, guide, data, test_data=data, loss="elbo", epochs=1, batch_size=8, progress=False
    )
    assert math.isfinite(history.train_loss[0]) and math.isfinite(history.test_loss[0])
    assert torch.isfinite(model.codebook).all()
    assert not torch.equal(codebook, model.codebook)  # the codebook loss reached it
    assert guide.training and model.training  # evaluate_loss restores the modes


def test_sample_prior_gives_decoder_means_of_codebook_latents():
    model, _ = vq_pair()
    like = binary(6)
    means = sample_prior(model, like)
    assert means.shape == like.shape
    assert ((means > 0) & (means < 1)).all()
    z = pyro.poutine.trace(pyro.poutine.uncondition(model)).get_trace(like).nodes["z"]["value"]
    assert z.shape == (6, NUM_LATENTS, CODE_DIM)
    assert torch.equal(z, model.codebook[brute_force_codes(z, model.codebook)].detach())


def test_uniform_codebook_prior():
    codebook = torch.randn(NUM_CODES, CODE_DIM, dtype=torch.float64)
    prior = UniformCodebook(codebook, NUM_LATENTS).expand([4])
    assert prior.batch_shape == (4,) and prior.event_shape == (NUM_LATENTS, CODE_DIM)
    value = prior.sample((2,))
    assert value.shape == (2, 4, NUM_LATENTS, CODE_DIM)
    log_prob = prior.log_prob(value)
    assert log_prob.dtype == torch.float64
    expected = torch.full((2, 4), -NUM_LATENTS * math.log(NUM_CODES), dtype=torch.float64)
    assert torch.equal(log_prob, expected)


def test_codebook_initialization_is_uniform_in_plus_minus_one_over_k():
    model, _ = vq_pair()
    assert model.codebook.shape == (NUM_CODES, CODE_DIM)
    assert model.codebook.abs().max() <= 1 / NUM_CODES


def test_initialize_codebook_puts_codes_on_encoder_outputs():
    model, guide = vq_pair(dtype=torch.float64)
    x = binary(dtype=torch.float64)
    guide.initialize_codebook(x)
    outputs = guide.encode(x).reshape(-1, CODE_DIM)
    distances = (model.codebook.unsqueeze(1) - outputs).abs().sum(-1)
    assert (distances.min(1).values == 0).all()
    with pytest.raises(ValueError, match="at least num_codes=5 encoder outputs"):
        guide.initialize_codebook(x[:1])


# -- codebook usage ---------------------------------------------------------------------------


def test_perplexity_of_uniform_and_one_hot_counts():
    assert float(perplexity(torch.full((7,), 3))) == pytest.approx(7.0, rel=1e-6)
    assert float(perplexity(torch.tensor([0, 0, 12, 0]))) == pytest.approx(1.0, abs=1e-7)
    with pytest.raises(ValueError, match="non-negative with a positive sum"):
        perplexity(torch.zeros(3))
    with pytest.raises(TypeError, match="1-D tensor"):
        perplexity([1, 2])


def test_code_usage_counts_the_nearest_codes():
    model, guide = vq_pair()
    x = binary()
    counts = guide.code_usage(x)
    expected = torch.bincount(
        brute_force_codes(guide.encode(x), model.codebook).flatten(), minlength=NUM_CODES
    )
    assert counts.shape == (NUM_CODES,) and torch.equal(counts, expected)
    assert 1.0 <= float(perplexity(counts)) <= NUM_CODES


# -- bad input --------------------------------------------------------------------------------


def test_bad_arguments():
    model, _ = vq_pair()
    with pytest.raises(TypeError, match="model must be a VQVAE"):
        VQGuide("model", MLPEncoder(SHAPE, [8]))
    with pytest.raises(ValueError, match="commitment must be >= 0.0"):
        VQGuide(model, MLPEncoder(SHAPE, [8]), commitment=-1.0)
    with pytest.raises(ValueError, match="features is needed"):
        VQGuide(model, torch.nn.Flatten())
    with pytest.raises(ValueError, match="num_codes must be an integer >= 1"):
        VQVAE(MLPDecoder(6, [8], SHAPE), 0, CODE_DIM, NUM_LATENTS)
    with pytest.raises(TypeError, match="decoder must be a torch.nn.Module"):
        VQVAE("decoder", NUM_CODES, CODE_DIM, NUM_LATENTS, data_shape=SHAPE)
    with pytest.raises(ValueError, match="data_shape is needed"):
        VQVAE(torch.nn.Linear(6, 16), NUM_CODES, CODE_DIM, NUM_LATENTS)
    with pytest.raises(ValueError, match="binary data"):
        Trace_ELBO().loss(*vq_pair(), torch.full((3, *SHAPE), 0.5))
