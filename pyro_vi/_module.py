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

from pyro.nn import PyroModule

_instance_counter = itertools.count()


class UniquePyroModule(PyroModule):
    """``PyroModule`` whose top-level name is ``"<ClassName>_<n>"``, unique in the process."""

    def __init__(self) -> None:
        super().__init__(name=f"{type(self).__name__}_{next(_instance_counter)}")
