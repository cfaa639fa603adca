"""The keys a spec may hold, their types, defaults and allowed values.

A spec has six sections plus two optional labels::

    name = "vae-digits"           # optional: names the run (and its column in a comparison)
    description = "..."           # optional
    [data]       which dataset, its binarization
    [model]      kind, latents, likelihood, prior, decoder network
    [guide]      posterior family and its options, encoder network
    [estimator]  the objective's name and its options
    [optimizer]  Adam or clipped Adam, learning rate and its decay
    [training]   epochs, batch size, seed, device, evaluation particles, checkpoints, early
                 stopping on the validation bound
    [log]        where metrics go: CSV always, TensorBoard and MLflow when asked

Each key is a :class:`Field`; :func:`check_field` validates one value and returns it in canonical
form (ints as ``int``, lists as lists), raising :class:`SpecError` that names the dotted key, the
value and what is allowed. The sections that depend on a choice (the model's kind, the network's
type) list their keys per choice, so a key that only another choice uses is reported as such.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pyro_vi._checks import describe


class SpecError(ValueError):
    """A spec that cannot be built; the message names the key, the value and what is allowed."""


@dataclass(frozen=True)
class Field:
    """One key of a spec section.

    Attributes:
        kind: ``"int"``, ``"float"``, ``"bool"``, ``"str"``, ``"ints"`` (a list of ints),
            ``"floats"`` (a list of numbers) or ``"strs"`` (a list of strings, each one of
            ``choices`` when given).
        default: The value when the key is absent; ``None`` marks an optional key.
        doc: What the key means, shown in errors and in ``pyro-vi train --help``.
        choices: The allowed strings of a ``"str"`` key (or of each entry of a ``"strs"`` key).
        minimum: Smallest allowed number (or list element).
        exclusive: Whether ``minimum`` itself is excluded.
        maximum: Largest allowed number.
        exclusive_maximum: Whether ``maximum`` itself is excluded (a share that must leave
            something: ``data.validation`` < 1).
        length: Required length of a list, or ``None`` for any non-empty list.
    """

    kind: str
    default: Any
    doc: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    exclusive: bool = False
    maximum: float | None = None
    length: int | None = None
    exclusive_maximum: bool = False

    def allowed(self) -> str:
        """What the key accepts, in words."""
        if self.kind == "strs":
            among = "" if self.choices is None else f" from {list(self.choices)}"
            return f"a non-empty list of strings{among}, each at most once"
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        noun = {
            "int": "an integer",
            "float": "a number",
            "bool": "true or false",
            "str": "a string",
            "ints": "a list of integers",
            "floats": "a list of numbers",
        }[self.kind]
        if self.kind in ("ints", "floats") and self.length is not None:
            noun = f"{noun} of length {self.length}"
        bounds = []
        if self.minimum is not None:
            bounds.append(f"{'>' if self.exclusive else '>='} {self.minimum:g}")
        if self.maximum is not None:
            bounds.append(f"{'<' if self.exclusive_maximum else '<='} {self.maximum:g}")
        if bounds:
            noun += (" with every entry " if self.kind in ("ints", "floats") else " ") + (
                " and ".join(bounds)
            )
        return noun


def fail(key: str, value: Any, allowed: str) -> SpecError:
    """The error for ``key`` holding ``value`` when ``allowed`` is what it accepts."""
    return SpecError(f"invalid spec: {key} = {describe(value)}; allowed: {allowed}")


def _number(key: str, value: Any, field: Field, integral: bool) -> int | float:
    wrong_type = isinstance(value, bool) or not isinstance(
        value, numbers.Integral if integral else numbers.Real
    )
    if wrong_type:
        raise fail(key, value, field.allowed())
    number = int(value) if integral else float(value)
    if (not integral and number != number) or number in (float("inf"), float("-inf")):
        raise fail(key, value, field.allowed())
    if field.minimum is not None and (
        number < field.minimum or (field.exclusive and number == field.minimum)
    ):
        raise fail(key, value, field.allowed())
    if field.maximum is not None and (
        number > field.maximum or (field.exclusive_maximum and number == field.maximum)
    ):
        raise fail(key, value, field.allowed())
    return number


def check_field(key: str, value: Any, field: Field) -> Any:
    """Validate ``value`` for ``field`` and return it in canonical form.

    Raises:
        SpecError: naming ``key``, the value and :meth:`Field.allowed`.
    """
    if field.kind in ("int", "float"):
        return _number(key, value, field, integral=field.kind == "int")
    if field.kind == "bool":
        if not isinstance(value, bool):
            raise fail(key, value, field.allowed())
        return value
    if field.kind == "str":
        if not isinstance(value, str) or (field.choices is not None and value not in field.choices):
            close = (
                difflib.get_close_matches(value, field.choices, n=1)
                if isinstance(value, str) and field.choices is not None
                else []
            )
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise fail(key, value, f"{field.allowed()}{hint}")
        return value
    if field.kind == "strs":
        strings = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        if not strings or not value or len(set(value)) < len(value):
            raise fail(key, value, field.allowed())
        unknown = [v for v in value if field.choices is not None and v not in field.choices]
        if unknown:
            raise fail(key, value, f"{field.allowed()} (not {unknown[0]!r})")
        return list(value)
    if field.kind in ("ints", "floats"):
        if not isinstance(value, list | tuple) or not value:
            raise fail(key, value, field.allowed())
        if field.length is not None and len(value) != field.length:
            raise fail(key, value, field.allowed())
        try:
            return [_number(key, item, field, integral=field.kind == "ints") for item in value]
        except SpecError:
            raise fail(key, value, field.allowed()) from None
    raise AssertionError(f"unknown field kind {field.kind!r}")  # a bug in a schema, not input


def check_keys(key: str, table: Any, allowed: Iterable[str], context: str = "") -> dict[str, Any]:
    """Check that ``table`` is a table whose keys all lie in ``allowed``; return it as a dict.

    The error for an unknown key suggests the closest allowed one (a typo is the usual cause).
    """
    if not isinstance(table, Mapping):
        raise fail(key, table, "a table (a TOML [section] or a dict)")
    allowed = list(allowed)
    for name in table:
        if not isinstance(name, str) or name not in allowed:
            close = difflib.get_close_matches(str(name), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = f"{key}.{name}" if key else str(name)
            raise SpecError(
                f"invalid spec: unknown key {where!r}{hint}{context}; {key or 'the spec'} "
                f"takes {sorted(allowed)}"
            )
    return dict(table)


def resolve_table(key: str, table: Any, fields: Mapping[str, Field]) -> dict[str, Any]:
    """Validate a table against ``fields`` and fill in the defaults (optional keys stay None)."""
    table = check_keys(key, table, fields)
    return {
        name: field.default
        if name not in table
        else check_field(f"{key}.{name}", table[name], field)
        for name, field in fields.items()
    }
