"""Reading specs from TOML or JSON files, overriding keys from the command line, writing them back.

Values are parsed as TOML, never evaluated as Python: ``--set training.epochs=5`` sets an int,
``--set model.latent_dim=[100,50]`` a list, and a bare word such as ``--set data.name=mnist`` a
string.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import tomli_w

from pyro_vi._checks import describe
from pyro_vi.records import write_text_atomically
from pyro_vi.spec.resolve import Spec, resolve
from pyro_vi.spec.schema import SpecError

SpecSource = Spec | Mapping[str, Any] | str | os.PathLike[str]
SUFFIXES = (".toml", ".json")


def read_spec_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw (unvalidated) spec in a ``.toml`` or ``.json`` file.

    Raises:
        FileNotFoundError: no such file.
        SpecError: another suffix, or text that does not parse (with the parser's line number).
    """
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise SpecError(f"spec file {str(path)!r} must end in one of {list(SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"spec file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SpecError(
            f"spec file {str(path)!r} is not valid {path.suffix[1:]}: {error}"
        ) from None
    if not isinstance(raw, dict):
        raise SpecError(
            f"spec file {str(path)!r} holds {describe(raw)}; a spec is an object of sections, "
            'e.g. {"model": {"latent_dim": 8}, "training": {"epochs": 5}}'
        )
    return raw


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b.c=value"`` into ``(["a", "b", "c"], value)``, the value parsed as TOML.

    A value that is not valid TOML (``mnist``, ``cuda:0``) is taken as a string.
    """
    if not isinstance(text, str) or "=" not in text:
        raise SpecError(f"an override must look like 'section.key=value', got {describe(text)}")
    key, value = text.split("=", 1)
    path = key.strip().split(".")
    if not all(path):
        raise SpecError(
            f"an override's key must be dotted names like 'training.epochs', got {key!r}"
        )
    try:
        parsed = tomllib.loads(f"value = {value.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return path, parsed


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``raw`` with each ``"a.b=value"`` set (tables are created as needed).

    A part given by name only (``likelihood = "gaussian"``) becomes a table when an override
    sets one of its options (``model.likelihood.scale=0.1``).
    """
    out = copy.deepcopy(dict(raw))
    for text in overrides:
        path, value = parse_override(text)
        table = out
        for depth, key in enumerate(path[:-1]):
            child = table.get(key)
            if isinstance(child, str):
                child = {"name": child}
            elif child is None:
                child = {}
            elif not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise SpecError(f"override {text!r}: {where} is {describe(child)}, not a table")
            table[key] = child
            table = child
        table[path[-1]] = value
    return out


def load_spec(source: SpecSource, overrides: Iterable[str] = ()) -> Spec:
    """Read, override and validate a spec.

    Arguments:
        source: A :class:`Spec`, a dict, or the path of a ``.toml``/``.json`` file.
        overrides: ``"section.key=value"`` strings applied before validation.

    Returns:
        The complete, validated :class:`Spec`.

    Example:
        >>> spec = load_spec("configs/iwae_mnist.toml", ["training.epochs=1"])
    """
    if isinstance(source, Spec):
        raw = source.to_dict()
    elif isinstance(source, Mapping):
        raw = dict(source)
    elif isinstance(source, str | os.PathLike):
        raw = read_spec_file(source)
    else:
        raise TypeError(f"spec must be a Spec, a dict or a file path, got {describe(source)}")
    return resolve(apply_overrides(raw, overrides))


def spec_to_toml(spec: Spec) -> str:
    """The spec as TOML text; :func:`load_spec` of it gives an equal spec."""
    return tomli_w.dumps(spec.to_dict())


def save_spec(spec: Spec, path: str | os.PathLike[str]) -> Path:
    """Write the spec as TOML to ``path``, through a temporary file so that a kill mid-write
    never leaves half a spec (a run's spec.toml is what rebuilds and resumes it)."""
    return write_text_atomically(path, spec_to_toml(spec))
