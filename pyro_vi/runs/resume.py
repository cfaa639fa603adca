"""What may change when a run is resumed, and the tag that ties a checkpoint to its spec.

A run resumed with ``pyro-vi train --resume RUN`` must be the same run: every key of the spec
that shapes the model, the data, the objective or the optimization must equal ``RUN/spec.toml``'s,
or the resumed parameters would not be an uninterrupted run's (and loading them might not even
fit). A few keys say how long, where, and how a run is watched, and may change
(:data:`MAY_CHANGE`): training longer (``training.epochs``), a new time budget, a new number of
evaluation particles, checkpoint frequency, the device, the step's capture and the CPU threads
(then not bit for bit: each rounds differently), the data's folder, and the tracking backends.

The tag given to :func:`pyro_vi.train.fit` (stored in the training state and checked on resume)
is a hash of the keys that must not change (:func:`spec_tag`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pyro_vi.spec import Spec, SpecError
from pyro_vi.spec.resolve import SECTIONS, TOP_LEVEL

__all__ = [
    "MAY_CHANGE",
    "check_same_run",
    "flat_spec",
    "may_change",
    "spec_differences",
    "spec_tag",
]

#: Dotted keys (or whole sections) a resumed run may change.
MAY_CHANGE = (
    "name",
    "description",
    "data.dir",
    "training.epochs",
    "training.max_seconds",
    "training.eval_samples",
    "training.checkpoint_every",
    "training.device",
    "training.compile",
    "training.threads",
    "log",
)


def flat_spec(spec: Spec) -> dict[str, Any]:
    """Every key of ``spec`` as ``{"section.key.subkey": value}`` (unset keys as ``None``)."""
    out: dict[str, Any] = {key: getattr(spec, key) for key in TOP_LEVEL}
    for section in SECTIONS:
        _flatten(getattr(spec, section), section, out)
    return out


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}", out)
    else:
        out[prefix] = value


def may_change(key: str) -> bool:
    """Whether a resumed run may change the dotted spec ``key`` (:data:`MAY_CHANGE`)."""
    return any(key == allowed or key.startswith(f"{allowed}.") for allowed in MAY_CHANGE)


_may_change = may_change


def spec_differences(saved: Spec, requested: Spec) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, requested value)`` for every key that differs (``None``: unset or
    absent), in the spec's order."""
    old, new = flat_spec(saved), flat_spec(requested)
    keys = list(old) + [key for key in new if key not in old]
    return [(key, old.get(key), new.get(key)) for key in keys if old.get(key) != new.get(key)]


def check_same_run(saved: Spec, requested: Spec, folder: str | Path) -> list[tuple[str, Any, Any]]:
    """Refuse a resume whose spec differs from the run's in a key outside :data:`MAY_CHANGE`.

    Returns:
        The differences that are allowed (to report them).

    Raises:
        SpecError: listing every key that differs and must not, with both values.
    """
    differences = spec_differences(saved, requested)
    refused = [(key, old, new) for key, old, new in differences if not _may_change(key)]
    if refused:
        listed = "; ".join(
            f"{key}: run {_show(old)}, requested {_show(new)}" for key, old, new in refused
        )
        raise SpecError(
            f"cannot resume {str(folder)!r} with a different spec: {len(refused)} field(s) "
            f"differ from its spec.toml ({listed}). Resume with the run's own spec (pyro-vi "
            "train --resume RUN, without SPEC), or train a new run. Only "
            f"{list(MAY_CHANGE)} may change on resume"
        )
    return [(key, old, new) for key, old, new in differences if _may_change(key)]


#: Keys added after runs were first tagged: left out of the tag while unset, so that a run
#: started before they existed keeps its tag (and still resumes).
LATER_KEYS = ("training.early_stopping",)


def spec_tag(spec: Spec) -> str:
    """A hash of the keys that must not change on resume (16 hex digits): the ``tag`` of
    :func:`pyro_vi.train.fit`."""
    kept = {
        key: value
        for key, value in flat_spec(spec).items()
        if not _may_change(key) and not (key in LATER_KEYS and value is None)
    }
    text = json.dumps(kept, sort_keys=True, default=str)
    return "spec-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _show(value: Any) -> str:
    return "unset" if value is None else repr(value)
