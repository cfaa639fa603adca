"""A run with a validation split: the validation bound every epoch, early stopping, ``best.pt``
beside ``checkpoint.pt``, evaluation of the best weights by default (saying so), and a resume
that keeps the best so far and the patience exactly.

One small run that stops early is trained once for the module (about half a second): 90
training and 30 validation digits, a learning rate high enough that the validation bound stops
improving after a few epochs. In process with one thread (``OMP_NUM_THREADS=1`` fixes fit's
thread count), so that resumed runs can be compared with it bit for bit.
"""

import csv
import json
import shutil

import pytest
import torch

import pyro_vi.runs.resume as resume
import pyro_vi.runs.training as training
from pyro_vi.cli import main
from pyro_vi.runs.evaluate import evaluate_run
from pyro_vi.runs.folder import load_run, load_weights, read_epochs
from pyro_vi.spec import DEFAULT_SPEC, SpecError, load_data, load_spec
from pyro_vi.train.checkpoint import load_checkpoint

TINY = [
    "data.limit=120",
    "data.validation=0.25",
    "data.test_limit=60",
    "training.eval_samples=0",
    "training.batch_size=30",
    "model.decoder.hidden=[32]",
    "guide.encoder.hidden=[32]",
]
#: At this learning rate the validation bound peaks at epoch 7 of 12; patience 2 stops after 9.
STOPPING = ["training.epochs=12", "training.early_stopping=2", "optimizer.lr=0.1"]


def _spec(*overrides):
    return load_spec(DEFAULT_SPEC, [*TINY, *overrides])


def _weights(file):
    state = load_weights(file)
    return {f"{part}.{k}": v for part in ("model", "guide") for k, v in state[part].items()}


def _same_weights(first, second):
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def _wrap_fit(patch, after_epoch=None, after_save=None):
    """train_spec's fit calls ``after_epoch(epoch, path)`` after its own per-epoch callback;
    ``after_save(file, epoch)`` runs after every weights file train_spec writes."""
    real_fit, real_save = training.fit, training.save_weights

    def fit(*args, callback, checkpoint, **kwargs):
        def chained(epoch, history):
            callback(epoch, history)
            if after_epoch is not None:
                after_epoch(epoch, checkpoint.parent)

        return real_fit(*args, callback=chained, checkpoint=checkpoint, **kwargs)

    def save_weights(path, built, epoch, *args, **kwargs):
        written = real_save(path, built, epoch, *args, **kwargs)
        if after_save is not None:
            after_save(written, epoch)
        return written

    patch.setattr(training, "fit", fit)
    patch.setattr(training, "save_weights", save_weights)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """The run that stops early, and its last weights after every epoch (from 0)."""
    snapshots = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        _wrap_fit(patch, lambda epoch, path: snapshots.append(_weights(path / "checkpoint.pt")))
        result = training.train_spec(
            _spec(*STOPPING), tmp_path_factory.mktemp("runs") / "stopped", progress=False
        )
    return result, snapshots


@pytest.fixture
def stopped_copy(stopped, tmp_path):
    """A copy of the stopped run that a test may change."""
    return shutil.copytree(stopped[0].path, tmp_path / "run")


def test_early_stopping_stops_and_best_pt_holds_the_best_epochs_weights(stopped):
    result, snapshots = stopped
    history = result.history
    best = history.best_epoch
    assert history.stopped_early and not history.interrupted
    assert best == min(range(history.epochs), key=history.validation_loss.__getitem__)
    assert history.epochs == best + 1 + 2 < 12  # patience 2: two epochs without improvement
    assert _same_weights(_weights(result.path / "best.pt"), snapshots[best])
    assert _same_weights(_weights(result.path / "checkpoint.pt"), snapshots[-1])
    assert load_weights(result.path / "best.pt")["epoch"] == best + 1
    assert load_weights(result.path / "checkpoint.pt")["epoch"] == history.epochs


