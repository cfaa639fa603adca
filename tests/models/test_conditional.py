"""The conditional VAE: shapes with particles, label checks, generation of chosen classes, SVI."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI
from pyro.optim import Adam
from torch import nn

from pyro_vi.estimators import compute_log_weights, get
from pyro_vi.guides.amortized import AmortizedGuide
from pyro_vi.models.conditional import ConditionalEncoder, ConditionalVAE
from pyro_vi.models.priors import MixturePrior
from pyro_vi.nets import MLPDecoder, MLPEncoder

SHAPE = (1, 4, 4)
LATENT, CLASSES = 2, 3


def binary(n=6):
    return torch.bernoulli(torch.full((n, *SHAPE), 0.4))


def labels(n=6):
    return torch.arange(n) % CLASSES


def model_and_guide(family="iaf", prior=None):
    model = ConditionalVAE(MLPDecoder(LATENT + CLASSES, [8], SHAPE), LATENT, CLASSES, prior=prior)
    encoder = ConditionalEncoder(MLPEncoder(SHAPE, [8]), CLASSES)
    guide = AmortizedGuide(model, encoder=encoder, family=family, data_arg=(0, 1))
    return model, guide


def test_shapes_with_particles():
    model, guide = model_and_guide()
    x, y = binary(), labels()
    weights = compute_log_weights(
        model, guide, (x, y), {}, num_particles=4, plate_nesting=1, data_plate=None
    )
    assert weights.log_w.shape == (4, 6)
    assert weights.model_trace.nodes["z"]["value"].shape == (4, 6, LATENT)
    assert weights.model_trace.nodes["x"]["fn"].batch_shape == (4, 6)
    assert [f.name for f in weights.model_trace.nodes["z"]["cond_indep_stack"]] == [
        "num_particles_vectorized",
        "data",
    ]


@pytest.mark.parametrize(
    "estimator", [("elbo", {}), ("iwae", {"num_particles": 3})], ids=["elbo", "iwae"]
)
def test_one_svi_step(estimator):
    name, options = estimator
    model, guide = model_and_guide()
    x, y = binary(), labels()
    svi = SVI(model, guide, Adam({"lr": 1e-2}), loss=get(name, **options))
    assert math.isfinite(svi.step(x, y, num_data=24))
    for module in (model.decoder, guide.encoder, guide.families):
        assert all(p.grad is not None for p in module.parameters())


def test_mixture_prior_and_a_diagonal_guide():
    model, guide = model_and_guide("diagonal", prior=MixturePrior(LATENT, num_components=4))
    svi = SVI(model, guide, Adam({"lr": 1e-2}), loss=get("iwae", num_particles=2))
    assert math.isfinite(svi.step(binary(), labels()))


def test_the_guide_reads_the_label():
    _, guide = model_and_guide("diagonal")
    x = binary(1).expand(CLASSES, *SHAPE)
    guide(x, labels(CLASSES))  # set-up
    features = guide.context(x, labels(CLASSES))
    assert features.shape == (CLASSES, 8 + CLASSES)
    assert torch.equal(features[:, 8:], torch.eye(CLASSES))
    assert torch.equal(features[0, :8], features[1, :8])  # same image, same encoder features


def test_generating_chosen_labels():
    # A decoder that ignores z and paints a fixed pattern per label with logits +-40: the
    # Bernoulli draws equal the pattern except with probability ~1e-17 per pixel.
    patterns = torch.bernoulli(torch.full((CLASSES, 16), 0.5))
    linear = nn.Linear(LATENT + CLASSES, 16)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[:, LATENT:] = 80 * (patterns.T - 0.5)
    decoder = nn.Sequential(linear, nn.Unflatten(-1, SHAPE))
    model = ConditionalVAE(decoder, LATENT, CLASSES, data_shape=SHAPE)
    chosen = torch.tensor([2, 0, 1, 2, 2])
    like = torch.zeros(5, *SHAPE)
    generate = poutine.uncondition(model)
    z = generate(like, chosen)
    assert z.shape == (5, LATENT)
    trace = poutine.trace(generate).get_trace(like, chosen)
    images = trace.nodes["x"]["value"]
    assert torch.equal(images.reshape(5, 16), patterns[chosen])
    assert torch.allclose(trace.nodes["x"]["fn"].mean.reshape(5, 16), patterns[chosen], atol=1e-9)


def test_label_validation():
    model, _ = model_and_guide()
    x = binary(4)
    with pytest.raises(TypeError, match="y must be a torch.Tensor of int64 labels"):
        model(x, [0, 1, 2, 0])
    with pytest.raises(TypeError, match=r"y must hold int64 labels \(torch.long\), got dtype"):
        model(x, torch.zeros(4))
    with pytest.raises(ValueError, match=r"y must have shape \[4\].*got \(4, 1\)"):
        model(x, torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels in \[0, 3\) \(num_classes=3\), got values in"):
        model(x, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match=r"labels in \[0, 3\)"):
        model(x, torch.tensor([0, -1, 2, 0]))
    model(x, torch.tensor([0, 1, 2, 0]))  # valid labels pass


def test_constructor_errors():
    decoder = MLPDecoder(LATENT + CLASSES, [8], SHAPE)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1"):
        ConditionalVAE(decoder, LATENT, 0)
    with pytest.raises(TypeError, match="decoder must be a torch.nn.Module"):
        ConditionalVAE("decoder", LATENT, CLASSES, data_shape=SHAPE)
    with pytest.raises(ValueError, match="no out_features attribute"):
        ConditionalEncoder(nn.Identity(), CLASSES)
    with pytest.raises(TypeError, match="encoder must be a torch.nn.Module"):
        ConditionalEncoder("encoder", CLASSES)
    assert ConditionalEncoder(MLPEncoder(SHAPE, [8]), CLASSES).out_features == 8 + CLASSES


def test_predictive_with_particles():
    model, guide = model_and_guide("diagonal")
    x, y = binary(), labels()
    guide(x, y)
    samples = pyro.infer.Predictive(model, guide=guide, num_samples=3, parallel=True)(x, y)
    assert samples["z"].shape == (3, 6, LATENT)


@pytest.mark.cuda
def test_a_step_on_cuda():
    step_on_device("cuda")


def step_on_device(device):
    model, guide = model_and_guide(prior="mixture")
    model.to(device)  # the guide moves to the data's device at its first call
    x, y = binary().to(device), labels().to(device)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), loss=get("iwae", num_particles=3))
    assert math.isfinite(svi.step(x, y))
    assert all(p.device == x.device for p in guide.parameters())
