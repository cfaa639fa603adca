"""The ``pyro-vi`` command: train, evaluate, sample and compare models described by specs.

    pyro-vi train [SPEC] [--set KEY=VALUE ...] [--out RUN] [--device cuda]
    pyro-vi train --resume RUN [--epochs N]
    torchrun --nproc_per_node=N -m pyro_vi train [SPEC] ...
    pyro-vi evaluate RUN [--num-samples K] [--weights best|last] [--device cuda]
    pyro-vi sample RUN [--num N] [--labels 0 1 2] [--weights best|last] [--device cuda]
    pyro-vi compare SPEC SPEC... [--set KEY=VALUE ...] [--match epochs|seconds] [--out DIR]
    pyro-vi sweep [SPEC] --grid KEY=V1,V2 [KEY=...] [--optuna N] [--out DIR]
    pyro-vi --version

Without a SPEC, ``train`` trains the default spec (an MLP VAE on the embedded digits; the same as
``configs/vae_digits.toml``). Progress shows as a bar on a terminal and as a plain line every
``--progress-interval`` seconds when stderr is a file (see :mod:`pyro_vi.progress`).

Exit status: 0 when done; 2 for an error a user can fix (one line on stderr, no traceback); 130
when interrupted (Ctrl-C or SIGTERM): training stops after its current step with a checkpoint,
and ``pyro-vi train --resume RUN`` continues it. Under ``torchrun`` (``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` set) ``train`` makes the default process group and trains data-parallel; rank 0
alone writes the run folder (:mod:`pyro_vi.runs.distributed`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pyro_vi import data as datasets
from pyro_vi.progress import DEFAULT_INTERVAL, MODES, progress_output
from pyro_vi.runs.folder import EVALUATION_FILE, SPEC_FILE, WEIGHTS, load_run
from pyro_vi.spec import DEFAULT_SPEC, SpecError, load_spec
from pyro_vi.spec.resolve import COMPILE_MODES

#: The exit status of an interrupted command (128 + SIGINT, as a shell reports Ctrl-C).
INTERRUPTED = 130


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (None, a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        default = action.default
        if (
            "%(default)" in help_text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == []
            or action.nargs == 0  # flags: --no-progress, --overwrite, --help, --version
        ):
            return help_text
        return super()._get_help_string(action)


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (a bad value is argparse's usage error, status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text}")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyro-vi")
    except PackageNotFoundError:  # running from a checkout that was never installed
        from pyro_vi import __version__

        return __version__


def _add_common(parser: argparse.ArgumentParser, *, spec: bool) -> None:
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:<index>")
    parser.add_argument(
        "--progress",
        choices=MODES,
        default="auto",
        help="progress display: auto is a bar on a terminal and plain lines when stderr is a "
        "file; none hides it",
    )
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_const",
        const="none",
        help="hide progress (the same as --progress none)",
    )
    parser.add_argument(
        "--progress-interval",
        type=_seconds,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help="seconds between two progress lines when they are plain lines",
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
            "--epochs",
            type=int,
            default=None,
            metavar="N",
            help="shorthand for --set training.epochs=N",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=None,
            metavar="N",
            help="shorthand for --set training.seed=N",
        )
        parser.add_argument(
            "--estimator",
            default=None,
            metavar="NAME",
            help="shorthand for --set estimator.name=NAME",
        )
        parser.add_argument(
            "--num-particles",
            type=int,
            default=None,
            metavar="K",
            help="shorthand for --set estimator.num_particles=K",
        )
        parser.add_argument(
            "--compile",
            default=None,
            choices=COMPILE_MODES,
            help="shorthand for --set training.compile=MODE: capture the training step and "
            "replay it (graph) or compile it (inductor)",
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            metavar="N",
            help="shorthand for --set training.threads=N (default: the free physical cores)",
        )
        parser.add_argument(
            "--data-dir",
            default=None,
            metavar="DIR",
            help="shorthand for --set data.dir=DIR (default: $PYRO_VI_DATA, else ~/.cache/pyro_vi)",
        )
        parser.add_argument(
            "--overwrite", action="store_true", help="replace a run already in the output folder"
        )
    else:
        parser.add_argument(
            "--data-dir", default=None, metavar="DIR", help="where the run's dataset lives now"
        )


def _add_weights(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        choices=WEIGHTS,
        default="best",
        help="best: the epoch with the best validation bound (best.pt; a run without a "
        "validation split has only its last weights); last: checkpoint.pt",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyro-vi",
        description="Variational inference for deep latent-variable models, from specs.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser(
        "train",
        help="train a spec and write a run folder",
        description=_train_help(),
        formatter_class=_HelpFormatter,
    )
    train.add_argument("spec", nargs="?", help="a .toml or .json spec (default: the digits VAE)")
    train.add_argument(
        "--out", default=None, metavar="RUN", help="run folder (default: runs/<spec name>)"
    )
    train.add_argument(
        "--resume",
        default=None,
        metavar="RUN",
        help="continue the run in RUN from its last checkpoint, exactly (its spec.toml, or "
        "SPEC, which must match it; --epochs N trains longer)",
    )
    _add_common(train, spec=True)

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a trained run on its test set",
        description="Rebuild a trained run from its spec.toml and weights and evaluate it on "
        "its test set: test ELBO, the trained estimator's bound, the IWAE-K log-likelihood, "
        "active units and the reconstruction log-likelihood. The weights are the best "
        "epoch's (best.pt, kept when the run has a validation split) unless --weights last; "
        "the output says which. Prints the metrics and writes "
        f"RUN/{EVALUATION_FILE}.",
        formatter_class=_HelpFormatter,
    )
    evaluate.add_argument("run", help="a run folder written by 'pyro-vi train'")
    evaluate.add_argument(
        "--num-samples",
        type=int,
        default=None,
        metavar="K",
        help="K of the IWAE-K log-likelihood (default: the spec's training.eval_samples)",
    )
    evaluate.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seeds the evaluation's draws"
    )
    _add_weights(evaluate)
    _add_common(evaluate, spec=False)

    sample = commands.add_parser(
        "sample",
        help="draw samples, reconstructions, interpolations and a latent scatter plot",
        description="Draw figures of a trained run: prior samples (decoder means; one row per "
        "label for a conditional model), test images above their reconstructions, "
        "interpolations between test images in latent space, and the test set's posterior "
        "means in 2-D. An autoencoder has no prior: its samples figure is skipped.",
        formatter_class=_HelpFormatter,
    )
    sample.add_argument("run", help="a run folder written by 'pyro-vi train'")
    sample.add_argument(
        "--labels",
        type=int,
        nargs="+",
        default=None,
        metavar="LABEL",
        help="conditional models: the labels to generate, one row each",
    )
    sample.add_argument(
        "--num", type=_positive_int, default=32, metavar="N", help="images per grid (N >= 1)"
    )
    sample.add_argument("--seed", type=int, default=0, metavar="N", help="seeds the draws")
    sample.add_argument(
        "--out", default=None, metavar="DIR", help="figure folder (default: RUN/samples)"
    )
    _add_weights(sample)
    _add_common(sample, spec=False)

    compare = commands.add_parser(
        "compare",
        help="train several specs on matched compute and tabulate the results",
        description="Train every spec into OUT/<spec name> on the same data, seed and batch "
        "size, with either the same number of epochs (gradient steps) or the same training "
        "seconds, evaluate all of them with the same IWAE-K, and write comparison.md, "
        "comparison.csv, comparison.json and comparison.png into OUT.",
        formatter_class=_HelpFormatter,
    )
    compare.add_argument("specs", nargs="+", help="two or more .toml or .json specs")
    compare.add_argument("--out", default="runs/compare", metavar="DIR", help="comparison folder")
    compare.add_argument(
        "--match",
        choices=("epochs", "seconds"),
        default="epochs",
        help="matched compute: the same epochs (gradient steps) or the same training seconds",
    )
    compare.add_argument(
        "--seconds", type=float, default=None, help="training seconds per spec for --match seconds"
    )
    _add_curve_options(compare)
    _add_common(compare, spec=True)
    _add_sweep(commands)
    return parser


def _add_curve_options(parser: argparse.ArgumentParser) -> None:
    from pyro_vi.runs.curves import DEFAULT_CURVE_SAMPLES, DEFAULT_CURVE_SIZE

    parser.add_argument(
        "--curve-samples",
        type=_positive_int,
        default=DEFAULT_CURVE_SAMPLES,
        metavar="K",
        help="K of the IWAE-K log-likelihood scored after each epoch (past the 20th, at 25, 30, "
        "40, 50, ...), the same for every run",
    )
    parser.add_argument(
        "--curve-size",
        type=_positive_int,
        default=DEFAULT_CURVE_SIZE,
        metavar="N",
        help="test (and validation) datapoints scored after each epoch: the first N",
    )


def _add_sweep(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="train a spec over a grid of key values (or search them with Optuna) and compare",
        description="Train every combination of the --grid values as a run folder OUT/<key>-"
        "<value>_... (a sweep started again skips complete runs and resumes stopped ones), then "
        "write one comparison (comparison.md, .csv, .json, .png: ranked by the IWAE-K "
        "log-likelihood, with per-epoch curves of the test ELBO and IWAE-K alike for every run) "
        "and sweep.json. With --optuna N, search instead: N trials of Optuna's TPE sampler, "
        "pruned on the per-epoch IWAE-K of the validation split (else the test images) by the "
        "median rule; the objective is that value at the last epoch. Needs pip install "
        "'pyro-vi[sweep]'.",
        formatter_class=_HelpFormatter,
    )
    sweep.add_argument("spec", nargs="?", help="a .toml or .json spec (default: the digits VAE)")
    sweep.add_argument(
        "--grid",
        nargs="+",
        action="extend",
        required=True,
        metavar="KEY=VALUES",
        help="a dotted spec key and comma-separated values, e.g. optimizer.lr=1e-3,3e-4 "
        "estimator.num_particles=1,5,50 training.seed=0,1,2 (values are TOML); with --optuna "
        "also ranges: log:1e-4:1e-2, float:LOW:HIGH, int:LOW:HIGH, log-int:LOW:HIGH",
    )
    sweep.add_argument(
        "--optuna",
        type=int,
        default=None,
        metavar="N",
        help="search the space with Optuna for N trials instead of training the whole grid",
    )
    sweep.add_argument(
        "--prune-startup",
        type=int,
        default=5,
        metavar="N",
        help="--optuna: trials that run to the end before the median pruner stops any",
    )
    sweep.add_argument(
        "--out", default=None, metavar="DIR", help="sweep folder (default: runs/sweep-<spec stem>)"
    )
    _add_curve_options(sweep)
    _add_common(sweep, spec=True)


def _train_help() -> str:
    return (
        "Train the model a spec describes and write a run folder: spec.toml (resolved), "
        "run.json (status), metrics.jsonl and metrics.csv (per epoch), checkpoint.pt (weights), "
        "best.pt (the best epoch's weights, with a validation split: data.validation), "
        "training_state.pt (to resume), metrics.json (final evaluation) and figures. Ctrl-C "
        "stops after the current step with a checkpoint (exit status 130); --resume RUN "
        "continues exactly where it stopped. Under torchrun, trains data-parallel. Datasets: "
        f"{list(datasets.DATASETS)}. See configs/ for examples."
    )


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.overrides)
    for flag, key in (
        ("epochs", "training.epochs"),
        ("seed", "training.seed"),
        ("num_particles", "estimator.num_particles"),
        ("threads", "training.threads"),
    ):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    if args.estimator is not None:
        overrides.append(f"estimator.name={json.dumps(args.estimator)}")
    if args.compile is not None:
        overrides.append(f"training.compile={json.dumps(args.compile)}")
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


def _spec_source(args: argparse.Namespace) -> object:
    """The spec to read: SPEC, else the resumed run's spec.toml, else the default spec."""
    if args.spec is not None:
        return args.spec
    if args.resume is not None:
        spec_file = Path(args.resume) / SPEC_FILE
        if not spec_file.is_file():
            raise FileNotFoundError(
                f"--resume {args.resume!r} is not a run folder (it has no {SPEC_FILE})"
            )
        return spec_file
    return DEFAULT_SPEC


