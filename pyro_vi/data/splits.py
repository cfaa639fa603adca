"""Held-out splits drawn at random from one set of datapoints, and the check that two splits
share no datapoint.

A held-out split is a seeded permutation's first ``round(fraction * N)`` datapoints; both it and
the rest keep the original order, so "the first N" of a split (``data.limit``) still means the
first in the file. The same seed always draws the same split, and the global numpy and torch
random generators are left untouched.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from .._checks import check_float, check_int

__all__ = ["VALIDATION_STREAM", "check_disjoint", "split_indices"]

#: Mixed into the seed of a validation split, so that it is not drawn from the same stream as a
#: test split made with the same seed.
VALIDATION_STREAM = 1


def split_indices(
    count: int, fraction: float, seed: int, *, name: str = "fraction", stream: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(count)`` at random into the rest and a held-out part of ``fraction``.

    Arguments:
        count: N, the number of datapoints.
        fraction: The held-out share, strictly between 0 and 1.
        seed: Seeds the permutation (with ``stream``).
        name: The argument or key that set ``fraction``, for messages (``"data.validation"``).
        stream: Another integer mixed into the seed: two splits with the same seed and
            different streams are drawn independently.

    Returns:
        ``(rest, held_out)``: sorted int64 index tensors, disjoint, together ``range(count)``.

    Raises:
        ValueError: a fraction outside (0, 1), or one that leaves either part empty.

    Example:
        >>> rest, held_out = split_indices(10, 0.2, seed=0)
        >>> len(rest), len(held_out)
        (8, 2)
    """
    fraction = check_float(name, fraction, minimum=0.0, maximum=1.0, exclusive_minimum=True)
    count = check_int("count", count, minimum=0)
    seed = check_int("seed", seed, minimum=0)
    held = round(fraction * count)
    if not 1 <= held <= count - 1:
        raise ValueError(
            f"{name} = {fraction} of {count} datapoint(s) holds out {held}, leaving "
            f"{count - held}: both parts need at least one datapoint (an empty split); allowed: "
            + (
                f"a fraction between {1 / count:.3g} and {(count - 1) / count:.3g}, or more data"
                if count >= 2
                else "at least 2 datapoints, so that each part holds one"
            )
        )
    order = np.random.default_rng((seed, stream)).permutation(count)
    held_out = np.sort(order[:held])
    rest = np.sort(order[held:])
    return torch.from_numpy(rest), torch.from_numpy(held_out)


def _row_digests(values: torch.Tensor) -> list[bytes]:
    """A digest of each datapoint's bytes: equal datapoints, equal digests."""
    rows = values.detach().cpu().contiguous().reshape(len(values), -1).numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


def check_disjoint(
    train: torch.Tensor, other: torch.Tensor, *, name: str, train_name: str = "the training set"
) -> None:
    """Raise when a datapoint of ``other`` equals one of ``train``: a split that leaks.

    Two datapoints are the same when every value is equal; a held-out file that repeats rows of
    the training file would make its loss a training loss in disguise.

    Arguments:
        train: The training split ``[N, ...]``.
        other: The held-out split ``[M, ...]``, the same datapoint shape.
        name: What ``other`` is, for the message (``"data.validation_path 'val.npz'"``).
        train_name: What ``train`` is, for the message.

    Raises:
        ValueError: naming how many datapoints overlap and the first of them.
    """
    seen = set(_row_digests(train))
    shared = [index for index, digest in enumerate(_row_digests(other)) if digest in seen]
    if shared:
        raise ValueError(
            f"{name} overlaps {train_name}: {len(shared)} of its {len(other)} datapoint(s) also "
            f"occur in it (the first: index {shared[0]}); a held-out split must share no "
            "datapoint with the training data. Remove them, or hold out a fraction instead "
            "(data.validation = 0.1)"
        )
