"""Model kinds: registered by name, asked by the resolver, the builder, evaluation and figures."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from pyro_vi import architectures
from pyro_vi.runs.evaluate import evaluate_built
from pyro_vi.spec import KINDS, DataInfo, ModelKind, SpecError, build, kind_of, resolve
from pyro_vi.spec.kinds import register
from pyro_vi.spec.schema import Field


def test_the_kinds_in_the_order_the_docs_list_them():
    assert list(KINDS) == ["vae", "vq_vae", "autoencoder", "sbn"]
    assert all(isinstance(kind, ModelKind) and kind.name == name for name, kind in KINDS.items())


def test_an_unknown_kind_is_named_with_the_kinds():
    with pytest.raises(ValueError, match=r"unknown model kind 'vqvae' \(did you mean 'vq_vae'\?\)"):
        KINDS["vqvae"]


@pytest.mark.parametrize(
    ("raw", "dims", "sites"),
    [
        ({}, [8], ["z"]),
        ({"model": {"latent_dim": [6, 3]}}, [6, 3], ["z1", "z2"]),
        ({"model": {"kind": "vq_vae", "num_latents": 3, "code_dim": 2}}, [6], ["z"]),
    ],
    ids=["vae", "two-layers", "vq_vae"],
)
def test_a_spec_asks_its_kind(raw, dims, sites):
    spec = resolve(raw)
    assert spec.kind is kind_of(spec) is KINDS[spec.model["kind"]]
    assert spec.latent_dims == dims and spec.kind.latent_sites(spec) == sites
    assert spec.kind.decoder_site(spec) == sites[0] and spec.kind.scatter_site(spec) == sites[-1]


class _TinyKind(ModelKind):
    """A new kind, as a user would add one: an autoencoder with a code size of its own key."""

    name = "test_tiny"
    shared_keys = ("likelihood", "decoder")
    fields: ClassVar[dict[str, Field]] = {"code": Field("int", 3, "code size", minimum=1)}
    no_family = "test_tiny has a deterministic encoder: no family"
    has_prior = False
    deterministic_encoder = True

    def latent_dims(self, model: Any) -> list[int]:
        return [model["code"]]

    def build(self, spec, info):
        model = spec.model
        return architectures.autoencoder(
            info.shape,
            model["code"],
            likelihood=model["likelihood"],
            decoder=model["decoder"],
            encoder=spec.guide["encoder"],
        )

    def extra_metrics(self, built, test):
        return {"code": built.spec.model["code"]}


@pytest.fixture
def tiny_kind():
    register(_TinyKind)
    try:
        yield KINDS["test_tiny"]
    finally:
        del KINDS["test_tiny"]


def test_a_new_kind_is_one_class_and_a_registration(tiny_kind):
    spec = resolve({"model": {"kind": "test_tiny", "code": 2, "decoder": {"hidden": [8]}}})
    assert spec.model == {
        "kind": "test_tiny",
        "likelihood": {"name": "bernoulli"},
        "decoder": {"type": "mlp", "hidden": [8], "activation": "tanh"},
        "code": 2,
    }
    with pytest.raises(SpecError, match=r"'model.latent_dim'.*model.kind = 'test_tiny'"):
        resolve({"model": {"kind": "test_tiny", "latent_dim": 2}})
    with pytest.raises(SpecError, match="test_tiny has a deterministic encoder"):
        resolve({"model": {"kind": "test_tiny"}, "guide": {"family": "iaf"}})
    with pytest.raises(SpecError, match=r"model.kind = 'test_tiny': its encoder is deterministic"):
        resolve({"model": {"kind": "test_tiny"}, "estimator": {"name": "iwae"}})
    built = build(spec, DataInfo((1, 8, 8)))
    x = torch.bernoulli(torch.full((5, 1, 8, 8), 0.5))
    metrics = evaluate_built(built, (x,), num_samples=4, progress=False)
    assert metrics["code"] == 2 and metrics["active_units_of"] == 2
    assert "test_elbo" not in metrics  # no prior: no bound
    figures = spec.kind.figures(built, (x,), None, num_images=4)
    assert set(figures) == {"reconstructions", "interpolation", "latents"}
    assert spec.kind.describe_guide(spec) == "deterministic"
