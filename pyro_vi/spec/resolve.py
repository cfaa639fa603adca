"""Turn a user's spec (a dict, possibly partial) into a complete, validated :class:`Spec`.

Validation happens in full before anything is built: first every key and type
(:mod:`pyro_vi.spec.schema`), then the options of each named part (likelihood, prior, family,
estimator) by the part's own validation, then the combinations that cannot work together. The
first problem raises one :class:`~pyro_vi.spec.schema.SpecError`.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pyro_vi import data as datasets
from pyro_vi import estimators
from pyro_vi.devices import resolve_device
from pyro_vi.guides import families
from pyro_vi.models import likelihoods, priors, sbn
from pyro_vi.nets import ACTIVATIONS
from pyro_vi.spec.schema import Field, SpecError, check_field, check_keys, fail, resolve_table

SECTIONS = ("data", "model", "guide", "estimator", "optimizer", "training")
MODEL_KINDS = ("vae", "vq_vae", "autoencoder", "sbn")
NETWORK_TYPES = ("mlp", "conv")
OPTIMIZERS = ("adam", "clipped_adam")
#: Families whose q has a closed-form KL to a Gaussian prior (what ``meanfield`` needs).
GAUSSIAN_FAMILIES = ("diagonal", "full_rank", "low_rank")
#: Estimators whose gradient scores the guide at a detached copy of its own sample.
FRESH_VALUE_ESTIMATORS = ("stl", "dreg")
#: Grey levels of each dataset's pixels: values k / (levels - 1).
DATA_LEVELS = {"digits": 17, "mnist": 256, "fashion-mnist": 256, "binarized-mnist": 2}
#: Datasets whose files carry labels (a conditional model needs them).
LABELLED = ("digits", "mnist", "fashion-mnist")
#: Options the spec does not expose: the spec's models always use the package's data plate.
_INTERNAL_ESTIMATOR_OPTIONS = ("data_plate", "max_plate_nesting", "vectorize_particles")

DATA = {
    "name": Field("str", "digits", "the dataset", choices=tuple(datasets.DATASETS)),
    "dir": Field("str", None, "folder holding <dir>/<name>/ (default: $PYRO_VI_DATA)"),
    "binarize": Field(
        "str", "dynamic", "'dynamic': a fresh binary draw each epoch", choices=("dynamic", "none")
    ),
    "limit": Field("int", None, "train on the first N training images only", minimum=1),
    "test_limit": Field("int", None, "evaluate on the first N test images only", minimum=1),
}

MLP_NETWORK = {
    "type": Field("str", "mlp", "network type", choices=NETWORK_TYPES),
    "hidden": Field("ints", [256, 256], "hidden layer sizes, data side first", minimum=1),
    "activation": Field("str", "tanh", "nonlinearity", choices=tuple(sorted(ACTIVATIONS))),
}
CONV_NETWORK = {
    "type": MLP_NETWORK["type"],
    "features": Field("int", 256, "width of the dense layer after the convolutions", minimum=1),
    "activation": Field("str", "relu", "nonlinearity", choices=tuple(sorted(ACTIVATIONS))),
}

_MODEL_COMMON = {
    "kind": Field("str", "vae", "the model", choices=MODEL_KINDS),
}
_VAE_ONLY = {
    "conditional": Field("bool", False, "condition decoder and encoder on the label"),
    "stochastic_hidden": Field(
        "ints", [100, 100], "deterministic layers between two stochastic layers", minimum=1
    ),
}
_VQ_ONLY = {
    "num_codes": Field("int", 64, "codebook size K", minimum=2),
    "code_dim": Field("int", 8, "size D of each code vector", minimum=1),
    "num_latents": Field("int", 4, "code vectors n per datapoint", minimum=1),
    "commitment": Field("float", 0.25, "commitment-loss weight beta", minimum=0.0),
}
_SBN_ONLY = {
    "relaxation": Field(
        "str",
        "none",
        "'none': binary latents (score-function/VIMCO gradients); 'concrete' or "
        "'straight_through': their binary Concrete relaxation (pathwise gradients, biased)",
        choices=sbn.RELAXATIONS,
    ),
    "temperature": Field(
        "float",
        None,
        f"the relaxed guide's temperature (default {sbn.DEFAULT_TEMPERATURE:.4g} with a "
        "relaxation)",
        minimum=0.0,
        exclusive=True,
    ),
    "prior_temperature": Field(
        "float",
        None,
        "the relaxed prior's temperature (default: model.temperature)",
        minimum=0.0,
        exclusive=True,
    ),
}
#: The keys each model kind takes (besides the tables likelihood, prior, decoder).
MODEL_KEYS = {
    "vae": ("kind", "latent_dim", "likelihood", "prior", "decoder", *_VAE_ONLY),
    "autoencoder": ("kind", "latent_dim", "likelihood", "decoder"),
    "vq_vae": ("kind", "likelihood", "decoder", *_VQ_ONLY),
    "sbn": ("kind", "latent_dim", "likelihood", "decoder", *_SBN_ONLY),
}
LATENT_DIM_DEFAULT = 8

GUIDE_KEYS = {
    "vae": ("family", "options", "encoder"),
    "autoencoder": ("encoder",),
    "vq_vae": ("encoder",),
    "sbn": ("encoder",),
}
#: Why a model kind's guide has no ``family``.
_NO_FAMILY = {
    "autoencoder": "autoencoder has a deterministic encoder: no family",
    "vq_vae": "vq_vae has a deterministic encoder: no family",
    "sbn": "sbn has a Bernoulli guide (relaxed with model.relaxation): no family",
}

OPTIMIZER = {
    "name": Field("str", "adam", "the optimizer", choices=OPTIMIZERS),
    "lr": Field("float", 1e-3, "learning rate", minimum=0.0, exclusive=True),
    "betas": Field("floats", [0.9, 0.999], "Adam's betas", minimum=0.0, maximum=1.0, length=2),
    "eps": Field("float", 1e-8, "Adam's epsilon", minimum=0.0, exclusive=True),
    "weight_decay": Field("float", 0.0, "L2 penalty", minimum=0.0),
    "clip_norm": Field(
        "float", 10.0, "gradient clipping (clipped_adam)", minimum=0.0, exclusive=True
    ),
    "lr_decay": Field(
        "float", 1.0, "learning rate factor per epoch", minimum=0.0, exclusive=True, maximum=1.0
    ),
}

TRAINING = {
    "epochs": Field("int", 10, "passes over the training data", minimum=1),
    "batch_size": Field("int", 100, "minibatch size", minimum=1),
    "seed": Field("int", 0, "seeds Pyro, torch and the shuffling", minimum=0),
    "device": Field("str", "cpu", "cpu, cuda or cuda:<index>"),
    "eval_samples": Field(
        "int", 1000, "particles K of the final IWAE-K test log-likelihood (0: skip it)", minimum=0
    ),
    "checkpoint_every": Field("int", 1, "epochs between checkpoints", minimum=1),
    "max_seconds": Field(
        "float", None, "stop training after this many seconds", minimum=0.0, exclusive=True
    ),
}

TOP_LEVEL = {
    "name": Field("str", None, "the run's name"),
    "description": Field("str", None, "what the spec is for"),
}


@dataclass
class Spec:
    """A complete, validated spec: every key present, defaults filled in.

    Sections are plain dicts; optional keys that are unset hold ``None``. Build one with
    :func:`resolve` (or :func:`pyro_vi.spec.load_spec`); :meth:`to_dict` gives it back as a dict
    that :func:`resolve` maps to an equal spec, which is how a run folder stores it.
    """

    data: dict[str, Any]
    model: dict[str, Any]
    guide: dict[str, Any]
    estimator: dict[str, Any]
    optimizer: dict[str, Any]
    training: dict[str, Any]
    name: str | None = None
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec as nested dicts, without unset (``None``) keys: TOML has no null."""
        out: dict[str, Any] = {}
        for key in TOP_LEVEL:
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        for section in SECTIONS:
            out[section] = _drop_none(getattr(self, section))
        return out

    @property
    def latent_dims(self) -> list[int]:
        """The sizes of the stochastic layers, data side first (one entry for one layer)."""
        if self.model["kind"] == "vq_vae":
            return [self.model["num_latents"] * self.model["code_dim"]]
        dims = self.model["latent_dim"]
        return list(dims) if isinstance(dims, list) else [dims]


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def resolve(raw: Mapping[str, Any] | Spec) -> Spec:
    """Validate a spec and fill in every default.

    Arguments:
        raw: Nested dicts, as read from TOML or JSON (sections may be missing or partial), or a
            :class:`Spec` (returned re-validated).

    Returns:
        The complete :class:`Spec`.

    Raises:
        SpecError: the first problem found, naming the key, the value and what is allowed.

    Example:
        >>> spec = resolve({"model": {"latent_dim": 16}, "estimator": {"name": "iwae"}})
        >>> spec.estimator
        {'name': 'iwae', 'num_particles': 2}
    """
    if isinstance(raw, Spec):
        raw = raw.to_dict()
    raw = copy.deepcopy(dict(check_keys("", raw, (*TOP_LEVEL, *SECTIONS))))
    top = {key: raw.get(key) for key in TOP_LEVEL}
    for key, field in TOP_LEVEL.items():
        if top[key] is not None:
            top[key] = check_field(key, top[key], field)
    # Each resolver checks its own keys, so that a key used only by another model kind or
    # network type is reported as such.
    sections = {name: raw.get(name, {}) for name in SECTIONS}
    data = resolve_table("data", sections["data"], DATA)
    model = _resolve_model(sections["model"])
    guide = _resolve_guide(sections["guide"], model)
    estimator = _resolve_estimator(sections["estimator"])
    optimizer = resolve_table("optimizer", sections["optimizer"], OPTIMIZER)
    training = resolve_table("training", sections["training"], TRAINING)
    _check_device(training["device"])
    spec = Spec(data, model, guide, estimator, optimizer, training, **top)
    _check_combinations(spec, sections)
    return spec


