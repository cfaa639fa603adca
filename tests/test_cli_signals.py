"""The command under signals, in subprocesses as a user runs it: Ctrl-C (SIGINT) and SIGTERM
during training and during the final evaluation, ``kill -9`` mid-epoch then ``--resume`` (bit
for bit), ``python -m pyro_vi``, and ``torchrun`` with two gloo processes.

Every child uses one thread (``OMP_NUM_THREADS=1``), so that two runs reduce in the same order.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from pyro_vi.runs.folder import load_weights, read_epochs
from pyro_vi.train.checkpoint import CheckpointError, load_checkpoint

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "vae_digits.toml")
SMALL = [
    *("--set", "data.limit=120", "--set", "data.test_limit=60"),
    *("--set", "training.eval_samples=0", "--set", "training.batch_size=40"),
    "--no-progress",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
#: Seconds a child may take before the test gives up on it (a loaded 2-core machine included).
LIMIT = 300


def _command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "pyro_vi", *argv]


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(*argv), env=ENV, capture_output=True, text=True, timeout=LIMIT)


def _start(command: list[str]) -> subprocess.Popen:
    # SIGINT back to its default in the child: a test run started in the background of a
    # non-interactive shell (nohup, `&`) ignores SIGINT, and a child inherits that, so Ctrl-C
    # would never reach it.
    return subprocess.Popen(
        command,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(condition, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + LIMIT
    while not condition():
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"the child ended (status {process.returncode}) before {what}:\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _status(run: Path) -> str | None:
    try:
        return json.loads((run / "run.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


def test_python_dash_m_pyro_vi():
    result = _run("--version")
    assert result.returncode == 0 and result.stdout.startswith("pyro-vi ")


# SIGTERM takes the same path as SIGINT in the handler; its run is slow-marked to keep the
# default suite short.
@pytest.mark.parametrize(
    "signum",
    [
        pytest.param(signal.SIGINT, id="SIGINT"),
        pytest.param(signal.SIGTERM, id="SIGTERM", marks=pytest.mark.slow),
    ],
)
def test_a_signal_during_training_exits_130_with_a_resumable_checkpoint(tmp_path, signum):
    run = tmp_path / "run"
    # Far more epochs than the test waits for: the signal comes during training.
    process = _start(_command("train", CONFIG, "--epochs", "100000", *SMALL, "--out", str(run)))
    _wait_for(lambda: len(read_epochs(run)) >= 2, process, "two epochs were logged")
    process.send_signal(signum)
    _, err = process.communicate(timeout=LIMIT)
    assert process.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    assert _status(run) == "interrupted"
    state = load_checkpoint(run / "training_state.pt")
    done = len(state["history"]["train_loss"])
    assert done >= 2 and load_weights(run / "checkpoint.pt")["epoch"] == done
    assert not (run / "metrics.json").exists()  # no evaluation after a Ctrl-C
    # Resumed, with an end in sight: each epoch is logged once.
    epochs = str(done + 2)
    result = _run("train", "--resume", str(run), "--epochs", epochs, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert _status(run) == "complete"
    assert [e["epoch"] for e in read_epochs(run)] == list(range(1, done + 3))


SLOW_EVALUATION = textwrap.dedent(
    """
    import sys, time
    import pyro_vi.runs.training as training

    def evaluate_slowly(*args, **kwargs):
        open(sys.argv[1], "w").close()  # tells the test the evaluation has begun
        time.sleep(600)

    training.evaluate_built = evaluate_slowly
    from pyro_vi.cli import main

    sys.exit(main(sys.argv[2:]))
    """
)


def test_ctrl_c_during_the_evaluation_leaves_a_trained_run_that_evaluate_completes(tmp_path):
    script, marker, run = tmp_path / "slow.py", tmp_path / "evaluating", tmp_path / "run"
    script.write_text(SLOW_EVALUATION)
    argv = ["train", CONFIG, "--epochs", "2", *SMALL, "--out", str(run)]
    process = _start([sys.executable, str(script), str(marker), *argv])
    _wait_for(marker.exists, process, "the evaluation began")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=LIMIT)
    assert process.returncode == 130, err
    assert f"pyro-vi evaluate {run}" in err
    assert _status(run) == "trained" and not (run / "metrics.json").exists()
    result = _run("evaluate", str(run), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert _status(run) == "complete"
    summary = json.loads((run / "metrics.json").read_text())
    assert len(summary["history"]["train_loss"]) == 2
    assert (run / "samples.png").is_file() and (run / "evaluation.json").is_file()


def _state_position(file: Path) -> dict | None:
    try:
        return load_checkpoint(file)["position"]
    except CheckpointError:
        return None


@pytest.mark.slow  # in-process twin: tests/train/test_resume.py (SIGKILL, bit for bit)
def test_killed_mid_epoch_then_resumed_equals_an_uninterrupted_run(tmp_path):
    argv = [
        *("train", CONFIG, "--epochs", "5", *SMALL),
        *("--set", "data.limit=300", "--set", "training.batch_size=10"),
        *("--set", "training.checkpoint_every=4"),
    ]
    whole = _run(*argv, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    broken = tmp_path / "broken"
    process = _start(_command(*argv, "--out", str(broken)))
    state, killed = broken / "training_state.pt", False
    deadline = time.monotonic() + LIMIT
    while process.poll() is None and time.monotonic() < deadline:
        if state.exists():
            # Frozen, the checkpoint on disk cannot move on while it is read.
            process.send_signal(signal.SIGSTOP)
            position = _state_position(state)
            if position is not None and position["epoch"] >= 1 and position["batch"] > 0:
                process.send_signal(signal.SIGKILL)
                killed = True
                break
            process.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    process.communicate(timeout=LIMIT)
    if not killed:
        pytest.fail("training ended before a mid-epoch checkpoint was seen")
    assert process.returncode == -signal.SIGKILL
    assert _status(broken) == "training"  # killed: nothing could record it
    resumed = _run("train", "--resume", str(broken), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    a = load_weights(tmp_path / "whole" / "checkpoint.pt")
    b = load_weights(broken / "checkpoint.pt")
    for part in ("model", "guide"):
        assert a[part].keys() == b[part].keys()
        for name, value in a[part].items():
            assert torch.equal(value, b[part][name]), f"{part}.{name}"
    losses = [e["train_loss"] for e in read_epochs(tmp_path / "whole")]
    assert [e["train_loss"] for e in read_epochs(broken)] == losses


TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside python")
def test_torchrun_two_gloo_processes_write_one_complete_run_and_resume(tmp_path):
    run = tmp_path / "run"
    launch = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "pyro_vi", "train"]
    small = [*SMALL, "--set", "training.eval_samples=10"]

    def torchrun(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*launch, *argv], env=ENV, capture_output=True, text=True, timeout=LIMIT, cwd=tmp_path
        )

    first = torchrun(CONFIG, "--epochs", "1", *small, "--out", str(run))
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("run written to") == 1  # rank 0 alone reports
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["world_size"] == 2
    assert [e["epoch"] for e in read_epochs(run)] == [1]  # written once, not once per rank
    assert len((run / "metrics.csv").read_text().splitlines()) == 2
    for name in ("checkpoint.pt", "training_state.pt", "metrics.json", "samples.png"):
        assert (run / name).is_file(), name
    assert len(load_checkpoint(run / "training_state.pt")["rng_per_rank"]) == 2
    assert not (tmp_path / "runs").exists()  # no rank wrote a folder of its own

    alone = _run("train", "--resume", str(run), "--epochs", "2", "--no-progress")
    assert alone.returncode == 2 and "written by 2 process(es)" in alone.stderr
    longer = torchrun("--resume", str(run), "--epochs", "2", "--no-progress")
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert [e["epoch"] for e in read_epochs(run)] == [1, 2]
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    shutil.rmtree(run)
