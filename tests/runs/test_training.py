"""Run folders: nothing is lost on an interrupt or a divergence, and a run reloads exactly."""

import json

import pytest
import torch

import pyro_vi.runs.training as training
from pyro_vi.runs.folder import load_run, read_epochs
from pyro_vi.spec import DEFAULT_SPEC, load_spec
from pyro_vi.train import TrainingDivergedError
from pyro_vi.train.checkpoint import load_checkpoint

TINY = ["data.limit=100", "training.eval_samples=5", "training.batch_size=50"]


def _spec(*overrides):
    return load_spec(DEFAULT_SPEC, [*TINY, *overrides])


def _wrap_fit(monkeypatch, after_epoch):
    """Make train_spec's fit call ``after_epoch(epoch)`` after its own per-epoch callback."""
    real_fit = training.fit

    def fit(*args, callback, **kwargs):
        def chained(epoch, history):
            callback(epoch, history)
            after_epoch(epoch)

        return real_fit(*args, callback=chained, **kwargs)

    monkeypatch.setattr(training, "fit", fit)


def test_an_interrupted_run_keeps_its_epochs_and_checkpoints_and_skips_the_evaluation(
    tmp_path, monkeypatch
):
    def interrupt(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    _wrap_fit(monkeypatch, interrupt)
    result = training.train_spec(_spec("training.epochs=5"), tmp_path / "run", progress=False)
    path = result.path
    assert result.history.interrupted and result.metrics == {}
    info = json.loads((path / "run.json").read_text())
    assert info["status"] == "interrupted" and info["epochs_completed"] == 2
    assert [e["epoch"] for e in read_epochs(path)] == [1, 2]
    # Ctrl-C means stop: no evaluation, no figures; the run can be resumed or evaluated.
    assert not (path / "metrics.json").exists() and not (path / "samples.png").exists()
    assert torch.load(path / "checkpoint.pt", weights_only=True)["epoch"] == 2
    assert load_checkpoint(path / "training_state.pt")["position"]["epoch"] == 2
    load_run(path)


def test_a_diverged_run_says_so_and_keeps_the_epochs_before(tmp_path, monkeypatch):
    def diverge(epoch):
        if epoch == 1:
            raise TrainingDivergedError("the loss became nan", history=None)

    _wrap_fit(monkeypatch, diverge)
    with pytest.raises(TrainingDivergedError):
        training.train_spec(_spec("training.epochs=5"), tmp_path / "run", progress=False)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "diverged"
    assert len(read_epochs(tmp_path / "run")) == 2


def test_a_reloaded_run_has_the_trained_parameters(tmp_path):
    path = training.train_spec(_spec("training.epochs=1"), tmp_path / "run", progress=False).path
    saved = torch.load(path / "checkpoint.pt", weights_only=True)
    run = load_run(path)
    for name, value in run.built.guide.state_dict().items():
        assert torch.equal(value, saved["guide"][name]), name
    assert run.spec == _spec("training.epochs=1")


def test_default_run_folders_are_numbered_not_overwritten(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = training.train_spec(_spec("training.epochs=1"), progress=False).path
    second = training.train_spec(_spec("training.epochs=1"), progress=False).path
    assert first.name == "vae-digits" and second.name == "vae-digits-2"
