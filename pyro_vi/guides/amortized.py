"""An amortized autoguide: one call turns a Pyro model and an encoder into a per-datapoint guide.

Given ``model(x, ...)``, :class:`AmortizedGuide` runs the model once (at its first call), finds
its latent sites, their shapes, supports and plates, and builds

- for each latent local to the data plate: q(z_i | x_i) = T(family(h(x_i))), where h is the
  encoder's features of datapoint i, ``family`` a posterior family over the reals
  (:mod:`pyro_vi.guides.families`) and T = ``biject_to(support)`` after a reshape, so that
  positive, unit-interval or simplex latents are handled;
- for a local latent that also lies in inner plates (one value per datapoint and feature, say):
  q(z_ij | x_i) = T(family(A_j h(x_i) + c_j)), one learned linear map per element j of the inner
  plates, sampled in the same plates as the model's (independent over j given x_i);
- for each global latent (outside every plate): the same family with a learned constant context,
  a non-amortized guide.

The data the encoder reads is the model's argument ``data_arg`` (or several of them), with the
datapoints along its *first* dimension whatever the data plate's ``dim``: ``[N]`` (a scalar per
datapoint, e.g. a count), ``[N, D]``, ``[N, C, H, W]``. From a list of hidden sizes the encoder
is an MLP built at the first call for the per-datapoint shape it sees; several arguments are
flattened per datapoint and concatenated (:class:`~pyro_vi.nets.ConcatMLPEncoder`).

The guide samples the local latents inside the model's data plate, opened with the same name and
dim (explicit or allocated by Pyro under automatic dims), and

- when the model subsamples it (``pyro.plate("data", N, subsample_size=B) as index`` and
  ``x[index]`` in the model): the same plate over ``len(x) = N`` rows; the guide encodes the rows
  of the plate's indices, and Pyro replays those indices into the model;
- when the guide is called with ``num_data`` (the package's convention for minibatches): over
  the B rows of ``x``, scaled by ``num_data / B``.
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
from pyro_vi._registry import check_options
from pyro_vi.guides import families
from pyro_vi.guides._sites import (
    LatentSite,
    ModelStructure,
    inner_plates,
    inspect_model,
    plate_for,
)
from pyro_vi.guides.families import make_family
from pyro_vi.nets import ConcatMLPEncoder, MLPEncoder


class AmortizedGuide(UniquePyroModule):
    """q(z | x) for every latent of ``model``: amortized for local latents, learned for global.

    Supported models: data of any per-datapoint shape; a data plate at any dim (explicit or
    automatic), found as the outermost plate shared by the observed sites or named by
    ``data_plate``; local latents that also lie in further (non-subsampled) plates; a data plate
    the model subsamples with ``subsample_size``. Refused with a ``ValueError`` at the first
    call: global latents inside a plate other than the data plate, local latents in a subsampled
    inner plate, a data plate with explicit ``subsample=`` indices, a data argument whose rows are
    not the data plate's datapoints.

    Arguments:
        model: The Pyro model; its first call's arguments are inspected at the guide's first call.
        encoder: An ``nn.Module`` from the data ``[B, ...]`` to features ``[B, F]``, or a list of
            hidden sizes for an MLP encoder built at the first call for the per-datapoint shape
            of the data (``MLPEncoder``; ``ConcatMLPEncoder`` for several data arguments, which
            reads their flattened datapoints concatenated in the order of ``data_arg``); ``None``
            for a model whose latents are all global.
        family: Name of the posterior family (``"diagonal"``, ``"full_rank"``, ``"low_rank"``,
            ``"mixture"``, ``"iaf"``, ...), one per latent site.
        family_options: Options of the family (e.g. ``{"num_steps": 4}``).
        data_arg: Which argument of the model is the data the encoder reads, with datapoints
            along its first dimension: a position in ``args``, a keyword name, or ``None`` for a
            model without data whose latents are all global (e.g. an unnormalized target
            density): the encoder is then unused, and the families start on the default device
            and dtype (move the guide with ``.to``). A tuple of positions and names, e.g.
            ``(0, 1)`` for ``model(x, y)``, makes the encoder read several arguments,
            ``encoder(x, y)``; the first one is the data tensor that fixes the batch size,
            device and dtype (see :class:`~pyro_vi.models.conditional.ConditionalEncoder`).
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
        # The model is kept out of the module tree: it has parameters of its own that the guide
        # must not register or move.
        self.__dict__["_model"] = model
        self.family_name = family
        self.family_options = dict(family_options or {})
        _check_family(family, self.family_options)
        self.data_arg = _check_data_arg(data_arg)
        if data_plate is not None and not isinstance(data_plate, str):
            raise TypeError(
                f"data_plate must be a plate's name or None, got {describe(data_plate)}"
            )
        self.data_plate_name = data_plate
        self.global_features = check_int("global_features", global_features, minimum=1)
        self.activation = activation
        self.structure: ModelStructure | None = None
        self.families = nn.ModuleDict()
        self.global_contexts = nn.ParameterDict()
        # Per local latent in inner plates: the map h -> (A_j h + c_j)_j to one context per element.
        self.inner_contexts = nn.ModuleDict()
        self._features: int | None = None
        # Per-datapoint shapes of the inputs of an encoder built from hidden sizes (checked at
        # every call: the MLP's input layer was sized for them).
        self._data_shapes: tuple[tuple[int, ...], ...] | None = None
        self._fixed_context: torch.Tensor | None = None
        self._input_dtype: torch.dtype = torch.get_default_dtype()  # set from the data

    # -- set-up at the first call -------------------------------------------------------------

    def _data_arg_names(self) -> tuple[int | str, ...]:
        return self.data_arg if isinstance(self.data_arg, tuple) else (self.data_arg,)

    def _encoder_inputs(self, args: tuple, kwargs: dict) -> tuple[Any, ...] | None:
        """The arguments the encoder reads, the data tensor first; ``None`` without data."""
        if self.data_arg is None:
            return None
        inputs = []
        for name in self._data_arg_names():
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
        structure = inspect_model(self._model, args, model_kwargs, self.data_plate_name)
        local = [site.name for site in structure.sites if site.local]
        if x is None:
            if local:
                raise ValueError(
                    f"data_arg=None, but the model has latents local to its data plate {local}: "
                    "name the argument the encoder reads with data_arg"
                )
            x = torch.zeros(1, 1)  # only fixes the families' device and dtype (the defaults)
            inputs = (x,)
            if self.encoder is None:
                self.encoder = nn.Identity()
        elif local:
            _check_rows(structure, x, self.data_arg)
        if self.encoder is None and self._hidden is None:
            raise ValueError(
                "the model has latents local to its data plate: pass an encoder (an nn.Module or "
                "a list of hidden sizes) to amortize them"
            )
        # Integer data (counts, labels) leaves the guide's parameters in the default dtype.
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        if self.encoder is None:
            self.encoder = self._build_encoder(inputs).to(device=x.device, dtype=dtype)
        else:
            # An encoder given ready-made keeps its dtype, and the guide follows it: float64
            # data (numpy's default) meets a float32 encoder as float32.
            floats = [p.dtype for p in self.encoder.parameters() if p.is_floating_point()]
            dtype = floats[0] if floats else dtype
        self._input_dtype = dtype
        self.encoder.to(device=x.device)
        with torch.no_grad():
            first = _first_rows(inputs, len(x) if x.dim() else 0)
            features = self.encoder(self._as_input(first[0]), *first[1:]).shape[-1]
        for site in structure.sites:
            key = _key(site.name)
            width = features if site.local else self.global_features
            try:
                family = make_family(self.family_name, site.dim, width, **self.family_options)
            except ValueError as error:  # a family that cannot take this latent's size
                raise ValueError(f"latent site {site.name!r}: {error}") from None
            self.families[key] = family.to(device=x.device, dtype=dtype)
            if site.inner_plates:
                spread = nn.Linear(features, site.inner_size * features)
                self.inner_contexts[key] = spread.to(device=x.device, dtype=dtype)
            if not site.local:
                context = torch.zeros(self.global_features, device=x.device, dtype=dtype)
                self.global_contexts[key] = nn.Parameter(context)
        self._features = features
        self.structure = structure  # last: a failed set-up is retried at the next call

    def _build_encoder(self, inputs: tuple[Any, ...]) -> nn.Module:
        """The MLP encoder for the per-datapoint shapes of ``inputs`` (rows along dim 0)."""
        self._check_inputs(inputs, check_shapes=False)
        shapes = tuple(tuple(value.shape[1:]) for value in inputs)
        self._data_shapes = shapes
        if len(shapes) == 1:
            return MLPEncoder(shapes[0], self._hidden, self.activation)
        return ConcatMLPEncoder(shapes, self._hidden, self.activation)

    def _check_inputs(self, inputs: tuple[Any, ...], check_shapes: bool = True) -> None:
        """An encoder built from hidden sizes reads tensors with one row per datapoint, of the
        per-datapoint shapes it was built for (Python-side shape checks only: no device sync)."""
        names = self._data_arg_names()
        if inputs[0].dim() == 0:
            raise ValueError(
                f"data_arg entry {names[0]!r}: the data must have one row per datapoint along its "
                "first dimension, got a 0-dim tensor"
            )
        rows = len(inputs[0])
        for i, (name, value) in enumerate(zip(names, inputs, strict=True)):
            if not isinstance(value, torch.Tensor) or value.dim() == 0 or len(value) != rows:
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else describe(value)
                raise ValueError(
                    f"data_arg entry {name!r}: an encoder built from hidden sizes reads tensors "
                    f"with one row per datapoint ({rows} rows, as the data argument), got {got}"
                )
            if check_shapes and tuple(value.shape[1:]) != self._data_shapes[i]:
                raise ValueError(
                    f"data_arg entry {name!r} has per-datapoint shape {tuple(value.shape[1:])}, "
                    f"but the encoder was built at the first call for {self._data_shapes[i]}"
                )

    # -- the guide ----------------------------------------------------------------------------

    def context(self, x: torch.Tensor, *extra: Any) -> torch.Tensor:
        """The features h(x) ``[B, F]`` that the local posteriors are conditioned on.

        ``extra`` holds the further encoder inputs of a tuple ``data_arg`` (e.g. the labels).
        """
        if self._fixed_context is not None:
            return self._fixed_context
        return self.encoder(self._as_input(x), *extra)

    def _as_input(self, x: torch.Tensor) -> torch.Tensor:
        """Floating data in the encoder's dtype (integer data as it is: the encoder reads it)."""
        if x.is_floating_point() and x.dtype != self._input_dtype:
            return x.to(self._input_dtype)
        return x

    @contextlib.contextmanager
    def fixed_context(self, context: torch.Tensor) -> Iterator[None]:
        """Within the block, local posteriors use ``context`` ``[B, F]`` instead of the encoder's
        output: per-datapoint variational parameters (see :func:`pyro_vi.evaluation.refine`)."""
        self._fixed_context = context
        try:
            yield
        finally:
            self._fixed_context = None

    def posterior(self, site: LatentSite, context: torch.Tensor) -> dist.TorchDistribution:
        """The distribution of one latent site given its context.

        Arguments:
            site: A site of :attr:`structure`.
            context: For a local site the features ``[B, F]`` of the batch's datapoints, laid
                out here over the site's plates (``site.batch_shape(B)``, the datapoint axis at
                the data plate's dim, through ``A_j h + c_j`` for inner plates); for a global
                site its learned context ``[global_features]``.

        Returns:
            q with batch shape ``site.batch_shape(B)`` (``[]`` for a global site) and the
            site's event shape.
        """
        if site.local:
            context = self._lay_out(site, context)
        base = self.families[_key(site.name)](context)
        if site.is_flat_real:
            return base
        return dist.TransformedDistribution(base, [site.transform()])

    def _lay_out(self, site: LatentSite, features: torch.Tensor) -> torch.Tensor:
        """Features ``[B, F]`` -> contexts ``[*site.batch_shape(B), F]``."""
        batch, width = features.shape
        if site.inner_plates:
            spread = self.inner_contexts[_key(site.name)](features)
            # The spread's outputs are ordered like the inner plates (leftmost dim first); the
            # datapoint axis then moves to the data plate's place among them.
            spread = spread.reshape(batch, *(p.size for p in site.inner_plates), width)
            position = sum(p.dim < site.data_dim for p in site.inner_plates)
            features = spread.movedim(0, position)
        return features.reshape(*site.batch_shape(batch), width)

    def _batch_context(self, inputs: tuple[Any, ...], index: torch.Tensor | None) -> torch.Tensor:
        """The features ``[B, F]`` of the batch's datapoints.

        ``index`` holds the indices the data plate drew when the model subsamples it: the model
        reads ``x[index]`` (Pyro replays the guide's indices into the model's plate), so the
        guide encodes the same rows; ``None`` when every row of the inputs is in the batch. A
        subclass whose encoder addresses datapoints by position overrides this.
        """
        if index is not None:
            inputs = _rows(inputs, index, len(inputs[0]))
        return self.context(*inputs)

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        if self.structure is None:
            self._setup(args, kwargs)
        samples = {}
        local = [site for site in self.structure.sites if site.local]
        for site in self.structure.sites:
            if not site.local:
                context = self.global_contexts[_key(site.name)]
                samples[site.name] = pyro.sample(site.name, self.posterior(site, context))
        if not local:
            return samples
        inputs = self._encoder_inputs(args, kwargs)
        if self._data_shapes is not None:
            self._check_inputs(inputs)
        x = inputs[0]
        with plate_for(self.structure, x, kwargs.get("num_data")) as index:
            subsample = None if self.structure.subsample_size is None else index
            features = self._batch_context(inputs, subsample)
            _check_features(features, len(index), self._features)
            opened: dict[str, pyro.plate] = {}
            for site in local:
                with inner_plates(site, opened):
                    samples[site.name] = pyro.sample(site.name, self.posterior(site, features))
        return samples


