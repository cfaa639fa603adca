"""``pyro-vi sweep``: train a spec over a grid of values of its keys, or search them with Optuna.

A grid is a list of ``KEY=VALUES`` arguments, each a dotted key of the spec and a comma-separated
list of values; every combination is trained::

    pyro-vi sweep configs/vae_digits.toml --grid optimizer.lr=3e-3,1e-3 training.seed=0,1,2

Values are read as TOML (``1e-3``, ``5``, ``true``, ``[100, 50]``; a bare word is a string, and
so is any value of a key whose value in the spec is a string) and validated by the spec's own
schema, for every combination, before anything trains: an unknown key, a malformed argument, a
value of the wrong type, an empty list and a key given twice are each one error naming the
argument.

Each combination is an ordinary run folder, ``OUT/<short key>-<value>_...`` (for example
``OUT/lr-0.003_seed-1``), trained by :func:`~pyro_vi.runs.training.train_spec` with the common
per-epoch curves of :mod:`pyro_vi.runs.curves`. A sweep started again continues: a folder whose
run is complete (or diverged, or pruned) with the same spec is skipped, one that stopped is
resumed exactly (``pyro-vi train --resume``), one whose evaluation was interrupted is completed.
Then one comparison is written over all the runs (:mod:`pyro_vi.runs.comparison`: the table
with a column per swept key, ranked by the common IWAE-K log-likelihood, and the figure), and
``OUT/sweep.json`` with the grid and what happened to each combination.

``optuna=N`` searches instead (``pip install pyro-vi[sweep]``): N trials of Optuna's TPE sampler
(seeded with ``training.seed``), in folders ``OUT/trial-0000``..., with the study kept in
``OUT/optuna.db`` so that a search started again continues it (a trial that was interrupted is
tried again in its folder and resumed). The space takes ranges beside lists of values (a list is
a categorical choice, one value a constant)::

    optimizer.lr=log:1e-4:1e-2        log-uniform      training.batch_size=int:20:200
    optimizer.lr=float:1e-4:1e-2      uniform          model.latent_dim=log-int:2:64

**The objective** is the IWAE-K estimate of log p(x) (K = ``curve_samples``) of the last epoch on
the validation split when the spec has one (``data.validation``), else on the test images the
curves score: the same bound for every trial, not each trial's own training bound (which would
favour more particles by construction). An autoencoder, which has no bound, is searched on its
reconstruction term. After every epoch the same number is reported to Optuna's
``MedianPruner``, which stops a trial whose value is below the median of the earlier trials' at
that epoch (after ``prune_startup`` trials): its folder's ``run.json`` then says ``"pruned"``,
not ``"failed"``. ``OUT/optuna.json`` lists every trial with its objective and the best one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from pyro_vi._checks import describe
from pyro_vi.records import read_json, versioned, write_json
from pyro_vi.runs.comparison import run_row, write_comparison
from pyro_vi.runs.curves import (
    DEFAULT_CURVE_SAMPLES,
    DEFAULT_CURVE_SIZE,
    EpochEvaluation,
    check_curve_settings,
    read_curve,
)
from pyro_vi.runs.folder import INFO_FILE, SPEC_FILE, load_run
from pyro_vi.runs.resume import check_same_run, flat_spec, spec_differences
from pyro_vi.runs.training import complete_run, train_spec
from pyro_vi.spec import DEFAULT_SPEC, Data, Spec, load_data, load_spec
from pyro_vi.spec.io import parse_override, read_spec_file
from pyro_vi.spec.schema import SpecError
from pyro_vi.train import TrainingDivergedError

__all__ = [
    "RANGES",
    "Axis",
    "combination_name",
    "grid_points",
    "parse_axes",
    "sweep",
]

#: The range forms of a search space: ``log:LOW:HIGH`` and the others (``--optuna`` only).
RANGES = ("float", "log", "int", "log-int")
#: Keys that may differ between a finished run and the sweep's spec for the run to be skipped:
#: they change where the data is read from or how the run is logged, not its result.
_IRRELEVANT = ("name", "description", "data.dir", "training.checkpoint_every", "log")
#: A run with one of these statuses and the same spec is a result: not trained again.
_FINISHED = ("complete", "diverged", "pruned")
STUDY_FILE = "optuna.db"
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_RANGE = re.compile(r"^(float|log|int|log-int):([^:]+):([^:]+)$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class Axis:
    """One ``KEY=VALUES`` argument: a dotted spec key and its values, or a range to search.

    Attributes:
        key: The dotted key (``optimizer.lr``).
        text: The argument as given (for errors).
        values: The listed values, typed (a grid's, or a search's categorical choice).
        scale: For a range, one of :data:`RANGES`; ``None`` for a list of values.
        low, high: The range's ends.
    """

    key: str
    text: str
    values: tuple[Any, ...] = ()
    scale: str | None = None
    low: float | None = None
    high: float | None = None

    def ends(self) -> tuple[Any, ...]:
        """The values to validate: the list, or the range's two ends."""
        return self.values if self.scale is None else (self.low, self.high)

    def suggest(self, trial: Any) -> Any:
        """The value Optuna's ``trial`` suggests on this axis."""
        if self.scale is None:
            if len(self.values) == 1:
                return self.values[0]
            texts = [_toml(value) for value in self.values]
            return self.values[texts.index(trial.suggest_categorical(self.key, texts))]
        if self.scale in ("int", "log-int"):
            return trial.suggest_int(self.key, self.low, self.high, log=self.scale == "log-int")
        return trial.suggest_float(self.key, self.low, self.high, log=self.scale == "log")


