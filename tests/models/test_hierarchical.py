"""The two-stochastic-layer VAE and its guide: shapes, exact log-weight, training, evaluation."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI
from pyro.optim import Adam
from torch.nn.functional import softplus

from pyro_vi.estimators import get
from pyro_vi.estimators.core import compute_log_weights
from pyro_vi.evaluation import log_likelihood
from pyro_vi.guides.hierarchical import HierarchicalGuide
from pyro_vi.models.hierarchical import MIN_SCALE, HierarchicalVAE
from pyro_vi.nets import MLPDecoder, MLPEncoder

F64 = torch.float64
SHAPE = (1, 4, 4)
DIMS = (3, 2)  # (D1, D2)


def binary(n=5, dtype=torch.float32):
    return torch.bernoulli(torch.full((n, *SHAPE), 0.4, dtype=dtype))


def model_and_guide(family="diagonal", **model_options):
    model = HierarchicalVAE(MLPDecoder(DIMS[0], [8], SHAPE), DIMS, hidden=(6,), **model_options)
    guide = HierarchicalGuide(MLPEncoder(SHAPE, [8]), DIMS, hidden=(6,), family=family)
    return model, guide


def test_sites_and_shapes_with_particles():
    model, guide = model_and_guide()
    x = binary()
    weights = compute_log_weights(model, guide, (x,), {}, num_particles=4, plate_nesting=1)
    assert weights.log_w.shape == (4, 5) and weights.scale == 1.0
    model_sites = [n for n, s in weights.model_trace.nodes.items() if s["type"] == "sample"]
    assert model_sites == ["z2", "z1", "x"]
    for trace in (weights.model_trace, weights.guide_trace):
        assert trace.nodes["z1"]["value"].shape == (4, 5, DIMS[0])
        assert trace.nodes["z2"]["value"].shape == (4, 5, DIMS[1])
        for name in ("z1", "z2"):
            frames = [f.name for f in trace.nodes[name]["cond_indep_stack"]]
            assert frames == ["num_particles_vectorized", "data"]


@pytest.mark.parametrize("family", ["diagonal", "iaf"])
def test_iwae_step(family):
    model, guide = model_and_guide(family)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), loss=get("iwae", num_particles=4))
    assert math.isfinite(svi.step(binary(), num_data=20))
    for module in (model, guide):
        assert all(p.grad is not None for p in module.parameters())


def test_mixture_prior_on_the_top_layer():
    model, guide = model_and_guide(prior="mixture")
    assert model.prior.latent_dim == DIMS[1]
    svi = SVI(model, guide, Adam({"lr": 1e-2}), loss=get("elbo"))
    assert math.isfinite(svi.step(binary()))


def normal_log_density(value, loc, scale):
    """Hand-written sum_d log N(value_d; loc_d, scale_d^2)."""
    standard = (value - loc) / scale
    return (-0.5 * standard**2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)).sum(-1)


def test_log_weight_is_the_hand_computed_identity():
    # log w = log p(z2) + log p(z1 | z2) + log p(x | z1) - log q(z1 | x) - log q(z2 | z1), with
    # every density written out by hand from the networks' outputs: an exact identity, so float64
    # and a tolerance of rounding only.
    model, guide = model_and_guide()
    model, guide = model.double(), guide.double()
    x = binary(dtype=F64)
    weights = compute_log_weights(model, guide, (x,), {}, num_particles=3, plate_nesting=1)
    z1 = weights.guide_trace.nodes["z1"]["value"]
    z2 = weights.guide_trace.nodes["z2"]["value"]
    log_p_z2 = normal_log_density(z2, torch.zeros_like(z2), torch.ones_like(z2))
    loc, raw = model.z1_net(z2).chunk(2, dim=-1)
    log_p_z1 = normal_log_density(z1, loc, MIN_SCALE + softplus(raw))
    logits = model.decoder(z1)
    log_p_x = (x * logits - softplus(logits)).sum((-3, -2, -1))
    features = guide.encoder(x)
    family = guide.z1_family
    scale = family.min_scale + softplus(family.scale_head(features))
    log_q_z1 = normal_log_density(z1, family.loc_head(features), scale)
    features = guide.z1_encoder(z1)
    family = guide.z2_family
    scale = family.min_scale + softplus(family.scale_head(features))
    log_q_z2 = normal_log_density(z2, family.loc_head(features), scale)
    expected = log_p_z2 + log_p_z1 + log_p_x - log_q_z1 - log_q_z2
    assert expected.shape == (3, 5)
    assert torch.allclose(weights.log_w, expected, rtol=1e-12, atol=1e-12)


def test_minibatch_scale():
    model, guide = model_and_guide()
    x = binary()
    pyro.set_rng_seed(2)
    full = get("iwae", num_particles=3).loss(model, guide, x)
    pyro.set_rng_seed(2)
    scaled = get("iwae", num_particles=3).loss(model, guide, x, num_data=20)
    assert scaled == pytest.approx(4 * full, rel=1e-5)


def test_log_likelihood_runs_and_bounds_the_elbo():
    model, guide = model_and_guide()
    x = binary(4)
    log_px = log_likelihood(model, guide, x, num_samples=400, chunk_size=200)
    assert log_px.shape == (4,) and bool(torch.isfinite(log_px).all())
    # The IWAE bound with S = 400 exceeds the ELBO in expectation; for this untrained model the
    # gap is 4-9 nats over seeds, the Monte Carlo noise of either side ~0.1.
    elbo = -get("elbo", num_particles=400).loss(model, guide, x)
    assert float(log_px.sum()) > elbo


def test_generation_and_errors():
    model, _ = model_and_guide()
    trace = poutine.trace(poutine.uncondition(model)).get_trace(torch.zeros(3, *SHAPE))
    assert trace.nodes["x"]["value"].shape == (3, *SHAPE)
    decoder = MLPDecoder(DIMS[0], [8], SHAPE)
    with pytest.raises(TypeError, match=r"latent_dims must be a pair \(D1, D2\)"):
        HierarchicalVAE(decoder, (3,))
    with pytest.raises(ValueError, match=r"latent_dims\[1\] must be an integer >= 1"):
        HierarchicalVAE(decoder, (3, 0))
    with pytest.raises(ValueError, match="prior is over 3 dimensions but the model's latent has 2"):
        HierarchicalVAE(decoder, DIMS, prior=HierarchicalVAE(decoder, (2, 3)).prior)
    with pytest.raises(ValueError, match="no out_features attribute"):
        HierarchicalGuide(torch.nn.Identity(), DIMS)
    with pytest.raises(ValueError, match="hidden must name at least one layer"):
        HierarchicalGuide(MLPEncoder(SHAPE, [8]), DIMS, hidden=())
    with pytest.raises(ValueError, match="family 'diagonal' takes no option 'rank'"):
        HierarchicalGuide(MLPEncoder(SHAPE, [8]), DIMS, family_options={"rank": 2})


@pytest.mark.cuda
def test_a_step_on_cuda():
    step_on_device("cuda")


def step_on_device(device):
    model, guide = model_and_guide("iaf", prior="mixture")
    model, guide = model.to(device), guide.to(device)
    x = binary().to(device)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), loss=get("iwae", num_particles=3))
    assert math.isfinite(svi.step(x))
    assert math.isfinite(float(log_likelihood(model, guide, x, num_samples=8).sum()))
