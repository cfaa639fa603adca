"""The pytest plugin behind suite 1 of ``pyro_suites.py``: Pyro's ``test_valid_models.py`` run
with pyro_vi's estimators in place of Pyro's ELBO classes.

Nothing of Pyro's test code is copied here: pytest collects the test file from a Pyro checkout,
and this plugin

1. keeps one item per distinct program (``select_programs``): of the variants a test is
   parametrized with over ``Elbo``, the ``Trace_ELBO`` one (or the first listed when the test
   does not list ``Trace_ELBO``, e.g. ``EnergyDistance`` only); ``strict_enumeration_warning``
   (a ``TraceEnum_ELBO``-only switch) is not part of a program, its ``False`` variant is kept.
   Tests that call none of ``assert_ok``/``assert_error``/``assert_warning`` are left out, and
   so are tests of the ``funsor`` stage when funsor is not installed;
2. replaces the test module's ``assert_ok``, ``assert_error`` and ``assert_warning`` with
   recorders, and runs every kept test once per estimator name: the ``Elbo`` argument becomes
   a factory that builds that estimator (``estimator_kwargs``), and an ELBO that a test builds
   itself (``TraceEnum_ELBO(max_plate_nesting=0)``) is swapped for the estimator inside the
   recorder, with the options it was built with (``from_pyro_elbo``).

Each recorder call is one case: the expectation the test states (``ok``, ``error``,
``warning``), what happened, and why (see ``Case``). The checks follow Pyro's helpers: one
``SVI.step`` with ``Adam(lr=1e-6)``, then ``loss``, ``differentiable_loss`` and
``loss_and_grads`` each after ``pyro.set_rng_seed(0)``, which must agree within 0.01; unlike
Pyro's ``assert_ok``, a ValueError from ``differentiable_loss`` is not ignored (every pyro_vi
estimator promises a differentiable loss).
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
import traceback
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.util import torch_item
from pyro.optim import Adam

import pyro_vi
from pyro_vi import estimators

PYRO_VI_DIR = os.path.dirname(os.path.abspath(pyro_vi.__file__))
#: The recorders replace these functions of the test module.
CHECKS = ("assert_ok", "assert_error", "assert_warning")
#: Test parameters that choose the ELBO, not the program.
ELBO_PARAMS = ("Elbo", "strict_enumeration_warning")
#: Pyro constructor options that carry over when the estimator lists them.
CARRIED_OPTIONS = ("num_particles", "max_plate_nesting", "vectorize_particles")
#: Tolerance of Pyro's assert_ok between loss, differentiable_loss and loss_and_grads.
ATOL = 0.01
#: What Pyro's assert_error accepts as a failure (with ``match``).
PYRO_ERROR_TYPES = (NotImplementedError, UserWarning, KeyError, ValueError, RuntimeError)
#: Exceptions that are a deliberate refusal when raised from a frame inside pyro_vi.
REFUSAL_TYPES = (ValueError, TypeError, NotImplementedError)
MESSAGE_CHARS = 400


# -- estimators from Pyro's constructor options ----------------------------------------------


def estimator_kwargs(name: str, pyro_kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Map the options of a Pyro ELBO constructor to estimator ``name``'s options.

    ``num_particles``, ``max_plate_nesting`` and ``vectorize_particles`` carry over when
    ``pyro_vi.estimators.options(name)`` lists them; ``num_particles=K`` becomes
    ``num_outer=1, num_inner=K`` for estimators with outer/inner particles (MIWAE, PIWAE:
    one IWAE-K bound); ``max_plate_nesting=inf`` (Pyro's "unknown") becomes the estimator's
    default, which detects it. Every other option is Pyro's own and is dropped.

    Returns:
        The options for ``pyro_vi.estimators.get(name, ...)`` and the names of the dropped ones.
    """
    allowed = set(estimators.options(name))
    kwargs: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in pyro_kwargs.items():
        if key == "max_plate_nesting" and isinstance(value, float) and math.isinf(value):
            continue
        if key in CARRIED_OPTIONS and key in allowed:
            kwargs[key] = value
        elif key == "num_particles" and {"num_outer", "num_inner"} <= allowed:
            kwargs.update(num_outer=1, num_inner=value)
        else:
            dropped.append(key)
    return kwargs, dropped


@dataclass
class Pending:
    """An estimator built for a case, or the exception its constructor raised."""

    name: str
    pyro_elbo: str
    pyro_kwargs: dict[str, Any]
    kwargs: dict[str, Any]
    dropped: list[str]
    estimator: Any = None
    error: Exception | None = None


