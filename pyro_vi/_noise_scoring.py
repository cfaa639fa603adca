"""Whether a distribution may score its own reparameterized sample from the noise it drew.

log q(z) computed from the noise (``-eps^2 / 2 - log sigma - ...`` for z = mu + eps * sigma) has
the value and the total derivative in q's parameters of the general formula, but its gradient
does not pass through z. An estimator that treats the gradient reaching z differently from the
rest (DReG in one backward pass, which rescales it with a hook on z) needs every path to go
through z, and turns the shortcut off while it computes its log-weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_ENABLED = [True]


def enabled() -> bool:
    """Whether scoring from the noise is allowed now."""
    return _ENABLED[0]


@contextmanager
def through_samples() -> Iterator[None]:
    """Within the block, every log-density is computed from the sample itself."""
    previous = _ENABLED[0]
    _ENABLED[0] = False
    try:
        yield
    finally:
        _ENABLED[0] = previous
