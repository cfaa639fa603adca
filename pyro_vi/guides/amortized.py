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
            A tuple of positions and names, e.g. ``(0, 1)`` for ``model(x, y)``, makes the
            encoder read several arguments, ``encoder(x, y)``; the first one is the data
            tensor that fixes the batch size, device and dtype (see
            :class:`~pyro_vi.models.conditional.ConditionalEncoder`).
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
        data_arg: int | str | tuple[int | str, ...] | None = 0,
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
        data_arg = _check_data_arg(data_arg)
        if isinstance(data_arg, tuple) and len(data_arg) > 1 and self._hidden is not None:
            raise ValueError(
                f"data_arg={data_arg!r} makes the encoder read {len(data_arg)} arguments, but an "
                "encoder built from hidden sizes reads the data alone; pass an nn.Module taking "
                "those arguments (e.g. pyro_vi.models.conditional.ConditionalEncoder)"
            )
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

    def _encoder_inputs(self, args: tuple, kwargs: dict) -> tuple[Any, ...] | None:
        """The arguments the encoder reads, the data tensor first; ``None`` without data."""
        if self.data_arg is None:
            return None
        names = self.data_arg if isinstance(self.data_arg, tuple) else (self.data_arg,)
        inputs = []
        for name in names:
            try:
                inputs.append(args[name] if isinstance(name, int) else kwargs[name])
            except (IndexError, KeyError):
                raise ValueError(
                    f"data_arg={self.data_arg!r} names no argument {name!r} of this call (got "
                    f"{len(args)} positional arguments and keywords {sorted(kwargs)})"
                ) from None
        if not isinstance(inputs[0], torch.Tensor):
            raise TypeError(f"the data argument must be a torch.Tensor, got {describe(inputs[0])}")
        return tuple(inputs)

    def _data(self, args: tuple, kwargs: dict) -> torch.Tensor | None:
        inputs = self._encoder_inputs(args, kwargs)
        return None if inputs is None else inputs[0]

    def _setup(self, args: tuple, kwargs: dict) -> None:
        inputs = self._encoder_inputs(args, kwargs)
        x = None if inputs is None else inputs[0]
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
            inputs = (x,)
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
            features = self.encoder(*_first_rows(inputs, len(x))).shape[-1]
        for site in self.structure.sites:
            width = features if site.local else self.global_features
            family = make_family(self.family_name, site.dim, width, **self.family_options)
            self.families[_key(site.name)] = family.to(device=x.device, dtype=x.dtype)
            if not site.local:
                context = x.new_zeros(self.global_features)
                self.global_contexts[_key(site.name)] = nn.Parameter(context)

    # -- the guide ----------------------------------------------------------------------------

    def context(self, x: torch.Tensor, *extra: Any) -> torch.Tensor:
        """The features h(x) ``[B, F]`` that the local posteriors are conditioned on.

        ``extra`` holds the further encoder inputs of a tuple ``data_arg`` (e.g. the labels).
        """
        if self._fixed_context is not None:
            return self._fixed_context
        return self.encoder(x, *extra)

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
        if site.is_flat_real:
            return base
        return dist.TransformedDistribution(base, [site.transform()])

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        if self.structure is None:
            self._setup(args, kwargs)
        inputs = self._encoder_inputs(args, kwargs)
        x = None if inputs is None else inputs[0]
        samples = {}
        local = [site for site in self.structure.sites if site.local]
        for site in self.structure.sites:
            if not site.local:
                context = self.global_contexts[_key(site.name)]
                samples[site.name] = pyro.sample(site.name, self.posterior(site, context))
        if local:
            context = self.context(*inputs)
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


def _check_data_arg(data_arg: Any) -> int | str | tuple[int | str, ...] | None:
    """``data_arg`` checked: ``None``, a position, a keyword name, or a non-empty tuple of them."""

    def is_name(value: Any) -> bool:
        return isinstance(value, int | str) and not isinstance(value, bool)

    if data_arg is None or is_name(data_arg):
        return data_arg
    if isinstance(data_arg, tuple | list) and data_arg and all(is_name(a) for a in data_arg):
        return tuple(data_arg)
    raise TypeError(
        "data_arg must be a position, a keyword name, a non-empty tuple of them, or None, got "
        f"{data_arg!r}"
    )


def _first_rows(inputs: tuple[Any, ...], batch_size: int) -> tuple[Any, ...]:
    """The first datapoint of each encoder input that runs along the batch (a cheap probe)."""
    return tuple(
        value[:1]
        if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == batch_size
        else value
        for value in inputs
    )


def _key(name: str) -> str:
    # ModuleDict keys cannot contain dots; site names can.
    return name.replace(".", "__dot__")