def build(name: str, pyro_elbo: str, pyro_kwargs: dict[str, Any]) -> Pending:
    """Build estimator ``name`` from the options a test gave the Pyro ELBO ``pyro_elbo``."""
    kwargs, dropped = estimator_kwargs(name, pyro_kwargs)
    pending = Pending(name, pyro_elbo, dict(pyro_kwargs), kwargs, dropped)
    try:
        pending.estimator = estimators.get(name, **kwargs)
    except Exception as exc:
        pending.error = exc
    return pending


def from_pyro_elbo(name: str, elbo: Any) -> Pending:
    """Build estimator ``name`` in place of an ELBO instance that a test built itself.

    The options are read back from its attributes, those that differ from Pyro's defaults
    as if the test had passed them: ``num_particles`` (not 1), ``vectorize_particles``
    (True) and ``max_plate_nesting`` (finite; Pyro's constructor adds 1 for the particle
    plate when vectorizing more than one particle, which is taken off again).
    """
    pyro_kwargs: dict[str, Any] = {}
    particles = getattr(elbo, "num_particles", 1)
    vectorize = bool(getattr(elbo, "vectorize_particles", False))
    if particles != 1:
        pyro_kwargs["num_particles"] = particles
    if vectorize:
        pyro_kwargs["vectorize_particles"] = True
    nesting = getattr(elbo, "max_plate_nesting", math.inf)
    if nesting is not None and not math.isinf(nesting):
        pyro_kwargs["max_plate_nesting"] = nesting - (1 if vectorize and particles > 1 else 0)
    return build(name, type(elbo).__name__, pyro_kwargs)


# -- what an exception means -------------------------------------------------------------------


def _short_path(path: str) -> str:
    for marker in ("site-packages" + os.sep, os.sep + "tests" + os.sep):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail if marker.startswith("site") else "tests" + os.sep + tail
    if path.startswith(PYRO_VI_DIR):
        return os.path.relpath(path, os.path.dirname(PYRO_VI_DIR))
    return path


def _first_lines(text: str) -> str:
    """An exception message without the trace-shape table that Pyro appends (up to a line
    starting with "(", a note a re-raiser may append after it), shortened."""
    kept: list[str] = []
    in_table = False
    for line in text.splitlines():
        if line.strip() == "Trace Shapes:":
            in_table = True
        elif in_table and line.startswith("("):
            in_table = False
        if not in_table:
            kept.append(line)
    text = "\n".join(kept).strip()
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


def _in_pyro_vi(path: str) -> bool:
    return os.path.abspath(path).startswith(PYRO_VI_DIR + os.sep)


def _frame(frame: traceback.FrameSummary, name: bool = False) -> str:
    text = f"{_short_path(frame.filename)}:{frame.lineno}"
    return f"{text} ({frame.name})" if name else text


def _root_cause(exc: BaseException) -> BaseException:
    """The first exception of the chain that ``exc`` was raised from or while handling."""
    seen = {id(exc)}
    while True:
        cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if cause is None or id(cause) in seen:
            return exc
        seen.add(id(cause))
        exc = cause


@dataclass
class Failure:
    """An exception: whether pyro_vi raised it on purpose, what it says and where.

    ``where`` is the raising (innermost) frame; ``origin`` the raising frame of the exception
    it was raised from or while handling (e.g. a shape assertion in the model that pyro_vi
    re-raises with an explanation), when there is one; ``pyro_vi_frame`` the innermost frame
    inside pyro_vi.
    """

    deliberate: bool
    exception: str
    message: str
    where: str
    pyro_vi_frame: str | None
    origin: str | None = None

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        """Deliberate: a ValueError/TypeError/NotImplementedError whose raising (innermost)
        frame is a file of the pyro_vi package."""
        frames = traceback.extract_tb(exc.__traceback__)
        innermost = frames[-1] if frames else None
        ours = [frame for frame in frames if _in_pyro_vi(frame.filename)]
        deliberate = (
            isinstance(exc, REFUSAL_TYPES)
            and innermost is not None
            and _in_pyro_vi(innermost.filename)
        )
        root = _root_cause(exc)
        root_frames = traceback.extract_tb(root.__traceback__) if root is not exc else []
        if root_frames and innermost and _frame(root_frames[-1]) == _frame(innermost):
            root_frames = []
        return cls(
            deliberate=deliberate,
            exception=type(exc).__name__,
            message=_first_lines(str(exc)),
            where=_frame(innermost) if innermost else "",
            pyro_vi_frame=_frame(ours[-1], name=True) if ours else None,
            origin=f"{_frame(root_frames[-1])} ({type(root).__name__})" if root_frames else None,
        )


