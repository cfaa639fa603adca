"""Turn a user's spec (a dict, possibly partial) into a complete, validated :class:`Spec`.

Validation happens in full before anything is built: first every key and type
(:mod:`pyro_vi.spec.schema`; the keys of ``[model]`` and ``[guide]`` are those of the model's
kind, :mod:`pyro_vi.spec.kinds`), then the options of each named part (likelihood, prior,
family, estimator) by the part's own validation, then the combinations that cannot work
together: the data against the likelihood, the kind's own checks, and the capability table of
:mod:`pyro_vi.spec.capabilities` (estimator against model and guide). The first problem raises
one :class:`~pyro_vi.spec.schema.SpecError`.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from pyro_vi import estimators
from pyro_vi.devices import resolve_device
from pyro_vi.guides import families
from pyro_vi.models import likelihoods, priors
from pyro_vi.nets import ACTIVATIONS, NETWORKS
from pyro_vi.spec.capabilities import check_capabilities
from pyro_vi.spec.data_section import (  # DATA, DATA_LEVELS: re-exported beside the other keys
    DATA,  # noqa: F401
    DATA_LEVELS,  # noqa: F401
    check_data_section,
    check_early_stopping,
    resolve_data,
)
from pyro_vi.spec.kinds import KINDS, ModelKind, kind_of
from pyro_vi.spec.schema import Field, SpecError, check_field, check_keys, fail, resolve_table

SECTIONS = ("data", "model", "guide", "estimator", "optimizer", "training", "log")
NETWORK_TYPES = tuple(NETWORKS)
OPTIMIZERS = ("adam", "clipped_adam")
#: Options the spec does not expose: the spec's models always use the package's data plate.
_INTERNAL_ESTIMATOR_OPTIONS = ("data_plate", "max_plate_nesting", "vectorize_particles")

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
#: The keys of a network table, by its type.
NETWORK_FIELDS = {"mlp": MLP_NETWORK, "conv": CONV_NETWORK}

LATENT_DIM_DEFAULT = 8

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

#: ``training.compile``: what :func:`pyro_vi.train.fit`'s ``compile=`` receives for each.
COMPILE_MODES = ("none", "graph", "inductor")

TRAINING = {
    "epochs": Field("int", 10, "passes over the training data", minimum=1),
    "batch_size": Field("int", 100, "minibatch size", minimum=1),
    "seed": Field("int", 0, "seeds Pyro, torch and the shuffling", minimum=0),
    "device": Field("str", "cpu", "cpu, cuda or cuda:<index>"),
    "eval_samples": Field(
        "int", 1000, "particles K of the final IWAE-K test log-likelihood (0: skip it)", minimum=0
    ),
    "checkpoint_every": Field(
        "int",
        None,
        "training steps between checkpoints (unset: at the end of every epoch only)",
        minimum=1,
    ),
    "max_seconds": Field(
        "float", None, "stop training after this many seconds", minimum=0.0, exclusive=True
    ),
    "early_stopping": Field(
        "int",
        None,
        "patience: stop when the validation bound has not improved for this many epochs "
        "(needs a validation split: data.validation or data.validation_path)",
        minimum=1,
    ),
    "compile": Field(
        "str",
        "none",
        "capture the whole training step: none (eager), graph (replay the captured graph), "
        "inductor (compile it; CUDA graphs on a GPU; true means inductor, false none); a "
        "program that cannot be captured runs eagerly with a warning",
        choices=COMPILE_MODES,
    ),
    "threads": Field(
        "int",
        None,
        "torch CPU threads (unset: the physical cores other processes leave free)",
        minimum=1,
    ),
}

#: Where metrics go (:mod:`pyro_vi.runs.tracking`): ``metrics.csv`` is written whatever the list.
LOG_BACKENDS = ("csv", "tensorboard", "mlflow")
LOG = {
    "backends": Field(
        "strs",
        ["csv"],
        "metric sinks: csv (always written), tensorboard, mlflow",
        choices=LOG_BACKENDS,
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
    log: dict[str, Any] = dataclass_field(default_factory=lambda: _defaults(LOG))

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
    def kind(self) -> ModelKind:
        """The kind of model (:mod:`pyro_vi.spec.kinds`)."""
        return kind_of(self)

    @property
    def latent_dims(self) -> list[int]:
        """The sizes of the stochastic layers, data side first (one entry for one layer)."""
        return self.kind.latent_dims(self.model)


def _defaults(fields: Mapping[str, Field]) -> dict[str, Any]:
    return {name: copy.deepcopy(f.default) for name, f in fields.items()}


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def _compile_as_mode(training: Any) -> Any:
    """``training.compile = true`` / ``false`` as fit's ``compile=True`` / ``False`` read them:
    inductor / none (the resolved spec always holds the mode's name)."""
    if isinstance(training, Mapping) and isinstance(training.get("compile"), bool):
        training = {**training, "compile": "inductor" if training["compile"] else "none"}
    return training


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
    data = resolve_data(sections["data"])
    model = _resolve_model(sections["model"])
    guide = _resolve_guide(sections["guide"], KINDS[model["kind"]])
    estimator = _resolve_estimator(sections["estimator"])
    optimizer = resolve_table("optimizer", sections["optimizer"], OPTIMIZER)
    training = resolve_table("training", _compile_as_mode(sections["training"]), TRAINING)
    _check_device(training["device"])
    log = resolve_table("log", sections["log"], LOG)
    spec = Spec(data, model, guide, estimator, optimizer, training, log=log, **top)
    _check_combinations(spec, sections)
    return spec


def _all_estimator_options() -> list[str]:
    names = {option for est in estimators.ESTIMATORS for option in estimators.options(est)}
    return sorted(names - set(_INTERNAL_ESTIMATOR_OPTIONS))


def _resolve_model(table: Any) -> dict[str, Any]:
    every_key = {key for kind in KINDS.values() for key in kind.model_keys}
    table = check_keys("model", table, every_key)
    # The choices are read at each call: a kind registered later is a choice too.
    field = Field("str", "vae", "the model", choices=tuple(KINDS))
    kind = KINDS[check_field("model.kind", table.get("kind", field.default), field)]
    check_keys("model", table, kind.model_keys, f" (model.kind = {kind.name!r})")
    model: dict[str, Any] = {"kind": kind.name}
    if "latent_dim" in kind.shared_keys:
        model["latent_dim"] = _latent_dim(table.get("latent_dim", LATENT_DIM_DEFAULT), kind)
    model["likelihood"] = _named_part(
        "model.likelihood",
        table.get("likelihood", "bernoulli"),
        likelihoods.LIKELIHOODS.names(),
        likelihoods.likelihood_options,
        lambda name, options: likelihoods.make_likelihood(name, (1, 4, 4), **options),
    )
    if "prior" in kind.shared_keys:
        model["prior"] = _named_part(
            "model.prior",
            table.get("prior", "standard_normal"),
            priors.PRIORS.names(),
            priors.prior_options,
            lambda name, options: priors.make_prior(name, 2, **options),
        )
    model["decoder"] = _network("model.decoder", table.get("decoder", {}))
    for key, field in kind.fields.items():
        value = table.get(key, field.default)
        model[key] = None if value is None else check_field(f"model.{key}", value, field)
    return kind.complete(model)


def _latent_dim(value: Any, kind: ModelKind) -> int | list[int]:
    if isinstance(value, list | tuple):
        if kind.max_layers < 2:
            raise fail("model.latent_dim", value, f"an integer >= 1 for model.kind = {kind.name!r}")
        field = Field("ints", None, "", minimum=1, length=kind.max_layers)
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
    fields = NETWORK_FIELDS[kind]
    check_keys(key, value, fields, f" (type = {kind!r})")
    return resolve_table(key, value, fields)


def _resolve_guide(table: Any, kind: ModelKind) -> dict[str, Any]:
    context = f" ({kind.no_family})" if kind.no_family else ""
    table = check_keys("guide", table, kind.guide_keys, context)
    guide: dict[str, Any] = {}
    if "family" in kind.guide_keys:
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
    """Reject parts that are valid alone but cannot work together: the data and the
    likelihood, early stopping and a validation split, then the model kind's own rules, then
    the estimator against what the model and guide offer
    (:func:`~pyro_vi.spec.capabilities.check_capabilities`)."""
    check_data_section(spec)
    check_early_stopping(spec)
    kind = spec.kind
    kind.check(spec, raw)
    check_capabilities(spec.estimator, kind.capabilities(spec))


#: What ``pyro-vi train`` trains without a spec file (the same as ``configs/vae_digits.toml``):
#: an MLP VAE on the embedded digits, about 15 s on two CPU cores.
DEFAULT_SPEC: dict[str, Any] = {
    "name": "vae-digits",
    "description": "MLP VAE on scikit-learn's 8x8 digits, dynamically binarized",
    # The defaults of [data] (the digits, dynamically binarized), left unwritten so that
    # `pyro-vi train --set data.path=...` trains the same model on a user's file.
    "data": {},
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


def as_spec(spec: Spec | Mapping[str, Any]) -> Spec:
    """``spec`` itself, or a dict validated into a :class:`Spec`; anything else is a TypeError."""
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, Mapping):
        return resolve(spec)
    raise TypeError(
        f"spec must be a Spec (pyro_vi.spec.load_spec) or a dict, got {type(spec).__name__}"
    )