# -- parsing ---------------------------------------------------------------------------------


def _split_values(text: str) -> list[str]:
    """``text`` split at the commas outside brackets, braces and quotes."""
    parts, current, depth, quote = [], [], 0, None
    for char in text:
        if quote is not None:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts


def _typed(text: str, as_string: bool) -> Any:
    """A value as TOML reads it; a bare word, or any value of a string key, as a string."""
    if as_string:
        return text[1:-1] if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'" else text
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _number(argument: str, text: str, integral: bool) -> float | int:
    value = _typed(text, False)
    wanted = int if integral else (int, float)
    if isinstance(value, bool) or not isinstance(value, wanted) or not math.isfinite(value):
        kind = "an integer" if integral else "a number"
        raise ValueError(f"{argument}: range end {text!r} must be {kind}")
    return value


def _parse_range(argument: str, key: str, match: re.Match) -> Axis:
    scale = match.group(1)
    integral = scale in ("int", "log-int")
    low, high = (_number(argument, match.group(i), integral) for i in (2, 3))
    if not integral:  # a float range suggests floats: its ends are validated as floats
        low, high = float(low), float(high)
    if not low < high:
        raise ValueError(f"{argument}: a range needs LOW < HIGH, got {low!r} and {high!r}")
    if scale.startswith("log") and low <= 0:
        raise ValueError(f"{argument}: a log range needs LOW > 0, got {low!r}")
    return Axis(key, argument, scale=scale, low=low, high=high)