# -- cases ---------------------------------------------------------------------------------------


@dataclass
class Case:
    """One check of one program with one estimator.

    ``expected`` is what the Pyro test asserts: ``ok``, ``error``, ``warning``, or ``none``
    when the test failed before reaching a check. ``outcome``:

    - expected ``ok``: ``ok`` (ran; the three losses agree within 0.01), ``disagree``,
      ``refused`` (deliberate pyro_vi error, see :meth:`Failure.of`), ``crash`` (any other
      exception);
    - expected ``error``: ``rejected`` (raised, or warned: Pyro's tests turn warnings into
      errors) or ``silent``; ``pyro_match`` is the message Pyro expects, ``matches_pyro``
      whether the exception has a type and message Pyro's ``assert_error`` accepts;
    - expected ``warning``: ``warned``, ``refused``, ``crash`` or ``silent``;
    - expected ``none``: ``refused``, ``crash`` or ``skipped`` (the test body itself failed).
    """

    test_id: str
    program: str
    call: int
    pyro_elbo: str
    estimator: str
    estimator_kwargs: dict[str, Any]
    dropped_kwargs: list[str]
    expected: str
    outcome: str
    message: str = ""
    exception: str | None = None
    where: str | None = None
    origin: str | None = None
    pyro_vi_frame: str | None = None
    deliberate: bool | None = None
    matches_pyro: bool | None = None
    pyro_match: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _warning_texts(caught: Iterable[warnings.WarningMessage]) -> list[str]:
    texts = {f"{w.category.__name__}: {_first_lines(str(w.message))}" for w in caught}
    return sorted(texts)[:5]


def _fail(failure: Failure, refused: str, otherwise: str) -> dict[str, Any]:
    return {
        "outcome": refused if failure.deliberate else otherwise,
        "message": f"{failure.exception}: {failure.message}",
        "exception": failure.exception,
        "where": failure.where,
        "origin": failure.origin,
        "pyro_vi_frame": failure.pyro_vi_frame,
        "deliberate": failure.deliberate,
    }


def check_ok(
    estimator: Any, model: Callable, guide: Callable, kwargs: dict[str, Any]
) -> dict[str, Any]:
    """One SVI step, then loss, differentiable_loss and loss_and_grads from seed 0."""
    pyro.clear_param_store()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            SVI(model, guide, Adam({"lr": 1e-6}), estimator).step(**kwargs)
            values = {}
            for method in ("loss", "differentiable_loss", "loss_and_grads"):
                pyro.set_rng_seed(0)
                values[method] = float(
                    torch_item(getattr(estimator, method)(model, guide, **kwargs))
                )
        except Exception as exc:
            return {
                **_fail(Failure.of(exc), "refused", "crash"),
                "warnings": _warning_texts(caught),
            }
    loss = values["loss"]
    agree = all(abs(value - loss) <= ATOL for value in values.values())
    message = "" if agree else ", ".join(f"{k} {v:.6g}" for k, v in values.items())
    return {
        "outcome": "ok" if agree else "disagree",
        "message": message,
        "warnings": _warning_texts(caught),
    }


def check_error(
    estimator: Any, model: Callable, guide: Callable, match: str | None
) -> dict[str, Any]:
    """One SVI step with warnings as errors (Pyro's ``filterwarnings = error``)."""
    pyro.clear_param_store()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            SVI(model, guide, Adam({"lr": 1e-6}), estimator).step()
        except Exception as exc:
            failure = Failure.of(exc)
            matches = isinstance(exc, PYRO_ERROR_TYPES) and (
                match is None or re.search(match, str(exc)) is not None
            )
            return {**_fail(failure, "rejected", "rejected"), "matches_pyro": matches}
    return {"outcome": "silent"}


def check_warning(estimator: Any, model: Callable, guide: Callable) -> dict[str, Any]:
    """One SVI step, recording warnings."""
    pyro.clear_param_store()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            SVI(model, guide, Adam({"lr": 1e-6}), estimator).step()
        except Exception as exc:
            return _fail(Failure.of(exc), "refused", "crash")
    # The estimators' own notice that they run the particles in a loop is not the warning a
    # Pyro test expects about the program.
    texts = [t for t in _warning_texts(caught) if "runs them one at a time instead" not in t]
    return {"outcome": "warned" if texts else "silent", "message": "; ".join(texts)}


# -- choosing the programs -----------------------------------------------------------------------


