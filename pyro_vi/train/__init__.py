"""Training: :func:`fit` (the loop), one torch optimizer, an eager or compiled step, threads.

=========================  ==========================================================
module                     contents
=========================  ==========================================================
:mod:`.loop`               :func:`fit`, :func:`evaluate_loss`, :class:`History`
:mod:`.step`               the eager step and the captured, compiled one
:mod:`.optim`              one torch optimizer over all parameters; the non-finite guard
:mod:`.threads`            how many CPU threads a training process uses
=========================  ==========================================================
"""

from pyro_vi.train.loop import (
    History,
    Trainer,
    TrainingDivergedError,
    evaluate_loss,
    fit,
    load_parameters,
)
from pyro_vi.train.threads import default_threads

__all__ = [
    "History",
    "Trainer",
    "TrainingDivergedError",
    "default_threads",
    "evaluate_loss",
    "fit",
    "load_parameters",
]
