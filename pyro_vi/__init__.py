"""pyro_vi: variational inference for deep latent-variable models on Pyro.

===========================  =================================================================
subpackage                   contents
===========================  =================================================================
:mod:`pyro_vi.data`          datasets: digits (embedded), MNIST family, binarized MNIST
:mod:`pyro_vi.nets`          networks: MLP and convolutional encoders and decoders
:mod:`pyro_vi.models`        Pyro models, likelihoods, priors, conjugate references, targets
:mod:`pyro_vi.guides`        the amortized guide, posterior families, local guides
:mod:`pyro_vi.architectures` a model with its guide in one call (what specs compile to)
:mod:`pyro_vi.estimators`    the bounds: ELBO, IWAE, Rényi, STL, DReG, VIMCO, ...
:mod:`pyro_vi.train`         :func:`fit`, the training loop
:mod:`pyro_vi.evaluation`    :func:`log_likelihood`, active units, gradient SNR, refinement
:mod:`pyro_vi.report`        figures and a run's report
:mod:`pyro_vi.spec`          declarative specs: :func:`load_spec`, ``build``, model kinds
:mod:`pyro_vi.runs`          run folders: train a spec, reload, evaluate, compare
:mod:`pyro_vi.cli`           the ``pyro-vi`` command
===========================  =================================================================

The most used names are importable from here (``from pyro_vi import fit, get_estimator``);
they load on first use, so ``import pyro_vi`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the module that defines it; loaded on first access (PEP 562), since each pulls in
# torch and Pyro and ``import pyro_vi`` should not.
_EXPORTS = {
    "fit": "pyro_vi.train",
    "log_likelihood": "pyro_vi.evaluation",
    "ESTIMATORS": "pyro_vi.estimators",
    "load_spec": "pyro_vi.spec",
}
#: Re-exported under another name: the estimators' ``get`` is ``pyro_vi.get_estimator``.
_RENAMED = {"get_estimator": ("pyro_vi.estimators", "get")}
_SUBPACKAGES = (
    "architectures",
    "data",
    "estimators",
    "evaluation",
    "guides",
    "models",
    "nets",
    "records",
    "report",
    "runs",
    "spec",
    "train",
)

__all__ = ["__version__", *_EXPORTS, *_RENAMED, *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _RENAMED:
        module, attribute = _RENAMED[name]
        value = getattr(importlib.import_module(module), attribute)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'pyro_vi' has no attribute {name!r}")
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
