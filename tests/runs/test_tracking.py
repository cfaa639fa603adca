"""Experiment tracking: metrics.csv always; TensorBoard and MLflow when installed (skipped
otherwise: CI installs neither); the spec's ``[log] backends`` validated before training."""

import csv
import dataclasses
import json
import math
import warnings

import pytest

import pyro_vi.runs.training as training
from pyro_vi.runs import tracking
from pyro_vi.runs.tracking import Tracker, columns, epoch_values
from pyro_vi.runs.tracking.base import series
from pyro_vi.spec import DEFAULT_SPEC, SpecError, load_spec
from pyro_vi.train import History

TINY = [
    "data.limit=120",
    "data.test_limit=60",
    "training.eval_samples=0",
    "training.batch_size=40",
]


def _spec(*overrides):
    return load_spec(DEFAULT_SPEC, [*TINY, *overrides])


def _rows(path):
    with open(path / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_csv_has_one_row_per_epoch_with_every_history_field(tmp_path):
    result = training.train_spec(_spec("training.epochs=3"), tmp_path / "run", progress=False)
    rows = _rows(result.path)
    history = result.history
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3]
    assert list(rows[0]) == columns()
    for name in series():  # every per-epoch list of History, whatever fields it has
        assert name in rows[0], name
        values = getattr(history, name)
        for row, value in zip(rows, values, strict=False):
            assert float(row[name]) == value, name  # written in full precision
    for row, loss in zip(rows, history.train_loss, strict=True):
        assert float(row["train_bound"]) == -loss
        # 120 points in batches of 40: 3 steps per epoch.
        assert float(row["steps_per_second"]) == pytest.approx(3 / float(row["seconds"]))
    info = json.loads((result.path / "run.json").read_text())
    assert info["tracking"]["backends"] == ["csv"]


def test_columns_follow_the_history_generically():
    names = [f.name for f in dataclasses.fields(History) if f.default_factory is list]
    assert series() == names
    assert {"train_loss", "test_loss", "seconds", "learning_rate"} <= set(series())
    assert {"train_bound", "test_bound", "steps_per_second"} <= set(columns())
    history = History(train_loss=[2.0, 1.0], seconds=[0.5, 0.25])
    values = epoch_values(history, 1, steps_per_epoch=10)
    assert values["epoch"] == 2 and values["train_bound"] == -1.0
    assert values["test_loss"] is None and values["test_bound"] is None
    assert values["steps_per_second"] == 40.0
    assert epoch_values(history, 1, steps_per_epoch=None)["steps_per_second"] is None


@pytest.mark.parametrize(
    ("backends", "message"),
    [
        ("['wandb']", "not 'wandb'"),
        ("['csv', 'csv']", "each at most once"),
        ("'csv'", "a non-empty list of strings"),
    ],
)
def test_bad_backends_are_spec_errors(backends, message):
    with pytest.raises(SpecError, match=message) as error:
        _spec(f"log.backends={backends}")
    assert "log.backends" in str(error.value)


class Failing(Tracker):
    name = "tensorboard"

    def __init__(self, context):
        super().__init__()

    def log_epoch(self, epoch, values):
        raise ConnectionError("the server went away")


def test_a_failing_optional_backend_is_switched_off_not_fatal(tmp_path, monkeypatch):
    monkeypatch.setitem(tracking.BACKENDS, "tensorboard", (None, Failing))
    spec = _spec("training.epochs=2", "log.backends=['tensorboard']")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = training.train_spec(spec, tmp_path / "run", progress=False)
    assert result.metrics and len(_rows(result.path)) == 2
    failed = [w for w in caught if "'tensorboard' tracking backend failed" in str(w.message)]
    assert len(failed) == 1 and "the server went away" in str(failed[0].message)


def test_a_backend_that_cannot_start_fails_the_run_before_training(tmp_path, monkeypatch):
    def refuse(context):
        raise ConnectionError("no server at http://nowhere")

    monkeypatch.setitem(tracking.BACKENDS, "mlflow", (None, refuse))
    spec = _spec("training.epochs=2", "log.backends=['mlflow']")
    with pytest.raises(ValueError, match="'mlflow' backend cannot start.*no server"):
        training.train_spec(spec, tmp_path / "run", progress=False)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "failed" and "no server" in info["error"]


def test_tensorboard_scalars_and_images(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec = _spec("training.epochs=2", "log.backends=['csv', 'tensorboard']")
    path = training.train_spec(spec, tmp_path / "run", progress=False).path
    events = EventAccumulator(str(path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"bound/train", "bound/test", "optim/learning_rate", "speed/steps_per_second"} <= set(
        tags["scalars"]
    )
    train = [(e.step, e.value) for e in events.Scalars("bound/train")]
    rows = _rows(path)
    assert [step for step, _ in train] == [1, 2]
    assert all(
        math.isclose(v, float(r["train_bound"]), rel_tol=1e-6)
        for (_, v), r in zip(train, rows, strict=True)
    )
    assert {"figures/samples", "figures/reconstructions"} <= set(tags["images"])


def test_mlflow_run_metrics_params_artifacts_and_resume(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = _spec("training.epochs=2", "log.backends=['mlflow']")
    path = training.train_spec(spec, tmp_path / "run", progress=False).path
    record = json.loads((path / "run.json").read_text())["tracking"]
    assert record["backends"] == ["csv", "mlflow"]
    client = MlflowClient(tracking_uri=record["mlflow_tracking_uri"])
    run = client.get_run(record["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.latent_dim"] == "8"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_bound")]
    assert steps == [1, 2]
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert "figures/samples.png" in figures

    # Training longer continues the same MLflow run, each epoch once.
    training.train_spec(_spec("training.epochs=3", "log.backends=['mlflow']"), resume=path)
    again = json.loads((path / "run.json").read_text())["tracking"]
    assert again["mlflow_run_id"] == record["mlflow_run_id"]
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_bound")]
    assert steps == [1, 2, 3]