def _all_estimator_options() -> list[str]:
    names = {option for est in estimators.ESTIMATORS for option in estimators.options(est)}
    return sorted(names - set(_INTERNAL_ESTIMATOR_OPTIONS))


def _kind_context(kind: str) -> str:
    return f" (model.kind = {kind!r})"


def _resolve_model(table: Any) -> dict[str, Any]:
    every_key = {key for keys in MODEL_KEYS.values() for key in keys}
    table = check_keys("model", table, every_key)
    kind = check_field("model.kind", table.get("kind", "vae"), _MODEL_COMMON["kind"])
    check_keys("model", table, MODEL_KEYS[kind], _kind_context(kind))
    model: dict[str, Any] = {"kind": kind}
    if "latent_dim" in MODEL_KEYS[kind]:
        model["latent_dim"] = _latent_dim(table.get("latent_dim", LATENT_DIM_DEFAULT), kind)
    model["likelihood"] = _named_part(
        "model.likelihood",
        table.get("likelihood", "bernoulli"),
        likelihoods.LIKELIHOODS,
        likelihoods.likelihood_options,
        lambda name, options: likelihoods.make_likelihood(name, (1, 4, 4), **options),
    )
    if "prior" in MODEL_KEYS[kind]:
        model["prior"] = _named_part(
            "model.prior",
            table.get("prior", "standard_normal"),
            priors.PRIORS,
            priors.prior_options,
            lambda name, options: priors.make_prior(name, 2, **options),
        )
    model["decoder"] = _network("model.decoder", table.get("decoder", {}))
    for key, field in {**_VAE_ONLY, **_VQ_ONLY, **_SBN_ONLY}.items():
        if key in MODEL_KEYS[kind]:
            value = table.get(key, field.default)
            model[key] = None if value is None else check_field(f"model.{key}", value, field)
    if kind == "sbn" and model["relaxation"] != "none":
        # Filled in so that the run folder's spec says which temperatures trained the model.
        if model["temperature"] is None:
            model["temperature"] = sbn.DEFAULT_TEMPERATURE
        if model["prior_temperature"] is None:
            model["prior_temperature"] = model["temperature"]
    if not isinstance(model.get("latent_dim"), list):
        # Only two stochastic layers use it; a one-layer spec that sets it is rejected by
        # _check_combinations, and the resolved spec leaves it out.
        model.pop("stochastic_hidden", None)
    return model