def _train_spec(args: argparse.Namespace) -> Any:
    """The spec ``train`` trains. A resumed run's spec.toml holds every key of its parts (an
    ELBO's ``baseline_decay``), so an override that swaps a part (``--estimator iwae``) fails
    on those keys first; the error then names the override a resume cannot take."""
    from pyro_vi.runs.resume import MAY_CHANGE, may_change

    overrides = _overrides(args)
    try:
        return load_spec(_spec_source(args), overrides)
    except SpecError:
        if args.resume is None or args.spec is not None:
            raise
        fixed = [text for text in overrides if not may_change(text.split("=", 1)[0].strip())]
        if not fixed:
            raise
        raise SpecError(
            f"cannot resume {args.resume!r} with {', '.join(fixed)}: a resumed run keeps the "
            f"spec in its {SPEC_FILE}, and only {list(MAY_CHANGE)} may change on resume (train "
            "a new run to change anything else)"
        ) from None


def _train(args: argparse.Namespace) -> int:
    from pyro_vi.runs import distributed
    from pyro_vi.runs.training import EvaluationInterrupted, train_spec

    spec = _train_spec(args)
    started_group = distributed.init_from_environment(spec.training["device"])
    lead = distributed.rank() == 0
    try:
        result = train_spec(
            spec,
            args.out,
            progress=args.show_progress,
            overwrite=args.overwrite,
            resume=args.resume,
        )
    except EvaluationInterrupted as interrupted:
        print(
            f"pyro-vi train: evaluation interrupted; the model is trained and saved in "
            f"{interrupted.path} (status 'trained'): 'pyro-vi evaluate {interrupted.path}' "
            "completes the run",
            file=sys.stderr,
        )
        return INTERRUPTED
    finally:
        if started_group:
            distributed.close()
    if not lead:
        return INTERRUPTED if result.history.interrupted else 0
    if result.history.interrupted:
        print(
            f"pyro-vi train: interrupted after {result.history.epochs} complete epoch(s); the "
            f"checkpoint is saved: 'pyro-vi train --resume {result.path}' continues exactly "
            "where training stopped",
            file=sys.stderr,
        )
        return INTERRUPTED
    title = f"run written to {result.path}"
    if result.weights:
        title += f"\n  evaluated weights: {result.weights['description']}"
    _print_metrics(result.metrics, title)
    return 0