def _check_rows(structure: ModelStructure, x: torch.Tensor, data_arg: Any) -> None:
    """The data argument's rows must be the data plate's datapoints (all N when subsampled)."""
    rows = len(x) if x.dim() else None
    if rows != structure.plate_size:
        raise ValueError(
            f"the data argument (data_arg={data_arg!r}) has shape {tuple(x.shape)}, but the "
            f"model's data plate {structure.plate_name!r} has {structure.plate_size} datapoints: "
            "the guide reads datapoints along the data's first dimension (name the plate "
            "with data_plate=, or the argument with data_arg=)"
        )


def _check_features(features: Any, batch_size: int, width: int) -> None:
    """The encoder (or a fixed context) must give one feature vector per datapoint."""
    if not isinstance(features, torch.Tensor) or tuple(features.shape) != (batch_size, width):
        got = tuple(features.shape) if isinstance(features, torch.Tensor) else describe(features)
        raise ValueError(
            f"the encoder must return features of shape [B, F] = [{batch_size}, {width}] for the "
            f"{batch_size} datapoints of the batch, got {got}"
        )


def _rows(inputs: tuple[Any, ...], index: torch.Tensor, num_rows: int) -> tuple[Any, ...]:
    """The rows ``index`` of every encoder input that runs along the datapoints."""
    return tuple(
        value[index]
        if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == num_rows
        else value
        for value in inputs
    )


def _check_family(name: str, family_options: dict[str, Any]) -> None:
    """Fail at construction, not at the first call, on an unknown family or option name."""
    check_options("family", name, family_options, families.options(name))


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