def _latent_dim(value: Any, kind: str) -> int | list[int]:
    if isinstance(value, list | tuple):
        if kind != "vae":
            raise fail("model.latent_dim", value, f"an integer >= 1 for model.kind = {kind!r}")
        field = Field("ints", None, "", minimum=1, length=2)
        return check_field("model.latent_dim", value, field)
    field = Field("int", None, "", minimum=1)
    try:
        return check_field("model.latent_dim", value, field)
    except SpecError:
        allowed = "an integer >= 1, or [D1, D2] for two stochastic layers (data side first)"
        raise fail("model.latent_dim", value, allowed) from None


def _named_part(
    key: str,
    value: Any,
    names: tuple[str, ...],
    defaults_of: Callable[[str], dict[str, Any]],
    construct: Callable[[str, dict[str, Any]], Any],
) -> dict[str, Any]:
    """A part chosen by name with options: ``"gaussian"`` or ``{name = "gaussian", scale = 0.1}``.

    The options are checked by constructing the part once on a tiny shape, so the spec and the
    part can never disagree on what is valid.
    """
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise fail(key, value, f"a name in {list(names)} or a table with 'name' and options")
    name = check_field(f"{key}.name", value.get("name", names[0]), Field("str", None, "", names))
    options = check_keys(key, value, ("name", *defaults_of(name)), f" (name = {name!r})")
    options.pop("name", None)
    _construct(key, lambda: construct(name, options))
    resolved = {k: options.get(k, default) for k, default in defaults_of(name).items()}
    return {"name": name, **resolved}


