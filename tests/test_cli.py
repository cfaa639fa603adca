"""The pyro-vi command: a round trip (train tiny, evaluate, sample, compare) and its errors."""

import io
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from matplotlib.image import imread

import pyro_vi
from pyro_vi import progress
from pyro_vi.cli import _overrides, _parser, main
from pyro_vi.spec import DEFAULT_SPEC, SpecError, load_spec

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# A run small enough for the test suite: ~1 s on 2 CPU cores.
TINY = [
    *("--set", "training.eval_samples=20", "--set", "data.limit=200"),
    *("--set", "data.test_limit=120", "--no-progress"),
]


def _train(tmp_path: Path, name: str, *extra: str, config: str = "vae_digits.toml") -> Path:
    out = tmp_path / name
    argv = ["train", str(CONFIGS / config), "--epochs", "2", "--out", str(out), *TINY, *extra]
    assert main(argv) == 0
    return out


def _is_png(path: Path) -> bool:
    image = imread(path)
    return image.ndim == 3 and min(image.shape[:2]) > 50


def test_round_trip_train_evaluate_sample(tmp_path, capsys):
    run = _train(tmp_path, "run")
    for name in ("spec.toml", "run.json", "metrics.jsonl", "checkpoint.pt", "metrics.json"):
        assert (run / name).is_file(), name
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete"
    assert info["environment"]["torch"] == torch.__version__
    trained = json.loads((run / "metrics.json").read_text())["metrics"]
    # IWAE-20 is a tighter bound than the ELBO (up to Monte Carlo noise on 360 test images).
    assert trained["test_log_likelihood_iwae_20"] > trained["test_elbo"] - 0.5
    assert "run written to" in capsys.readouterr().out

    # evaluate rebuilds the model from spec.toml + checkpoint.pt: the same test set and seed
    # give the same one-draw ELBO as at the end of training, to float rounding.
    assert main(["evaluate", str(run), "--num-samples", "20", "--no-progress"]) == 0
    evaluated = json.loads((run / "evaluation.json").read_text())["metrics"]
    assert evaluated["test_elbo"] == pytest.approx(trained["test_elbo"], abs=1e-4)
    assert evaluated["active_units_of"] == 8

    assert main(["sample", str(run), "--out", str(tmp_path / "figures")]) == 0
    for name in ("samples", "reconstructions", "interpolation", "latents"):
        assert _is_png(tmp_path / "figures" / f"{name}.png"), name


