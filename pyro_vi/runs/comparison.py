"""The record of a comparison: one table (Markdown, CSV, JSON) and one figure over run folders.

What :func:`~pyro_vi.runs.compare.compare` and :func:`~pyro_vi.runs.sweep.sweep` write. Runs
are compared like with like:

- **ranked** on one common metric, the IWAE-K estimate of log p(x) of the final evaluation (the
  same K, ``training.eval_samples``, and the same test set for every run; for a point-mass guide
  with a prior, the IWAE-K equals its test ELBO, which stands in). The test ELBO is beside it.
- the **own test bound** column is each run's training objective on the test set (an IWAE-5's
  5-sample bound, a VAE's ELBO): it is what the run optimized, *not* comparable across
  estimators, and not what runs are ranked on.
- an **autoencoder** has no prior, hence no bound on log p(x): its ELBO, log-likelihood and bound
  cells are blank (``None`` in the JSON, empty in the CSV), never numbers; its reconstruction
  term is in its own column and on its own axis of the figure.
- the **figure** (``comparison.png``) plots, after each epoch (on a ladder past the 20th:
  :func:`~pyro_vi.runs.curves.scheduled`), the test ELBO and the IWAE-K
  log-likelihood of every run, scored alike (:mod:`pyro_vi.runs.curves`: the same test images,
  K and random draws); each run's own training bound is a separate panel, labelled as not
  comparable; with an autoencoder, the reconstruction term of every run is a fourth panel.
  Epochs, not seconds, are the x-axis: seconds measure the machine's load as much as the
  estimator.
- the **machine's load** during each run (other processes' share of the CPU time, per epoch,
  and the load average; :mod:`pyro_vi.machine`) is a column; when other processes took more
  than :data:`~pyro_vi.machine.BUSY_SHARE` of it, the table says so above the rows and a
  :class:`BusyMachineWarning` goes to stderr: the ``train s`` column then measures the load.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pyro_vi.machine import BUSY_SHARE, is_busy
from pyro_vi.records import read_json, versioned, write_json
from pyro_vi.runs.curves import read_curve
from pyro_vi.runs.folder import INFO_FILE, SUMMARY_FILE, read_epochs
from pyro_vi.spec import Spec

__all__ = [
    "COLUMNS",
    "BusyMachineWarning",
    "comparison_figure",
    "describe_estimator",
    "describe_guide",
    "rank_rows",
    "run_row",
    "write_comparison",
]

#: Columns of the comparison table: (heading, row key). Parameters of a sweep come after "run".
COLUMNS = (
    ("rank", "rank"),
    ("run", "name"),
    ("model", "model"),
    ("guide", "guide"),
    ("estimator", "estimator"),
    ("status", "status"),
    ("epochs", "epochs"),
    ("train s", "training_seconds"),
    ("other CPU", "other_cpu_share"),
    ("log p(x) IWAE-K", "log_likelihood"),
    ("test ELBO", "test_elbo"),
    ("own test bound", "test_bound"),
    ("recon. log p(x\\|z)", "reconstruction_log_likelihood"),
    ("active units", "active_units"),
)
#: Row keys written to the CSV and JSON beside the table's.
EXTRA_KEYS = ("busy", "load_average", "log_likelihood_samples", "has_bound")


class BusyMachineWarning(UserWarning):
    """Other processes kept the machine busy while a compared run trained: its seconds measure
    the load as much as the run."""


def describe_estimator(spec: Spec) -> str:
    """The estimator and its options, in a few words."""
    options = ", ".join(f"{k}={v}" for k, v in spec.estimator.items() if k != "name")
    return f"{spec.estimator['name']}({options})"


def describe_guide(spec: Spec) -> str:
    """The guide, in a few words (its model kind's words)."""
    return spec.kind.describe_guide(spec)


def _load(path: Path) -> tuple[float | None, float | None]:
    """Other processes' CPU share over a run's epochs (weighted by their seconds) and the
    highest one-minute load average seen, from its curve."""
    weighted = total = 0.0
    highest = None
    for point in read_curve(path):
        share, seconds = point.get("other_cpu_share"), point.get("seconds") or 0.0
        if share is not None and seconds > 0:
            weighted, total = weighted + share * seconds, total + seconds
        average = point.get("load_average")
        if average:
            highest = average[0] if highest is None else max(highest, average[0])
    return (round(weighted / total, 3) if total > 0 else None), highest


def run_row(
    name: str, spec: Spec, path: str | Path, params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """One row of the comparison: what the run folder ``path`` holds, judged like with like.

    Arguments:
        name: The run's name in the table.
        spec: Its resolved spec.
        path: Its folder (a run that did not complete, e.g. pruned or diverged, gets a row with
            its status and blank metrics).
        params: The swept keys and their values, for a sweep.

    Returns:
        The row: the keys of :data:`COLUMNS` and :data:`EXTRA_KEYS`, and ``params``.
    """
    path = Path(path)
    info = read_json(path / INFO_FILE) if (path / INFO_FILE).is_file() else {}
    summary = read_json(path / SUMMARY_FILE) if (path / SUMMARY_FILE).is_file() else None
    metrics = summary["metrics"] if summary is not None else {}
    kind = spec.kind
    if summary is not None:
        epochs = len(summary["history"]["train_loss"])
    else:
        epochs = len(read_epochs(path))
    estimator = spec.estimator["name"]
    # The bound the run trained on, on the test set; a relaxed sigmoid belief net reports it as
    # test_relaxed_<name>_bound; the ELBO's is the test ELBO itself.
    keys = (f"test_{estimator}_bound", f"test_relaxed_{estimator}_bound")
    bound_key = next((key for key in keys if key in metrics), None)
    own_bound = metrics.get(bound_key) if bound_key else None
    if own_bound is None and estimator == "elbo" and kind.has_prior:
        own_bound = metrics.get("test_elbo")
    likelihood_key = next((k for k in metrics if k.startswith("test_log_likelihood_iwae_")), None)
    likelihood = metrics.get(likelihood_key) if likelihood_key else None
    samples = int(likelihood_key.rsplit("_", 1)[1]) if likelihood_key else None
    if likelihood is None and kind.has_prior and kind.deterministic_encoder:
        likelihood = metrics.get("test_elbo")  # a point mass: IWAE-K equals the ELBO
    other, load_average = _load(path)
    seconds = metrics.get("training_seconds")
    if seconds is None:
        seconds = info.get("training_seconds") or sum(e["seconds"] for e in read_epochs(path))
    row = {
        "rank": None,
        "name": name,
        "model": kind.describe_model(spec),
        "guide": describe_guide(spec),
        "estimator": describe_estimator(spec),
        "status": info.get("status", "complete" if summary is not None else None),
        "epochs": epochs,
        "training_seconds": seconds,
        "other_cpu_share": other,
        "log_likelihood": likelihood,
        "test_elbo": metrics.get("test_elbo") if kind.has_prior else None,
        "test_bound": own_bound if kind.has_prior else None,
        "reconstruction_log_likelihood": metrics.get("reconstruction_log_likelihood"),
        "active_units": _active_units(metrics),
        "busy": is_busy(other),
        "load_average": load_average,
        "log_likelihood_samples": samples,
        "has_bound": kind.has_prior,
        "params": dict(params or {}),
    }
    return row


def _active_units(metrics: Mapping[str, Any]) -> int | str | None:
    """The active units; with two stochastic layers, each layer's (``"z1 48, z2 9"``)."""
    if "active_units" in metrics:
        return metrics["active_units"]
    layers = [
        f"{key.removeprefix('active_units_')} {value}"
        for key, value in metrics.items()
        if key.startswith("active_units_") and not key.endswith("_of")
    ]
    return ", ".join(layers) or None


def rank_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows ranked by the common log-likelihood, best first (rank 1); rows without one
    (an autoencoder, a pruned run) follow, unranked, in their order."""
    ranked = sorted(
        (row for row in rows if _number(row["log_likelihood"])),
        key=lambda row: -row["log_likelihood"],
    )
    for position, row in enumerate(ranked, start=1):
        row["rank"] = position
    return ranked + [row for row in rows if not _number(row["log_likelihood"])]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _cell(value: Any, key: str = "") -> str:
    if value is None:
        return ""
    if key == "other_cpu_share":
        return f"{value:.0%}" + (" busy" if is_busy(value) else "")
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _param_cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _header(
    rows: list[dict[str, Any]], match: str | None, curve: Mapping[str, Any] | None, machine: dict
) -> list[str]:
    samples = sorted({row["log_likelihood_samples"] for row in rows} - {None})
    k = "K = " + (str(samples[0]) if len(samples) == 1 else f"{samples} (differs between runs!)")
    lines = []
    if match is not None:
        lines.append(
            f"Matched compute: same {match}; numbers in nats per datapoint on the test set."
        )
    else:
        lines.append("Numbers in nats per datapoint on the test set.")
    lines += [
        f"Ranked by log p(x), IWAE-K with {k} on the whole test set: the same for every run. "
        "The test ELBO is beside it; *own test bound* is each run's training objective on the "
        "test set, which differs between estimators and is not comparable across them. An "
        "autoencoder has no bound: its cells are blank.",
    ]
    if curve:
        lines.append(
            f"comparison.png: test ELBO and IWAE-{curve['num_samples']} after each epoch (past "
            f"the 20th, at 25, 30, 40, 50, ...) on the "
            f"first {curve['size']} test images, alike for every run; the own training bounds "
            "are a separate panel."
        )
    lines.append(
        f"Machine: {machine.get('device_name', '?')} ({machine.get('device', '?')}), "
        f"{machine.get('cpu_count', '?')} CPUs, torch {machine.get('torch', '?')}, pyro "
        f"{machine.get('pyro', '?')}, {machine.get('date', '?')}."
    )
    busy = [row for row in rows if row["busy"]]
    if busy:
        lines.append(
            f"**Warning: the machine was busy.** Other processes took more than "
            f"{BUSY_SHARE:.0%} of the CPU time while these runs trained: "
            + ", ".join(f"{row['name']} {row['other_cpu_share']:.0%}" for row in busy)
            + ". Their `train s` measures that load as much as the runs; time estimators side by "
            "side with benchmarks/estimator_speed.py."
        )
    return lines


def write_comparison(
    out: str | Path,
    rows: list[dict[str, Any]],
    paths: Sequence[str | Path],
    match: str | None = "epochs",
    *,
    curve: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``comparison.md``, ``.csv``, ``.json`` and ``.png`` into ``out``.

    Arguments:
        out: The comparison folder.
        rows: One :func:`run_row` per run (ranked here).
        paths: The run folders, in the order of ``rows``.
        match: What was matched between runs (``"epochs"``, ``"seconds"``), or ``None`` (a
            sweep).
        curve: The settings of the per-epoch curves
            (:meth:`~pyro_vi.runs.curves.EpochEvaluation.settings`).
        extra: More to store in ``comparison.json`` (a sweep's grid).

    Returns:
        The paths written, by kind (``markdown``, ``csv``, ``json``, ``figure``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if len(rows) != len(paths):
        raise ValueError(f"rows and paths differ in length ({len(rows)} and {len(paths)})")
    by_name = {row["name"]: Path(path) for row, path in zip(rows, paths, strict=True)}
    rows = rank_rows([dict(row) for row in rows])
    curves = {row["name"]: read_curve(by_name[row["name"]]) for row in rows}
    if curve:
        # The test images scored, as many as there are when the test set is smaller.
        sizes = {p["test"]["size"] for points in curves.values() for p in points if "test" in p}
        curve = {**curve, "size": sizes.pop() if len(sizes) == 1 else curve["size"]}
    first = next((p for p in by_name.values() if (p / INFO_FILE).is_file()), None)
    machine = read_json(first / INFO_FILE).get("environment", {}) if first else {}
    params = list(dict.fromkeys(key for row in rows for key in row.get("params", {})))
    headings = [(h, k) for h, k in COLUMNS[:2]] + [(p, p) for p in params] + list(COLUMNS[2:])
    lines = _header(rows, match, curve, machine)
    lines += ["", "| " + " | ".join(h for h, _ in headings) + " |", "|" + "---|" * len(headings)]
    for row in rows:
        cells = [
            _param_cell(row.get("params", {}).get(key))
            if key in params
            else _cell(row.get(key), key)
            for _, key in headings
        ]
        lines.append("| " + " | ".join(cells) + " |")
    written = {"markdown": out / "comparison.md", "csv": out / "comparison.csv"}
    written["markdown"].write_text("\n".join(lines) + "\n")
    keys = [k for _, k in COLUMNS[:2]] + params + [k for _, k in COLUMNS[2:]] + list(EXTRA_KEYS)
    with open(written["csv"], "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            flat = {**{k: row.get(k) for k in keys if k not in params}, **row.get("params", {})}
            writer.writerow({k: "" if flat.get(k) is None else flat.get(k) for k in keys})
    payload = versioned(
        {
            "match": match,
            "environment": machine,
            "busy_share": BUSY_SHARE,
            "curve": dict(curve) if curve else None,
            **dict(extra or {}),
            "rows": rows,
            # The figure's data: each run's per-epoch common metrics and load.
            "curves": curves,
        }
    )
    written["json"] = write_json(out / "comparison.json", payload)
    figure = comparison_figure(rows, [by_name[row["name"]] for row in rows], curve)
    written["figure"] = out / "comparison.png"
    figure.savefig(written["figure"], dpi=100)
    busy = [row["name"] for row in rows if row["busy"]]
    if busy:
        warnings.warn(
            f"the machine was busy while {busy} trained (other processes took more than "
            f"{BUSY_SHARE:.0%} of the CPU time): their training seconds measure the load",
            BusyMachineWarning,
            stacklevel=2,
        )
    return written


def comparison_figure(
    rows: Sequence[Mapping[str, Any]],
    paths: Sequence[str | Path],
    curve: Mapping[str, Any] | None = None,
) -> Figure:
    """Curves per epoch: the common test ELBO and IWAE-K (every run scored alike), each run's
    own training bound apart (not comparable), and with an autoencoder the reconstruction term.

    Arguments:
        rows: The comparison's rows (``name`` and ``has_bound`` are read).
        paths: Their run folders (``eval_curve.jsonl`` and ``metrics.jsonl`` are read).
        curve: The curves' settings, for the labels.
    """
    k = curve["num_samples"] if curve else "K"
    size = f"first {curve['size']} test images" if curve else "test images"
    panels = [
        ("elbo", f"test ELBO, 1 particle ({size})"),
        ("log_likelihood", f"test log p(x), IWAE-{k} ({size})"),
        ("own", "own training bound, per epoch:\nnot comparable across estimators"),
    ]
    if any(not row["has_bound"] for row in rows):
        panels.append(("reconstruction", f"reconstruction log p(x|z) ({size}):\nnot a bound"))
    figure = Figure(figsize=(4.2 * len(panels), 4.4))
    axes = {key: figure.add_subplot(1, len(panels), i + 1) for i, (key, _) in enumerate(panels)}
    for index, (row, path) in enumerate(zip(rows, paths, strict=True)):
        style = {
            "color": f"C{index % 10}",
            "label": row["name"],
            "linestyle": "-" if index < 10 else "--",
        }
        points = read_curve(path)
        for key in ("elbo", "log_likelihood", "reconstruction"):
            if key not in axes:
                continue
            pairs = [(p["epoch"], p["test"][key]) for p in points if key in p.get("test", {})]
            if pairs:
                axes[key].plot(*zip(*pairs, strict=True), marker=".", **style)
        if row["has_bound"]:
            epochs = read_epochs(Path(path))
            bounds = [(e["epoch"], -e["train_loss"]) for e in epochs]
            if bounds:
                axes["own"].plot(*zip(*bounds, strict=True), marker=".", **style)
    for key, title in panels:
        axes[key].set_title(title, fontsize=9)
        axes[key].set_xlabel("epoch")
        axes[key].set_ylabel("nats per datapoint")
        axes[key].grid(alpha=0.3)
        axes[key].xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes["own"].get_legend_handles_labels()
    for key in axes:
        more = axes[key].get_legend_handles_labels()
        for handle, label in zip(*more, strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if handles:
        figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8)
    rows_of_legend = math.ceil(len(labels) / 4) if labels else 0
    figure.tight_layout(rect=(0, 0.06 * rows_of_legend, 1, 1))
    return figure