def _evaluate(args: argparse.Namespace) -> None:
    from pyro_vi.runs.evaluate import evaluate_run

    if args.num_samples is not None and args.num_samples < 0:
        raise ValueError(f"--num-samples must be >= 0, got {args.num_samples}")
    # A run whose final evaluation was interrupted ("trained") is completed.
    record = evaluate_run(
        args.run,
        weights=args.weights,
        num_samples=args.num_samples,
        seed=args.seed,
        device=args.device,
        data_dir=args.data_dir,
        progress=args.show_progress,
    )
    done = "the run is now complete" if record["completed"] else f"written to {EVALUATION_FILE}"
    title = f"evaluation of {args.run} ({done})\n  weights: {record['weights']['description']}"
    _print_metrics(record["metrics"], title)


def _sample(args: argparse.Namespace) -> None:
    import pyro

    from pyro_vi.runs.evaluate import fixed_test_set
    from pyro_vi.runs.figures import write_figures

    run = load_run(args.run, args.device, args.data_dir, weights=args.weights)
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
    # Any --num >= 1: grids narrower than one row, and an interpolation from a single image to
    # the next test image, are write_figures's own.
    written = write_figures(out, run.built, test, run.data.test_labels, args.labels, args.num)
    print(f"figures of {run.path} (weights: {run.weights['description']}):")
    for kind, path in written.items():
        print(f"  {kind:>16}: {path}")


