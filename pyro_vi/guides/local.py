"""Non-amortized inference: free variational parameters for every datapoint.

The classic stochastic VI guide (Hoffman et al. 2013) next to the encoder of a VAE: datapoint i
has a context h_i of its own, a free parameter, and q(z_i) = T(family(h_i)) with the same
families as the amortized guide. With a family whose heads are linear in h (the Gaussians), a
free h_i of at least 2 x dim features represents any member of the family.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from pyro_vi._checks import check_int, describe
from pyro_vi.guides.amortized import AmortizedGuide


class ContextTable(nn.Module):
    """A table of per-datapoint contexts h_i, ``[num_data, features]``, indexed by datapoint."""

    def __init__(self, num_data: int, features: int) -> None:
        super().__init__()
        self.table = nn.Parameter(0.01 * torch.randn(num_data, features))
        self.index: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = torch.arange(len(x), device=x.device) if self.index is None else self.index
        return self.table[index]


class LocalGuide(AmortizedGuide):
    """q(z_i) with free parameters per datapoint for every local latent of ``model``.

    Called with the whole data set (``len(x) == num_data``, datapoint i in row i), or with a
    minibatch and an ``index`` keyword (a LongTensor of the rows' positions in the data set), which
    the model must then accept too, since Pyro passes the same arguments to both.

    Arguments:
        model: The Pyro model.
        num_data: N, the number of datapoints.
        family: Posterior family name (see :class:`AmortizedGuide`).
        family_options: Its options.
        features: Size of each datapoint's free context h_i.
        data_arg, data_plate, global_features: As for :class:`AmortizedGuide`.

    Example:
        >>> guide = LocalGuide(model, num_data=len(x), family="full_rank")
        >>> svi = SVI(model, guide, Adam({"lr": 1e-2}), loss=get("elbo"))
    """

    def __init__(
        self,
        model: Callable,
        num_data: int,
        family: str = "diagonal",
        family_options: dict[str, Any] | None = None,
        *,
        features: int = 16,
        data_arg: int | str = 0,
        data_plate: str | None = None,
        global_features: int = 16,
    ) -> None:
        self.num_data = check_int("num_data", num_data, minimum=1)
        table = ContextTable(self.num_data, check_int("features", features, minimum=1))
        super().__init__(
            model,
            table,
            family,
            family_options,
            data_arg=data_arg,
            data_plate=data_plate,
            global_features=global_features,
        )

    def _setup(self, args: tuple, kwargs: dict) -> None:
        # The table is made before the data is seen, in the default dtype; the families are
        # built in the data's floating dtype, so the table follows it (float64 data would
        # otherwise meet float32 contexts inside the families' linear heads).
        x = self._data(args, kwargs)
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            self.encoder.to(dtype=x.dtype)
        super()._setup(args, kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        x = self._data(args, kwargs)
        index = kwargs.get("index")
        if index is None and len(x) != self.num_data:
            raise ValueError(
                f"a LocalGuide for num_data={self.num_data} datapoints was called with {len(x)} "
                "rows and no index=: pass the whole data set, or index= with the rows' positions"
            )
        if index is not None and not isinstance(index, torch.Tensor):
            raise TypeError(f"index must be a LongTensor of row positions, got {describe(index)}")
        self.encoder.index = index
        try:
            return super().forward(*args, **kwargs)
        finally:
            self.encoder.index = None

    def _batch_context(self, inputs: tuple[Any, ...], index: torch.Tensor | None) -> torch.Tensor:
        # A model that subsamples its data plate: the table rows are the plate's indices (the
        # datapoints' positions), not the positions 0..B-1 within the minibatch.
        if index is not None:
            self.encoder.index = index
        return super()._batch_context(inputs, index)
