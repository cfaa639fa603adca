"""Pyro's own test suites with pyro_vi's estimators in place of Pyro's ELBO classes.

Nothing of Pyro's test code is copied into this repository: the script runs the test files of
a Pyro source tree given with ``--pyro-src`` (a checkout, an unpacked archive, or a git
repository, bare or not, whose ``HEAD`` it unpacks to a temporary folder), and records what
each of pyro_vi's estimators (``pyro_vi.estimators.ESTIMATORS``, read at run time) does.

Suite 1, ``valid``: ``tests/infer/test_valid_models.py``. Each distinct program (model, guide
and the check the test states: ``assert_ok``, ``assert_error`` or ``assert_warning``) runs once
per estimator; the rules for choosing programs, mapping Pyro's ELBO options and classifying
outcomes are in ``pyro_suites_plugin.py``. Outcomes: expected ok -> ok / refused (a deliberate
ValueError, TypeError or NotImplementedError raised inside pyro_vi) / disagree (``loss``,
``differentiable_loss``, ``loss_and_grads`` differ by more than 0.01 from the same seed) /
crash (any other exception); expected error -> rejected / silent; expected warning -> warned /
refused / silent / crash.

Suite 2, ``inference``: the conjugate families of ``tests/infer/test_inference.py``
(``NormalNormalTests``, ``PoissonGammaTests``, ``BernoulliBetaTests`` through their
``do_elbo_test``, and ``test_exponential_gamma``; a ``LogNormalNormalTests`` class is used when
the source has one). Each is fitted by SVI with each estimator (built from the options of the
``Trace_ELBO`` that Pyro's own test passes, so the estimator's defaults otherwise), for the
number of steps that Pyro's ``Trace_ELBO`` test uses, and passes when the fitted guide
parameters match the analytic posterior within Pyro's tolerances. Reparameterized and
non-reparameterized guides (``pyro.distributions.testing.fakes``) are reported separately;
``rsvi`` is ``test_exponential_gamma`` with Pyro's ``ShapeAugmentedGamma``.

Both suites run under the settings of Pyro's ``tests/conftest.py`` (float64 default dtype,
validation on, seed 123 before each run as ``tests/infer/conftest.py`` marks it).

Run from the repository root:

    python benchmarks/pyro_suites.py --pyro-src /work/.mirror/pyro-ppl+pyro/repo
    python benchmarks/pyro_suites.py --pyro-src ~/src/pyro --suite valid          # ~13 min
    python benchmarks/pyro_suites.py --pyro-src ~/src/pyro --suite inference --jobs 2
    python benchmarks/pyro_suites.py --pyro-src ~/src/pyro --estimators elbo,iwae --quick
    python benchmarks/pyro_suites.py --pyro-src ~/src/pyro --suite valid --select plate

Writes ``pyro_suites.json`` (every case, every fit, the environment of each suite's run) and
``pyro_suites.md`` (tables and failures grouped by cause) to ``--out``; ``--quick`` writes
``pyro_suites_quick.*``. A run of one suite keeps the other suite's section of an existing file.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pyro
import pytest
import torch

from pyro_vi import estimators
from pyro_vi.devices import environment as run_environment

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
from pyro_suites_plugin import (
    Failure,
    ValidModelsPlugin,
    build,
    from_pyro_elbo,
)

REPO = Path(__file__).resolve().parent.parent
VALID_FILE = Path("tests/infer/test_valid_models.py")
INFERENCE_MODULE = "tests.infer.test_inference"
REQUIRED = (VALID_FILE, Path("tests/infer/test_inference.py"), Path("tests/common.py"))
#: Classes with ``do_elbo_test(reparameterized, n_steps, loss)``, in report order.
CONJUGATE_CLASSES = (
    "NormalNormalTests",
    "PoissonGammaTests",
    "BernoulliBetaTests",
    "LogNormalNormalTests",
)
#: The methods of those classes whose Trace_ELBO call gives the step count of each variant.
TRACE_ELBO_METHODS = {
    "reparam": "test_elbo_reparameterized",
    "nonreparam": "test_elbo_nonreparameterized",
}
EXPONENTIAL_GAMMA = "test_exponential_gamma"
#: Seed of ``tests/infer/conftest.py``'s default ``init`` marker.
SEED = 123
QUICK_DIVISOR = 50
#: Pyro ELBOs for general programs; programs written for others (TraceEnum_ELBO with
#: enumerated sites, TraceTailAdaptive_ELBO, EnergyDistance) are counted apart as well.
GENERAL_ELBOS = ("Trace_ELBO", "TraceGraph_ELBO", "TraceMeanField_ELBO")


# -- sources and environment ---------------------------------------------------------------


def _git(*args: str, cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


@contextlib.contextmanager
def pyro_source(path: Path, revision: str | None) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The folder holding Pyro's ``tests/``, and what it is (path, commit, describe).

    A git repository without the test files in its folder (e.g. a bare mirror) is unpacked
    from ``HEAD`` (``tests/`` and ``setup.cfg``) into a temporary folder for the run.
    """
    path = path.expanduser().resolve()
    info: dict[str, Any] = {"path": str(path), "commit": None, "describe": revision}
    if all((path / name).is_file() for name in REQUIRED):
        if _git("rev-parse", "--show-toplevel", cwd=path) == str(path):
            info["commit"] = _git("rev-parse", "HEAD", cwd=path)
            info["describe"] = revision or _git("describe", "--tags", "--always", cwd=path)
        yield path, info
        return
    commit = _git("rev-parse", "HEAD", cwd=path) if path.is_dir() else None
    if commit is None:
        raise SystemExit(
            f"--pyro-src: {path} is neither a Pyro source tree (with "
            f"{', '.join(map(str, REQUIRED))}) nor a git repository of one"
        )
    info.update(commit=commit, describe=revision or _git("describe", "--tags", cwd=path))
    with tempfile.TemporaryDirectory(prefix="pyro-src-") as folder:
        archive = subprocess.run(
            ["git", "archive", "HEAD", "tests", "setup.cfg"], cwd=path, capture_output=True
        )
        if archive.returncode != 0:
            raise SystemExit(f"--pyro-src: git archive failed in {path}: {archive.stderr!r}")
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
        info["unpacked_to"] = folder
        yield Path(folder), info


