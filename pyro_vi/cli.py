"""The ``pyro-vi`` command: train, evaluate, sample and compare models described by specs.

    pyro-vi train [SPEC] [--set KEY=VALUE ...] [--out RUN] [--device cuda]
    pyro-vi evaluate RUN [--num-samples K] [--device cuda]
    pyro-vi sample RUN [--labels 0 1 2] [--device cuda]
    pyro-vi compare SPEC SPEC... [--set KEY=VALUE ...] [--match epochs|seconds] [--out DIR]

Without a SPEC, ``train`` trains the default spec (an MLP VAE on the embedded digits; the same as
``configs/vae_digits.toml``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pyro_vi import data as datasets
from pyro_vi.runs.folder import SUMMARY_FILE, load_run, write_json
from pyro_vi.spec import DEFAULT_SPEC, SpecError, load_spec

EVALUATION_FILE = "evaluation.json"


def _add_common(parser: argparse.ArgumentParser, *, spec: bool) -> None:
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:<index>")
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide progress bars"
    )
    if spec:
        parser.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a spec key, e.g. --set training.epochs=5 --set estimator.name=iwae "
            "(values are TOML: 5, 0.1, [100, 50], true; bare words are strings)",
        )
        parser.add_argument(
            "--epochs", type=int, default=None, help="shorthand for training.epochs"
        )
        parser.add_argument("--seed", type=int, default=None, help="shorthand for training.seed")
        parser.add_argument("--data-dir", default=None, help="shorthand for data.dir")
        parser.add_argument(
            "--overwrite", action="store_true", help="replace a run already in the output folder"
        )
    else:
        parser.add_argument("--data-dir", default=None, help="where the run's dataset lives now")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyro-vi",
        description="Variational inference for deep latent-variable models, from specs.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train", help="train a spec and write a run folder", description=_train_help()
    )
    train.add_argument("spec", nargs="?", help="a .toml or .json spec (default: the digits VAE)")
    train.add_argument("--out", default=None, help="run folder (default: runs/<spec name>)")
    _add_common(train, spec=True)

    evaluate = commands.add_parser("evaluate", help="evaluate a trained run on its test set")
    evaluate.add_argument("run", help="a run folder written by 'pyro-vi train'")
    evaluate.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help="K of the IWAE-K log-likelihood (default: the spec's training.eval_samples)",
    )
    evaluate.add_argument("--seed", type=int, default=0, help="seeds the evaluation's draws")
    _add_common(evaluate, spec=False)

    sample = commands.add_parser(
        "sample", help="draw samples, reconstructions, interpolations and a latent scatter plot"
    )
    sample.add_argument("run", help="a run folder written by 'pyro-vi train'")
    sample.add_argument(
        "--labels",
        type=int,
        nargs="+",
        default=None,
        help="conditional models: the labels to generate, one row each",
    )
    sample.add_argument("--num", type=int, default=32, help="images per grid")
    sample.add_argument("--seed", type=int, default=0, help="seeds the draws")
    sample.add_argument("--out", default=None, help="figure folder (default: RUN/samples)")
    _add_common(sample, spec=False)

    compare = commands.add_parser(
        "compare", help="train several specs on matched compute and tabulate the results"
    )
    compare.add_argument("specs", nargs="+", help="two or more .toml or .json specs")
    compare.add_argument("--out", default="runs/compare", help="comparison folder")
    compare.add_argument(
        "--match",
        choices=("epochs", "seconds"),
        default="epochs",
        help="matched compute: the same epochs (gradient steps) or the same training seconds",
    )
    compare.add_argument("--seconds", type=float, default=None, help="budget for --match seconds")
    _add_common(compare, spec=True)
    return parser


def _train_help() -> str:
    return (
        "Train the model a spec describes and write a run folder: spec.toml (resolved), "
        "run.json, metrics.jsonl (per epoch), checkpoint.pt, metrics.json (final evaluation) "
        f"and figures. Datasets: {list(datasets.DATASETS)}. See configs/ for examples."
    )


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.overrides)
    for flag, key in (("epochs", "training.epochs"), ("seed", "training.seed")):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    if args.data_dir is not None:
        overrides.append(f"data.dir={json.dumps(args.data_dir)}")
    if args.device is not None:
        overrides.append(f"training.device={json.dumps(args.device)}")
    return overrides


def _print_metrics(metrics: dict, title: str) -> None:
    print(title)
    for key, value in metrics.items():
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"  {key:>36}: {text}")


def _train(args: argparse.Namespace) -> None:
    from pyro_vi.runs.training import train_spec

    spec = load_spec(args.spec or DEFAULT_SPEC, _overrides(args))
    path = train_spec(spec, args.out, progress=args.progress, overwrite=args.overwrite)
    summary = json.loads((path / SUMMARY_FILE).read_text())
    _print_metrics(summary["metrics"], f"run written to {path}")


def _evaluate(args: argparse.Namespace) -> None:
    from pyro_vi.runs.evaluate import evaluate_built, fixed_test_set

    run = load_run(args.run, args.device, args.data_dir)
    samples = run.spec.training["eval_samples"] if args.num_samples is None else args.num_samples
    if samples < 0:
        raise ValueError(f"--num-samples must be >= 0, got {samples}")
    test = fixed_test_set(run.data, run.device, run.spec.training["seed"])
    metrics = evaluate_built(run.built, test, samples, progress=args.progress, seed=args.seed)
    write_json(run.path / EVALUATION_FILE, {"metrics": metrics, "num_samples": samples})
    _print_metrics(metrics, f"evaluation of {run.path} (written to {EVALUATION_FILE})")


def _sample(args: argparse.Namespace) -> None:
    import pyro

    from pyro_vi.runs.evaluate import fixed_test_set
    from pyro_vi.runs.training import write_figures

    run = load_run(args.run, args.device, args.data_dir)
    if args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    if args.labels is not None:
        if not run.spec.model.get("conditional"):
            raise ValueError("--labels is for conditional models; this run's model is not one")
        classes = run.built.info.num_classes
        bad = [label for label in args.labels if not 0 <= label < classes]
        if bad:
            raise ValueError(f"--labels must lie in [0, {classes}), got {bad}")
    out = Path(args.out) if args.out else run.path / "samples"
    out.mkdir(parents=True, exist_ok=True)
    pyro.set_rng_seed(args.seed)
    test = fixed_test_set(run.data, run.device, run.spec.training["seed"])
    written = write_figures(out, run.built, test, run.data.test_labels, args.labels, args.num)
    print(f"figures of {run.path}:")
    for kind, path in written.items():
        print(f"  {kind:>16}: {path}")


def _compare(args: argparse.Namespace) -> None:
    from pyro_vi.runs.compare import compare

    written = compare(
        args.specs,
        args.out,
        overrides=_overrides(args),
        match=args.match,
        seconds=args.seconds,
        progress=args.progress,
        overwrite=args.overwrite,
    )
    print(Path(written["markdown"]).read_text())
    for kind, path in written.items():
        print(f"  {kind:>10}: {path}")


COMMANDS = {"train": _train, "evaluate": _evaluate, "sample": _sample, "compare": _compare}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyro-vi`` console script; returns the exit status.

    Errors a user can fix (a bad spec, a missing file or dataset, a device this machine lacks)
    print one line and exit with status 2, instead of a stack trace.
    """
    args = _parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (SpecError, ValueError, TypeError, FileNotFoundError, FileExistsError) as error:
        print(f"pyro-vi {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
