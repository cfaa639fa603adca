"""Progress display: a tqdm bar on a terminal, periodic plain lines in a log file.

tqdm redraws its bar in place by writing ``"\\r" + status`` many times a second. On a terminal
that is a moving bar; in a log file (stderr redirected, a batch job) it is one line of tens of
kilobytes of carriage returns. :class:`LineStream` turns those redraws into whole lines, at most
one every ``interval`` seconds per bar, plus each bar's first and last state; any other text
passes through unchanged.

Two ways in:

- :func:`progress_bar` builds a tqdm bar that chooses for itself (a drop-in for
  ``tqdm(iterable, desc=..., unit=..., disable=not progress)``);
- :func:`progress_output` redirects ``sys.stderr`` for a block of code, so that bars made by code
  that calls tqdm directly (as :func:`pyro_vi.train.fit` does) print lines too. The ``pyro-vi``
  command runs every sub-command inside it.

Example:
    >>> with progress_output("auto"):
    ...     fit(model, guide, data.train, epochs=100)  # a bar on a terminal, lines in a log
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm.auto import tqdm

from pyro_vi._checks import check_choice, check_float

__all__ = [
    "DEFAULT_INTERVAL",
    "MODES",
    "LineStream",
    "progress_bar",
    "progress_output",
    "use_lines",
]

#: ``auto``: a bar on a terminal, lines otherwise; ``bar``, ``lines``: always that; ``none``: off.
MODES = ("auto", "bar", "lines", "none")
#: Seconds between two progress lines of the same bar (its first and last state always print).
DEFAULT_INTERVAL = 10.0


#: The parts of a tqdm status that change with the clock alone: times and rates.
_TIMING = re.compile(r"\d+:\d+(?::\d+)?|\?|<|\d[\d.]*\s*\w*/s|\d[\d.]*s/\w+")


def _without_timing(status: str) -> str:
    return _TIMING.sub("", status)


class LineStream(io.TextIOBase):
    """A text stream that prints a progress bar's in-place redraws as periodic whole lines.

    Each write that starts with a carriage return is a bar's new state (tqdm's protocol). The
    first state of a bar prints at once; later states print when ``interval`` seconds have passed
    since the bar's last printed line; the last state prints when the bar closes (tqdm writes a
    newline, or clears the bar) or when the stream is flushed at the end. Everything else is
    written through unchanged.

    Arguments:
        stream: Where the lines go (``sys.stderr`` by default, read when a line is written).
        interval: Seconds between two lines of one bar; ``0`` prints every state.

    Example:
        >>> bar = tqdm(range(1000), file=LineStream(interval=10.0))  # a line every 10 s
    """

    def __init__(self, stream: TextIO | None = None, interval: float = DEFAULT_INTERVAL) -> None:
        super().__init__()
        self._stream = stream
        self.interval = check_float("interval", interval, minimum=0.0)
        self._latest: str | None = None  # the bar's newest state, not printed yet
        self._bar_open = False  # a bar has printed its first state and not closed
        self._just_drew = False  # the last write ended with a redraw
        self._last_line = 0.0
        self._last_printed = ""

    @property
    def stream(self) -> TextIO:
        """The stream the lines go to."""
        return sys.__stderr__ if self._stream is None else self._stream

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        redraw: str | None = None
        for part in re.split(r"(\r|\n)", text):
            if part == "\r":
                if redraw is not None:
                    self._take(redraw)
                redraw = ""
            elif part == "\n":
                if redraw is not None or self._just_drew:
                    # A newline right after a redraw: the bar is done and stays.
                    if redraw is not None:
                        self._take(redraw)
                        redraw = None
                    self._close_bar()
                else:
                    self.stream.write("\n")
                self._just_drew = False
            elif redraw is not None:
                redraw += part
            elif part:
                self._just_drew = False
                self.stream.write(part)
        if redraw is not None:
            self._take(redraw)
            self._just_drew = True
        return len(text)

    def _take(self, status: str) -> None:
        status = status.rstrip()
        if not status:
            # tqdm clears a bar that does not stay with blanks: the bar is done.
            self._close_bar()
            return
        if self._bar_open and _without_timing(status) == _without_timing(self._last_printed):
            # Only the clock moved since the last line: nothing worth a line, now or at the end.
            self._latest = None
            return
        self._latest = status
        now = time.monotonic()
        if not self._bar_open or now - self._last_line >= self.interval:
            self._bar_open = True
            self._print_latest(now)

    def _close_bar(self) -> None:
        self._print_latest()
        self._bar_open = False

    def _print_latest(self, now: float | None = None) -> None:
        if self._latest is not None:
            self.stream.write(self._latest + "\n")
            self.stream.flush()
            self._last_printed = self._latest
            self._latest = None
            self._last_line = time.monotonic() if now is None else now

    def flush(self) -> None:
        self.stream.flush()

    def finish(self) -> None:
        """Print the last state of a bar that never closed (e.g. after an exception)."""
        self._close_bar()
        self._just_drew = False
        self.flush()


def use_lines(mode: str = "auto", stream: TextIO | None = None) -> bool:
    """Whether ``mode`` means plain lines on ``stream`` (default ``sys.stderr``).

    Arguments:
        mode: One of :data:`MODES`; ``"auto"`` chooses lines unless ``stream`` is a terminal.
        stream: The stream the bar would write to.
    """
    mode = check_choice("mode", mode, MODES)
    stream = sys.stderr if stream is None else stream
    if mode == "auto":
        isatty = getattr(stream, "isatty", None)
        return not (callable(isatty) and isatty())
    return mode == "lines"


def progress_bar(
    iterable: Iterable[Any],
    *,
    desc: str | None = None,
    unit: str = "it",
    enabled: bool = True,
    mode: str = "auto",
    interval: float = DEFAULT_INTERVAL,
    **options: Any,
) -> tqdm:
    """A tqdm bar over ``iterable``: a bar on a terminal, lines every ``interval`` s otherwise.

    Arguments:
        iterable: What to iterate over.
        desc, unit: tqdm's label and unit.
        enabled: ``False`` shows nothing (as ``mode="none"``).
        mode: One of :data:`MODES`.
        interval: Seconds between two lines in lines mode.
        options: More tqdm keywords.

    Returns:
        The tqdm bar (``set_postfix``, ``close`` and iteration work as usual).

    Example:
        >>> bar = progress_bar(range(epochs), desc="training", unit="epoch", enabled=progress)
        >>> for epoch in bar: ...
    """
    mode = check_choice("mode", mode, MODES)
    if mode == "auto" and _CHOSEN[0] is not None:
        mode = _CHOSEN[0]
    disable = not enabled or mode == "none"
    if not disable and use_lines(mode) and not isinstance(sys.stderr, LineStream):
        options["file"] = LineStream(sys.stderr, interval)
    return tqdm(iterable, desc=desc, unit=unit, disable=disable, **options)


@contextlib.contextmanager
def progress_output(mode: str = "auto", interval: float = DEFAULT_INTERVAL) -> Iterator[bool]:
    """Within the block, progress bars written to ``sys.stderr`` follow ``mode``.

    In lines mode (``"lines"``, or ``"auto"`` when stderr is not a terminal) ``sys.stderr`` is a
    :class:`LineStream` over the real one for the duration; otherwise nothing changes.

    Arguments:
        mode: One of :data:`MODES`.
        interval: Seconds between two lines of one bar.

    Yields:
        Whether bars should be shown at all (``False`` for ``mode="none"``): pass it on as the
        ``progress=`` argument of :func:`pyro_vi.train.fit` or ``train_spec``.
    """
    mode = check_choice("mode", mode, MODES)
    interval = check_float("interval", interval, minimum=0.0)
    previous = _CHOSEN[0]
    _CHOSEN[0] = mode  # bars made inside follow it (progress_bar with mode="auto")
    try:
        if mode == "none" or not use_lines(mode) or isinstance(sys.stderr, LineStream):
            yield mode != "none"
            return
        stream = LineStream(sys.stderr, interval)
        try:
            with contextlib.redirect_stderr(stream):
                yield True
        finally:
            stream.finish()
    finally:
        _CHOSEN[0] = previous


#: The mode a surrounding progress_output chose, which bars with mode="auto" follow.
_CHOSEN: list[str | None] = [None]