def parse_axes(
    arguments: Sequence[str], *, ranges: bool = False, string_keys: Sequence[str] = ()
) -> list[Axis]:
    """Parse ``KEY=VALUES`` arguments (what ``--grid`` takes) into :class:`Axis` objects.

    Arguments:
        arguments: ``"optimizer.lr=1e-3,3e-4"``...; values are comma-separated (commas inside
            ``[...]``, ``{...}`` and quotes belong to a value).
        ranges: Whether ranges (``log:1e-4:1e-2``, :data:`RANGES`) are allowed (a search).
        string_keys: Keys whose values are strings whatever they look like (the spec's string
            keys: ``data.name=5`` is the string ``"5"``).

    Raises:
        ValueError: naming the argument: no ``=``, a key that is not dotted names, an empty
            value, no values, a value listed twice, a key given twice, a range where only
            lists are allowed, a malformed range.
    """
    if isinstance(arguments, str) or not isinstance(arguments, Sequence):
        raise TypeError(f"grid must be a list of 'KEY=VALUES' strings, got {describe(arguments)}")
    if not arguments:
        raise ValueError("--grid needs at least one KEY=VALUES (e.g. optimizer.lr=1e-3,3e-4)")
    axes: dict[str, Axis] = {}
    for argument in arguments:
        if not isinstance(argument, str) or "=" not in argument:
            raise ValueError(
                f"--grid {_show(argument)} is malformed: it must look like KEY=VALUES, a dotted "
                "spec key and comma-separated values, e.g. optimizer.lr=1e-3,3e-4"
            )
        key, text = (part.strip() for part in argument.split("=", 1))
        if not _KEY.match(key):
            raise ValueError(
                f"--grid {argument!r}: the key {key!r} must be dotted names like "
                "'optimizer.lr' or 'estimator.num_particles'"
            )
        if key in axes:
            raise ValueError(
                f"--grid gives the key {key!r} twice ({axes[key].text!r} and {argument!r}); "
                f"give each key once with all its values: {key}=a,b,c"
            )
        match = _RANGE.match(text)
        if match is not None:
            if not ranges:
                raise ValueError(
                    f"--grid {argument!r}: a range ({match.group(1)}:LOW:HIGH) is a search "
                    "space: add --optuna N to search it, or list the values (KEY=a,b,c)"
                )
            axes[key] = _parse_range(argument, key, match)
            continue
        texts = _split_values(text)
        if not text or "" in texts:
            raise ValueError(
                f"--grid {argument!r}: {'no values' if not text else 'an empty value'}; "
                f"give one or more comma-separated values, {key}=a,b,c"
                + (", or a range such as log:1e-4:1e-2" if ranges else "")
            )
        values = tuple(_typed(value, key in string_keys) for value in texts)
        for index, value in enumerate(values):
            if any(_same(value, other) for other in values[:index]):
                raise ValueError(
                    f"--grid {argument!r}: the value {texts[index]!r} is listed twice; list "
                    "each value once"
                )
        axes[key] = Axis(key, argument, values)
    return list(axes.values())


def _show(argument: Any) -> str:
    return repr(argument) if isinstance(argument, str) else describe(argument)