def _construct(key: str, build: Callable[[], Any]) -> Any:
    try:
        return build()
    except (TypeError, ValueError) as error:
        raise SpecError(f"invalid spec: {key}: {error}") from None


def _network(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise fail(key, value, "a table with 'type' ('mlp' or 'conv') and its options")
    kind = check_field(f"{key}.type", value.get("type", "mlp"), MLP_NETWORK["type"])
    fields = MLP_NETWORK if kind == "mlp" else CONV_NETWORK
    check_keys(key, value, fields, f" (type = {kind!r})")
    return resolve_table(key, value, fields)


def _resolve_guide(table: Any, model: Mapping[str, Any]) -> dict[str, Any]:
    kind = model["kind"]
    context = f" ({_NO_FAMILY[kind]})" if kind in _NO_FAMILY else ""
    table = check_keys("guide", table, GUIDE_KEYS[kind], context)
    guide: dict[str, Any] = {}
    if "family" in GUIDE_KEYS[kind]:
        name = check_field(
            "guide.family",
            table.get("family", "diagonal"),
            Field("str", None, "", tuple(families.FAMILIES)),
        )
        options = table.get("options", {})
        check_keys("guide.options", options, families.options(name), f" (family = {name!r})")
        _construct("guide.options", lambda: families.make_family(name, 2, 4, **options))
        guide["family"] = name
        guide["options"] = dict(options)
    guide["encoder"] = _network("guide.encoder", table.get("encoder", {}))
    return guide


def _estimator_defaults(name: str) -> dict[str, Any]:
    signature = inspect.signature(estimators.ESTIMATORS[name].__init__)
    return {
        option: parameter.default
        for option, parameter in signature.parameters.items()
        if option != "self" and option not in _INTERNAL_ESTIMATOR_OPTIONS
    }


def _resolve_estimator(table: Any) -> dict[str, Any]:
    table = check_keys("estimator", table, ("name", *_all_estimator_options()))
    name = check_field(
        "estimator.name",
        table.get("name", "elbo"),
        Field("str", None, "", tuple(estimators.ESTIMATORS)),
    )
    defaults = _estimator_defaults(name)
    check_keys("estimator", table, ("name", *defaults), f" (name = {name!r})")
    options = {k: v for k, v in table.items() if k != "name"}
    _construct("estimator", lambda: estimators.get(name, **options))
    return {"name": name, **{k: options.get(k, default) for k, default in defaults.items()}}


def _check_device(device: str) -> None:
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        kind = None
    if kind not in ("cpu", "cuda"):
        raise fail("training.device", device, "'cpu', 'cuda' or 'cuda:<index>'")


def check_device_available(spec: Spec) -> None:
    """Raise :class:`SpecError` when ``training.device`` names a device this machine lacks."""
    try:
        resolve_device(spec.training["device"])
    except ValueError as error:
        raise SpecError(f"invalid spec: training.device: {error}") from None


def _check_combinations(spec: Spec, raw: Mapping[str, Any]) -> None:
    """Reject parts that are valid alone but cannot work together."""
    data, model, guide, estimator = spec.data, spec.model, spec.guide, spec.estimator
    kind = model["kind"]
    likelihood = model["likelihood"]
    binary = data["name"] == "binarized-mnist" or data["binarize"] == "dynamic"
    levels = 2 if binary else DATA_LEVELS[data["name"]]
    if data["name"] == "binarized-mnist" and data["binarize"] == "dynamic":
        raise SpecError(
            "invalid spec: data.binarize = 'dynamic' with data.name = 'binarized-mnist'; that "
            "dataset is already a fixed binarization: use data.binarize = 'none'"
        )
    if likelihood["name"] == "bernoulli" and not binary:
        raise SpecError(
            f"invalid spec: model.likelihood = 'bernoulli' needs binary data, but data.name = "
            f"{data['name']!r} with data.binarize = 'none' has grey levels in [0, 1]; allowed: "
            "data.binarize = 'dynamic', or a likelihood for grey levels ('continuous_bernoulli', "
            "'gaussian', 'categorical', or 'bernoulli_grey' for the non-normalized cross-entropy)"
        )
    if likelihood["name"] == "categorical" and (likelihood["num_levels"] - 1) % (levels - 1):
        raise SpecError(
            f"invalid spec: model.likelihood.num_levels = {likelihood['num_levels']} cannot "
            f"represent the {levels} grey levels of this data (values k/{levels - 1}); allowed: "
            f"num_levels = {levels} (or any n with n - 1 a multiple of {levels - 1})"
        )
    if model.get("conditional") and data["name"] not in LABELLED:
        raise SpecError(
            f"invalid spec: model.conditional = true needs labels, and data.name = "
            f"{data['name']!r} has none; allowed datasets: {list(LABELLED)}"
        )
    if model.get("conditional") and len(spec.latent_dims) == 2:
        raise SpecError(
            f"invalid spec: model.conditional = true with model.latent_dim = "
            f"{model['latent_dim']}; the conditional VAE has one stochastic layer: give an integer"
        )
    if "stochastic_hidden" in raw["model"] and len(spec.latent_dims) == 1:
        raise SpecError(
            "invalid spec: model.stochastic_hidden is only used with two stochastic layers "
            "(model.latent_dim = [D1, D2])"
        )
    name = estimator["name"]
    if name == "meanfield":
        if kind == "vae" and guide["family"] not in GAUSSIAN_FAMILIES:
            raise SpecError(
                f"invalid spec: estimator.name = 'meanfield' (analytic KL) with guide.family = "
                f"{guide['family']!r}: KL(q || p) has no closed form for that family; allowed: "
                f"a Gaussian family {list(GAUSSIAN_FAMILIES)}, or an estimator without analytic "
                "KL ('elbo', 'stl', 'iwae', ...)"
            )
        if model.get("prior", {}).get("name", "standard_normal") != "standard_normal":
            raise SpecError(
                f"invalid spec: estimator.name = 'meanfield' (analytic KL) with model.prior = "
                f"{model['prior']['name']!r}: KL(q || p) has no closed form for a mixture prior; "
                "allowed: model.prior = 'standard_normal', or estimator.name = 'elbo'"
            )
    if name in FRESH_VALUE_ESTIMATORS and kind == "vae":
        family = families.FAMILIES[guide["family"]]
        if not family.has_tractable_inverse:
            raise SpecError(
                f"invalid spec: estimator.name = {name!r} with guide.family = "
                f"{guide['family']!r}: {name} scores the guide at a detached copy of its sample, "
                "and that flow has no inverse to do so; allowed families: "
                f"{[n for n, f in families.FAMILIES.items() if f.has_tractable_inverse]}"
            )
    if kind == "sbn":
        _check_sbn(spec, raw)
    if kind in ("vq_vae", "autoencoder") and (name != "elbo" or estimator["num_particles"] != 1):
        why = (
            "there is no KL in closed form for a point mass"
            if name == "meanfield"
            else "every particle is the same, so multi-sample bounds and other gradient "
            "estimators add cost and nothing else (stl/dreg would even drop the VQ losses)"
        )
        raise SpecError(
            f"invalid spec: estimator = {estimator} with model.kind = {kind!r}: its encoder is "
            f"deterministic and {why}; allowed: estimator.name = 'elbo' with num_particles = 1"
        )


def _check_sbn(spec: Spec, raw: Mapping[str, Any]) -> None:
    """The sigmoid belief net's combinations: temperatures need a relaxation, and the discrete
    latent needs an estimator that takes sites without ``rsample``."""
    model, name = spec.model, spec.estimator["name"]
    relaxation = model["relaxation"]
    relaxations = list(sbn.RELAXATIONS[1:])
    if relaxation == "none":
        for key in ("temperature", "prior_temperature"):
            if key in raw["model"]:
                raise SpecError(
                    f"invalid spec: model.{key} = {raw['model'][key]!r} with model.relaxation = "
                    f"'none': a temperature belongs to a relaxation; allowed: leave model.{key} "
                    f"out, or set model.relaxation to one of {relaxations}"
                )
        if estimators.ESTIMATORS[name].requires_reparam:
            takers = [n for n, cls in estimators.ESTIMATORS.items() if not cls.requires_reparam]
            raise SpecError(
                f"invalid spec: estimator.name = {name!r} with model.kind = 'sbn' and "
                f"model.relaxation = 'none': {name} needs reparameterized latents, and the "
                f"Bernoulli latent 'z' has none; allowed: an estimator with score-function or "
                f"VIMCO gradients {takers}, or model.relaxation in {relaxations}"
            )
    elif name == "meanfield":
        raise SpecError(
            f"invalid spec: estimator.name = 'meanfield' (analytic KL) with model.kind = 'sbn' "
            f"and model.relaxation = {relaxation!r}: KL(q || p) between binary Concrete "
            "distributions has no closed form; allowed: estimator.name = 'elbo' (or any other "
            "estimator), or model.relaxation = 'none' (the Bernoulli KL is in closed form)"
        )


#: What ``pyro-vi train`` trains without a spec file (the same as ``configs/vae_digits.toml``):
#: an MLP VAE on the embedded digits, about 15 s on two CPU cores.
DEFAULT_SPEC: dict[str, Any] = {
    "name": "vae-digits",
    "description": "MLP VAE on scikit-learn's 8x8 digits, dynamically binarized",
    "data": {"name": "digits", "binarize": "dynamic"},
    "model": {
        "kind": "vae",
        "latent_dim": 8,
        "likelihood": "bernoulli",
        "decoder": {"type": "mlp", "hidden": [256, 256], "activation": "tanh"},
    },
    "guide": {
        "family": "diagonal",
        "encoder": {"type": "mlp", "hidden": [256, 256], "activation": "tanh"},
    },
    "estimator": {"name": "elbo", "num_particles": 1},
    "optimizer": {"name": "adam", "lr": 3e-3},
    "training": {"epochs": 150, "batch_size": 100, "seed": 0},
}
