"""Resolving specs: defaults, round trips through TOML, every kind of bad spec, and overrides."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pyro_vi.spec import (
    DEFAULT_SPEC,
    Spec,
    SpecError,
    apply_overrides,
    load_spec,
    read_spec_file,
    resolve,
    save_spec,
    spec_to_toml,
)
from pyro_vi.spec.resolve import DATA, OPTIMIZER, TRAINING

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.toml"))


def _defaults(fields):
    return {name: field.default for name, field in fields.items()}


def test_empty_spec_resolves_to_the_defaults():
    mlp = {"type": "mlp", "hidden": [256, 256], "activation": "tanh"}
    assert resolve({}) == Spec(
        data=_defaults(DATA),
        model={
            "kind": "vae",
            "latent_dim": 8,
            "likelihood": {"name": "bernoulli"},
            "prior": {"name": "standard_normal"},
            "decoder": mlp,
            "conditional": False,
        },
        guide={"family": "diagonal", "options": {}, "encoder": mlp},
        estimator={"name": "elbo", "num_particles": 1, "baseline_decay": 0.9},
        optimizer=_defaults(OPTIMIZER),
        training=_defaults(TRAINING),
    )


def test_default_spec_is_the_shipped_vae_digits_config():
    # `pyro-vi train` without a file trains DEFAULT_SPEC; the docs point at the config file.
    assert resolve(DEFAULT_SPEC) == load_spec(CONFIG_DIR / "vae_digits.toml")


def test_configs_are_found():
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.stem)
def test_config_round_trips_through_toml_and_dict(path, tmp_path):
    spec = load_spec(path)
    written = tmp_path / "spec.toml"
    written.write_text(spec_to_toml(spec))
    assert load_spec(written) == spec
    assert resolve(spec.to_dict()) == spec
    assert resolve(spec) == spec
    assert load_spec(save_spec(spec, tmp_path / "saved.toml")) == spec
    as_json = tmp_path / "spec.json"
    as_json.write_text(json.dumps(spec.to_dict()))
    assert load_spec(as_json) == spec


def _error(key: str, *allowed: str) -> str:
    """A pattern for a message naming ``key`` and then, in order, each text of ``allowed``."""
    return ".*".join(re.escape(part) for part in (key, *allowed))


BINARY_LIKELIHOODS = "'bernoulli', 'bernoulli_grey', 'gaussian', 'continuous_bernoulli'"
GREY = {"data": {"binarize": "none"}}
NO_INVERSE_ALLOWED = "allowed families: ['diagonal'"
DETERMINISTIC = "allowed: estimator.name = 'elbo' with num_particles = 1"

BAD_SPECS = [
    # unknown keys
    pytest.param(
        {"train": {}}, _error("unknown key 'train'", "takes ['data',", "'training']"), id="top-key"
    ),
    pytest.param(
        {"training": {"epoch": 3}},
        _error("'training.epoch'", "did you mean 'epochs'?", "training takes [", "'epochs'"),
        id="section-key-typo",
    ),
    pytest.param({"training": 3}, _error("training = 3", "a table"), id="section-not-a-table"),
    # wrong types
    pytest.param(
        {"training": {"epochs": "3"}},
        _error("training.epochs = '3'", "an integer >= 1"),
        id="string-for-int",
    ),
    pytest.param(
        {"training": {"epochs": True}},
        _error("training.epochs = True", "an integer >= 1"),
        id="bool-for-int",
    ),
    pytest.param(
        {"training": {"batch_size": 2.0}},
        _error("training.batch_size = 2.0", "an integer >= 1"),
        id="float-for-int",
    ),
    pytest.param(
        {"training": {"epochs": [3]}},
        _error("training.epochs = [3]", "an integer >= 1"),
        id="list-for-int",
    ),
    pytest.param(
        {"model": {"conditional": 1}},
        _error("model.conditional = 1", "true or false"),
        id="int-for-bool",
    ),
    pytest.param(
        {"model": {"decoder": {"hidden": 256}}},
        _error("model.decoder.hidden = 256", "a list of integers"),
        id="int-for-list",
    ),
    pytest.param(
        {"model": {"decoder": "mlp"}},
        _error("model.decoder = 'mlp'", "a table with 'type'"),
        id="string-for-network",
    ),
    pytest.param({"name": 3}, _error("name = 3", "a string"), id="int-for-name"),
    # numbers out of range
    pytest.param({"optimizer": {"lr": 0}}, _error("optimizer.lr = 0", "> 0"), id="lr-zero"),
    pytest.param(
        {"optimizer": {"lr": float("nan")}}, _error("optimizer.lr = nan", "> 0"), id="lr-nan"
    ),
    pytest.param(
        {"training": {"epochs": 0}}, _error("training.epochs = 0", ">= 1"), id="epochs-zero"
    ),
    pytest.param(
        {"optimizer": {"betas": [0.9, 0.99, 0.9]}},
        _error("optimizer.betas = [0.9, 0.99, 0.9]", "length 2"),
        id="betas-length-3",
    ),
    pytest.param(
        {"optimizer": {"betas": [0.9, 1.5]}},
        _error("optimizer.betas = [0.9, 1.5]", "<= 1"),
        id="beta-above-1",
    ),
    pytest.param(
        {"optimizer": {"lr_decay": 1.5}},
        _error("optimizer.lr_decay = 1.5", "> 0 and <= 1"),
        id="lr-decay-above-1",
    ),
    pytest.param(
        {"model": {"decoder": {"hidden": [0]}}},
        _error("model.decoder.hidden = [0]", ">= 1"),
        id="hidden-zero",
    ),
    pytest.param(
        {"model": {"latent_dim": 0}},
        _error("model.latent_dim = 0", "an integer >= 1, or [D1, D2]"),
        id="latent-dim-zero",
    ),
    # unknown choices
    pytest.param(
        {"data": {"name": "cifar"}},
        _error("data.name = 'cifar'", "['digits', 'mnist', 'fashion-mnist', 'binarized-mnist']"),
        id="data-name",
    ),
    pytest.param(
        {"data": {"binarize": "static"}},
        _error("data.binarize = 'static'", "['dynamic', 'none']"),
        id="binarize",
    ),
    pytest.param(
        {"model": {"kind": "gan"}},
        _error("model.kind = 'gan'", "['vae', 'vq_vae', 'autoencoder', 'sbn']"),
        id="model-kind",
    ),
    pytest.param(
        {"model": {"decoder": {"type": "rnn"}}},
        _error("model.decoder.type = 'rnn'", "['mlp', 'conv']"),
        id="network-type",
    ),
    pytest.param(
        {"guide": {"encoder": {"activation": "sigmoid"}}},
        _error("guide.encoder.activation = 'sigmoid'", "'relu'", "'tanh'"),
        id="activation",
    ),
    pytest.param(
        {"guide": {"family": "gaussian"}},
        _error("guide.family = 'gaussian'", "['diagonal'", "'iaf'"),
        id="guide-family",
    ),
    pytest.param(
        {"estimator": {"name": "elbow"}},
        _error("estimator.name = 'elbow'", "['elbo'", "'iwae'", "'dreg'"),
        id="estimator-name",
    ),
    pytest.param(
        {"optimizer": {"name": "sgd"}},
        _error("optimizer.name = 'sgd'", "['adam', 'clipped_adam']"),
        id="optimizer-name",
    ),
    pytest.param(
        {"model": {"likelihood": "laplace"}},
        _error(
            "model.likelihood.name = 'laplace'",
            f"[{BINARY_LIKELIHOODS}, 'categorical', 'poisson', 'negative_binomial']",
        ),
        id="likelihood-name",
    ),
    pytest.param(
        {"model": {"likelihood": 3}},
        _error("model.likelihood = 3", "a name in ['bernoulli'"),
        id="likelihood-not-name-or-table",
    ),
    pytest.param(
        {"model": {"prior": "laplace"}},
        _error("model.prior.name = 'laplace'", "['standard_normal', 'mixture']"),
        id="prior-name",
    ),
    # unknown or bad options of a named part
    pytest.param(
        {**GREY, "model": {"likelihood": {"name": "gaussian", "sigma": 0.1}}},
        _error("'model.likelihood.sigma'", "name = 'gaussian'", "['name', 'scale']"),
        id="likelihood-option",
    ),
    pytest.param(
        {**GREY, "model": {"likelihood": {"name": "gaussian", "scale": -1.0}}},
        _error("model.likelihood", "scale must be > 0", "-1.0"),
        id="likelihood-option-value",
    ),
    pytest.param(
        {"model": {"likelihood": {"scale": 0.1}}},
        _error("'model.likelihood.scale'", "name = 'bernoulli'", "['name']"),
        id="option-of-default-likelihood",
    ),
    pytest.param(
        {"model": {"prior": {"name": "mixture", "components": 3}}},
        _error("'model.prior.components'", "did you mean 'num_components'?", "'num_components'"),
        id="prior-option",
    ),
    pytest.param(
        {"model": {"prior": {"name": "mixture", "num_components": 0}}},
        _error("model.prior", "num_components must be an integer >= 1", "0"),
        id="prior-option-value",
    ),
    pytest.param(
        {"guide": {"family": "iaf", "options": {"steps": 3}}},
        _error("'guide.options.steps'", "did you mean 'num_steps'?", "family = 'iaf'", "num_steps"),
        id="family-option",
    ),
    pytest.param(
        {"guide": {"family": "iaf", "options": {"num_steps": 0}}},
        _error("guide.options", "num_steps must be an integer >= 1", "0"),
        id="family-option-value",
    ),
    pytest.param(
        {"guide": {"options": 3}},
        _error("guide.options = 3", "a table"),
        id="family-options-not-a-table",
    ),
    pytest.param(
        {"estimator": {"name": "iwae", "alpha": 0.5}},
        _error("'estimator.alpha'", "name = 'iwae'", "['name', 'num_particles']"),
        id="estimator-option-of-another-estimator",
    ),
    pytest.param(
        {"estimator": {"data_plate": "x"}},
        _error("'estimator.data_plate'", "estimator takes ['alpha'"),
        id="internal-estimator-option",
    ),
    pytest.param(
        {"estimator": {"num_particles": 0}},
        _error("estimator", "num_particles must be an integer >= 1", "0"),
        id="estimator-option-value",
    ),
    # keys of another model kind or network type
    pytest.param(
        {"model": {"num_codes": 32}},
        _error("'model.num_codes'", "model.kind = 'vae'", "model takes ['conditional'"),
        id="vq-key-on-vae",
    ),
    pytest.param(
        {"model": {"kind": "vq_vae", "latent_dim": 8}},
        _error("'model.latent_dim'", "model.kind = 'vq_vae'", "'num_codes'"),
        id="vae-key-on-vq-vae",
    ),
    pytest.param(
        {"model": {"kind": "vq_vae"}, "guide": {"family": "diagonal"}},
        _error("'guide.family'", "vq_vae has a deterministic encoder", "guide takes ['encoder']"),
        id="family-on-vq-vae",
    ),
    pytest.param(
        {"model": {"kind": "autoencoder", "prior": "mixture"}},
        _error("'model.prior'", "model.kind = 'autoencoder'", "['decoder', 'kind', 'latent_dim'"),
        id="prior-on-autoencoder",
    ),
    pytest.param(
        {"model": {"decoder": {"type": "conv", "hidden": [64]}}},
        _error("'model.decoder.hidden'", "type = 'conv'", "['activation', 'features', 'type']"),
        id="mlp-key-on-conv",
    ),
    pytest.param(
        {"guide": {"encoder": {"features": 64}}},
        _error("'guide.encoder.features'", "type = 'mlp'", "['activation', 'hidden', 'type']"),
        id="conv-key-on-mlp",
    ),
    # parts that are valid alone but not together
    pytest.param(
        {"guide": {"family": "iaf"}, "estimator": {"name": "meanfield"}},
        _error("estimator.name = 'meanfield'", "guide.family = 'iaf'", "['diagonal'"),
        id="meanfield-with-flow",
    ),
    pytest.param(
        {"model": {"prior": "mixture"}, "estimator": {"name": "meanfield"}},
        _error("estimator.name = 'meanfield'", "model.prior = 'mixture'", "'standard_normal'"),
        id="meanfield-with-mixture-prior",
    ),
    pytest.param(
        GREY,
        _error(
            "model.likelihood = 'bernoulli'", "data.binarize = 'none'", "'dynamic'", "'gaussian'"
        ),
        id="bernoulli-on-grey-data",
    ),
    pytest.param(
        {**GREY, "model": {"likelihood": {"name": "categorical", "num_levels": 256}}},
        _error("model.likelihood.num_levels = 256", "17 grey levels", "num_levels = 17"),
        id="categorical-levels-digits",
    ),
    pytest.param(
        {
            "data": {"name": "mnist", "binarize": "none"},
            "model": {"likelihood": {"name": "categorical", "num_levels": 17}},
        },
        _error("model.likelihood.num_levels = 17", "256 grey levels", "num_levels = 256"),
        id="categorical-levels-mnist",
    ),
    pytest.param(
        {"data": {"name": "binarized-mnist", "binarize": "dynamic"}},
        _error("data.binarize = 'dynamic'", "'binarized-mnist'", "data.binarize = 'none'"),
        id="binarized-mnist-binarized-again",
    ),
    pytest.param(
        {"data": {"name": "binarized-mnist", "binarize": "none"}, "model": {"conditional": True}},
        _error("model.conditional", "'binarized-mnist' has none", "['digits', 'mnist'"),
        id="conditional-without-labels",
    ),
    pytest.param(
        {"model": {"conditional": True, "latent_dim": [4, 2]}},
        _error("model.conditional", "model.latent_dim = [4, 2]", "give an integer"),
        id="conditional-two-layers",
    ),
    pytest.param(
        {"model": {"stochastic_hidden": [10]}},
        _error("model.stochastic_hidden", "model.latent_dim = [D1, D2]"),
        id="stochastic-hidden-one-layer",
    ),
    pytest.param(
        {"guide": {"family": "planar"}, "estimator": {"name": "stl"}},
        _error("estimator.name = 'stl'", "guide.family = 'planar'", NO_INVERSE_ALLOWED),
        id="stl-planar",
    ),
    pytest.param(
        {"guide": {"family": "sylvester"}, "estimator": {"name": "dreg"}},
        _error("estimator.name = 'dreg'", "guide.family = 'sylvester'", NO_INVERSE_ALLOWED),
        id="dreg-sylvester",
    ),
    pytest.param(
        {"model": {"kind": "vq_vae"}, "estimator": {"name": "iwae"}},
        _error("'name': 'iwae'", "model.kind = 'vq_vae'", DETERMINISTIC),
        id="vq-vae-iwae",
    ),
    pytest.param(
        {"model": {"kind": "autoencoder"}, "estimator": {"name": "iwae"}},
        _error("'name': 'iwae'", "model.kind = 'autoencoder'", DETERMINISTIC),
        id="autoencoder-iwae",
    ),
    pytest.param(
        {"model": {"kind": "vq_vae"}, "estimator": {"num_particles": 2}},
        _error("'num_particles': 2", "model.kind = 'vq_vae'", DETERMINISTIC),
        id="vq-vae-particles",
    ),
    pytest.param(
        {"model": {"kind": "autoencoder"}, "estimator": {"num_particles": 2}},
        _error("'num_particles': 2", "model.kind = 'autoencoder'", DETERMINISTIC),
        id="autoencoder-particles",
    ),
    pytest.param(
        {"model": {"latent_dim": [4, 3, 2]}},
        _error("model.latent_dim = [4, 3, 2]", "length 2"),
        id="latent-dim-three-layers",
    ),
    pytest.param(
        {"model": {"kind": "autoencoder", "latent_dim": [4, 2]}},
        _error("model.latent_dim = [4, 2]", "an integer >= 1 for model.kind = 'autoencoder'"),
        id="latent-dim-list-autoencoder",
    ),
    # the sigmoid belief net
    pytest.param(
        {"model": {"kind": "sbn"}, "estimator": {"name": "stl"}},
        _error(
            "estimator.name = 'stl'",
            "model.relaxation = 'none'",
            "latent 'z' has none",
            "'vimco'",
            "model.relaxation in ['concrete', 'straight_through']",
        ),
        id="sbn-stl",
    ),
    pytest.param(
        {"model": {"kind": "sbn"}, "estimator": {"name": "dreg", "num_particles": 5}},
        _error("estimator.name = 'dreg'", "model.relaxation = 'none'", "'z'", "'iwae'"),
        id="sbn-dreg",
    ),
    pytest.param(
        {"model": {"kind": "sbn", "relaxation": "concrete"}, "estimator": {"name": "meanfield"}},
        _error("'meanfield'", "model.relaxation = 'concrete'", "no closed form", "'elbo'"),
        id="sbn-relaxed-meanfield",
    ),
    pytest.param(
        {"model": {"kind": "sbn", "temperature": 0.5}},
        _error("model.temperature = 0.5", "model.relaxation = 'none'", "['concrete',"),
        id="sbn-temperature-without-relaxation",
    ),
    pytest.param(
        {"model": {"kind": "sbn", "prior_temperature": 0.5}},
        _error("model.prior_temperature = 0.5", "model.relaxation = 'none'"),
        id="sbn-prior-temperature-without-relaxation",
    ),
    pytest.param(
        {"model": {"kind": "sbn", "relaxation": "gumbel"}},
        _error("model.relaxation = 'gumbel'", "['none', 'concrete', 'straight_through']"),
        id="sbn-relaxation-name",
    ),
    pytest.param(
        {"model": {"kind": "sbn", "relaxation": "concrete", "temperature": 0}},
        _error("model.temperature = 0", "a number > 0"),
        id="sbn-temperature-zero",
    ),
    pytest.param(
        {"model": {"kind": "sbn", "relaxation": "concrete", "temperature": "hot"}},
        _error("model.temperature = 'hot'", "a number > 0"),
        id="sbn-temperature-string",
    ),
    pytest.param(
        {"model": {"kind": "sbn"}, "guide": {"family": "iaf"}},
        _error("'guide.family'", "sbn has a Bernoulli guide", "guide takes ['encoder']"),
        id="sbn-guide-family",
    ),
    pytest.param(
        {"model": {"kind": "sbn", "prior": "mixture"}},
        _error("'model.prior'", "model.kind = 'sbn'", "'relaxation'"),
        id="sbn-prior",
    ),
    pytest.param(
        {"model": {"kind": "sbn", "latent_dim": [4, 2]}},
        _error("model.latent_dim = [4, 2]", "an integer >= 1 for model.kind = 'sbn'"),
        id="sbn-two-layers",
    ),
    pytest.param(
        {"model": {"relaxation": "concrete"}},
        _error("'model.relaxation'", "model.kind = 'vae'"),
        id="relaxation-on-vae",
    ),
    pytest.param(
        {"model": {"kind": "sbn"}, "estimator": {"name": "vimco", "num_particles": 1}},
        _error("estimator", "num_particles must be an integer >= 2, got 1"),
        id="sbn-vimco-one-particle",
    ),
    # devices
    pytest.param(
        {"training": {"device": "gpu"}},
        _error("training.device = 'gpu'", "'cpu', 'cuda' or 'cuda:<index>'"),
        id="device-name",
    ),
    pytest.param(
        {"training": {"device": "cuda:x"}},
        _error("training.device = 'cuda:x'", "'cpu', 'cuda' or 'cuda:<index>'"),
        id="device-index",
    ),
    pytest.param(
        {"training": {"device": 0}}, _error("training.device = 0", "a string"), id="device-type"
    ),
]


@pytest.mark.parametrize(("raw", "message"), BAD_SPECS)
def test_bad_spec_gets_its_specific_error(raw, message):
    with pytest.raises(SpecError, match=message):
        resolve(raw)


def test_resolve_does_not_modify_its_input():
    raw = {"model": {"likelihood": "bernoulli"}, "training": {"epochs": 2}}
    resolve(raw)
    assert raw == {"model": {"likelihood": "bernoulli"}, "training": {"epochs": 2}}


# Overrides ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("training.epochs=5", {"training": {"epochs": 5}}),
        ("optimizer.lr=1e-4", {"optimizer": {"lr": 1e-4}}),
        ("model.latent_dim=[100, 50]", {"model": {"latent_dim": [100, 50]}}),
        ("data.name=mnist", {"data": {"name": "mnist"}}),
        ("training.device=cuda:0", {"training": {"device": "cuda:0"}}),
        ('data.dir="/a b/c"', {"data": {"dir": "/a b/c"}}),
        ("model.conditional=true", {"model": {"conditional": True}}),
        ("guide.options.num_steps=3", {"guide": {"options": {"num_steps": 3}}}),
    ],
    ids=["int", "float", "list", "bare-string", "string-with-colon", "quoted", "bool", "new-table"],
)
def test_override_sets_a_parsed_value(override, expected):
    assert apply_overrides({}, [override]) == expected


def test_override_turns_a_named_part_into_a_table():
    raw = {"data": {"binarize": "none"}, "model": {"likelihood": "gaussian"}}
    changed = apply_overrides(raw, ["model.likelihood.scale=0.1"])
    assert changed["model"]["likelihood"] == {"name": "gaussian", "scale": 0.1}
    assert raw["model"]["likelihood"] == "gaussian"  # the input is copied, not changed
    assert (
        load_spec(raw, ["model.likelihood.scale=0.1"]).model["likelihood"]
        == changed["model"]["likelihood"]
    )


def test_later_overrides_win():
    assert apply_overrides(
        {"training": {"epochs": 9}}, ["training.epochs=1", "training.epochs=2"]
    ) == {"training": {"epochs": 2}}


def test_overridden_spec_is_validated():
    with pytest.raises(SpecError, match=_error("'training.epoch'", "did you mean 'epochs'?")):
        load_spec({}, ["training.epoch=3"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "training.epochs",
            r"an override must look like 'section.key=value', got 'training.epochs'",
        ),
        ("training..epochs=3", r"dotted names like 'training.epochs', got 'training..epochs'"),
        ("=3", r"dotted names"),
        ("training.epochs.max=3", r"override 'training.epochs.max=3': training.epochs is 10"),
    ],
    ids=["no-equals", "empty-name", "no-key", "into-a-number"],
)
def test_malformed_override(override, message):
    with pytest.raises(SpecError, match=message):
        apply_overrides({"training": {"epochs": 10}}, [override])


# Files --------------------------------------------------------------------------------------


def test_spec_file_with_another_suffix_is_refused(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("training:\n  epochs: 3\n")
    with pytest.raises(SpecError, match=r"spec\.yaml.*must end in one of \['\.toml', '\.json'\]"):
        load_spec(path)


def test_missing_spec_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        load_spec(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("name", "text"),
    [("broken.toml", "[training\nepochs = 3\n"), ("broken.json", '{"training": ')],
)
def test_unparsable_spec_file_names_the_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecError, match=rf"{re.escape(name)}.*is not valid {path.suffix[1:]}"):
        read_spec_file(path)


def test_load_spec_of_something_else_is_a_type_error():
    with pytest.raises(TypeError, match="a Spec, a dict or a file path, got 3"):
        load_spec(3)


# The sigmoid belief net ---------------------------------------------------------------------


def test_sbn_resolves_temperatures_only_for_a_relaxation():
    discrete = resolve({"model": {"kind": "sbn", "latent_dim": 20}, "estimator": {"name": "vimco"}})
    assert discrete.model["relaxation"] == "none"
    assert discrete.model["temperature"] is None and discrete.model["prior_temperature"] is None
    assert "temperature" not in discrete.to_dict()["model"]  # TOML has no null
    mlp = {"type": "mlp", "hidden": [256, 256], "activation": "tanh"}
    assert discrete.guide == {"encoder": mlp}
    relaxed = resolve({"model": {"kind": "sbn", "relaxation": "straight_through"}})
    assert relaxed.model["temperature"] == pytest.approx(2 / 3)
    assert relaxed.model["prior_temperature"] == relaxed.model["temperature"]
    chosen = resolve({"model": {"kind": "sbn", "relaxation": "concrete", "temperature": 0.5}}).model
    assert (chosen["temperature"], chosen["prior_temperature"]) == (0.5, 0.5)
    for spec in (discrete, relaxed):
        assert resolve(spec.to_dict()) == spec


@pytest.mark.parametrize("name", ["elbo", "meanfield", "score", "iwae", "vimco", "renyi"])
def test_sbn_takes_every_estimator_with_score_function_gradients(name):
    # meanfield too: the KL between the Bernoulli guide and prior is in closed form, and the
    # reconstruction term gets its score-function gradient.
    spec = resolve({"model": {"kind": "sbn"}, "estimator": {"name": name}})
    assert spec.estimator["name"] == name


@pytest.mark.parametrize("name", ["stl", "dreg", "iwae"])
def test_relaxed_sbn_takes_reparameterized_estimators(name):
    raw = {"model": {"kind": "sbn", "relaxation": "concrete"}, "estimator": {"name": name}}
    spec = resolve(raw)
    assert spec.estimator["name"] == name


def test_sbn_builds_its_model_and_guide():
    from pyro_vi.guides.bernoulli import BernoulliGuide
    from pyro_vi.models.sbn import SigmoidBeliefNet
    from pyro_vi.spec import DataInfo, build

    raw = {
        "model": {
            "kind": "sbn",
            "latent_dim": 5,
            "relaxation": "concrete",
            "temperature": 0.5,
            "prior_temperature": 0.25,
            "decoder": {"hidden": [7]},
        },
        "guide": {"encoder": {"hidden": [6]}},
    }
    built = build(resolve(raw), DataInfo((1, 8, 8)))
    assert isinstance(built.model, SigmoidBeliefNet) and isinstance(built.guide, BernoulliGuide)
    assert (built.model.relaxation, built.model.temperature) == ("concrete", 0.25)
    assert built.guide.temperature == 0.5 and built.relaxed
    judged = built.for_evaluation()
    assert judged.model is built.model.discrete() and judged.guide is built.guide.discrete()
    discrete = build(resolve({"model": {"kind": "sbn"}}), DataInfo((1, 8, 8)))
    assert not discrete.relaxed and discrete.for_evaluation() is discrete
