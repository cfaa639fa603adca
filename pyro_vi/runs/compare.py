"""``pyro-vi compare``: train several specs on matched compute and compare them like with like.

Matched compute means the same data, seed, batch size and either

- ``match="epochs"``: the same number of epochs, hence the same number of gradient steps (a
  K-particle estimator then does K times the decoder work per step; the table shows the time), or
- ``match="seconds"``: the same training-time budget for every run (``training.max_seconds``),
  which charges each estimator for its cost per step (on a busy machine, the budget buys less:
  the record says when it was busy).

Every run is scored on one common scale, after each epoch (:mod:`pyro_vi.runs.curves`: test
ELBO and IWAE-K log-likelihood at one K on the same test images) and at the end (the final
evaluation's IWAE-K with ``training.eval_samples``, the same for every run, which ranks them);
each run's own bound is shown apart, as not comparable across estimators. What is written, and
how an autoencoder and a busy machine show in it: :mod:`pyro_vi.runs.comparison`. The first run
of a process also pays torch's one-time warm-up (under a second on a CPU) inside its training
time: with ``match="seconds"`` give budgets of tens of seconds, where that is noise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyro_vi.runs.comparison import (  # describe_*, run_row, write_comparison: re-exported
    describe_estimator,
    describe_guide,
    run_row,
    write_comparison,
)
from pyro_vi.runs.curves import DEFAULT_CURVE_SAMPLES, DEFAULT_CURVE_SIZE, EpochEvaluation
from pyro_vi.runs.training import run_folder, train_spec
from pyro_vi.spec import Spec, load_data, load_spec
from pyro_vi.spec.schema import SpecError

__all__ = [
    "MATCHES",
    "compare",
    "describe_estimator",
    "describe_guide",
    "run_row",
    "write_comparison",
]

MATCHES = ("epochs", "seconds")


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
    curve_samples: int = DEFAULT_CURVE_SAMPLES,
    curve_size: int = DEFAULT_CURVE_SIZE,
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
        curve_samples: K of the IWAE-K scored after each epoch (the curves of the figure).
        curve_size: Test images scored after each epoch (the first ones).

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
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {str(out)!r} exists and is not a folder")
    for name, spec in zip(names, specs, strict=True):
        # A taken folder, before any run trains:
        run_folder(out / name, spec, overwrite, resumable=False)
    # One load for all, unless a model takes labels (the data then differs between specs);
    # the first spec's data is read before anything is written (a missing dataset).
    conditional = any(spec.kind.conditional(spec.model) for spec in specs)
    first = load_data(specs[0])
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    settings: dict[str, Any] = {}
    for index, (name, spec) in enumerate(zip(names, specs, strict=True)):
        run_data = first if index == 0 or not conditional else load_data(spec)
        evaluation = EpochEvaluation(
            out / name, run_data, num_samples=curve_samples, size=curve_size
        )
        settings = evaluation.settings()
        result = train_spec(
            spec,
            out / name,
            progress=progress,
            overwrite=overwrite,
            data=run_data,
            on_epoch=evaluation,
        )
        if result.history.interrupted:
            # Ctrl-C stops the comparison; the run is resumable on its own (--resume).
            raise KeyboardInterrupt
        rows.append(run_row(name, spec, result.path))
    return write_comparison(out, rows, [out / name for name in names], match, curve=settings)


def _check_matched(specs: Sequence[Spec]) -> None:
    """Runs compared must see the same data, in the same batches, from the same seed."""
    reference = specs[0]
    for spec in specs[1:]:
        for section, keys in (("data", None), ("training", ("batch_size", "seed", "eval_samples"))):
            mine, theirs = getattr(spec, section), getattr(reference, section)
            for key in keys or mine:
                if mine[key] != theirs[key]:
                    remedy = (
                        "give every spec the same data.name (a named dataset) or data.path "
                        "(your own data)"
                        if section == "data" and key in ("name", "path")
                        else f"set it for all with --set {section}.{key}=..."
                    )
                    raise SpecError(
                        f"compare: {section}.{key} differs between specs ({theirs[key]!r} in "
                        f"{reference.name or 'the first'}, {mine[key]!r} in "
                        f"{spec.name or 'a later'}); compared runs must share data, batch "
                        f"size, seed and evaluation: {remedy}"
                    )