def environment(source: dict[str, Any]) -> dict[str, Any]:
    """Versions, date, the commit of pyro_vi (and whether pyro_vi/ has uncommitted changes)
    and of the Pyro source used."""
    status = _git("status", "--porcelain", "--", "pyro_vi", cwd=REPO)
    return {
        **run_environment("cpu"),
        "pyro_vi_commit": _git("rev-parse", "HEAD", cwd=REPO),
        "pyro_vi_uncommitted_files": None if status is None else len(status.splitlines()),
        "pyro_source": {k: v for k, v in source.items() if k != "unpacked_to"},
    }


def load_pyro_tests(source: Path) -> None:
    """Put the Pyro source first on ``sys.path`` and apply its ``tests/conftest.py``
    (default dtype float64) as pytest would."""
    if str(source) not in sys.path:
        sys.path.insert(0, str(source))
    tests = sys.modules.get("tests")
    if tests is not None and not str(getattr(tests, "__file__", "")).startswith(str(source)):
        raise RuntimeError(f"a different 'tests' package is already imported: {tests.__file__}")
    importlib.import_module("tests.conftest")


def reset_state() -> None:
    """Empty param store, validation on, the seed of Pyro's infer conftest."""
    pyro.clear_param_store()
    pyro.enable_validation(True)
    pyro.set_rng_seed(SEED)


# -- suite 1 -------------------------------------------------------------------------------


