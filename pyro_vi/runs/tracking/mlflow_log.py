"""MLflow: one MLflow run per run folder (needs the ``mlflow`` package).

The tracking store is ``$MLFLOW_TRACKING_URI`` when set (a server, or one SQLite file for all
runs: ``sqlite:///mlflow.db``), else a SQLite store in the run folder (``<run>/mlflow.db``, its
artifacts in ``<run>/mlartifacts``; ``mlflow ui --backend-store-uri sqlite:///<run>/mlflow.db``
shows it); the experiment is the spec's name. Only :class:`mlflow.MlflowClient` is used, so that
a user's own active MLflow run is never touched. The spec's keys are the run's parameters
(``model.latent_dim`` ...), each epoch's values its metrics (step = epoch), the figures its
artifacts (``figures/``). A resumed run continues the same MLflow run (its id is kept in
``run.json``), logging the epochs that run does not hold yet.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyro_vi.runs.folder import MLFLOW_ARTIFACTS, MLFLOW_STORE
from pyro_vi.runs.tracking.base import Tracker, TrackingContext

__all__ = ["MlflowTracker", "flatten", "tracking_uri"]

#: run.json's status -> MLflow's run status.
_STATUS = {"complete": "FINISHED", "trained": "FINISHED", "interrupted": "KILLED"}


def flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts as ``{"a.b.c": "value"}`` (MLflow's parameters are flat strings)."""
    out: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)
    return out


def tracking_uri(path: Path) -> str:
    """``$MLFLOW_TRACKING_URI``, else the SQLite store in the run folder ``path``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(path / MLFLOW_STORE).resolve()}"


class MlflowTracker(Tracker):
    """Logs to an MLflow run through ``mlflow.MlflowClient``."""

    name = "mlflow"

    def __init__(self, context: TrackingContext) -> None:
        super().__init__()
        from mlflow import MlflowClient

        uri = tracking_uri(context.path)
        self.client = MlflowClient(tracking_uri=uri)
        # A store of this run's own keeps its artifacts beside it; a shared one decides.
        self.artifacts = (
            None
            if os.environ.get("MLFLOW_TRACKING_URI")
            else (context.path / MLFLOW_ARTIFACTS).resolve().as_uri()
        )
        run_id = context.previous.get("mlflow_run_id")
        #: Epochs the MLflow run already holds (a resumed run's are not logged twice; a resumed
        #: run trains them again to the same values).
        self.logged = 0
        if run_id is None or context.history is None:
            run_id = self._create(context)
        else:
            self.client.update_run(run_id, status="RUNNING")
            steps = [m.step for m in self.client.get_metric_history(run_id, "train_loss")]
            self.logged = max(steps, default=0)
        self.run_id = run_id
        self.record = {"mlflow_run_id": run_id, "mlflow_tracking_uri": uri}

    def _create(self, context: TrackingContext) -> str:
        from mlflow.entities import Param

        name = context.spec.name or "pyro-vi"
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self.client.create_experiment(name, artifact_location=self.artifacts)
        )
        run = self.client.create_run(experiment_id, run_name=context.path.name)
        run_id = run.info.run_id
        params = [
            Param(key, value[:6000]) for key, value in flatten(context.spec.to_dict()).items()
        ]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 per batch
            self.client.log_batch(run_id, params=params[start : start + 100])
        return run_id

    def log_epoch(self, epoch: int, values: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        if epoch <= self.logged:
            return
        stamp = int(time.time() * 1000)
        metrics = [
            Metric(name, float(value), stamp, epoch)
            for name, value in values.items()
            if name != "epoch" and isinstance(value, int | float) and not isinstance(value, bool)
        ]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_images(self, images: Mapping[str, Path]) -> None:
        for file in images.values():
            self.client.log_artifact(self.run_id, str(file), artifact_path="figures")

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=_STATUS.get(status, "FAILED"))
