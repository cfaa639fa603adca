"""One small name -> entry registry, with one lookup error and one listing for every registry.

The package chooses many parts by name: guide families, model kinds, likelihoods, priors,
datasets, 2-D targets (and the estimators, whose registry is a plain dict that
:class:`Registry` can wrap). Each is a :class:`Registry`, so that every one of them

- lists its names in registration order (``list(registry)``, :meth:`Registry.names`), which is
  the order the docs and the spec's error messages show;
- fails a lookup the same way: ``unknown family 'gausian' (did you mean 'gaussian'?); the
  families are [...]``, an :class:`UnknownNameError` that is both a ``ValueError`` (the
  package's error for bad input) and a ``KeyError`` (what a mapping raises, so ``in`` and
  ``.get`` behave as for a dict);
- reads the keyword options of an entry, with their defaults, from its signature
  (:func:`keyword_options`), so that an option exists exactly when the code takes it.

Example:
    >>> COLOURS = Registry("colour")
    >>> COLOURS.register("red", (255, 0, 0))
    (255, 0, 0)
    >>> COLOURS["rde"]  # UnknownNameError (a ValueError and a KeyError):
    unknown colour 'rde' (did you mean 'red'?); the colours are ['red']
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A name that a registry does not hold. A ``ValueError`` for callers, a ``KeyError`` for
    mapping code; its message is the plain text (a ``KeyError`` would show it quoted)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Registry(MutableMapping[str, T], Generic[T]):
    """Entries by name, in registration order, with the package's lookup error.

    Arguments:
        noun: What an entry is, for messages (``"family"``).
        plural: Its plural (default: ``noun + "s"``; ``"families"`` must be given).
        entries: An existing dict to use as the storage (it stays shared: a class that
            registers itself into that dict is seen here), or ``None`` for a new one.

    Example:
        >>> LIKELIHOODS["laplace"]  # UnknownNameError: unknown likelihood 'laplace'; ...
    """

    def __init__(
        self, noun: str, plural: str | None = None, entries: dict[str, T] | None = None
    ) -> None:
        if not isinstance(noun, str) or not noun:
            raise TypeError(f"noun must be a non-empty string, got {noun!r}")
        self.noun = noun
        self.plural = plural or f"{noun}s"
        self._entries: dict[str, T] = {} if entries is None else entries

    # -- registration -------------------------------------------------------------------------

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name`` (replacing an entry of that name) and return it."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.noun}'s name must be a non-empty string, got {name!r}")
        self._entries[name] = entry
        return entry

    def add(self, name: str) -> Callable[[T], T]:
        """A decorator registering what it decorates under ``name``.

        Example:
            >>> @LIKELIHOODS.add("laplace")
            ... def laplace(data_shape): ...
        """

        def decorate(entry: T) -> T:
            return self.register(name, entry)

        return decorate

    # -- lookup -------------------------------------------------------------------------------

    def __getitem__(self, name: str) -> T:
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        raise UnknownNameError(self.unknown(name))

    def check(self, name: Any) -> str:
        """``name`` if it is registered; otherwise the lookup error."""
        if name not in self:
            raise UnknownNameError(self.unknown(name))
        return name

    def unknown(self, name: Any) -> str:
        """The message for a name that is not registered."""
        close = (
            difflib.get_close_matches(name, list(self._entries), n=1)
            if isinstance(name, str)
            else []
        )
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.noun} {name!r}{hint}; the {self.plural} are {sorted(self._entries)}"

    def names(self) -> tuple[str, ...]:
        """Every name, in registration order."""
        return tuple(self._entries)

    # -- the rest of the mapping --------------------------------------------------------------

    def __setitem__(self, name: str, entry: T) -> None:
        self.register(name, entry)

    def __delitem__(self, name: str) -> None:
        if not isinstance(name, str) or name not in self._entries:
            raise UnknownNameError(self.unknown(name))
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.noun!r}, {list(self._entries)})"


def keyword_options(function: Callable[..., Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    """The options a callable takes, with their defaults, read from its signature.

    Arguments:
        function: A function or a class (its ``__init__``).
        skip: Parameters that are not options (``self``, sizes given by the caller, ...).

    Returns:
        A new dict option name -> default for every parameter with a default, in order.

    Example:
        >>> keyword_options(lambda shape, *, scale=None: None, skip=("shape",))
        {'scale': None}
    """
    target = function.__init__ if inspect.isclass(function) else function
    skipped = {"self", *skip}
    return {
        name: parameter.default
        for name, parameter in inspect.signature(target).parameters.items()
        if name not in skipped
        and parameter.default is not inspect.Parameter.empty
        and parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def check_options(noun: str, name: str, given: Iterable[str], allowed: Iterable[str]) -> None:
    """Raise ``ValueError`` naming the first of ``given`` that is not in ``allowed``.

    The message is the one every named part uses: ``likelihood 'gaussian' takes no option
    'sigma'; its options are ['scale']``.
    """
    allowed = sorted(allowed)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(
            f"{noun} {name!r} takes no option {unknown[0]!r}; its options are {allowed or 'none'}"
        )
