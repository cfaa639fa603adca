"""One construction path: a spec builds what the same Python call builds, for every model kind.

The spec's build calls the kind's builder in :mod:`pyro_vi.architectures`, so a spec and the
Python call with the same values must give modules of the same classes, with the same parameter
names and shapes, and, from the same seed, the same initial values and the same loss. The losses
are compared exactly: the two pairs run the same operations on the same numbers.
"""

from __future__ import annotations

import math

import pyro
import pytest
import torch

from pyro_vi import architectures
from pyro_vi.nets import ConvNetwork, MLPNetwork
from pyro_vi.spec import KINDS, DataInfo, build, resolve

SHAPE = (1, 8, 8)
MLP = {"type": "mlp", "hidden": [16, 8], "activation": "tanh"}
NET = MLPNetwork([16, 8], "tanh")


def _binary(size: int = 6) -> torch.Tensor:
    return torch.bernoulli(torch.full((size, *SHAPE), 0.3))


def _grey(levels: int, size: int = 6) -> torch.Tensor:
    return torch.randint(levels, (size, *SHAPE)).float() / (levels - 1)


# (spec, DataInfo, the Python call, a batch of the model's arguments)
CASES = {
    "vae": (
        {"model": {"latent_dim": 4, "decoder": MLP}, "guide": {"encoder": MLP}},
        DataInfo(SHAPE),
        lambda: architectures.vae(SHAPE, 4, decoder=NET, encoder=NET),
        lambda: (_binary(),),
    ),
    "mlp_vae": (
        {"model": {"latent_dim": 4, "decoder": MLP}, "guide": {"encoder": MLP}},
        DataInfo(SHAPE),
        lambda: architectures.mlp_vae(SHAPE, 4, hidden=(16, 8)),
        lambda: (_binary(),),
    ),
    "vae-categorical-conv": (
        {
            "data": {"binarize": "none"},
            "model": {
                "latent_dim": 3,
                "likelihood": {"name": "categorical", "num_levels": 17},
                "decoder": {"type": "conv", "features": 32},
            },
            "guide": {"encoder": {"type": "conv", "features": 32}},
        },
        DataInfo(SHAPE),
        lambda: architectures.vae(
            SHAPE,
            3,
            likelihood={"name": "categorical", "num_levels": 17},
            decoder=ConvNetwork(32),
            encoder=ConvNetwork(32),
        ),
        lambda: (_grey(17),),
    ),
    "vae-iaf-mixture-prior": (
        {
            "model": {
                "latent_dim": 4,
                "decoder": MLP,
                "prior": {"name": "mixture", "num_components": 3},
            },
            "guide": {"family": "iaf", "options": {"num_steps": 2}, "encoder": MLP},
        },
        DataInfo(SHAPE),
        lambda: architectures.vae(
            SHAPE,
            4,
            prior={"name": "mixture", "num_components": 3},
            decoder=NET,
            encoder=NET,
            family="iaf",
            family_options={"num_steps": 2},
        ),
        lambda: (_binary(),),
    ),
    "vae-conditional": (
        {
            "model": {"latent_dim": 4, "conditional": True, "decoder": MLP},
            "guide": {"encoder": MLP},
        },
        DataInfo(SHAPE, num_classes=10),
        lambda: architectures.vae(SHAPE, 4, decoder=NET, encoder=NET, num_classes=10),
        lambda: (_binary(), torch.randint(10, (6,))),
    ),
    "vae-two-layers": (
        {
            "model": {"latent_dim": [6, 3], "stochastic_hidden": [8], "decoder": MLP},
            "guide": {"encoder": MLP},
        },
        DataInfo(SHAPE),
        lambda: architectures.vae(SHAPE, (6, 3), decoder=NET, encoder=NET, stochastic_hidden=(8,)),
        lambda: (_binary(),),
    ),
    "vq_vae": (
        {
            "model": {
                "kind": "vq_vae",
                "num_codes": 16,
                "code_dim": 2,
                "num_latents": 3,
                "decoder": MLP,
            },
            "guide": {"encoder": MLP},
        },
        DataInfo(SHAPE),
        lambda: architectures.vq_vae(
            SHAPE, num_codes=16, code_dim=2, num_latents=3, decoder=NET, encoder=NET
        ),
        lambda: (_binary(),),
    ),
    "autoencoder": (
        {
            "model": {"kind": "autoencoder", "latent_dim": 4, "decoder": MLP},
            "guide": {"encoder": MLP},
        },
        DataInfo(SHAPE),
        lambda: architectures.autoencoder(SHAPE, 4, decoder=NET, encoder=NET),
        lambda: (_binary(),),
    ),
    "sbn-concrete": (
        {
            "model": {
                "kind": "sbn",
                "latent_dim": 5,
                "relaxation": "concrete",
                "temperature": 0.5,
                "decoder": MLP,
            },
            "guide": {"encoder": MLP},
        },
        DataInfo(SHAPE),
        lambda: architectures.sigmoid_belief_net(
            SHAPE, 5, relaxation="concrete", temperature=0.5, decoder=NET, encoder=NET
        ),
        lambda: (_binary(),),
    ),
}


