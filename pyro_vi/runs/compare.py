"""``pyro-vi compare``: train several specs on matched compute and tabulate what they reach.

Matched compute means the same data, seed, batch size and either

- ``match="epochs"``: the same number of epochs, hence the same number of gradient steps (a
  K-particle estimator then does K times the decoder work per step; the table shows the time), or
- ``match="seconds"``: the same training-time budget for every run (``training.max_seconds``),
  which charges each estimator for its cost per step.

Every run is evaluated with the same IWAE-K, so the log-likelihood column compares models trained
by different bounds on one scale. The first run of a process also pays torch's one-time warm-up
(under a second on a CPU) inside its training time: with ``match="seconds"`` give budgets of
tens of seconds, where that is noise.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from pyro_vi.records import read_json, versioned, write_json
from pyro_vi.runs.folder import INFO_FILE, SUMMARY_FILE, read_epochs
from pyro_vi.runs.training import train_spec
from pyro_vi.spec import Spec, load_data, load_spec
from pyro_vi.spec.schema import SpecError

MATCHES = ("epochs", "seconds")
#: Columns of the comparison table: (heading, metrics key or a computed field).
COLUMNS = (
    ("run", "name"),
    ("model", "model"),
    ("guide", "guide"),
    ("estimator", "estimator"),
    ("epochs", "epochs"),
    ("train s", "training_seconds"),
    ("test ELBO", "test_elbo"),
    ("test bound", "test_bound"),
    ("log p(x) IWAE-K", "log_likelihood"),
    ("recon. log p(x\\|z)", "reconstruction_log_likelihood"),
    ("active units", "active_units"),
)


def _describe_estimator(spec: Spec) -> str:
    options = ", ".join(f"{k}={v}" for k, v in spec.estimator.items() if k != "name")
    return f"{spec.estimator['name']}({options})"


def _describe_guide(spec: Spec) -> str:
    return spec.kind.describe_guide(spec)


def _names(specs: Sequence[Spec], sources: Sequence[Any]) -> list[str]:
    names = []
    for spec, source in zip(specs, sources, strict=True):
        base = spec.name or (Path(source).stem if isinstance(source, str | os.PathLike) else "run")
        name, number = base, 1
        while name in names:
            number += 1
            name = f"{base}-{number}"
        names.append(name)
    return names


def compare(
    sources: Sequence[Any],
    out: str | os.PathLike[str],
    *,
    overrides: Sequence[str] = (),
    match: str = "epochs",
    seconds: float | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Train every spec into ``out/<name>`` on matched compute and write the comparison.

    Arguments:
        sources: Spec files, dicts or :class:`Spec`\\ s (at least two).
        out: The comparison folder.
        overrides: ``"section.key=value"`` applied to every spec (e.g. ``training.epochs=20``).
        match: ``"epochs"`` or ``"seconds"`` (see the module docstring).
        seconds: The training-time budget per run for ``match="seconds"``.
        progress: Progress bars.
        overwrite: Replace runs already in ``out``.

    Returns:
        The paths of ``comparison.md``, ``comparison.csv``, ``comparison.json`` and
        ``comparison.png``.
    """
    if not isinstance(sources, Sequence) or isinstance(sources, str) or len(sources) < 2:
        raise ValueError(f"compare needs at least two specs, got {len(sources)}")
    if match not in MATCHES:
        raise ValueError(f"match must be one of {list(MATCHES)}, got {match!r}")
    extra = list(overrides)
    if match == "seconds":
        if seconds is None or seconds <= 0:
            raise ValueError(f"match='seconds' needs seconds > 0, got {seconds!r}")
        # The epochs only cap the run; the budget stops it.
        extra += [f"training.max_seconds={float(seconds)}", "training.epochs=1000000"]
    elif seconds is not None:
        raise ValueError("seconds is only used with match='seconds'")
    specs = [load_spec(source, extra) for source in sources]
    _check_matched(specs)
    names = _names(specs, sources)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # One load for all, unless a model takes labels (the data then differs between specs).
    conditional = any(spec.kind.conditional(spec.model) for spec in specs)
    data = None if conditional else load_data(specs[0])
    rows = []
    for name, spec in zip(names, specs, strict=True):
        result = train_spec(spec, out / name, progress=progress, overwrite=overwrite, data=data)
        if result.history.interrupted:
            # Ctrl-C stops the comparison; the run is resumable on its own (--resume).
            raise KeyboardInterrupt
        rows.append(_row(name, spec, result.path))
    return write_comparison(out, rows, [out / name for name in names], match)


