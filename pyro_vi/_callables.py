"""Finding the ``nn.Module``\\ s behind a model or guide, however the user wrote it.

Evaluation puts networks in eval mode (dropout off, batch-norm statistics frozen) and training
moves them to a device. A model may be a module, a bound method of one, a ``functools.partial``,
a closure over a network, or a plain function that uses a module-level network: all are found.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

__all__ = ["eval_mode", "modules_of"]

# How deep to follow callables that call other callables (a model calling a helper function
# that uses a global decoder is depth 2).
_MAX_DEPTH = 3
_LIBRARIES = {"pyro", "torch", "numpy", "builtins", "functools"}


def modules_of(*fns: Callable) -> list[nn.Module]:
    """The top-level ``nn.Module``\\ s that the callables ``fns`` can reach, without duplicates
    (submodules of a found module are not listed separately)."""
    found: dict[int, nn.Module] = {}
    seen: set[int] = set()
    for fn in fns:
        _collect(fn, found, seen, depth=0)
    roots = list(found.values())
    inner = {id(sub) for module in roots for sub in module.modules() if sub is not module}
    return [module for module in roots if id(module) not in inner]


def _collect(obj: Any, found: dict[int, nn.Module], seen: set[int], depth: int) -> None:
    if id(obj) in seen or depth > _MAX_DEPTH:
        return
    seen.add(id(obj))
    if isinstance(obj, nn.Module):
        found[id(obj)] = obj
        return
    if isinstance(obj, functools.partial):
        for part in (obj.func, *obj.args, *obj.keywords.values()):
            _collect(part, found, seen, depth + 1)
        return
    owner = getattr(obj, "__self__", None)
    if owner is not None and not inspect.ismodule(owner):
        _collect(owner, found, seen, depth + 1)
    function = getattr(obj, "__func__", obj)
    if inspect.isfunction(function):
        if (function.__module__ or "").split(".")[0] in _LIBRARIES:
            return  # Pyro's and torch's own functions hold no user network
        try:
            closure = inspect.getclosurevars(function)
        except (TypeError, ValueError):
            return
        for value in (*closure.nonlocals.values(), *closure.globals.values()):
            if isinstance(value, nn.Module) or callable(value):
                _collect(value, found, seen, depth + 1)
            _collect_held(value, found)
        return
    if callable(obj) and not inspect.isclass(obj) and not inspect.isbuiltin(obj):
        # An instance with __call__ (a guide object holding its networks).
        for value in getattr(obj, "__dict__", {}).values():
            if isinstance(value, nn.Module):
                found[id(value)] = value
            _collect_held(value, found)
        _collect(type(obj).__call__, found, seen, depth + 1)


def _collect_held(value: Any, found: dict[int, nn.Module]) -> None:
    """Networks held one level down in a plain dict, list or tuple (``NETS = {"enc": ...}``)."""
    if isinstance(value, dict):
        items = value.values()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return
    if len(items) > 256:  # a data table, not a set of networks: not scanned
        return
    for item in items:
        if isinstance(item, nn.Module):
            found[id(item)] = item


@contextmanager
def eval_mode(*fns: Callable) -> Iterator[None]:
    """Eval mode for every network behind ``fns`` (dropout off, batch-norm statistics frozen),
    restored afterwards: evaluation must not depend on training-time noise."""
    modules = modules_of(*fns)
    # Every submodule's own flag: a network may mix modes, and one may build submodules during
    # evaluation (a guide that makes its encoder at its first call), which take their parent's.
    modes = [
        (module, module.training, {id(s): s.training for s in module.modules()})
        for module in modules
    ]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for module, training, saved in modes:
            for sub in module.modules():
                sub.training = saved.get(id(sub), training)