def _compare(args: argparse.Namespace) -> None:
    with _warnings_as_lines("compare"):
        _show_compare(args)


def _show_compare(args: argparse.Namespace) -> None:
    from pyro_vi.runs.compare import compare

    written = compare(
        args.specs,
        args.out,
        overrides=_overrides(args),
        match=args.match,
        seconds=args.seconds,
        progress=args.show_progress,
        overwrite=args.overwrite,
        curve_samples=args.curve_samples,
        curve_size=args.curve_size,
    )
    _print_written(written)


def _print_written(written: dict[str, Any]) -> None:
    """The comparison table, then each file a comparison or sweep wrote."""
    if "markdown" in written:
        print(Path(written["markdown"]).read_text())
    for kind, path in written.items():
        print(f"  {kind:>10}: {path}")


@contextlib.contextmanager
def _warnings_as_lines(command: str) -> Iterator[None]:
    """Warnings (a busy machine) as one plain line each on stderr, after the command's output."""
    with warnings.catch_warnings(record=True) as caught:
        yield
    for warning in caught:
        print(f"pyro-vi {command}: warning: {warning.message}", file=sys.stderr)


def _sweep(args: argparse.Namespace) -> None:
    from pyro_vi.runs.sweep import sweep

    with _warnings_as_lines("sweep"):
        _show_sweep(args, sweep)