def _check_matched(specs: Sequence[Spec]) -> None:
    """Runs compared must see the same data, in the same batches, from the same seed."""
    reference = specs[0]
    for spec in specs[1:]:
        for section, keys in (("data", None), ("training", ("batch_size", "seed", "eval_samples"))):
            mine, theirs = getattr(spec, section), getattr(reference, section)
            for key in keys or mine:
                if mine[key] != theirs[key]:
                    raise SpecError(
                        f"compare: {section}.{key} differs between specs ({theirs[key]!r} in "
                        f"{reference.name or 'the first'}, {mine[key]!r} in "
                        f"{spec.name or 'a later'}); compared runs must share data, batch "
                        f"size, seed and evaluation. Set it for all with --set {section}.{key}=..."
                    )


def _row(name: str, spec: Spec, path: Path) -> dict[str, Any]:
    summary = read_json(path / SUMMARY_FILE)
    metrics = summary["metrics"]
    # A relaxed sigmoid belief net reports the bound it trained on as test_relaxed_<name>_bound.
    estimator = spec.estimator["name"]
    keys = (f"test_{estimator}_bound", f"test_relaxed_{estimator}_bound")
    bound_key = next((key for key in keys if key in metrics), None)
    likelihood = next((v for k, v in metrics.items() if k.startswith("test_log_likelihood")), None)
    return {
        "name": name,
        "model": spec.kind.describe_model(spec),
        "guide": _describe_guide(spec),
        "estimator": _describe_estimator(spec),
        "epochs": len(summary["history"]["train_loss"]),
        "training_seconds": metrics.get("training_seconds"),
        "test_elbo": metrics.get("test_elbo"),
        "test_bound": None if bound_key is None else metrics[bound_key],
        "log_likelihood": likelihood,
        "reconstruction_log_likelihood": metrics.get("reconstruction_log_likelihood"),
        "active_units": metrics.get("active_units"),
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def write_comparison(
    out: Path, rows: list[dict[str, Any]], paths: list[Path], match: str
) -> dict[str, Path]:
    """Write the table (Markdown, CSV, JSON) and the learning-curve figure.

    The machine, versions and date come from the first run's ``run.json``.
    """
    written = {"markdown": out / "comparison.md", "csv": out / "comparison.csv"}
    machine = read_json(paths[0] / INFO_FILE).get("environment", {})
    lines = [
        f"Matched compute: same {match}; numbers in nats per datapoint on the test set.",
        f"Machine: {machine.get('device_name', '?')} ({machine.get('device', '?')}), torch "
        f"{machine.get('torch', '?')}, pyro {machine.get('pyro', '?')}, "
        f"{machine.get('date', '?')}.",
        "",
        "| " + " | ".join(heading for heading, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(_cell(row[key]) for _, key in COLUMNS) + " |" for row in rows]
    written["markdown"].write_text("\n".join(lines) + "\n")
    with open(written["csv"], "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=[key for _, key in COLUMNS])
        writer.writeheader()
        writer.writerows(rows)
    payload = versioned({"match": match, "environment": machine, "rows": rows})
    written["json"] = write_json(out / "comparison.json", payload)
    figure = Figure(figsize=(11, 4))
    by_epoch, by_time = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for row, path in zip(rows, paths, strict=True):
        epochs = read_epochs(path)
        losses = [-e["test_loss"] for e in epochs if e["test_loss"] is not None]
        elapsed = [sum(e["seconds"] for e in epochs[: i + 1]) for i in range(len(losses))]
        by_epoch.plot(range(1, len(losses) + 1), losses, label=row["name"])
        by_time.plot(elapsed, losses, label=row["name"])
    by_epoch.set_xlabel("epoch")
    by_time.set_xlabel("training seconds")
    for axis in (by_epoch, by_time):
        axis.set_ylabel("test bound (each run's own), nats")
        axis.grid(alpha=0.3)
    by_epoch.legend(fontsize=8)
    figure.suptitle("Test bound during training")
    figure.tight_layout()
    written["figure"] = out / "comparison.png"
    figure.savefig(written["figure"], dpi=100)
    return written
