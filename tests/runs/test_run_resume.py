"""Resuming a run folder: exact continuation, the spec check, and the logs holding each epoch once.

In process, with one thread (``OMP_NUM_THREADS=1`` fixes fit's thread count), so that two runs
reduce in the same order and their parameters can be compared bit for bit. The subprocess
versions (SIGINT, SIGKILL, torchrun) are in ``tests/test_cli_signals.py``.
"""

import json

import pytest
import torch

import pyro_vi.runs.training as training
from pyro_vi.runs.folder import load_weights, read_epochs
from pyro_vi.runs.resume import MAY_CHANGE, check_same_run, spec_differences, spec_tag
from pyro_vi.spec import DEFAULT_SPEC, SpecError, load_spec
from pyro_vi.train.checkpoint import CheckpointError

TINY = [
    "data.limit=120",
    "data.test_limit=60",
    "training.eval_samples=0",
    "training.batch_size=40",
]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _spec(*overrides):
    return load_spec(DEFAULT_SPEC, [*TINY, *overrides])


def _interrupt_after(monkeypatch, stop_epoch):
    """train_spec's fit raises KeyboardInterrupt after epoch ``stop_epoch`` (from 0), as a
    Ctrl-C there would (fit writes its checkpoint first)."""
    real_fit = training.fit

    def fit(*args, callback, **kwargs):
        def chained(epoch, history):
            callback(epoch, history)
            if epoch == stop_epoch:
                raise KeyboardInterrupt

        return real_fit(*args, callback=chained, **kwargs)

    monkeypatch.setattr(training, "fit", fit)


def _weights(path):
    state = load_weights(path / "checkpoint.pt")
    return {f"{part}.{k}": v for part in ("model", "guide") for k, v in state[part].items()}


def _assert_same_weights(a, b):
    first, second = _weights(a), _weights(b)
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    spec = _spec("training.epochs=4", "training.checkpoint_every=2")
    whole = training.train_spec(spec, tmp_path / "whole", progress=False)
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 1)
        stopped = training.train_spec(spec, tmp_path / "broken", progress=False)
    assert stopped.history.interrupted
    resumed = training.train_spec(spec, progress=False, resume=tmp_path / "broken")
    assert resumed.path == tmp_path / "broken" and not resumed.history.interrupted
    _assert_same_weights(whole.path, resumed.path)
    assert resumed.history.train_loss == whole.history.train_loss
    assert resumed.metrics["test_elbo"] == whole.metrics["test_elbo"]
    info = json.loads((resumed.path / "run.json").read_text())
    assert info["status"] == "complete" and len(info["resumed"]) == 1
    assert [e["epoch"] for e in read_epochs(resumed.path)] == [1, 2, 3, 4]


def test_resume_rewrites_the_logs_from_the_checkpoint(tmp_path, monkeypatch):
    # A kill between the checkpoint at an epoch's end and that epoch's log line: the logs lag
    # the checkpoint (or hold a half-written line); resuming writes them again from it.
    spec = _spec("training.epochs=3")
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 1)
        path = training.train_spec(spec, tmp_path / "run", progress=False).path
    lines = (path / "metrics.jsonl").read_text().splitlines()
    (path / "metrics.jsonl").write_text(lines[0] + '\n{"schema_ver')
    (path / "metrics.csv").write_text("epoch,garbage\n")
    training.train_spec(spec, progress=False, resume=path)
    assert [e["epoch"] for e in read_epochs(path)] == [1, 2, 3]
    rows = (path / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,") and [r.split(",")[0] for r in rows[1:]] == [
        "1",
        "2",
        "3",
    ]


