"""The estimator family: every estimator is a ``pyro.infer.ELBO`` built on one log-weight core.

=============  ==============================  ===============================================
name           class                           bound / gradient
=============  ==============================  ===============================================
``elbo``       :class:`TraceELBO`              Monte Carlo ELBO
``meanfield``  :class:`MeanFieldELBO`          ELBO with analytic KL where registered
``score``      :class:`ScoreFunctionELBO`      ELBO, score-function gradients with a baseline
``renyi``      :class:`RenyiBound`             VR bound L_alpha
``iwae``       :class:`IWAE`                   IWAE bound
``vrmax``      :class:`VRMax`                  max log-weight (alpha -> -inf)
``miwae``      :class:`MIWAE`                  mean of M IWAE-K bounds
``ciwae``      :class:`CIWAE`                  beta ELBO + (1 - beta) IWAE
``piwae``      :class:`PIWAE`                  IWAE for the model, MIWAE for the guide
``stl``        :class:`STL`                    ELBO, sticking-the-landing guide gradient
``dreg``       :class:`DReG`                   IWAE, doubly reparameterized guide gradient
``vimco``      :class:`VIMCO`                  IWAE, score-function gradients, leave-one-out
=============  ==============================  ===============================================
"""

from __future__ import annotations

import inspect
from typing import Any

from pyro_vi.estimators.base import Estimator
from pyro_vi.estimators.core import LogWeights, compute_log_weights
from pyro_vi.estimators.elbo import STL, MeanFieldELBO, ScoreFunctionELBO, TraceELBO
from pyro_vi.estimators.iwae import IWAE, VIMCO, DReG
from pyro_vi.estimators.miwae import CIWAE, MIWAE, PIWAE
from pyro_vi.estimators.renyi import RenyiBound, VRMax

#: Every estimator by name; classes register themselves by defining ``name``.
ESTIMATORS: dict[str, type[Estimator]] = Estimator.registry


def options(name: str) -> list[str]:
    """The keyword options that the estimator ``name`` accepts."""
    signature = inspect.signature(ESTIMATORS[name].__init__)
    return [p for p in signature.parameters if p != "self"]


def get(name: str, **kwargs: Any) -> Estimator:
    """Build an estimator by name.

    Arguments:
        name: One of :data:`ESTIMATORS` (``"elbo"``, ``"iwae"``, ``"dreg"``, ...).
        **kwargs: Its options, e.g. ``num_particles=5``, ``alpha=0.5``, ``beta=0.5``,
            ``num_outer=4, num_inner=8``.

    Raises:
        ValueError: unknown name or option, listing what is allowed; or a bad option value.

    Example:
        >>> loss = get("dreg", num_particles=8)
        >>> SVI(model, guide, Adam({"lr": 1e-3}), loss=loss)
    """
    if not isinstance(name, str) or name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; the estimators are {sorted(ESTIMATORS)}")
    allowed = options(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"estimator {name!r} takes no option {unknown[0]!r}; its options are {allowed}"
        )
    return ESTIMATORS[name](**kwargs)


__all__ = [
    "CIWAE",
    "ESTIMATORS",
    "IWAE",
    "MIWAE",
    "PIWAE",
    "STL",
    "VIMCO",
    "DReG",
    "Estimator",
    "LogWeights",
    "MeanFieldELBO",
    "RenyiBound",
    "ScoreFunctionELBO",
    "TraceELBO",
    "VRMax",
    "compute_log_weights",
    "get",
    "options",
]