def _same(a: Any, b: Any) -> bool:
    return (type(a) is type(b) and a == b) or (_is_number(a) and _is_number(b) and a == b)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def grid_points(axes: Sequence[Axis]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, the first axis varying slowest."""
    if any(axis.scale is not None for axis in axes):
        raise ValueError("grid_points takes lists of values; ranges are searched (optuna)")
    return [
        dict(zip([a.key for a in axes], values, strict=True))
        for values in itertools.product(*(axis.values for axis in axes))
    ]


# -- specs and names -------------------------------------------------------------------------


def _toml(value: Any) -> str:
    """``value`` as an inline TOML value (what ``--set`` and :func:`load_spec` read back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {describe(value)} as a spec value")


def _raw(source: Any) -> dict[str, Any]:
    if isinstance(source, Spec):
        return source.to_dict()
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, str | os.PathLike):
        return read_spec_file(source)
    raise TypeError(f"spec must be a Spec, a dict or a file path, got {describe(source)}")


def _describe_point(point: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={_toml(value)}" for key, value in point.items())


def _resolve_point(
    raw: dict, overrides: Sequence[str], point: Mapping[str, Any], base: Spec
) -> Spec:
    texts = [f"{key}={_toml(value)}" for key, value in point.items()]
    try:
        return load_spec(raw, [*overrides, *texts])
    except SpecError as error:
        hints = [_hint(key, base) for key in point]
        hint = "".join(f"; {h}" for h in hints if h)
        raise SpecError(
            f"--grid: the combination {_describe_point(point)} is not a valid spec: {error}{hint}"
        ) from None


def _hint(key: str, base: Spec) -> str:
    """Keys of the spec ending like ``key`` when it is not one of them (``train.lr``)."""
    keys = list(flat_spec(base))
    if key in keys or any(k.startswith(f"{key}.") for k in keys):
        return ""
    last = key.rsplit(".", 1)[-1]
    near = [k for k in keys if k.rsplit(".", 1)[-1] == last]
    listed = " or ".join(repr(k) for k in near)
    return f"did you mean {listed}? (the keys of this spec ending in {last!r})" if near else ""


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """The fewest trailing parts of each key that tell it from the others (``lr``, ``seed``;
    ``data.seed`` beside ``training.seed``)."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for count in range(1, len(parts) + 1):
            tail = parts[-count:]
            if not any(other != key and other.split(".")[-count:] == tail for other in keys):
                break
        short[key] = ".".join(tail)
    return short


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "-".join(_value_text(item) for item in value)
    if isinstance(value, Mapping):
        return "-".join(f"{k}-{_value_text(v)}" for k, v in value.items())
    return str(value)


def _resolved_value(spec: Spec, key: str, given: Any) -> Any:
    """The value ``key`` has in the resolved spec (canonical: ``5`` for a float key is 5.0)."""
    flat = flat_spec(spec)
    return flat.get(key, given)


def combination_name(point: Mapping[str, Any], short: Mapping[str, str] | None = None) -> str:
    """The run folder's name of a combination: ``<short key>-<value>`` joined by ``_``, e.g.
    ``lr-0.001_num_particles-5`` (stable: the same values give the same name)."""
    short = short or _short_keys(list(point))
    parts = [f"{short[key]}-{_value_text(value)}" for key, value in point.items()]
    return _UNSAFE.sub("-", "_".join(parts)).strip("-") or "run"


# -- one run ---------------------------------------------------------------------------------


def _relevant_differences(saved: Spec, spec: Spec) -> list[tuple[str, Any, Any]]:
    return [
        difference
        for difference in spec_differences(saved, spec)
        if not any(difference[0] == k or difference[0].startswith(f"{k}.") for k in _IRRELEVANT)
    ]


def _train_one(
    spec: Spec,
    path: Path,
    data: Data,
    evaluation: EpochEvaluation,
    progress: bool,
    overwrite: bool,
) -> str:
    """Train the run in ``path``, resume it, complete it or skip it; say which."""
    if overwrite or not (path / SPEC_FILE).is_file():
        result = train_spec(
            spec, path, progress=progress, overwrite=overwrite, data=data, on_epoch=evaluation
        )
        done = "trained"
    else:
        info = read_json(path / INFO_FILE) if (path / INFO_FILE).is_file() else {}
        status = info.get("status")
        saved = load_spec(path / SPEC_FILE)
        differences = _relevant_differences(saved, spec)
        if not differences and status in _FINISHED:
            return f"skipped ({status})"
        if not differences and status == "trained":
            complete_run(load_run(path), progress=progress)
            return "evaluated"
        _check_continuable(path, saved, spec, status, differences)
        result = train_spec(spec, progress=progress, data=data, resume=path, on_epoch=evaluation)
        done = "resumed"
    if result.history.interrupted:
        raise KeyboardInterrupt
    return done


def _check_continuable(
    path: Path, saved: Spec, spec: Spec, status: str | None, differences: list
) -> None:
    """Refuse, before training, a folder this sweep cannot continue: another spec's run, or a
    finished run whose spec differs in what resuming cannot change (anything but more epochs)."""
    advice = "use another --out, or --overwrite to train every combination again"
    try:
        check_same_run(saved, spec, path)
    except SpecError as error:
        raise SpecError(f"sweep: {str(path)!r} holds another run: {error}; {advice}") from None
    if status in _FINISHED and spec.training["epochs"] <= saved.training["epochs"]:
        keys = [key for key, _, _ in differences]
        raise ValueError(
            f"sweep: {str(path)!r} is {status}, and this sweep's spec differs from its spec.toml "
            f"in {keys}, which a finished run cannot take back (more training.epochs can); "
            f"{advice}"
        )


class _Data:
    """The data of each spec, loaded once per distinct ``[data]`` section (and labels)."""

    def __init__(self) -> None:
        self.loaded: dict[str, Data] = {}

    def __call__(self, spec: Spec) -> Data:
        key = json.dumps(
            [spec.data, spec.kind.conditional(spec.model)], sort_keys=True, default=str
        )
        if key not in self.loaded:
            self.loaded[key] = load_data(spec)
        return self.loaded[key]


def _say(text: str) -> None:
    print(f"pyro-vi sweep: {text}", file=sys.stderr, flush=True)


# -- the sweep -------------------------------------------------------------------------------


def _default_out(source: Any, base: Spec) -> Path:
    stem = Path(source).stem if isinstance(source, str | os.PathLike) else base.name or "spec"
    return Path("runs") / f"sweep-{stem}"


def sweep(
    source: Any = None,
    grid: Sequence[str] = (),
    out: str | os.PathLike[str] | None = None,
    *,
    overrides: Sequence[str] = (),
    optuna: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    curve_samples: int = DEFAULT_CURVE_SAMPLES,
    curve_size: int = DEFAULT_CURVE_SIZE,
    prune_startup: int = 5,
) -> dict[str, Path]:
    """Train ``source`` over every combination of ``grid`` (or search it with Optuna) and write
    one comparison of the runs.

    Arguments:
        source: A spec file, dict or :class:`Spec` (``None``: the default digits VAE).
        grid: ``"KEY=VALUES"`` arguments (module docstring); with ``optuna``, ranges too.
        out: The sweep's folder (default ``runs/sweep-<spec file's stem>``).
        overrides: ``"section.key=value"`` applied to the spec before the grid.
        optuna: Search with Optuna for this many trials instead of training the grid.
        progress: Progress bars.
        overwrite: Train every combination again (an Optuna study starts anew).
        curve_samples: K of the IWAE-K scored after each epoch (curves, the search's
            objective and its pruning).
        curve_size: Test (and validation) datapoints scored after each epoch.
        prune_startup: Trials that run to the end before Optuna's median pruner stops any.

    Returns:
        The paths written: ``markdown``, ``csv``, ``json``, ``figure`` (the comparison),
        ``sweep`` (``sweep.json``) and with Optuna ``optuna`` (``optuna.json``).

    Raises:
        ValueError, SpecError: a bad argument (named), before anything trains.
        ModuleNotFoundError: ``optuna`` is asked for and not installed.

    Example:
        >>> sweep("configs/vae_digits.toml", ["optimizer.lr=3e-3,1e-3", "training.seed=0,1"])
    """
    if optuna is not None and (
        isinstance(optuna, bool) or not isinstance(optuna, int) or optuna < 1
    ):
        raise ValueError(f"--optuna N needs N >= 1 trials, got {optuna!r}")
    if isinstance(prune_startup, bool) or not isinstance(prune_startup, int) or prune_startup < 0:
        raise ValueError(f"prune_startup must be an integer >= 0, got {prune_startup!r}")
    raw = _raw(DEFAULT_SPEC if source is None else source)
    base = load_spec(raw, overrides)
    strings = [key for key, value in flat_spec(base).items() if isinstance(value, str)]
    axes = parse_axes(grid, ranges=optuna is not None, string_keys=strings)
    _check_no_override_is_swept(overrides, axes)
    out = Path(out) if out is not None else _default_out(source, base)
    # Every combination (every range's ends) must make a valid spec before anything trains.
    ends = [
        dict(zip([a.key for a in axes], values, strict=True))
        for values in itertools.product(*(axis.ends() for axis in axes))
    ]
    specs = [_resolve_point(raw, overrides, point, base) for point in ends]
    check_curve_settings(curve_samples, curve_size)
    if optuna is not None:
        return _search(
            raw,
            overrides,
            base,
            axes,
            specs,
            out,
            optuna,
            progress,
            overwrite,
            curve_samples,
            curve_size,
            prune_startup,
            source,
        )
    return _grid(
        raw,
        overrides,
        axes,
        ends,
        specs,
        out,
        progress,
        overwrite,
        curve_samples,
        curve_size,
        source,
    )


def _display(spec: Spec, axes: Sequence[Axis], point: Mapping[str, Any]) -> dict[str, Any]:
    return {axis.key: _resolved_value(spec, axis.key, point[axis.key]) for axis in axes}


def _check_no_override_is_swept(overrides: Sequence[str], axes: Sequence[Axis]) -> None:
    """A key both set (``--set``, ``--epochs``...) and swept would silently take the grid's
    values: refused, naming both."""
    swept = {axis.key: axis.text for axis in axes}
    for text in overrides:
        key = ".".join(parse_override(text)[0])
        if key in swept:
            raise ValueError(
                f"--set {text!r} and --grid {swept[key]!r} both give {key!r}; the grid's values "
                "would replace the set one: drop one of them"
            )


def _plan_record(source: Any, overrides: Sequence[str], axes: Sequence[Axis], mode: str) -> dict:
    return {
        "spec": str(source) if isinstance(source, str | os.PathLike) else None,
        "overrides": list(overrides),
        "grid": [axis.text for axis in axes],
        "mode": mode,
    }


def _grid(
    raw: dict,
    overrides: Sequence[str],
    axes: Sequence[Axis],
    points: list[dict[str, Any]],
    specs: list[Spec],
    out: Path,
    progress: bool,
    overwrite: bool,
    curve_samples: int,
    curve_size: int,
    source: Any,
) -> dict[str, Path]:
    short = _short_keys([axis.key for axis in axes])
    shown = [_display(spec, axes, point) for spec, point in zip(specs, points, strict=True)]
    names = [combination_name(values, short) for values in shown]
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            raise ValueError(
                f"--grid: the combinations {_describe_point(points[seen[name]])} and "
                f"{_describe_point(points[index])} are the same run ({name}); list each value "
                "once"
            )
        seen[name] = index
    data_of = _Data()
    data_of(specs[0])  # a missing dataset is reported before anything is written
    out.mkdir(parents=True, exist_ok=True)
    record = versioned({**_plan_record(source, overrides, axes, "grid"), "runs": []})
    record["runs"] = [
        {"name": n, "params": p, "outcome": None} for n, p in zip(names, shown, strict=True)
    ]
    write_json(out / "sweep.json", record)
    settings: dict[str, Any] = {}
    try:
        for index, (name, spec) in enumerate(zip(names, specs, strict=True)):
            data = data_of(spec)
            evaluation = EpochEvaluation(
                out / name, data, num_samples=curve_samples, size=curve_size
            )
            settings = evaluation.settings()
            try:
                outcome = _train_one(spec, out / name, data, evaluation, progress, overwrite)
            except TrainingDivergedError as error:
                outcome = "diverged"
                _say(f"{name} diverged ({error}); the sweep goes on")
            record["runs"][index]["outcome"] = outcome
            write_json(out / "sweep.json", record)
            _say(f"[{index + 1}/{len(names)}] {name}: {outcome}")
    except KeyboardInterrupt:
        _say(f"interrupted: the same command continues the sweep in {out}")
        raise
    rows = [
        run_row(name, spec, out / name, params)
        for name, spec, params in zip(names, specs, shown, strict=True)
    ]
    written = write_comparison(
        out,
        rows,
        [out / n for n in names],
        None,
        curve=settings,
        extra={"sweep": {k: v for k, v in record.items() if k != "schema_version"}},
    )
    written["sweep"] = out / "sweep.json"
    return written


# -- Optuna ----------------------------------------------------------------------------------


def _require_optuna() -> Any:
    try:
        import optuna
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "--optuna needs Optuna, which is not installed: pip install 'pyro-vi[sweep]' (or "
            "pip install optuna)"
        ) from None
    return optuna


def _objective_key(spec: Spec) -> str:
    return "log_likelihood" if spec.kind.has_prior else "reconstruction"


def _objective(record: Mapping[str, Any], key: str) -> float:
    split = record.get("validation") or record["test"]
    return float(split[key])


def _spec_digest(spec: Spec) -> str:
    kept = {
        k: v
        for k, v in flat_spec(spec).items()
        if not any(k == i or k.startswith(f"{i}.") for i in _IRRELEVANT)
    }
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _search(
    raw: dict,
    overrides: Sequence[str],
    base: Spec,
    axes: Sequence[Axis],
    specs: list[Spec],
    out: Path,
    trials: int,
    progress: bool,
    overwrite: bool,
    curve_samples: int,
    curve_size: int,
    prune_startup: int,
    source: Any,
) -> dict[str, Path]:
    optuna = _require_optuna()
    keys = {_objective_key(spec) for spec in specs}
    if len(keys) > 1:
        raise ValueError(
            "--optuna: the space mixes models with a bound and models without one (an "
            "autoencoder); their objectives do not compare: search them apart"
        )
    key = keys.pop()
    with_validation = {
        spec.data.get("validation") is not None or spec.data.get("validation_path") is not None
        for spec in specs
    }
    split = (
        "validation split"
        if with_validation == {True}
        else "test split"
        if with_validation == {False}
        else "validation split of the trials that have one, else the test split"
    )
    described = (
        f"IWAE-{curve_samples} log p(x)" if key == "log_likelihood" else "reconstruction log p(x|z)"
    ) + f" of the last epoch on the {split} (first {curve_size} datapoints)"
    data_of = _Data()
    data_of(specs[0])  # a missing dataset is reported before anything is written
    out.mkdir(parents=True, exist_ok=True)
    study_file = out / STUDY_FILE
    if overwrite:
        study_file.unlink(missing_ok=True)
    elif not study_file.exists() and any((p / SPEC_FILE).is_file() for p in out.glob("trial-*")):
        raise FileExistsError(
            f"{str(out)!r} holds trial folders but no study ({STUDY_FILE}): use another --out, "
            "or --overwrite to start a new search there"
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=f"sqlite:///{study_file.resolve()}",
        study_name="pyro-vi-sweep",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=base.training["seed"]),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=prune_startup),
        load_if_exists=True,
    )
    search = {"space": [axis.text for axis in axes], "spec": _spec_digest(base)}
    if study.user_attrs.get("search") is None:
        study.set_user_attr("search", search)
    elif study.user_attrs["search"] != search:
        raise ValueError(
            f"{str(out)!r} holds an Optuna study of another search ({study.user_attrs['search']}, "
            f"this one is {search}): use another --out, or --overwrite to start anew"
        )
    states = optuna.trial.TrialState
    latest = _latest_per_folder(study)
    finished = sum(1 for t in latest.values() if _finished(t, states))
    retry = [
        t
        for t in latest.values()
        if t.state in (states.RUNNING, states.FAIL) and not _finished(t, states)
    ]
    remaining = max(trials - finished, 0)
    for trial in retry[:remaining]:
        study.enqueue_trial(trial.params, user_attrs={"folder": trial.user_attrs["folder"]})
    settings: dict[str, Any] = {}

    def objective(trial: Any) -> float:
        nonlocal settings
        folder = trial.user_attrs.get("folder") or f"trial-{trial.number:04d}"
        trial.set_user_attr("folder", folder)
        point = {axis.key: axis.suggest(trial) for axis in axes}
        spec = _resolve_point(raw, overrides, point, base)
        path = out / folder
        data = data_of(spec)
        for record in _scored(path) if not overwrite else ():
            trial.report(_objective(record, key), record["epoch"])  # a resumed trial's past

        def report(epoch: int, record: dict[str, Any]) -> None:
            trial.report(_objective(record, key), epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")

        evaluation = EpochEvaluation(
            path, data, num_samples=curve_samples, size=curve_size, report=report
        )
        settings = evaluation.settings()
        try:
            outcome = _train_one(spec, path, data, evaluation, progress, overwrite)
        except optuna.TrialPruned:
            _mark_pruned(path)
            _say(f"trial {trial.number} ({folder}): pruned")
            raise
        except TrainingDivergedError:
            trial.set_user_attr("outcome", "diverged")
            _say(f"trial {trial.number} ({folder}): diverged")
            raise
        status = read_json(path / INFO_FILE).get("status")
        if status == "pruned":
            raise optuna.TrialPruned("pruned before")
        curve = _scored(path)
        if not curve:
            raise ValueError(f"{str(path)!r} has no curve to score (no epoch was trained)")
        value = _objective(curve[-1], key)
        _say(f"trial {trial.number} ({folder}): {outcome}, objective {value:.3f}")
        return value

    try:
        if remaining:
            study.optimize(objective, n_trials=remaining, catch=(TrainingDivergedError,))
    except KeyboardInterrupt:
        _say(f"interrupted: the same command continues the search in {out}")
        raise
    return _write_search(study, axes, out, described, settings, source, overrides)


def _scored(path: Path) -> list[dict[str, Any]]:
    """The curve's epochs that were scored (:func:`pyro_vi.runs.curves.scheduled`)."""
    return [record for record in read_curve(path) if "test" in record]


def _latest_per_folder(study: Any) -> dict[str, Any]:
    latest: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        folder = trial.user_attrs.get("folder")
        if folder is not None:
            latest[folder] = trial
    return latest


def _finished(trial: Any, states: Any) -> bool:
    return (
        trial.state in (states.COMPLETE, states.PRUNED)
        or trial.user_attrs.get("outcome") == "diverged"
    )


def _typed_params(params: Mapping[str, Any], axes: Sequence[Axis]) -> dict[str, Any]:
    """A trial's parameters with each categorical choice as its value (Optuna stores the text)."""
    out = dict(params)
    for axis in axes:
        if axis.scale is None and axis.key in out:
            texts = [_toml(value) for value in axis.values]
            if out[axis.key] in texts:
                out[axis.key] = axis.values[texts.index(out[axis.key])]
    return out


def _mark_pruned(path: Path) -> None:
    """``run.json`` says ``"pruned"`` (training_spec recorded the stop as a failure)."""
    info = read_json(path / INFO_FILE)
    info.pop("error", None)
    info["status"] = "pruned"
    info["pruned_after_epoch"] = len(read_curve(path))
    write_json(path / INFO_FILE, info)


def _write_search(
    study: Any,
    axes: Sequence[Axis],
    out: Path,
    described: str,
    settings: dict[str, Any],
    source: Any,
    overrides: Sequence[str],
) -> dict[str, Path]:
    latest = _latest_per_folder(study)
    trials, rows, paths = [], [], []
    for folder, trial in sorted(latest.items()):
        path = out / folder
        entry = {
            "number": trial.number,
            "folder": folder,
            "state": trial.state.name.lower(),
            "objective": trial.value,
            "params": _typed_params(trial.params, axes),
        }
        if trial.user_attrs.get("outcome") == "diverged":
            entry["state"] = "diverged"
        trials.append(entry)
        if (path / SPEC_FILE).is_file():
            spec = load_spec(path / SPEC_FILE)
            params = {axis.key: _resolved_value(spec, axis.key, None) for axis in axes}
            rows.append(run_row(folder, spec, path, params))
            paths.append(path)
    complete = [t for t in trials if t["state"] == "complete" and t["objective"] is not None]
    best = max(complete, key=lambda t: t["objective"], default=None)
    record = versioned(
        {
            **_plan_record(source, overrides, axes, "optuna"),
            "objective": described,
            "best": best,
            "trials": trials,
        }
    )
    written: dict[str, Path] = {}
    if rows:
        written = write_comparison(
            out,
            rows,
            paths,
            None,
            curve=settings or None,
            extra={"sweep": {k: v for k, v in record.items() if k != "schema_version"}},
        )
    written["sweep"] = write_json(out / "sweep.json", record)
    written["optuna"] = write_json(out / "optuna.json", record)
    if best is not None:
        _say(
            f"best: trial {best['number']} ({best['folder']}), objective {best['objective']:.3f} "
            f"({described}), {best['params']}"
        )
    return written