def _loss(estimator, model, guide, batch) -> float:
    # The first call also builds the amortized guide's families (from the random stream).
    pyro.set_rng_seed(1)
    return estimator.loss(model, guide, *batch)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return dict(module.state_dict())


@pytest.mark.parametrize("case", sorted(CASES))
def test_spec_and_python_build_the_same_pair(case):
    raw, info, python_call, batch_of = CASES[case]
    spec = resolve(raw)
    batch = batch_of()
    pyro.set_rng_seed(0)
    built = build(spec, info)
    pyro.set_rng_seed(0)
    model, guide = python_call()
    assert (type(built.model), type(built.guide)) == (type(model), type(guide))

    spec_loss = _loss(built.estimator, built.model, built.guide, batch)
    python_loss = _loss(built.estimator, model, guide, batch)
    assert math.isfinite(spec_loss)
    for from_spec, from_python in ((built.model, model), (built.guide, guide)):
        spec_state, python_state = _state(from_spec), _state(from_python)
        assert {k: v.shape for k, v in spec_state.items()} == {
            k: v.shape for k, v in python_state.items()
        }
        for name, value in spec_state.items():
            assert torch.equal(value, python_state[name]), name
    assert spec_loss == python_loss


def test_every_kind_has_a_case():
    covered = {resolve(raw).model["kind"] for raw, *_ in CASES.values()}
    assert covered == set(KINDS)


def test_spec_defaults_are_the_builders_defaults():
    # An empty spec is `vae(shape)` with every default: the two never drift apart.
    spec = resolve({})  # before seeding: validation builds throwaway parts from the stream
    pyro.set_rng_seed(0)
    built = build(spec, DataInfo(SHAPE))
    pyro.set_rng_seed(0)
    model, guide = architectures.vae(SHAPE)
    batch = (_binary(),)
    assert _loss(built.estimator, built.model, built.guide, batch) == _loss(
        built.estimator, model, guide, batch
    )


def test_categorical_mlp_vae_trains_its_first_step():
    # mlp_vae once shaped its decoder like the data, not like the categorical likelihood's
    # L logits per pixel, and failed at its first call.
    model, guide = architectures.mlp_vae(SHAPE, 2, hidden=(8,), likelihood="categorical")
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), pyro.infer.Trace_ELBO())
    assert math.isfinite(svi.step(_grey(256)))


def test_builders_name_bad_arguments():
    with pytest.raises(ValueError, match="num_classes=10 with latent_dim=.*one stochastic layer"):
        architectures.vae(SHAPE, (4, 2), num_classes=10)
    with pytest.raises(ValueError, match="temperature is only used with a relaxation"):
        architectures.sigmoid_belief_net(SHAPE, 4, temperature=0.5)
    with pytest.raises(TypeError, match="a network must be an MLPNetwork"):
        architectures.vae(SHAPE, 4, encoder="mlp")
    conv_keys = r"'conv' network takes \['activation', 'features', 'type'\], got \['hidden'\]"
    with pytest.raises(TypeError, match=conv_keys):
        architectures.vae(SHAPE, 4, decoder={"type": "conv", "hidden": [8]})
    with pytest.raises(ValueError, match="unknown network type 'rnn'"):
        architectures.vae(SHAPE, 4, decoder={"type": "rnn"})
