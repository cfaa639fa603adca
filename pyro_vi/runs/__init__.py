"""Runs: training a spec into a folder, reloading it, evaluating, drawing figures, comparing.

=====================  =====================================================================
module                 job
=====================  =====================================================================
:mod:`.training`       :func:`train_spec`: train (or resume) a spec, write its folder; a
                       :class:`TrainResult`; :func:`complete_run` after an interrupted
                       evaluation
:mod:`.folder`         a run folder's files, :func:`load_run` (weights read safely)
:mod:`.resume`         what a resumed run may change; the spec's tag
:mod:`.distributed`    under ``torchrun``: the process group, rank 0 deciding and writing
:mod:`.tracking`       metrics to CSV, TensorBoard and MLflow, one module per backend
:mod:`.evaluate`       the metrics a run is judged by (which ones: its model kind);
                       :func:`evaluate_run`, what ``pyro-vi evaluate`` does
:mod:`.figures`        a run's figures (which ones: its model kind; drawn by
                       :mod:`pyro_vi.report`)
:mod:`.compare`        several specs on matched compute, one table
:mod:`.sweep`          one spec over a grid of values, or an Optuna search; one table
:mod:`.comparison`     the table and figure of a comparison or sweep, like with like
:mod:`.curves`         common metrics after every epoch (``on_epoch`` of :func:`train_spec`)
=====================  =====================================================================

What the JSON files hold: :mod:`pyro_vi.records`. (``compare`` and ``sweep`` stay module names
here: functions of those names would hide them.)
"""

from pyro_vi.runs.distributed import init_from_environment
from pyro_vi.runs.evaluate import evaluate_built, evaluate_run, fixed_test_set
from pyro_vi.runs.folder import Run, load_run
from pyro_vi.runs.training import TrainResult, complete_run, train_spec

__all__ = [
    "Run",
    "TrainResult",
    "complete_run",
    "evaluate_built",
    "evaluate_run",
    "fixed_test_set",
    "init_from_environment",
    "load_run",
    "train_spec",
]
