"""The reconstruction term E_q log p(x_i | z) of the ELBO (not a bound)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro import poutine

from pyro_vi._callables import eval_mode
from pyro_vi._checks import check_int
from pyro_vi.evaluation._common import (
    _batches,
    _check_no_num_data,
    _check_pair,
)


def reconstruction_log_likelihood(
    model: Callable,
    guide: Callable,
    *args: Any,
    observed_site: str = "x",
    batch_size: int | None = None,
    **kwargs: Any,
) -> float:
    """The mean reconstruction term E_{q(z | x_i)}[log p(x_i | z)] over the datapoints, one draw.

    The first term of the ELBO, and for a plain autoencoder (a point-mass guide and no prior) the
    whole training objective. It is not a bound on log p(x): a model can reconstruct perfectly
    and still assign new data no probability. Comparing it across a VAE and an autoencoder shows
    what the KL term costs in reconstruction.

    Arguments:
        model, guide: Pyro callables taking ``*args, **kwargs``; ``observed_site`` must be an
            observed site of the model (unscaled: do not pass ``num_data``).
        *args: The data, datapoints along the first dimension.
        observed_site: The site holding the data.
        batch_size: Datapoints per pass; ``None`` for all at once.

    Returns:
        (1/N) sum_i log p(x_i | z_i) with z_i ~ q(z | x_i), nats per datapoint.
    """
    _check_pair(model, guide)
    _check_no_num_data(kwargs, "reconstruction_log_likelihood")
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    total, count = 0.0, 0
    with torch.no_grad(), eval_mode(model, guide):
        for batch, rows in _batches(args, batch_size, kwargs):
            guide_trace = poutine.trace(guide).get_trace(*batch, **kwargs)
            replayed = poutine.replay(model, trace=guide_trace)
            model_trace = poutine.trace(replayed).get_trace(*batch, **kwargs)
            node = model_trace.nodes.get(observed_site)
            if node is None or not node.get("is_observed"):
                observed = [n for n, s in model_trace.nodes.items() if s.get("is_observed")]
                raise ValueError(
                    f"observed_site={observed_site!r} is not an observed site of the model; its "
                    f"observed sites are {observed}"
                )
            total += float(node["fn"].log_prob(node["value"]).sum())
            count += rows or 1
    return total / count