def test_conditional_model_samples_chosen_labels(tmp_path):
    run = _train(tmp_path, "cvae", config="cvae_digits.toml")
    assert main(["sample", str(run), "--labels", "3", "7"]) == 0
    assert _is_png(run / "samples" / "samples.png")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One tiny trained digits VAE, for the tests that only read a run."""
    return _train(tmp_path_factory.mktemp("shared"), "run")


def test_sample_refuses_labels_for_an_unconditional_model(trained_run, capsys):
    assert main(["sample", str(trained_run), "--labels", "3"]) == 2
    assert "--labels is for conditional models" in capsys.readouterr().err


def test_compare_writes_table_csv_and_plot(tmp_path, capsys):
    out = tmp_path / "compare"
    specs = [str(CONFIGS / "vae_digits.toml"), str(CONFIGS / "iwae_digits.toml")]
    argv = ["compare", *specs, "--epochs", "1", "--out", str(out), *TINY]
    assert main(argv) == 0
    table = (out / "comparison.md").read_text()
    assert "vae-digits" in table and "dreg-iwae-digits" in table
    rows = (out / "comparison.csv").read_text().splitlines()
    assert len(rows) == 3  # header + one row per spec
    assert _is_png(out / "comparison.png")
    for name in ("vae-digits", "dreg-iwae-digits"):
        assert (out / name / "checkpoint.pt").is_file()
    assert "| run |" in capsys.readouterr().out


def test_compare_on_matched_seconds(tmp_path):
    out = tmp_path / "compare"
    specs = [str(CONFIGS / "vae_digits.toml"), str(CONFIGS / "autoencoder_digits.toml")]
    argv = ["compare", *specs, "--match", "seconds", "--seconds", "0.5", "--out", str(out), *TINY]
    assert main(argv) == 0
    rows = json.loads((out / "comparison.json").read_text())["rows"]
    for row in rows:
        # The budget, not the epochs (a cap of 10^6), stopped training: at the first step that
        # ended past 0.5 s, so the training time is at least the budget (how far past it
        # depends on the machine, and is not asserted).
        assert row["training_seconds"] >= 0.5
        assert 1 <= row["epochs"] < 1_000_000
    autoencoder = next(row for row in rows if row["model"] == "autoencoder")
    assert autoencoder["test_elbo"] is None  # no bound exists without a prior
    assert math.isfinite(autoencoder["reconstruction_log_likelihood"])


def test_compare_refuses_unmatched_data(tmp_path, capsys):
    specs = [str(CONFIGS / "vae_digits.toml"), str(CONFIGS / "gaussian_digits.toml")]
    assert main(["compare", *specs, "--out", str(tmp_path), "--no-progress"]) == 2
    assert "data.binarize differs" in capsys.readouterr().err
    # Another dataset is not fixed by a --set of one key.
    specs = [str(CONFIGS / "vae_digits.toml"), str(CONFIGS / "vae_mnist.toml")]
    assert main(["compare", *specs, "--out", str(tmp_path), "--no-progress"]) == 2
    assert "data.name differs" in (err := capsys.readouterr().err) and "same data.name" in err


def test_a_second_run_never_overwrites_the_first(tmp_path, capsys):
    run = _train(tmp_path, "run")
    argv = ["train", "--epochs", "1", "--out", str(run), *TINY]
    assert main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_bad_spec_is_one_line_naming_the_key(tmp_path, capsys):
    argv = ["train", "--set", "training.epochs=0", "--out", str(tmp_path / "r"), "--no-progress"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "training.epochs = 0" in error and "allowed: an integer >= 1" in error
    assert "Traceback" not in error
    assert not (tmp_path / "r").exists()  # validated before anything is written


def test_missing_spec_file(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.toml"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_missing_run_folder(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "not a finished run folder" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    argv = ["train", "--device", "cuda", "--out", str(tmp_path / "r"), "--no-progress"]
    assert main(argv) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_missing_dataset_files_say_where_to_get_them(tmp_path, capsys):
    argv = ["train", str(CONFIGS / "vae_mnist.toml"), "--data-dir", str(tmp_path / "nowhere")]
    assert main([*argv, "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "mnist" in capsys.readouterr().err


def test_console_entry_point_help():
    result = subprocess.run(
        [sys.executable, "-m", "pyro_vi.cli", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--set KEY=VALUE" in result.stdout and "digits" in result.stdout


COMMANDS = ["train", "evaluate", "sample", "compare", "sweep"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_description_and_shows_defaults(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    usage, _, rest = text.partition("\n\n")
    description = rest.split("\n\n")[0]
    assert usage.startswith(f"usage: pyro-vi {command}")
    # A sentence of its own, not only the usage line and the option list.
    assert len(description.split()) >= 12 and not description.startswith("positional")
    assert "(default: auto)" in text  # --progress
    assert "(default: 10.0)" in text  # --progress-interval
    assert "(default: None)" not in text and "(default: False)" not in text


def test_help_shows_the_defaults_of_each_command(capsys):
    expected = {
        "evaluate": ["--seed N", "(default: 0)"],
        "sample": ["--num N", "(default: 32)", "(default: RUN/samples)"],
        "compare": ["(default: runs/compare)", "(default: epochs)", "--curve-samples K"],
        "sweep": ["--grid KEY=VALUES", "--optuna N", "(default: runs/sweep-<spec stem>)"],
        "train": ["(default: runs/<spec name>)", "--estimator NAME", "--num-particles K"],
    }
    for command, pieces in expected.items():
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        for piece in pieces:
            assert piece in text, (command, piece)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"pyro-vi {pyro_vi.__version__}"


def test_estimator_and_particle_shorthands_override_the_spec():
    args = _parser().parse_args(["train", "--estimator", "iwae", "--num-particles", "3"])
    spec = load_spec(DEFAULT_SPEC, _overrides(args))
    assert spec.estimator["name"] == "iwae" and spec.estimator["num_particles"] == 3
    # The same as the --set spelling.
    args = _parser().parse_args(
        ["train", "--set", "estimator.name=iwae", "--set", "estimator.num_particles=3"]
    )
    assert load_spec(DEFAULT_SPEC, _overrides(args)).estimator == spec.estimator


def test_compile_and_threads_shorthands_override_the_spec():
    args = _parser().parse_args(["train", "--compile", "graph", "--threads", "1"])
    spec = load_spec(DEFAULT_SPEC, _overrides(args))
    assert spec.training["compile"] == "graph" and spec.training["threads"] == 1
    assert load_spec(DEFAULT_SPEC).training["compile"] == "none"  # eager unless asked
    # As fit reads compile=True / False.
    assert load_spec(DEFAULT_SPEC, ["training.compile=true"]).training["compile"] == "inductor"
    assert load_spec(DEFAULT_SPEC, ["training.compile=false"]).training["compile"] == "none"


@pytest.mark.parametrize(
    ("key", "value"), [("compile", '"jit"'), ("compile", "1"), ("threads", "0")]
)
def test_bad_compile_or_threads_is_a_spec_error_naming_the_key(key, value):
    with pytest.raises(SpecError, match=f"training.{key}"):
        load_spec(DEFAULT_SPEC, [f"training.{key}={value}"])


def test_a_run_trains_with_a_captured_step(tmp_path):
    # The spec's compile and threads reach fit: the captured step trains the run (the warning
    # that a program runs eagerly would fail here), and the run folder records both.
    run = tmp_path / "graph"
    argv = ["train", "--epochs", "1", "--compile", "graph", "--threads", "1", "--no-progress"]
    argv += ["--set", "data.limit=100", "--set", "data.test_limit=50"]
    argv += ["--set", "training.eval_samples=0", "--out", str(run)]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*running eagerly.*")
        assert main(argv) == 0
    assert 'compile = "graph"' in (run / "spec.toml").read_text()


@pytest.mark.parametrize("num", [1, 3, 7, 12])
def test_sample_draws_any_number_of_images(num, trained_run, tmp_path, capsys):
    # --num below one row of the grid (8) used to end in Pyro's ZeroDivisionError.
    out = tmp_path / "figures"
    assert main(["sample", str(trained_run), "--num", str(num), "--out", str(out)]) == 0
    for name in ("samples", "reconstructions", "interpolation", "latents"):
        assert (out / f"{name}.png").is_file(), name
    assert "samples.png" in capsys.readouterr().out


def test_sample_with_few_labelled_images(tmp_path):
    run = _train(tmp_path, "cvae", config="cvae_digits.toml")
    assert main(["sample", str(run), "--labels", "3", "7", "--num", "2"]) == 0
    assert _is_png(run / "samples" / "samples.png")


@pytest.mark.parametrize("num", ["0", "-3", "two"])
def test_a_bad_number_of_images_is_a_usage_error(num, trained_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", str(trained_run), "--num", num])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "argument --num: expected an integer >= 1" in error and num in error
    assert "Traceback" not in error


def _progress_lines(err: str, label: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(label)]


def test_progress_in_a_log_file_is_lines_not_carriage_returns(tmp_path):
    # stderr to a file, as a batch job writes it: plain lines, the last one the finished bar.
    log = tmp_path / "train.log"
    argv = ["train", "--epochs", "3", "--out", str(tmp_path / "run"), *TINY[:-1]]
    with open(log, "w") as stderr:
        subprocess.run(
            [sys.executable, "-m", "pyro_vi.cli", *argv, "--progress-interval", "0"],
            stderr=stderr,
            stdout=subprocess.DEVNULL,
            check=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    err = log.read_text()
    assert "\r" not in err
    lines = _progress_lines(err, "training:")
    assert lines[0].startswith("training:   0%") and "3/3" in lines[-1]
    assert "train=" in lines[-1] and "test=" in lines[-1]
    assert _progress_lines(err, "log p(x), IWAE-20:")


def test_progress_lines_are_periodic(tmp_path, capsys):
    # With an interval longer than the run, each bar prints its first and last state only;
    # capsys's stderr is not a terminal, so the command chose lines by itself.
    argv = ["train", "--epochs", "3", "--out", str(tmp_path / "run"), *TINY[:-1]]
    argv += ["--progress-interval", "1000"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = _progress_lines(err, "training:")
    assert len(lines) == 2 and "0/3" in lines[0] and "3/3" in lines[1]


def test_no_progress_and_forced_bar(tmp_path, capsys):
    argv = ["train", "--epochs", "1", *TINY[:-1]]
    assert main([*argv, "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    assert "training" not in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "b"), "--progress", "bar"]) == 0
    assert "\rtraining:" in capsys.readouterr().err  # tqdm's own bar, as on a terminal


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_line_stream_prints_a_bars_redraws_as_periodic_lines(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out = io.StringIO()
    stream = progress.LineStream(out, interval=10.0)
    stream.write("\rtrain:   0%| | 0/9 [00:00<?, ?it/s]")  # a bar's first state: at once
    for step in range(1, 10):
        clock.now = 3.0 * step
        stream.write(f"\rtrain: {step}/9 [00:{step:02d}<00:00, 1.0it/s]   ")
        if step == 4:
            stream.write("a warning")  # other text passes through between redraws
            stream.write("\n")
    stream.write("\n")  # the bar closes: its last state
    assert out.getvalue().splitlines() == [
        "train:   0%| | 0/9 [00:00<?, ?it/s]",
        "train: 4/9 [00:04<00:00, 1.0it/s]",  # 12 s: the first state 10 s after the last line
        "a warning",
        "train: 8/9 [00:08<00:00, 1.0it/s]",  # 24 s
        "train: 9/9 [00:09<00:00, 1.0it/s]",  # the close
    ]


def test_line_stream_skips_redraws_where_only_the_clock_moved(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out = io.StringIO()
    stream = progress.LineStream(out, interval=0.0)
    stream.write("\reval: 100%|#| 1/1 [00:00<00:00,  1.96batch/s]")
    stream.write("\reval: 100%|#| 1/1 [00:00<00:00,  1.95batch/s]")  # tqdm's close redraw
    stream.write("\n")
    stream.write("\rnext:   0%| | 0/2 [00:00<?, ?it/s]")
    stream.write("\r" + " " * 30)  # a bar that does not stay clears itself
    stream.write("\r")
    stream.finish()
    assert out.getvalue().splitlines() == [
        "eval: 100%|#| 1/1 [00:00<00:00,  1.96batch/s]",
        "next:   0%| | 0/2 [00:00<?, ?it/s]",
    ]


def test_progress_bar_chooses_by_its_stream(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)  # not a terminal
    for _ in progress.progress_bar(range(5), desc="work", interval=0.0):
        pass
    assert "\r" not in log.getvalue() and "5/5" in log.getvalue().splitlines()[-1]
    bar = io.StringIO()
    monkeypatch.setattr(sys, "stderr", bar)
    for _ in progress.progress_bar(range(5), desc="work", mode="bar"):
        pass
    assert "\rwork" in bar.getvalue()
    silent = io.StringIO()
    monkeypatch.setattr(sys, "stderr", silent)
    for _ in progress.progress_bar(range(5), desc="work", enabled=False):
        pass
    assert silent.getvalue() == ""


def test_train_help_describes_resume_and_interrupts(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--resume RUN" in text and "status 130" in text and "torchrun" in text


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--no-progress"]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_resume_with_overwrite_is_refused(trained_run, capsys):
    argv = ["train", "--resume", str(trained_run), "--overwrite", "--epochs", "3", "--no-progress"]
    assert main(argv) == 2
    assert "pass one of them" in capsys.readouterr().err


def test_resume_trains_longer_from_the_command(tmp_path, capsys):
    run = _train(tmp_path, "run")  # 2 epochs
    assert main(["train", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "training.epochs: 2 -> 3" in captured.err and "run written to" in captured.out
    lines = (run / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(line)["epoch"] for line in lines]
    assert epochs == [1, 2, 3]
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("epoch,train_loss,test_loss")
