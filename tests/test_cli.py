"""The pyro-vi command: a round trip (train tiny, evaluate, sample, compare) and its errors."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from matplotlib.image import imread

from pyro_vi.cli import main

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


def test_sample_refuses_labels_for_an_unconditional_model(tmp_path, capsys):
    run = _train(tmp_path, "run")
    assert main(["sample", str(run), "--labels", "3"]) == 2
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
        # The budget stops training within a step or so of 0.5 s.
        assert 0.3 < row["training_seconds"] < 2.0
    autoencoder = next(row for row in rows if row["model"] == "autoencoder")
    assert autoencoder["test_elbo"] is None  # no bound exists without a prior
    assert math.isfinite(autoencoder["reconstruction_log_likelihood"])


def test_compare_refuses_unmatched_data(tmp_path, capsys):
    specs = [str(CONFIGS / "vae_digits.toml"), str(CONFIGS / "gaussian_digits.toml")]
    assert main(["compare", *specs, "--out", str(tmp_path), "--no-progress"]) == 2
    assert "data.binarize differs" in capsys.readouterr().err


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