def _params(item: pytest.Item) -> dict[str, Any]:
    callspec = getattr(item, "callspec", None)
    return dict(callspec.params) if callspec is not None else {}


def _label(value: Any) -> str:
    if torch.is_tensor(value):
        return f"tensor({value.tolist()})"
    if isinstance(value, type) or callable(value):
        return getattr(value, "__name__", repr(value))
    return repr(value)


def program_name(item: pytest.Item) -> str:
    """The test's name and its parameters other than the ELBO's, e.g.
    ``test_plate_ok[subsample_size=5]``."""
    labels = [f"{k}={_label(v)}" for k, v in _params(item).items() if k not in ELBO_PARAMS]
    name = getattr(item, "originalname", item.name)
    return f"{name}[{','.join(labels)}]" if labels else name


def _elbo_name(value: Any) -> str:
    return getattr(value, "__name__", type(value).__name__)


def _funsor_missing() -> bool:
    try:
        import funsor  # noqa: F401
    except ImportError:
        return True
    return False


def select_programs(items: list[pytest.Item]) -> tuple[list[pytest.Item], dict[str, str]]:
    """One item per distinct program (see the module docstring).

    Returns:
        The kept items in collection order, and ``{node id: why}`` for the tests left out
        entirely (not per duplicate variant).
    """
    by_function: dict[tuple[str, str], list[pytest.Item]] = defaultdict(list)
    for item in items:
        by_function[(item.nodeid.split("::")[0], getattr(item, "originalname", item.name))].append(
            item
        )
    no_funsor = _funsor_missing()
    kept: list[pytest.Item] = []
    left_out: dict[str, str] = {}
    for (path, function), variants in by_function.items():
        code = getattr(variants[0].obj, "__code__", None)
        if code is None or not set(CHECKS) & set(code.co_names):
            left_out[f"{path}::{function}"] = "calls none of " + "/".join(CHECKS)
            continue
        stage = variants[0].get_closest_marker("stage")
        if no_funsor and stage is not None and "funsor" in stage.args:
            left_out[f"{path}::{function}"] = "stage funsor; funsor is not installed"
            continue
        elbos = [p["Elbo"] for p in map(_params, variants) if "Elbo" in p]
        canonical = Trace_ELBO if any(e is Trace_ELBO for e in elbos) else next(iter(elbos), None)
        seen: set[str] = set()
        # variants without strict_enumeration_warning=True first: they are the canonical ones
        for item in sorted(variants, key=lambda it: _params(it).get(ELBO_PARAMS[1]) is True):
            params = _params(item)
            if "Elbo" in params and params["Elbo"] is not canonical:
                continue
            program = program_name(item)
            if program not in seen:
                seen.add(program)
                kept.append(item)
    order = {id(item): index for index, item in enumerate(items)}
    kept.sort(key=lambda item: order[id(item)])
    return kept, left_out


# -- the plugin ------------------------------------------------------------------------------


@dataclass
class _Context:
    item: pytest.Function
    estimator: str
    pyro_elbo: str
    calls: int = 0