def test_the_validation_bound_is_recorded_every_epoch(stopped):
    result, _ = stopped
    history, path = result.history, result.path
    bounds = [-loss for loss in history.validation_loss]
    assert len(bounds) == history.epochs
    with open(path / "metrics.csv") as file:
        table = list(csv.DictReader(file))
    assert [float(row["validation_bound"]) for row in table] == pytest.approx(bounds)
    assert [e["validation_loss"] for e in read_epochs(path)] == history.validation_loss
    info = json.loads((path / "run.json").read_text())
    assert (info["train_size"], info["validation_size"]) == (90, 30)  # 120 split 3:1
    assert info["best_epoch"] == history.best_epoch + 1 and info["stopped_early"] is True
    assert info["best_validation_bound"] == max(bounds)
    summary = json.loads((path / "metrics.json").read_text())
    assert summary["metrics"]["best_epoch"] == info["best_epoch"]
    assert summary["metrics"]["stopped_early"] is True
    assert summary["history"]["validation_bound"] == bounds
    epochs = f"epoch {history.best_epoch + 1} of {history.epochs}"
    assert summary["weights"]["description"] == f"best ({epochs})"
    assert summary["weights"]["validation_bound"] == max(bounds)
    assert result.weights == summary["weights"]


def test_evaluate_uses_the_best_weights_and_says_so(stopped, stopped_copy):
    result, _ = stopped
    record = evaluate_run(stopped_copy, progress=False)
    weights = record["weights"]
    assert (weights["which"], weights["file"]) == ("best", "best.pt")
    assert weights["description"] == result.weights["description"]
    # The same weights, test set and seed as the evaluation at the end of training.
    assert record["metrics"]["test_elbo"] == pytest.approx(result.metrics["test_elbo"], abs=1e-4)
    written = json.loads((stopped_copy / "evaluation.json").read_text())
    assert written["weights"] == weights and written["metrics"] == record["metrics"]
    assert load_run(stopped_copy).weights == weights  # loading a run: the best by default


