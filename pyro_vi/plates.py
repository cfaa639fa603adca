"""The data plate shared by every model and guide of the package.

Models and guides must agree on the plate that holds the datapoints, including its subsampling
scale, or the ELBO mixes scaled and unscaled terms. Both build it with :func:`data_plate`.
"""

from __future__ import annotations

import pyro
import torch

from pyro_vi._checks import check_int

DATA_PLATE = "data"


def data_plate(x: torch.Tensor, num_data: int | None = None, name: str = DATA_PLATE) -> pyro.plate:
    """A ``pyro.plate`` over the first dimension of ``x``, scaled for minibatches.

    With ``num_data=None`` the plate has ``len(x)`` elements and scale 1. With ``num_data=N`` the
    minibatch ``x`` of ``B`` rows stands for a dataset of ``N`` datapoints: every log-density
    inside the plate is multiplied by ``N / B``, so that the minibatch ELBO is an unbiased
    estimate of the full-data ELBO.

    Arguments:
        x: The minibatch, shape ``[B, ...]``.
        num_data: Size ``N`` of the whole dataset, or ``None`` when ``x`` is all of it.
        name: The plate's name.

    Returns:
        The plate (a context manager), at ``dim=-1``.

    Example:
        >>> with data_plate(x, num_data=60000):
        ...     pyro.sample("z", dist.Normal(0.0, 1.0).expand([len(x), 2]).to_event(1))
    """
    batch_size = x.shape[0]
    if num_data is None:
        return pyro.plate(name, batch_size, dim=-1)
    num_data = check_int("num_data", num_data, minimum=batch_size)
    # An explicit subsample makes Pyro apply the scale N / B without drawing random indices:
    # the caller has already chosen the minibatch.
    subsample = torch.arange(batch_size, device=x.device)
    return pyro.plate(name, num_data, subsample=subsample, dim=-1)
