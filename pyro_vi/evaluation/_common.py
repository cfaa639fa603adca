"""Argument checks and batching shared by the evaluation functions."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from pyro_vi._checks import check_finite, describe


def _check_pair(model: Callable, guide: Callable) -> None:
    if not callable(model):
        raise TypeError(f"model must be a callable Pyro model, got {describe(model)}")
    if not callable(guide):
        raise TypeError(f"guide must be a callable Pyro guide, got {describe(guide)}")


def _check_plate_name(data_plate: str | None) -> None:
    if data_plate is not None and not isinstance(data_plate, str):
        raise TypeError(f"data_plate must be a plate name or None, got {describe(data_plate)}")


def _check_no_num_data(kwargs: dict, function: str) -> None:
    if "num_data" in kwargs:
        raise ValueError(
            f"{function} got num_data={kwargs['num_data']!r}; it evaluates each datapoint on its "
            "own, without the minibatch scale N/B, so leave num_data out"
        )


def _check_data(args: tuple, function: str) -> None:
    """The data arguments: at least one datapoint, and finite values (a NaN would otherwise be
    an error deep in torch, or a NaN answer)."""
    for position, value in enumerate(args):
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            continue
        if len(value) == 0:
            raise ValueError(
                f"{function}: argument {position} has no datapoints (shape {tuple(value.shape)}); "
                "pass at least one"
            )
        check_finite(f"{function}: argument {position}", value, "the data must be finite")


def _batches(
    args: tuple, batch_size: int | None, kwargs: dict | None = None
) -> Iterator[tuple[tuple, int | None]]:
    """(args of one batch, its number of rows): every tensor argument with at least one
    dimension is cut along its first dimension; other arguments are passed whole. Keyword
    arguments are passed whole: one with a row per datapoint (labels ``y=...``) is refused when
    the data are cut, since each batch would meet all of its rows (an error deep in the
    program, or a wrong answer)."""
    rows = {a.shape[0] for a in args if isinstance(a, torch.Tensor) and a.dim() > 0}
    if len(rows) > 1:
        raise ValueError(
            f"the tensor arguments have different first dimensions {sorted(rows)}; batch_size "
            "cuts them all along the first dimension (the datapoints), so they must agree"
        )
    if batch_size is None or not rows:
        yield args, (rows.pop() if rows else None)
        return
    (count,) = rows
    if count > batch_size:
        for name, value in (kwargs or {}).items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and len(value) == count:
                raise ValueError(
                    f"keyword argument {name}= has a row per datapoint (shape "
                    f"{tuple(value.shape)}), but batch_size={batch_size} cuts only the positional "
                    "arguments; pass it positionally (model(x, y) as log_likelihood(model, "
                    "guide, x, y)), or batch_size=None"
                )
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        batch = tuple(
            a[start:stop] if isinstance(a, torch.Tensor) and a.dim() > 0 else a for a in args
        )
        yield batch, stop - start


def _plate_names(site: dict) -> set[str]:
    return {frame.name for frame in site["cond_indep_stack"]}


def _is_latent(site: dict) -> bool:
    return site["type"] == "sample" and not site["is_observed"]
