"""The pyro-vi command: the default job end to end (tiny), and its errors."""

import json
import subprocess
import sys

import pytest
import torch

from pyro_vi.cli import main


def test_train_writes_the_report(tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["train", "--epochs", "2", "--hidden", "32", "--out", str(out), "--no-progress"])
    assert status == 0
    for name in (
        "metrics.json",
        "samples.png",
        "reconstructions.png",
        "loss_curves.png",
        "checkpoint.pt",
        "config.json",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]["train_bound"]) == 2
    assert len(metrics["history"]["test_bound"]) == 2
    assert metrics["metrics"]["final_test_elbo"] < 0
    # The IWAE-1000 estimate is a tighter bound than the ELBO (up to Monte Carlo noise).
    assert (
        metrics["metrics"]["test_log_likelihood_iwae_1000"]
        > metrics["metrics"]["final_test_elbo"] - 0.5
    )
    assert metrics["history"]["bound"] == "elbo"
    assert metrics["config"]["environment"]["torch"] == torch.__version__
    assert "metrics" in capsys.readouterr().out


def test_conv_architecture(tmp_path):
    out = tmp_path / "conv"
    assert (
        main(
            [
                "train",
                "--architecture",
                "conv",
                "--epochs",
                "1",
                "--hidden",
                "32",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (out / "samples.png").is_file()


def test_another_estimator(tmp_path):
    out = tmp_path / "iwae"
    argv = ["train", "--estimator", "miwae", "--num-particles", "3", "--epochs", "1"]
    assert main([*argv, "--hidden", "16", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["history"]["bound"] == "miwae"
    assert metrics["config"]["num_particles"] == 3


def test_bad_values_exit_with_a_message(tmp_path, capsys):
    assert main(["train", "--epochs", "0", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "epochs must be an integer >= 1" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--device", "cuda", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_missing_dataset_files_say_where_to_get_them(tmp_path, capsys):
    status = main(
        [
            "train",
            "--dataset",
            "mnist",
            "--data-dir",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ]
    )
    assert status == 2
    assert "mnist" in capsys.readouterr().err


def test_console_entry_point_help():
    result = subprocess.run(
        [sys.executable, "-m", "pyro_vi.cli", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--dataset" in result.stdout and "digits" in result.stdout
