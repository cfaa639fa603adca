"""Argument validation shared by the whole package.

Every public function validates what a user passes with these helpers, so that bad input gets a
``ValueError``/``TypeError`` that names the argument, shows what it got and says what is allowed,
instead of a stack trace from deep inside torch. ``assert`` is never used for user input.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any


def describe(value: Any) -> str:
    """A short description of a value for an error message: its repr, cut, and its type."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} (type {type(value).__name__})"


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` as an ``int`` if it is an integer (not a bool), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {describe(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> float:
    """Return ``value`` as a finite ``float`` within ``[minimum, maximum]``.

    With ``exclusive_minimum`` the lower end is open, ``(minimum, maximum]``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {describe(value)}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None:
        too_small = value <= minimum if exclusive_minimum else value < minimum
        if too_small:
            relation = ">" if exclusive_minimum else ">="
            raise ValueError(f"{name} must be {relation} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of the strings in ``allowed``."""
    allowed = list(allowed)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {allowed}, got {describe(value)}")
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_finite(name: str, value: Any, remedy: str) -> None:
    """Refuse a floating-point data tensor holding NaN or infinite values, naming ``name``, how
    many, the first one's index and value, then ``remedy``: such a value would otherwise surface
    as a NaN loss or an error deep in torch. Anything but such a tensor passes."""
    import torch

    if not isinstance(value, torch.Tensor) or not (value.is_floating_point() or value.is_complex()):
        return
    bad = ~torch.isfinite(value)
    count = int(bad.sum())
    if count:
        first = [int(i) for i in bad.nonzero()[0]]
        raise ValueError(
            f"{name} holds {count} NaN or infinite value(s), the first at index {first} "
            f"({value[tuple(first)].item()}); {remedy}"
        )