def _show_sweep(args: argparse.Namespace, sweep: Callable) -> None:
    written = sweep(
        args.spec,
        args.grid,
        args.out,
        overrides=_overrides(args),
        optuna=args.optuna,
        progress=args.show_progress,
        overwrite=args.overwrite,
        curve_samples=args.curve_samples,
        curve_size=args.curve_size,
        prune_startup=args.prune_startup,
    )
    _print_written(written)


COMMANDS = {
    "train": _train,
    "evaluate": _evaluate,
    "sample": _sample,
    "compare": _compare,
    "sweep": _sweep,
}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _one_line(error: BaseException) -> str:
    """An error's message on one line: loaders explain in sentences on several lines (what is
    missing, where to get it), and a command's error must be a single line of stderr."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyro-vi`` console script; returns the exit status.

    Errors a user can fix (a bad spec, a missing file or dataset, a device this machine lacks,
    an unreadable checkpoint, a full disk) print one line and exit with status 2, instead of a
    stack trace. Ctrl-C and SIGTERM exit with status 130 (training first writes its checkpoint).
    """
    args = _parser().parse_args(argv)
    # SIGTERM (a batch system's, torchrun's) stops a command as Ctrl-C does; training installs
    # its own handlers, which stop it after the current step.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with progress_output(args.progress, args.progress_interval) as show_progress:
            args.show_progress = show_progress
            return COMMANDS[args.command](args) or 0
    except (
        SpecError,
        ValueError,
        TypeError,
        FileNotFoundError,
        FileExistsError,
        ModuleNotFoundError,  # an optional package a command needs (optuna)
    ) as error:
        print(f"pyro-vi {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:
        where = f" {error.filename!r}" if error.filename else ""
        print(
            f"pyro-vi {args.command}: error: cannot write or read{where}: "
            f"{error.strerror or _one_line(error)}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"pyro-vi {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