def test_a_complete_run_trains_longer_with_more_epochs(tmp_path):
    path = training.train_spec(_spec("training.epochs=2"), tmp_path / "run", progress=False).path
    (path / "evaluation.json").write_text("{}")
    longer = training.train_spec(_spec("training.epochs=3"), progress=False, resume=path)
    assert longer.history.epochs == 3 and len(read_epochs(path)) == 3
    assert load_spec(path / "spec.toml").training["epochs"] == 3
    assert not (path / "evaluation.json").exists()  # it described the 2-epoch model
    assert load_weights(path / "checkpoint.pt")["epoch"] == 3


def test_a_complete_run_with_the_same_epochs_has_nothing_to_resume(tmp_path):
    path = training.train_spec(_spec("training.epochs=1"), tmp_path / "run", progress=False).path
    with pytest.raises(ValueError, match="is complete: all 1 epochs.*--epochs N"):
        training.train_spec(_spec("training.epochs=1"), progress=False, resume=path)


def test_fewer_epochs_than_trained_is_a_spec_error(tmp_path):
    path = training.train_spec(_spec("training.epochs=2"), tmp_path / "run", progress=False).path
    with pytest.raises(SpecError, match=r"training.epochs = 1, but .* already trained 2"):
        training.train_spec(_spec("training.epochs=1"), progress=False, resume=path)


def test_a_different_spec_lists_every_field_that_differs(tmp_path):
    path = training.train_spec(_spec("training.epochs=1"), tmp_path / "run", progress=False).path
    before = (path / "run.json").read_text()
    other = _spec("training.epochs=3", "model.latent_dim=4", "optimizer.lr=0.01")
    with pytest.raises(SpecError) as error:
        training.train_spec(other, progress=False, resume=path)
    message = str(error.value)
    assert "2 field(s) differ" in message
    assert "model.latent_dim: run 8, requested 4" in message
    assert "optimizer.lr: run 0.003, requested 0.01" in message
    assert "training.epochs" not in message.split("Only")[0]  # may change: not listed
    assert (path / "run.json").read_text() == before  # refused before anything was written


def test_the_differences_and_the_tag():
    base = _spec()
    changed = _spec("training.epochs=99", "training.device=cpu", "log.backends=['csv']")
    assert spec_tag(base) == spec_tag(changed)  # what may change does not change the tag
    assert spec_tag(base) != spec_tag(_spec("training.seed=1"))
    assert spec_differences(base, _spec("training.seed=1")) == [("training.seed", 0, 1)]
    assert check_same_run(base, changed, "run") == [("training.epochs", 150, 99)]
    assert "training.epochs" in MAY_CHANGE and "training.seed" not in MAY_CHANGE


def test_resume_and_overwrite_or_another_out_are_refused(tmp_path):
    path = training.train_spec(_spec("training.epochs=1"), tmp_path / "run", progress=False).path
    with pytest.raises(ValueError, match="pass one of them"):
        training.train_spec(_spec(), progress=False, resume=path, overwrite=True)
    with pytest.raises(ValueError, match="names another"):
        training.train_spec(_spec(), tmp_path / "other", progress=False, resume=path)
    with pytest.raises(FileNotFoundError, match="is not a run folder"):
        training.train_spec(_spec(), progress=False, resume=tmp_path / "nothing")


def test_a_run_stopped_before_its_first_checkpoint_starts_again(tmp_path):
    path = training.train_spec(_spec("training.epochs=1"), tmp_path / "run", progress=False).path
    (path / "training_state.pt").unlink()
    result = training.train_spec(_spec("training.epochs=1"), progress=False, resume=path)
    assert result.history.epochs == 1 and len(read_epochs(path)) == 1


def test_a_training_state_of_another_spec_is_refused(tmp_path):
    path = training.train_spec(_spec("training.epochs=1"), tmp_path / "run", progress=False).path
    other = training.train_spec(
        _spec("training.epochs=1", "training.seed=3"), tmp_path / "other", progress=False
    ).path
    (path / "training_state.pt").write_bytes((other / "training_state.pt").read_bytes())
    with pytest.raises(CheckpointError, match="written for another spec"):
        training.train_spec(_spec("training.epochs=2"), progress=False, resume=path)
