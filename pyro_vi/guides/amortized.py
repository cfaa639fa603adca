"""An amortized autoguide: one call turns a Pyro model and an encoder into a per-datapoint guide.

Given ``model(x, ...)``, :class:`AmortizedGuide` runs the model once (at its first call), finds
its latent sites, their shapes and supports, and builds

- for each latent local to the data plate: q(z_i | x_i) = T(family(h(x_i))), where h is the
  encoder's features of datapoint i, ``family`` a posterior family over the reals
  (:mod:`pyro_vi.guides.families`) and T = ``biject_to(support)`` after a reshape, so that
  positive, unit-interval or simplex latents are handled;
- for each global latent (outside every plate): the same family with a learned constant context,
  a non-amortized guide.

The guide samples each local latent inside a data plate of the same name as the model's, scaled
by ``num_data / B`` when the guide is called with ``num_data`` (the package's convention for
minibatches).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vi._checks import check_int, describe
from pyro_vi._module import UniquePyroModule
from pyro_vi.guides import families
from pyro_vi.guides._sites import LatentSite, ModelStructure, inspect_model, plate_for
from pyro_vi.guides.families import make_family
from pyro_vi.nets import MLPEncoder


class AmortizedGuide(UniquePyroModule):
    """q(z | x) for every latent of ``model``: amortized for local latents, learned for global.

    Arguments:
        model: The Pyro model; its first call's arguments are inspected at the guide's first call.
        encoder: An ``nn.Module`` from the data ``[B, ...]`` to features ``[B, F]``, or a list of
            hidden sizes for an MLP encoder (``MLPEncoder``) built at the first call; ``None``
            for a model whose latents are all global.
        family: Name of the posterior family (``"diagonal"``, ``"full_rank"``, ``"low_rank"``,
            ``"mixture"``, ``"iaf"``, ...), one per latent site.
        family_options: Options of the family (e.g. ``{"num_steps": 4}``).
        data_arg: Which argument of the model is the data the encoder reads: a position in
            ``args``, a keyword name, or ``None`` for a model without data whose latents are
            all global (e.g. an unnormalized target density): the encoder is then unused, and
            the families start on the default device and dtype (move the guide with ``.to``).
        data_plate: Name of the model's data plate; detected when ``None``.
        global_features: Size of the learned context of global latents.
        activation: Activation of an MLP encoder built from hidden sizes.

    Example:
        >>> guide = AmortizedGuide(model, encoder=[200, 200], family="iaf")
        >>> svi = SVI(model, guide, Adam({"lr": 1e-3}), loss=get("iwae", num_particles=5))
    """

    def __init__(
        self,
        model: Callable,
        encoder: nn.Module | Sequence[int] | None = None,
        family: str = "diagonal",
        family_options: dict[str, Any] | None = None,
        *,
        data_arg: int | str | None = 0,
        data_plate: str | None = None,
        global_features: int = 16,
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        if not callable(model):
            raise TypeError(f"model must be a callable Pyro model, got {describe(model)}")
        if encoder is None:
            self.encoder = None
            self._hidden = None
        elif isinstance(encoder, nn.Module):
            self.encoder = encoder
            self._hidden = None
        elif isinstance(encoder, Sequence) and not isinstance(encoder, str) and encoder:
            self.encoder = None
            self._hidden = [check_int(f"encoder[{i}]", h, minimum=1) for i, h in enumerate(encoder)]
        else:
            raise TypeError(
                f"encoder must be an nn.Module or a non-empty list of hidden sizes, got "
                f"{describe(encoder)}"
            )
        if data_arg is not None and (
            not isinstance(data_arg, int | str) or isinstance(data_arg, bool)
        ):
            raise TypeError(f"data_arg must be a position or a keyword name, got {data_arg!r}")
        # The model is kept out of the module tree: it has parameters of its own that the guide
        # must not register or move.
        self.__dict__["_model"] = model
        self.family_name = family
        self.family_options = dict(family_options or {})
        _check_family(family, self.family_options)
        self.data_arg = data_arg
        self.data_plate_name = data_plate
        self.global_features = check_int("global_features", global_features, minimum=1)
        self.activation = activation
        self.structure: ModelStructure | None = None
        self.families = nn.ModuleDict()
        self.global_contexts = nn.ParameterDict()
        self._fixed_context: torch.Tensor | None = None

    # -- set-up at the first call -------------------------------------------------------------

    def _data(self, args: tuple, kwargs: dict) -> torch.Tensor | None:
        if self.data_arg is None:
            return None
        try:
            x = args[self.data_arg] if isinstance(self.data_arg, int) else kwargs[self.data_arg]
        except (IndexError, KeyError):
            raise ValueError(
                f"data_arg={self.data_arg!r} names no argument of this call (got {len(args)} "
                f"positional arguments and keywords {sorted(kwargs)})"
            ) from None
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"the data argument must be a torch.Tensor, got {describe(x)}")
        return x

    def _setup(self, args: tuple, kwargs: dict) -> None:
        x = self._data(args, kwargs)
        model_kwargs = {k: v for k, v in kwargs.items() if k != "num_data"}
        self.structure = inspect_model(self._model, args, model_kwargs, self.data_plate_name)
        if x is None:
            local = [site.name for site in self.structure.sites if site.local]
            if local:
                raise ValueError(
                    f"data_arg=None, but the model has latents local to its data plate {local}: "
                    "name the argument the encoder reads with data_arg"
                )
            x = torch.zeros(1, 1)  # only fixes the families' device and dtype (the defaults)
            if self.encoder is None:
                self.encoder = nn.Identity()
        if self.encoder is None and self._hidden is None:
            raise ValueError(
                "the model has latents local to its data plate: pass an encoder (an nn.Module or "
                "a list of hidden sizes) to amortize them"
            )
        if self.encoder is None:
            self.encoder = MLPEncoder(tuple(x.shape[1:]), self._hidden, self.activation)
        self.encoder.to(device=x.device)
        with torch.no_grad():
            features = self.encoder(x[:1]).shape[-1]
        for site in self.structure.sites:
            width = features if site.local else self.global_features
            family = make_family(self.family_name, site.dim, width, **self.family_options)
            self.families[_key(site.name)] = family.to(device=x.device, dtype=x.dtype)
            if not site.local:
                context = x.new_zeros(self.global_features)
                self.global_contexts[_key(site.name)] = nn.Parameter(context)

    # -- the guide ----------------------------------------------------------------------------

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """The features h(x) ``[B, F]`` that the local posteriors are conditioned on."""
        if self._fixed_context is not None:
            return self._fixed_context
        return self.encoder(x)

    @contextlib.contextmanager
    def fixed_context(self, context: torch.Tensor) -> Iterator[None]:
        """Within the block, local posteriors use ``context`` ``[B, F]`` instead of the encoder's
        output: per-datapoint variational parameters (see :func:`pyro_vi.guides.refine`)."""
        self._fixed_context = context
        try:
            yield
        finally:
            self._fixed_context = None

    def posterior(self, site: LatentSite, context: torch.Tensor) -> dist.TorchDistribution:
        """The distribution of one latent site given its context (batch ``[B]`` or ``[]``)."""
        base = self.families[_key(site.name)](context)
        return dist.TransformedDistribution(base, [site.transform()])

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        if self.structure is None:
            self._setup(args, kwargs)
        x = self._data(args, kwargs)
        samples = {}
        local = [site for site in self.structure.sites if site.local]
        for site in self.structure.sites:
            if not site.local:
                context = self.global_contexts[_key(site.name)]
                samples[site.name] = pyro.sample(site.name, self.posterior(site, context))
        if local:
            context = self.context(x)
            with plate_for(self.structure, x, kwargs.get("num_data")):
                for site in local:
                    samples[site.name] = pyro.sample(site.name, self.posterior(site, context))
        return samples


def _check_family(name: str, family_options: dict[str, Any]) -> None:
    """Fail at construction, not at the first call, on an unknown family or option name."""
    allowed = families.options(name)
    unknown = sorted(set(family_options) - set(allowed))
    if unknown:
        raise ValueError(
            f"family {name!r} takes no option {unknown[0]!r}; its options are {sorted(allowed)}"
        )


def _key(name: str) -> str:
    # ModuleDict keys cannot contain dots; site names can.
    return name.replace(".", "__dot__")
