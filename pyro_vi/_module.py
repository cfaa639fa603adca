"""A PyroModule base whose parameters never collide in Pyro's global param store.

Pyro registers a top-level ``PyroModule``'s parameters in the global param store under their
attribute paths (``"decoder.mlp.0.weight"``). Two instances of the same class therefore share
names, and the second silently receives the first one's parameters (or fails an internal shape
assert), which is the classic way a script that trains two models in one process goes wrong.
Every top-level module of this package gets a name of its own instead; nested inside a user's
``PyroModule`` it is renamed after its parent, as Pyro does for any submodule.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyro.nn import PyroModule

_instance_counter = itertools.count()


class UniquePyroModule(PyroModule):
    """``PyroModule`` whose top-level name is ``"<ClassName>_<n>"``, unique in the process."""

    def __init__(self) -> None:
        super().__init__(name=f"{type(self).__name__}_{next(_instance_counter)}")

    def __getattr__(self, name: str) -> Any:
        # Inside quiet_parameters() a plain submodule or parameter is returned as it is: no
        # pyro.module / pyro.param statement, whose registration costs ~0.4 ms per training step
        # of a small VAE, and which an optimizer holding the parameters directly does not need.
        if _QUIET[0]:
            modules = self.__dict__.get("_modules", {})
            if name in modules and not isinstance(modules[name], PyroModule):
                return modules[name]
            parameters = self.__dict__.get("_parameters", {})
            if name in parameters and not name.endswith("_unconstrained"):
                return parameters[name]
        return super().__getattr__(name)


_QUIET = [False]


@contextmanager
def quiet_parameters() -> Iterator[None]:
    """Let this package's modules skip their parameter statements (see
    :meth:`UniquePyroModule.__getattr__`). For training loops whose optimizer already holds every
    parameter, after a first step has registered them; not for Pyro's ``SVI``, which finds the
    parameters to optimize through those statements."""
    previous = _QUIET[0]
    _QUIET[0] = True
    try:
        yield
    finally:
        _QUIET[0] = previous