def test_weights_last_on_the_command_line(stopped, stopped_copy, capsys):
    result, _ = stopped
    epochs = result.history.epochs
    assert main(["evaluate", str(stopped_copy), "--weights", "last", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"weights: last (epoch {epochs} of {epochs})" in out
    written = json.loads((stopped_copy / "evaluation.json").read_text())
    assert (written["weights"]["which"], written["weights"]["epoch"]) == ("last", epochs)
    assert written["metrics"]["test_elbo"] != pytest.approx(result.metrics["test_elbo"])
    assert main(["evaluate", str(stopped_copy), "--no-progress"]) == 0
    assert f"weights: {result.weights['description']}" in capsys.readouterr().out
    assert main(["sample", str(stopped_copy), "--num", "4", "--weights", "last"]) == 0
    assert f"(weights: last (epoch {epochs} of {epochs})):" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["evaluate", str(stopped_copy), "--weights", "middle"])
    assert "invalid choice: 'middle'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"weights must be one of \['best', 'last'\]"):
        load_run(stopped_copy, weights="middle")


def test_completing_an_interrupted_evaluation_uses_the_best_weights(stopped, stopped_copy):
    # Ctrl-C during the final evaluation leaves a "trained" run: evaluate completes it.
    info = json.loads((stopped_copy / "run.json").read_text())
    (stopped_copy / "run.json").write_text(json.dumps({**info, "status": "trained"}))
    (stopped_copy / "metrics.json").unlink()
    record = evaluate_run(stopped_copy, progress=False)
    assert record["completed"] and record["weights"] == stopped[0].weights
    summary = json.loads((stopped_copy / "metrics.json").read_text())
    assert summary["weights"]["which"] == "best" and summary["metrics"]["stopped_early"] is True
    assert json.loads((stopped_copy / "run.json").read_text())["status"] == "complete"


def test_a_missing_best_pt_is_an_error_not_a_silent_fallback(stopped_copy):
    (stopped_copy / "best.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"validation split but its best.pt is missing"):
        evaluate_run(stopped_copy, progress=False)
    assert load_run(stopped_copy, weights="last").weights["which"] == "last"


def test_a_run_without_a_validation_split_evaluates_its_last_weights(tmp_path):
    spec = load_spec(DEFAULT_SPEC, [*TINY[:1], *TINY[2:], "training.epochs=1"])
    result = training.train_spec(spec, tmp_path / "run", progress=False)
    assert not (result.path / "best.pt").exists() and result.history.validation_loss == []
    note = "last (epoch 1 of 1; no best.pt: the run has no validation split)"
    assert result.weights["description"] == note
    info = json.loads((result.path / "run.json").read_text())
    assert "validation_size" not in info and "best_epoch" not in info
    assert evaluate_run(result.path, progress=False)["weights"]["description"] == note


@pytest.mark.parametrize(
    "where",
    [
        "after a non-improving epoch",  # the patience counter at 1 of 2
        "while keeping the best epoch",  # killed after best.pt, before the epoch's checkpoint
    ],
)
def test_resume_keeps_the_best_so_far_and_the_patience(stopped, tmp_path, where):
    whole, _ = stopped
    best = whole.history.best_epoch

    def after_epoch(epoch, path):
        if where == "after a non-improving epoch" and epoch == best + 1:
            raise KeyboardInterrupt

    def after_save(file, epoch):
        if where == "while keeping the best epoch" and file.name == "best.pt" and epoch == best + 1:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        _wrap_fit(patch, after_epoch, after_save)
        broken = training.train_spec(_spec(*STOPPING), tmp_path / "run", progress=False)
    assert broken.history.interrupted
    # Where the training state stands: past the non-improving epoch, or still before the end
    # of the best epoch, whose weights are already in best.pt (the epoch is trained again).
    checkpointed = load_checkpoint(broken.path / "training_state.pt")["position"]["epoch"]
    assert checkpointed == (best + 2 if where.startswith("after") else best)
    assert load_weights(broken.path / "best.pt")["epoch"] == best + 1
    resumed = training.train_spec(_spec(*STOPPING), progress=False, resume=broken.path)
    history = resumed.history
    assert history.validation_loss == whole.history.validation_loss
    assert (history.best_epoch, history.stopped_early) == (best, True)
    assert history.epochs == whole.history.epochs
    for name in ("best.pt", "checkpoint.pt"):
        assert _same_weights(_weights(resumed.path / name), _weights(whole.path / name)), name
    assert resumed.weights == whole.weights


def test_a_run_that_stopped_early_has_nothing_to_resume(stopped_copy):
    with pytest.raises(ValueError, match=r"stopped early after epoch \d+: its validation bound"):
        training.train_spec(
            _spec(*STOPPING[1:], "training.epochs=20"), progress=False, resume=stopped_copy
        )


def test_early_stopping_with_data_that_has_no_validation_split_writes_nothing(tmp_path):
    without = load_data(load_spec(DEFAULT_SPEC, [*TINY[:1], *TINY[2:]]))
    with pytest.raises(SpecError, match="training.early_stopping = 2 .* no validation split"):
        training.train_spec(_spec(*STOPPING), tmp_path / "run", progress=False, data=without)
    assert not (tmp_path / "run").exists()


def test_runs_tagged_before_early_stopping_existed_keep_their_tag(monkeypatch):
    # A spec read by the schema before the key existed had no training.early_stopping at all.
    spec = _spec()
    tag = resume.spec_tag(spec)
    real = resume.flat_spec

    def without_the_key(spec):
        return {k: v for k, v in real(spec).items() if k != "training.early_stopping"}

    monkeypatch.setattr(resume, "flat_spec", without_the_key)
    assert resume.spec_tag(spec) == tag
    monkeypatch.undo()
    assert resume.spec_tag(_spec("training.early_stopping=2")) != tag