class ValidModelsPlugin:
    """Runs every kept program of ``test_valid_models.py`` once per estimator name.

    Arguments:
        names: Estimator names (keys of ``pyro_vi.estimators.ESTIMATORS``).
        progress: Print one line per program to stderr.

    After ``pytest.main(..., plugins=[plugin])``: ``cases`` (dicts of :class:`Case`),
    ``left_out`` (tests not run, with the reason), ``skipped`` (items pytest skipped) and
    ``collection_errors``.
    """

    def __init__(self, names: list[str], progress: bool = True) -> None:
        self.names = list(names)
        self.progress = progress
        self.cases: list[dict[str, Any]] = []
        self.left_out: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        self.collection_errors: list[str] = []
        self._total = 0
        self._done = 0
        self._context: _Context | None = None
        self._originals: list[tuple[ModuleType, str, Any]] = []

    # pytest hooks

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        kept, self.left_out = select_programs(items)
        kept_ids = {id(item) for item in kept}
        config.hook.pytest_deselected(items=[it for it in items if id(it) not in kept_ids])
        items[:] = kept
        self._total = len(kept)
        for module in {item.module for item in kept if isinstance(item, pytest.Function)}:
            self._patch(module)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collection_errors.append(f"{report.nodeid}: {report.longreprtext[-2000:]}")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and report.when == "setup":
            reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else ""
            self.skipped[report.nodeid] = str(reason)

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool:
        start = len(self.cases)
        for name in self.names:
            self._run(pyfuncitem, name)
        self._done += 1
        if self.progress:
            counts: dict[str, int] = defaultdict(int)
            for case in self.cases[start:]:
                counts[case["outcome"]] += 1
            summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            print(
                f"[{self._done}/{self._total}] {program_name(pyfuncitem)}: {summary}",
                file=sys.stderr,
                flush=True,
            )
        return True

    def pytest_sessionfinish(self) -> None:
        for module, attribute, original in self._originals:
            setattr(module, attribute, original)
        self._originals.clear()

    # running

    def _patch(self, module: ModuleType) -> None:
        recorders = {
            "assert_ok": self._assert_ok,
            "assert_error": self._assert_error,
            "assert_warning": self._assert_warning,
        }
        for attribute, recorder in recorders.items():
            if hasattr(module, attribute):
                self._originals.append((module, attribute, getattr(module, attribute)))
                setattr(module, attribute, recorder)

    @staticmethod
    def _reset(item: pytest.Function) -> None:
        """The state Pyro's conftest sets before a test: empty param store, validation on
        (unless marked ``disable_validation``), the seed of the ``init`` marker."""
        pyro.clear_param_store()
        pyro.enable_validation(item.get_closest_marker("disable_validation") is None)
        init = item.get_closest_marker("init")
        if init is not None and "rng_seed" in init.kwargs:
            pyro.set_rng_seed(init.kwargs["rng_seed"])

    def _run(self, item: pytest.Function, name: str) -> None:
        params = _params(item)
        pyro_elbo = _elbo_name(params["Elbo"]) if "Elbo" in params else ""
        self._context = context = _Context(item, name, pyro_elbo)
        args = {k: v for k, v in item.funcargs.items() if k in item._fixtureinfo.argnames}
        if "Elbo" in args:
            args["Elbo"] = lambda **pyro_kwargs: build(name, pyro_elbo, pyro_kwargs)
        self._reset(item)
        start = time.perf_counter()
        try:
            item.obj(**args)
        except (Exception, pytest.skip.Exception, pytest.xfail.Exception) as exc:
            if isinstance(exc, (pytest.skip.Exception, pytest.xfail.Exception)):
                result = {"outcome": "skipped", "message": _first_lines(str(exc))}
            else:
                result = _fail(Failure.of(exc), "refused", "crash")
            self._record(context, "none", pyro_elbo, {}, [], result, start)
        finally:
            self._context = None

    def _record(
        self,
        context: _Context,
        expected: str,
        pyro_elbo: str,
        kwargs: dict[str, Any],
        dropped: list[str],
        result: dict[str, Any],
        start: float,
    ) -> None:
        case = Case(
            test_id=context.item.nodeid,
            program=program_name(context.item),
            call=context.calls,
            pyro_elbo=pyro_elbo,
            estimator=context.estimator,
            estimator_kwargs={k: _jsonable(v) for k, v in kwargs.items()},
            dropped_kwargs=dropped,
            expected=expected,
            seconds=round(time.perf_counter() - start, 4),
            **result,
        )
        self.cases.append(asdict(case))

    def _check(
        self,
        expected: str,
        elbo: Any,
        run: Callable[[Any], dict[str, Any]],
        match: str | None = None,
    ) -> None:
        context = self._context
        if context is None:
            raise RuntimeError("a Pyro check ran outside a test that this plugin runs")
        context.calls += 1
        pending = elbo if isinstance(elbo, Pending) else from_pyro_elbo(context.estimator, elbo)
        start = time.perf_counter()
        if pending.error is None:
            result = run(pending.estimator)
        elif expected == "error":
            result = _fail(Failure.of(pending.error), "rejected", "rejected")
        else:
            result = _fail(Failure.of(pending.error), "refused", "crash")
        if match is not None:
            result["pyro_match"] = match
        self._record(
            context, expected, pending.pyro_elbo, pending.kwargs, pending.dropped, result, start
        )

    # the recorders that replace Pyro's helpers (same signatures)

    def _assert_ok(self, model: Callable, guide: Callable, elbo: Any, **kwargs: Any) -> None:
        self._check("ok", elbo, lambda est: check_ok(est, model, guide, kwargs))

    def _assert_error(
        self, model: Callable, guide: Callable, elbo: Any, match: str | None = None
    ) -> None:
        self._check("error", elbo, lambda est: check_error(est, model, guide, match), match)

    def _assert_warning(self, model: Callable, guide: Callable, elbo: Any) -> None:
        self._check("warning", elbo, lambda est: check_warning(est, model, guide))


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value if isinstance(value, (bool, int, float, str, type(None))) else repr(value)