def run_valid(source: Path, names: list[str], select: str | None, progress: bool) -> dict[str, Any]:
    """Suite 1 (see the module docstring): pytest on Pyro's test file with the plugin."""
    plugin = ValidModelsPlugin(names, progress=progress)
    args = [
        str(source / VALID_FILE),
        "-c",
        os.devnull,  # neither this repository's pytest settings nor Pyro's setup.cfg
        "--rootdir",
        str(source),
        "-p",
        "no:cacheprovider",
        "-p",
        "no:warnings",
        "-p",
        "no:terminal",
        "-s",
    ]
    if select:
        args += ["-k", select]
    start = time.perf_counter()
    exit_code = pytest.main(args, plugins=[plugin])
    return {
        "settings": {"estimators": names, "select": select},
        "seconds": round(time.perf_counter() - start, 1),
        "pytest_exit_code": int(exit_code),
        "programs": len({case["program"] for case in plugin.cases}),
        "left_out": plugin.left_out,
        "skipped": plugin.skipped,
        "collection_errors": plugin.collection_errors,
        "cases": [_compact(case) for case in plugin.cases],
    }


def _compact(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if v not in (None, [], {}, "")}


def count_valid(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Cases per expectation and outcome (``rejected_by_pyro_vi``: deliberate rejections)."""
    counts: dict[str, Any] = {"ok": Counter(), "error": Counter(), "warning": Counter()}
    counts["none"] = Counter()
    for case in cases:
        counts[case["expected"]][case["outcome"]] += 1
        if case["expected"] == "error" and case.get("deliberate"):
            counts["error"]["rejected_by_pyro_vi"] += 1
    return {k: dict(v) for k, v in counts.items()}


def valid_line(counts: dict[str, Any]) -> str:
    """``valid: N cases, ok X, ...; invalid: ...; warning: ...``."""
    ok, error, warn, none = (counts[k] for k in ("ok", "error", "warning", "none"))
    line = (
        f"valid: {sum(ok.values())} cases, ok {ok.get('ok', 0)}, refused "
        f"{ok.get('refused', 0)}, disagree {ok.get('disagree', 0)}, crash {ok.get('crash', 0)}; "
        f"invalid: {error.get('rejected', 0) + error.get('silent', 0)} cases, rejected "
        f"{error.get('rejected', 0)} ({error.get('rejected_by_pyro_vi', 0)} by pyro_vi), silent "
        f"{error.get('silent', 0)}; warning: {sum(warn.values())} cases, warned "
        f"{warn.get('warned', 0)}, refused {warn.get('refused', 0)}, silent "
        f"{warn.get('silent', 0)}, crash {warn.get('crash', 0)}"
    )
    if none:
        line += "; test body failed: " + ", ".join(f"{k} {v}" for k, v in sorted(none.items()))
    return line


def _normalize(message: str) -> str:
    """A message with names, numbers and shapes blanked, to group cases by cause."""
    first = message.splitlines()[0] if message else ""
    first = re.sub(r"'[^'\s]*'", "'…'", first)
    first = re.sub(r"\([^()]*\)|\[[^\[\]]*\]", "(…)", first)
    return re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "N", first)


#: Report sections of the cases that did not go as Pyro's test expects, in report order.
CATEGORIES = {
    "failure": "Failures by cause (crash, disagree, silent)",
    "refused": "Refusals by cause (deliberate pyro_vi errors on programs Pyro accepts)",
    "rejected": (
        "Invalid programs rejected by an exception raised outside pyro_vi (informational: "
        "mostly Pyro's own checks, run by pyro_vi; `matches` counts the cases whose type and "
        "message Pyro's `assert_error` accepts)"
    ),
}


def category(case: dict[str, Any]) -> str | None:
    """``None`` for a case that went as Pyro's test expects (ok, warned, rejected by pyro_vi),
    else its report section: ``failure``, ``refused`` or ``rejected`` (see ``CATEGORIES``)."""
    expected, outcome = case["expected"], case["outcome"]
    if (expected, outcome) in (("ok", "ok"), ("warning", "warned")):
        return None
    if (expected, outcome) == ("error", "rejected"):
        return None if case.get("deliberate") else "rejected"
    return "refused" if outcome == "refused" else "failure"


def case_groups(cases: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The cases of each category of ``category``, grouped by (expectation, outcome,
    exception, message pattern, pyro_vi file and function); silent cases by program.
    Largest group first."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for case in cases:
        section = category(case)
        if section is None:
            continue
        if case["outcome"] == "silent":  # one group per program: what Pyro expects of it
            key = (section, case["expected"], "silent", case["program"], "", "")
        else:
            key = (
                section,
                case["expected"],
                case["outcome"],
                case.get("exception", ""),
                _normalize(case.get("message", "")),
                re.sub(r":\d+ ", " ", case.get("pyro_vi_frame", "")),  # file and function
            )
        groups[key].append(case)
    result: dict[str, list[dict[str, Any]]] = {section: [] for section in CATEGORIES}
    for (section, expected, outcome, exception, _, _), members in groups.items():
        programs: dict[str, set[str]] = defaultdict(set)
        for case in members:
            programs[case["program"]].add(case.get("pyro_elbo", ""))
        group = {
            "expected": expected,
            "outcome": outcome,
            "exception": exception,
            "pyro_match": members[0].get("pyro_match", ""),
            "example": members[0].get("message", ""),
            "pyro_vi_frame": members[0].get("pyro_vi_frame", ""),
            "where": sorted({c["where"] for c in members if c.get("where")})[:3],
            "origin": sorted({c["origin"] for c in members if c.get("origin")})[:3],
            "cases": len(members),
            "estimators": sorted({c["estimator"] for c in members}),
            "programs": {p: sorted(e) for p, e in programs.items()},
        }
        if section == "rejected":
            group["matches"] = sum(bool(c.get("matches_pyro")) for c in members)
        result[section].append(group)
    for section_groups in result.values():
        section_groups.sort(key=lambda group: -group["cases"])
    return result


# -- suite 2 -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    """One fit of suite 2: a conjugate family, a guide variant, an estimator."""

    family: str
    variant: str
    reparameterized: bool
    pyro_steps: int
    estimator: str
    #: options of the Trace_ELBO that Pyro's test passes (class tests only)
    pyro_kwargs: tuple[tuple[str, Any], ...] = ()
    #: index into test_exponential_gamma's (gamma_dist, n_steps) parameters
    param_index: int | None = None


def _trace_elbo_call(cls: type, method: str) -> tuple[bool, int, Any] | None:
    """The (reparameterized, n_steps, loss) that ``cls.method`` passes to ``do_elbo_test``,
    found by running the method with ``do_elbo_test`` replaced by a recorder."""
    if not hasattr(cls, method):
        return None
    case = cls(method)
    case.setUp()
    calls: list[tuple[bool, int, Any]] = []
    case.do_elbo_test = lambda reparameterized, n_steps, loss: calls.append(
        (reparameterized, n_steps, loss)
    )
    getattr(case, method)()
    return calls[0] if calls else None


def _gamma_params(function: Callable) -> tuple[list[tuple[Any, int]], list[str]]:
    for mark in getattr(function, "pytestmark", []):
        if mark.name == "parametrize" and mark.args[0].replace(" ", "") == "gamma_dist,n_steps":
            values = [tuple(v.values if hasattr(v, "values") else v) for v in mark.args[1]]
            return values, list(mark.kwargs.get("ids") or [str(i) for i in range(len(values))])
    return [], []


def inference_plan(module: ModuleType, names: list[str]) -> tuple[list[Fit], list[str]]:
    """Every fit to run, and notes on what the source lacks."""
    fits: list[Fit] = []
    notes: list[str] = []
    for family in CONJUGATE_CLASSES:
        cls = getattr(module, family, None)
        if cls is None:
            notes.append(f"{family}: not in this Pyro source")
            continue
        for variant, method in TRACE_ELBO_METHODS.items():
            call = _trace_elbo_call(cls, method)
            if call is None:
                notes.append(f"{family}.{method}: not found")
                continue
            reparameterized, steps, loss = call
            kwargs = from_pyro_elbo(names[0], loss).pyro_kwargs
            fits += [
                Fit(family, variant, reparameterized, steps, name, tuple(kwargs.items()))
                for name in names
            ]
    function = getattr(module, EXPONENTIAL_GAMMA, None)
    values, ids = _gamma_params(function) if function is not None else ([], [])
    if not values:
        notes.append(f"{EXPONENTIAL_GAMMA}: not found or not parametrized as expected")
    for index, ((gamma_dist, steps), label) in enumerate(zip(values, ids, strict=True)):
        reparameterized = bool(getattr(gamma_dist, "has_rsample", False))
        fits += [
            Fit("ExponentialGamma", label, reparameterized, steps, name, param_index=index)
            for name in names
        ]
    return fits, notes


def quick_steps(steps: int) -> int:
    return max(10, steps // QUICK_DIVISOR)


def _init_worker(source: str, threads: int) -> None:
    torch.set_num_threads(threads)
    load_pyro_tests(Path(source))


def run_fit(source: str, fit: Fit, quick: bool) -> dict[str, Any]:
    """One fit; returns its row (outcome pass / fail / refused / crash / skipped)."""
    load_pyro_tests(Path(source))
    module = importlib.import_module(INFERENCE_MODULE)
    steps = quick_steps(fit.pyro_steps) if quick else fit.pyro_steps
    used: dict[str, Any] = {}
    given: dict[str, Any] = {}

    def estimator(**pyro_kwargs: Any) -> Any:
        pending = build(fit.estimator, "Trace_ELBO", pyro_kwargs)
        given.update(pyro_kwargs)
        used.update(pending.kwargs)
        if pending.error is not None:
            raise pending.error
        return pending.estimator

    reset_state()
    start = time.perf_counter()
    row: dict[str, Any] = {"outcome": "pass", "message": ""}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if fit.param_index is None:
                cls = getattr(module, fit.family)
                case = cls(TRACE_ELBO_METHODS[fit.variant])
                case.setUp()
                loss = estimator(**dict(fit.pyro_kwargs))
                cls.do_elbo_test(case, fit.reparameterized, steps, loss)
            else:
                function = getattr(module, EXPONENTIAL_GAMMA)
                gamma_dist, _ = _gamma_params(function)[0][fit.param_index]
                function(gamma_dist=gamma_dist, n_steps=steps, elbo_impl=estimator)
        except AssertionError as exc:
            row = {"outcome": "fail", "message": str(exc).strip().splitlines()[0][:400]}
        except (pytest.skip.Exception, pytest.xfail.Exception) as exc:
            cause = exc.__context__
            if isinstance(cause, Exception):  # xfail_if_not_implemented: a NotImplementedError
                row = _failure_row(Failure.of(cause))
            else:
                row = {"outcome": "skipped", "message": str(exc)[:400]}
        except Exception as exc:
            row = _failure_row(Failure.of(exc))
    texts = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught})
    return {
        **asdict(fit),
        "pyro_kwargs": given,
        "estimator_kwargs": used,
        "n_steps": steps,
        **row,
        "seconds": round(time.perf_counter() - start, 2),
        "warnings": texts[:5],
    }


def _failure_row(failure: Failure) -> dict[str, Any]:
    return {
        "outcome": "refused" if failure.deliberate else "crash",
        "message": f"{failure.exception}: {failure.message}",
        "where": failure.where,
        "origin": failure.origin,
        "pyro_vi_frame": failure.pyro_vi_frame,
    }


def run_inference(
    source: Path, names: list[str], quick: bool, jobs: int, progress: bool
) -> dict[str, Any]:
    """Suite 2 (see the module docstring), ``jobs`` fits at a time."""
    load_pyro_tests(source)
    module = importlib.import_module(INFERENCE_MODULE)
    fits, notes = inference_plan(module, names)
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []

    def report(row: dict[str, Any]) -> None:
        rows.append(row)
        if progress:
            print(
                f"[{len(rows)}/{len(fits)}] {row['family']}/{row['variant']} "
                f"{row['estimator']}: {row['outcome']} ({row['seconds']:.0f} s) "
                f"{row['message'][:100]}",
                file=sys.stderr,
                flush=True,
            )

    if jobs <= 1:
        for fit in fits:
            report(run_fit(str(source), fit, quick))
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            jobs, mp_context=context, initializer=_init_worker, initargs=(str(source), threads)
        ) as pool:
            futures = [pool.submit(run_fit, str(source), fit, quick) for fit in fits]
            for future in as_completed(futures):
                report(future.result())
    order = {(f.family, f.variant, f.estimator): i for i, f in enumerate(fits)}
    rows.sort(key=lambda row: order[(row["family"], row["variant"], row["estimator"])])
    return {
        "settings": {"estimators": names, "quick": quick, "jobs": jobs},
        "seconds": round(time.perf_counter() - start, 1),
        "notes": notes,
        "rows": rows,
    }


# -- reporting -------------------------------------------------------------------------------


def _programs_text(programs: dict[str, list[str]], limit: int = 12) -> str:
    def label(program: str, elbos: list[str]) -> str:
        extra = [e for e in elbos if e and e != "Trace_ELBO"]
        return f"`{program}`" + (f" ({', '.join(extra)})" if extra else "")

    items = [label(p, e) for p, e in programs.items()]
    more = f", and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _group_text(group: dict[str, Any], all_names: list[str]) -> str:
    names = group["estimators"]
    who = "all estimators" if names == sorted(all_names) else ", ".join(names)
    head = (
        f"**{group['outcome']}** (expected {group['expected']}): {_plural(group['cases'], 'case')}"
    )
    head += f", {_plural(len(group['programs']), 'program')}; {who}."
    if group["outcome"] == "silent":
        cause = group["pyro_match"]
        body = "Pyro expects " + (f"an error matching `{cause}`" if cause else "an error")
        if group["expected"] == "warning":
            body = "Pyro expects a warning"
    else:
        body = f"`{group['example'].splitlines()[0][:300]}`"
        places = [f"raised at `{group['where'][0]}`"] if group["where"] else []
        places += [f"from `{group['origin'][0]}`"] if group["origin"] else []
        places += [f"pyro_vi frame `{group['pyro_vi_frame']}`"] if group["pyro_vi_frame"] else []
        body += f" ({'; '.join(places)})" if places else ""
    if "matches" in group:
        body += f"; matches {group['matches']}/{group['cases']}"
    return f"- {head} {body}. Programs: {_programs_text(group['programs'])}"


def valid_markdown(section: dict[str, Any]) -> list[str]:
    cases = section["cases"]
    names = section["settings"]["estimators"]
    lines = [
        "## Suite 1: `tests/infer/test_valid_models.py`",
        "",
        _environment_line(section["environment"]),
        "",
        f"{section['programs']} programs, {len(names)} estimators: {len(cases)} cases (one per "
        f"check a test makes) in {section['seconds']:.0f} s"
        + (
            f" (selected with `-k {section['settings']['select']}`)"
            if section["settings"].get("select")
            else ""
        )
        + ".",
        "",
    ]
    for title, subset in (
        ("All programs", cases),
        (
            f"Programs written for {', '.join(GENERAL_ELBOS)} (no enumeration)",
            [c for c in cases if c.get("pyro_elbo", "") in GENERAL_ELBOS],
        ),
    ):
        lines += [f"### {title}", "", "| estimator | counts |", "|---|---|"]
        for name in names:
            own = [c for c in subset if c["estimator"] == name]
            lines.append(f"| {name} | {valid_line(count_valid(own))} |")
        lines += [f"| **all** | {valid_line(count_valid(subset))} |", ""]
    for kind, groups in case_groups(cases).items():
        lines += [f"### {CATEGORIES[kind]}", ""]
        lines += [_group_text(group, names) for group in groups] or ["None."]
        lines.append("")
    warned: dict[str, set[str]] = defaultdict(set)
    for case in cases:
        if case["outcome"] == "ok":
            for text in case.get("warnings", []):
                warned[_normalize(text)].add(f"`{case['program']}` ({case['estimator']})")
    if warned:
        lines += ["### Warnings in cases that passed", ""]
        lines += [f"- `{w}`: {len(c)} cases, e.g. {min(c)}" for w, c in warned.items()]
        lines.append("")
    if section["left_out"] or section["skipped"] or section["collection_errors"]:
        lines += ["### Not run", ""]
        lines += [f"- `{k}`: {v}" for k, v in section["left_out"].items()]
        lines += [f"- `{k}`: skipped, {v}" for k, v in section["skipped"].items()]
        lines += [f"- collection error: {e[:300]}" for e in section["collection_errors"]]
    return lines


def inference_markdown(section: dict[str, Any]) -> list[str]:
    rows = section["rows"]
    names = section["settings"]["estimators"]
    quick = (
        " **(quick: steps / 50; pass/fail not meaningful)**" if section["settings"]["quick"] else ""
    )
    lines = [
        "## Suite 2: `tests/infer/test_inference.py` conjugate families",
        "",
        _environment_line(section["environment"]),
        "",
        f"{len(rows)} fits in {section['seconds']:.0f} s with {section['settings']['jobs']} "
        f"parallel jobs (seconds per fit are wall time under that load){quick}.",
        "",
    ]
    columns = list(dict.fromkeys((r["family"], r["variant"]) for r in rows))
    for title, reparameterized in (
        ("Reparameterized guides", True),
        ("Non-reparameterized guides (score-function gradients)", False),
    ):
        chosen = [
            c
            for c in columns
            if any(
                r["reparameterized"] is reparameterized
                for r in rows
                if (r["family"], r["variant"]) == c
            )
        ]
        if not chosen:
            continue
        steps = {
            c: next(r["n_steps"] for r in rows if (r["family"], r["variant"]) == c) for c in chosen
        }
        header = " | ".join(f"{f} {v} ({steps[(f, v)]} steps)" for f, v in chosen)
        lines += [f"### {title}", "", f"| estimator | {header} |", "|---" * (len(chosen) + 1) + "|"]
        for name in names:
            cells = []
            for family, variant in chosen:
                row = next(
                    (
                        r
                        for r in rows
                        if (r["family"], r["variant"], r["estimator"]) == (family, variant, name)
                    ),
                    None,
                )
                cells.append("" if row is None else f"{row['outcome']} {row['seconds']:.0f} s")
            lines.append(f"| {name} | {' | '.join(cells)} |")
        lines.append("")
    failures = [r for r in rows if r["outcome"] != "pass"]
    lines += ["### Failures", ""]
    lines += [
        f"- {r['family']}/{r['variant']} {r['estimator']}: **{r['outcome']}** "
        f"`{r['message'][:300]}`"
        for r in failures
    ] or ["None."]
    lines += [f"- note: {n}" for n in section["notes"]]
    return lines


def _environment_line(env: dict[str, Any]) -> str:
    source = env["pyro_source"]
    commit = env.get("pyro_vi_commit") or "unknown"
    dirty = env.get("pyro_vi_uncommitted_files")
    return (
        f"Run {env['date']} on {env['device_name']} ({env['torch_threads']} threads): torch "
        f"{env['torch']}, pyro-ppl {env['pyro']}, pyro_vi {env['pyro_vi']} (commit "
        f"{commit[:12]}"
        + (f", {dirty} uncommitted files under pyro_vi/" if dirty else "")
        + f"); Pyro tests from {source.get('describe') or '?'} (commit "
        f"{(source.get('commit') or 'unknown')[:12]})."
    )


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Pyro's test suites with pyro_vi's estimators",
        "",
        "Written by `benchmarks/pyro_suites.py`; see `benchmarks/README.md` for what each "
        "outcome means. `pyro_suites.json` has every case.",
        "",
    ]
    if "valid" in result:
        lines += [*valid_markdown(result["valid"]), ""]
    if "inference" in result:
        lines += [*inference_markdown(result["inference"]), ""]
    return "\n".join(lines)


def print_summary(result: dict[str, Any]) -> None:
    if "valid" in result:
        section = result["valid"]
        print(f"Suite 1: {section['programs']} programs, {len(section['cases'])} cases")
        for name in section["settings"]["estimators"]:
            own = [c for c in section["cases"] if c["estimator"] == name]
            print(f"  {name:>10}: {valid_line(count_valid(own))}")
        print(f"  {'all':>10}: {valid_line(count_valid(section['cases']))}")
        for name, groups in case_groups(section["cases"]).items():
            print(f"  {CATEGORIES[name]}:" + ("" if groups else " none"))
            for group in groups:
                text = _group_text(group, section["settings"]["estimators"])
                print("    " + text[:400] + ("..." if len(text) > 400 else ""))
    if "inference" in result:
        section = result["inference"]
        print(f"Suite 2: {len(section['rows'])} fits")
        for row in section["rows"]:
            print(
                f"  {row['family']:>18} {row['variant']:>10} {row['estimator']:>10}: "
                f"{row['outcome']:>7} {row['seconds']:7.1f} s  {row['message'][:120]}"
            )


def dumps(result: dict[str, Any]) -> str:
    """JSON with one line per case (suite 1) and per fit (suite 2)."""
    lines: dict[str, str] = {}
    shallow = {}
    for name, section in result.items():
        section = dict(section)
        for key in ("cases", "rows"):
            if isinstance(section.get(key), list):
                records = {f"@@{name}-{key}-{i}@@": r for i, r in enumerate(section[key])}
                lines.update({t: json.dumps(r, default=str) for t, r in records.items()})
                section[key] = list(records)
        shallow[name] = section
    text = json.dumps(shallow, indent=1, default=str)
    return re.sub(r'"(@@[^"]+@@)"', lambda match: lines[match.group(1)], text) + "\n"


def write(result: dict[str, Any], out: Path, stem: str) -> Path:
    """Write ``stem.json`` and ``stem.md``, keeping the sections of suites not run now."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.json"
    merged: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(ValueError):
            merged = json.loads(path.read_text())
    merged.update(result)
    for target, text in (
        (path, dumps(merged)),
        (out / f"{stem}.md", markdown(merged)),
    ):
        temporary = target.with_suffix(target.suffix + ".tmp")
        temporary.write_text(text)
        temporary.replace(target)
    return path


# -- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pyro-src", type=Path, help="Pyro source tree with tests/, or a git repository of Pyro"
    )
    parser.add_argument("--pyro-rev", help="label of the Pyro source, when it has no git data")
    parser.add_argument("--suite", choices=("valid", "inference", "all"), default="all")
    parser.add_argument("--estimators", help="comma-separated names (default: all registered)")
    parser.add_argument("--select", help="suite 1: pytest -k expression to run some tests only")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"suite 2 with 1/{QUICK_DIVISOR} of the steps; writes *_quick.*",
    )
    parser.add_argument("--jobs", type=int, default=1, help="suite 2: fits run in parallel")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--render",
        action="store_true",
        help="run nothing: print the results in --out and rewrite their files",
    )
    args = parser.parse_args(argv)
    if args.pyro_src is None and not args.render:
        parser.error("--pyro-src is required (unless --render)")
    return args


def estimator_names(text: str | None) -> list[str]:
    registered = list(estimators.ESTIMATORS)
    if not text:
        return registered
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in registered]
    if unknown or not names:
        raise SystemExit(f"--estimators: unknown {unknown or text!r}; registered: {registered}")
    return names


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    names = estimator_names(args.estimators)
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {args.jobs}")
    stem = "pyro_suites_quick" if args.quick else "pyro_suites"
    if args.render:
        result = json.loads((args.out / f"{stem}.json").read_text())
        print_summary(result)
        write(result, args.out, stem)
        return result
    result: dict[str, Any] = {}
    with pyro_source(args.pyro_src, args.pyro_rev) as (source, info):
        env = environment(info)
        if args.suite in ("valid", "all"):
            result["valid"] = {
                "environment": env,
                **run_valid(source, names, args.select, not args.no_progress),
            }
        if args.suite in ("inference", "all"):
            env = environment(info)
            result["inference"] = {
                "environment": env,
                **run_inference(source, names, args.quick, args.jobs, not args.no_progress),
            }
    print_summary(result)
    path = write(result, args.out, stem)
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return result


if __name__ == "__main__":
    main()
