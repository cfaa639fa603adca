"""Run folders that tell the truth: safe loading of every checkpoint a run reads, nothing written
before the spec and data are good, nothing stale after ``--overwrite``, and a clear error with
the last good checkpoint intact when a file cannot be written."""

import errno
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

import pyro_vi.runs.training as training
from pyro_vi.cli import main
from pyro_vi.runs.folder import load_run, load_weights, read_epochs
from pyro_vi.spec import DEFAULT_SPEC, load_spec
from pyro_vi.train.checkpoint import CheckpointError, load_checkpoint

TINY = [
    "data.limit=120",
    "data.test_limit=60",
    "training.eval_samples=0",
    "training.batch_size=40",
]
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CLI_TINY = [arg for pair in (("--set", item) for item in TINY) for arg in pair]


def _spec(*overrides):
    return load_spec(DEFAULT_SPEC, [*TINY, *overrides])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained run (copied by the tests that damage its files)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    return training.train_spec(_spec("training.epochs=1"), out, progress=False).path


@pytest.fixture
def run_copy(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "run")


class Payload:
    """An object no checkpoint holds: the weights-only unpickler must refuse it."""

    def __reduce__(self):
        return (os.getcwd, ())


DAMAGES = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "foreign": None,  # a torch file of something else
    "tampered": None,  # a pickled object
}


def _damage(file, how):
    if how == "foreign":
        torch.save({"weights": torch.zeros(3)}, file)
    elif how == "tampered":
        torch.save({"format": "pyro_vi.checkpoint", "model": Payload()}, file)
    else:
        file.write_bytes(DAMAGES[how](file.read_bytes()))


EXPECTED = {
    "empty": "is empty",
    "truncated": "truncated or not a torch file",
    "foreign": "not a pyro_vi checkpoint",
    "tampered": "holds objects a pyro_vi checkpoint never contains",
}


@pytest.mark.parametrize("how", list(DAMAGES))
def test_load_run_refuses_a_damaged_checkpoint_naming_it(run_copy, how, capsys):
    file = run_copy / "checkpoint.pt"
    _damage(file, how)
    with pytest.raises(CheckpointError) as error:
        load_run(run_copy)
    message = str(error.value)
    assert str(file) in message and EXPECTED[how] in message
    assert "weights_only=False" not in message
    # The command says the same in one line.
    assert main(["evaluate", str(run_copy), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert EXPECTED[how] in err and "Traceback" not in err and "weights_only" not in err


@pytest.mark.parametrize("how", list(DAMAGES))
def test_resume_refuses_a_damaged_training_state_before_writing(run_copy, how):
    file = run_copy / "training_state.pt"
    _damage(file, how)
    before = (run_copy / "run.json").read_text()
    with pytest.raises(CheckpointError) as error:
        training.train_spec(_spec("training.epochs=2"), progress=False, resume=run_copy)
    assert str(file) in str(error.value) and EXPECTED[how] in str(error.value)
    assert (run_copy / "run.json").read_text() == before


def test_a_tampered_file_is_never_unpickled(run_copy):
    # A pickle that would run code when loaded unsafely; loading it safely runs nothing.
    file = run_copy / "checkpoint.pt"
    file.write_bytes(pickle.dumps(Payload(), protocol=2))
    with pytest.raises(CheckpointError, match="cannot be read|never contains"):
        load_weights(file)


def test_the_training_state_is_not_weights(run_copy):
    (run_copy / "checkpoint.pt").write_bytes((run_copy / "training_state.pt").read_bytes())
    with pytest.raises(CheckpointError, match="holds no model and guide weights"):
        load_run(run_copy)


def test_weights_that_do_not_fit_the_spec(run_copy):
    spec_file = run_copy / "spec.toml"
    spec_file.write_text(spec_file.read_text().replace("latent_dim = 8", "latent_dim = 4"))
    with pytest.raises(CheckpointError, match="does not fit the model that spec.toml builds"):
        load_run(run_copy)


def test_missing_data_leaves_no_folder_and_keeps_an_old_run(run_copy, tmp_path, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in run_copy.iterdir()}
    missing = ["--data-dir", str(tmp_path / "nowhere"), "--no-progress"]
    argv = ["train", "--set", "data.name=mnist", "--set", "data.limit=10", *missing]
    assert main([*argv, "--out", str(tmp_path / "new")]) == 2
    assert not (tmp_path / "new").exists()
    # --overwrite replaces a run only once the new one can start.
    assert main([*argv, "--out", str(run_copy), "--overwrite"]) == 2
    assert {p.name: p.stat().st_mtime_ns for p in run_copy.iterdir()} == before
    assert "mnist" in capsys.readouterr().err


def test_an_uninstalled_backend_is_a_spec_error_before_any_folder(tmp_path, monkeypatch):
    from pyro_vi.runs import tracking

    monkeypatch.setattr(tracking, "_installed", lambda package: False)
    spec = _spec("log.backends=['csv', 'tensorboard']")
    with pytest.raises(training.SpecError, match="'tensorboard' package is not installed"):
        training.train_spec(spec, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_overwrite_leaves_nothing_stale(run_copy):
    (run_copy / "evaluation.json").write_text("{}")
    (run_copy / "samples").mkdir()
    (run_copy / "samples" / "samples.png").write_bytes(b"old")
    (run_copy / ".checkpoint.pt.abc123").write_bytes(b"a temporary file of a killed write")
    mine = run_copy / "notes.txt"
    mine.write_text("a user's own file")
    # An autoencoder has no prior: the old run's samples.png must not stay behind.
    argv = ["train", str(CONFIGS / "autoencoder_digits.toml"), "--epochs", "1", *CLI_TINY]
    assert main([*argv, "--out", str(run_copy), "--overwrite", "--no-progress"]) == 0
    names = {p.name for p in run_copy.iterdir()}
    assert "samples.png" not in names and "evaluation.json" not in names
    assert "samples" not in names and ".checkpoint.pt.abc123" not in names
    assert mine.read_text() == "a user's own file"
    assert len(read_epochs(run_copy)) == 1
    assert load_spec(run_copy / "spec.toml").model["kind"] == "autoencoder"


def _full_disk_after(monkeypatch, writes):
    """Checkpoint writes fail with ENOSPC after ``writes`` of them succeeded."""
    count = {"n": 0}
    real = os.fsync

    def fsync(fd):
        count["n"] += 1
        if count["n"] > writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_is_a_clear_error_with_the_last_good_checkpoint_intact(
    tmp_path, monkeypatch, capsys
):
    spec_args = ["train", "--epochs", "3", *CLI_TINY, "--set", "training.checkpoint_every=1"]
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        _full_disk_after(patch, 4)  # a few checkpoints, then the disk is full
        assert main([*spec_args, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "the previous checkpoint is intact" in err
    assert "Traceback" not in err
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "failed" and "No space left on device" in info["error"]
    state = load_checkpoint(out / "training_state.pt")  # the last good one loads
    assert state["trainer"]["count"] >= 1
    assert not [p for p in out.iterdir() if p.name.startswith(".training_state.pt.")]
    # Space again: the run continues from that checkpoint to the end.
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert [e["epoch"] for e in read_epochs(out)] == [1, 2, 3]


def test_an_unwritable_folder_is_a_clear_error(tmp_path, capsys):
    # /proc refuses new folders even to root, where file modes would not.
    out = "/proc/pyro-vi-test/run"
    assert main(["train", "--epochs", "1", *CLI_TINY, "--out", out, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "/proc/pyro-vi-test" in err and "Traceback" not in err
