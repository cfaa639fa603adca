"""Small network building blocks for encoders and decoders.

Every network here accepts any number of leading batch dimensions, because the multi-sample
estimators call decoders on latents of shape ``[K, B, D]`` (particles, batch, latent).

An encoder and the decoder that mirrors it are described together by a :class:`MLPNetwork` or a
:class:`ConvNetwork` (what a spec's ``decoder``/``encoder`` table holds, and what
:mod:`pyro_vi.architectures` takes): the description builds both once it knows the shapes, so a
decoder always outputs what its likelihood reads.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from pyro_vi._checks import check_choice, check_int, describe
from pyro_vi._registry import Registry

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "NETWORKS",
    "ConcatMLPEncoder",
    "ConvDecoder",
    "ConvEncoder",
    "ConvNetwork",
    "MLPDecoder",
    "MLPEncoder",
    "MLPNetwork",
    "Network",
    "encoder_features",
    "flatten_datapoints",
    "network",
]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}


def _check_shape(name: str, shape: Sequence[int]) -> tuple[int, ...]:
    if not isinstance(shape, Sequence) or isinstance(shape, str) or len(shape) == 0:
        raise TypeError(
            f"{name} must be a non-empty sequence of positive ints, got {describe(shape)}"
        )
    return tuple(check_int(f"{name}[{i}]", s, minimum=1) for i, s in enumerate(shape))


def _check_data_shape(name: str, shape: Sequence[int]) -> tuple[int, ...]:
    """The shape of one datapoint an encoder reads: like :func:`_check_shape`, but ``()`` (one
    scalar per datapoint, e.g. a count) is allowed too."""
    if not isinstance(shape, Sequence) or isinstance(shape, str):
        raise TypeError(
            f"{name} must be a sequence of positive ints (() for a scalar per datapoint), got "
            f"{describe(shape)}"
        )
    return tuple(check_int(f"{name}[{i}]", s, minimum=1) for i, s in enumerate(shape))


def flatten_datapoints(
    x: torch.Tensor, data_shape: tuple[int, ...], dtype: torch.dtype, name: str = "x"
) -> torch.Tensor:
    """``x`` of shape ``[..., *data_shape]`` as ``[..., prod(data_shape)]`` in ``dtype``.

    A scalar datapoint (``data_shape == ()``) becomes a vector of one feature. Integer data (counts,
    labels) is cast to ``dtype``, the encoder's, so that a Poisson or Binomial model's counts can
    be read as they are.

    Raises:
        ValueError: the trailing dimensions of ``x`` are not ``data_shape``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {describe(x)}")
    batch_dims = x.dim() - len(data_shape)
    if batch_dims < 0 or tuple(x.shape[batch_dims:]) != data_shape:
        raise ValueError(
            f"{name} must have shape [..., *data_shape] with data_shape={data_shape}, got "
            f"{tuple(x.shape)}"
        )
    return x.reshape(*x.shape[:batch_dims], math.prod(data_shape)).to(dtype)


def _check_sizes(name: str, sizes: Sequence[int]) -> tuple[int, ...]:
    if not isinstance(sizes, Sequence) or isinstance(sizes, str):
        raise TypeError(f"{name} must be a sequence of positive ints, got {describe(sizes)}")
    return tuple(check_int(f"{name}[{i}]", s, minimum=1) for i, s in enumerate(sizes))


def encoder_features(encoder: nn.Module, features: int | None = None) -> int:
    """F, the size of an encoder's output: ``features`` when given, else ``encoder.out_features``.

    Every encoder of this module has ``out_features``; a user's encoder without one needs
    ``features``. Raises ``TypeError``/``ValueError`` naming what is missing.
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be a torch.nn.Module, got {describe(encoder)}")
    if features is None:
        features = getattr(encoder, "out_features", None)
        if features is None:
            raise ValueError(
                "features is needed: the encoder has no out_features attribute to read the size "
                "of its output from"
            )
    return check_int("features", features, minimum=1)


class MLP(nn.Sequential):
    """A multilayer perceptron acting on the last dimension: Linear, activation, ..., Linear.

    Arguments:
        in_features: Size of the input's last dimension.
        hidden: Sizes of the hidden layers (may be empty: a single Linear layer).
        out_features: Size of the output's last dimension.
        activation: One of :data:`ACTIVATIONS`; applied after every hidden layer, not the output.

    Example:
        >>> MLP(784, [200, 200], 100, activation="tanh")(torch.rand(7, 784)).shape
        torch.Size([7, 100])
    """

    def __init__(
        self, in_features: int, hidden: Sequence[int], out_features: int, activation: str = "tanh"
    ) -> None:
        sizes = [check_int("in_features", in_features, minimum=1)]
        sizes += list(_check_sizes("hidden", hidden))
        sizes.append(check_int("out_features", out_features, minimum=1))
        act = ACTIVATIONS[check_choice("activation", activation, ACTIVATIONS)]
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < len(sizes) - 2:
                layers.append(act())
        super().__init__(*layers)
        self.in_features = sizes[0]
        self.out_features = sizes[-1]


class MLPEncoder(nn.Module):
    """Flattens data ``[..., *data_shape]`` and maps it to features ``[..., out_features]``.

    h(x) = act(MLP(vec(x))), with vec(x) in R^prod(data_shape): the last layer is followed by the
    activation too, since the features feed a guide's output heads. A scalar per datapoint
    (``data_shape=()``, e.g. one count) is read as a vector of one feature; integer data is cast
    to the weights' dtype.

    Arguments:
        data_shape: Shape of one datapoint, e.g. ``(1, 28, 28)``, ``(5,)`` or ``()``.
        hidden: Hidden layer sizes; the last one is ``out_features``.
        activation: One of :data:`ACTIVATIONS`.

    Example:
        >>> MLPEncoder((), [16])(torch.tensor([3.0, 0.0, 7.0])).shape
        torch.Size([3, 16])
    """

    def __init__(
        self, data_shape: Sequence[int], hidden: Sequence[int], activation: str = "tanh"
    ) -> None:
        super().__init__()
        self.data_shape = _check_data_shape("data_shape", data_shape)
        hidden = _check_sizes("hidden", hidden)
        if not hidden:
            raise ValueError("hidden must name at least one layer for an encoder, got []")
        self.mlp = MLP(math.prod(self.data_shape), hidden[:-1], hidden[-1], activation)
        self.activation = ACTIVATIONS[activation]()
        self.out_features = hidden[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = flatten_datapoints(x, self.data_shape, self.mlp[0].weight.dtype)
        return self.activation(self.mlp(x))


class ConcatMLPEncoder(nn.Module):
    """An MLP encoder of several inputs per datapoint: h(x, y) = act(MLP([vec(x), vec(y)])).

    Each input ``[..., *data_shapes[i]]`` is flattened per datapoint (a scalar becomes one
    feature, integers are cast to the weights' dtype) and the flat vectors are concatenated in the
    order of the inputs, so the MLP reads ``sum_i prod(data_shapes[i])`` features. The inputs
    must share their leading (batch) dimensions. Class labels are read as numbers: one-hot encode
    them first, or use :class:`~pyro_vi.models.conditional.ConditionalEncoder`.

    Arguments:
        data_shapes: Shape of one datapoint of each input, e.g. ``[(5,), ()]``.
        hidden: Hidden layer sizes; the last one is ``out_features``.
        activation: One of :data:`ACTIVATIONS`.

    Example:
        >>> encoder = ConcatMLPEncoder([(5,), ()], [16])
        >>> encoder(torch.randn(8, 5), torch.randn(8)).shape
        torch.Size([8, 16])
    """

    def __init__(
        self,
        data_shapes: Sequence[Sequence[int]],
        hidden: Sequence[int],
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        if not isinstance(data_shapes, Sequence) or isinstance(data_shapes, str) or not data_shapes:
            raise TypeError(
                "data_shapes must be a non-empty list of datapoint shapes such as [(5,), ()], got "
                f"{describe(data_shapes)}"
            )
        self.data_shapes = tuple(
            _check_data_shape(f"data_shapes[{i}]", shape) for i, shape in enumerate(data_shapes)
        )
        hidden = _check_sizes("hidden", hidden)
        if not hidden:
            raise ValueError("hidden must name at least one layer for an encoder, got []")
        in_features = sum(math.prod(shape) for shape in self.data_shapes)
        self.mlp = MLP(in_features, hidden[:-1], hidden[-1], activation)
        self.activation = ACTIVATIONS[activation]()
        self.out_features = hidden[-1]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.data_shapes):
            raise ValueError(
                f"this encoder reads {len(self.data_shapes)} inputs (data_shapes="
                f"{self.data_shapes}), got {len(inputs)}"
            )
        dtype = self.mlp[0].weight.dtype
        flat = [
            flatten_datapoints(x, shape, dtype, name=f"inputs[{i}]")
            for i, (x, shape) in enumerate(zip(inputs, self.data_shapes, strict=True))
        ]
        batch_shapes = {tuple(f.shape[:-1]) for f in flat}
        if len(batch_shapes) > 1:
            raise ValueError(
                "the inputs must share their batch dimensions (left of each data shape), got "
                f"{[tuple(f.shape[:-1]) for f in flat]}"
            )
        return self.activation(self.mlp(torch.cat(flat, dim=-1)))


class MLPDecoder(nn.Module):
    """Maps latents ``[..., latent_dim]`` to likelihood parameters ``[..., *data_shape]``.

    Arguments:
        latent_dim: Size of the latent vector.
        hidden: Hidden layer sizes.
        data_shape: Shape of one datapoint, e.g. ``(1, 28, 28)``.
        activation: One of :data:`ACTIVATIONS`.
    """

    def __init__(
        self,
        latent_dim: int,
        hidden: Sequence[int],
        data_shape: Sequence[int],
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        self.data_shape = _check_shape("data_shape", data_shape)
        latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        self.mlp = MLP(latent_dim, hidden, math.prod(self.data_shape), activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.mlp(z).unflatten(-1, self.data_shape)


def _conv_out(size: int) -> int:
    # kernel 4, stride 2, padding 1 halves a size (rounding down).
    return (size + 2 - 4) // 2 + 1


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions (32 and 64 filters, kernel 4) and a dense layer to features.

    Arguments:
        data_shape: ``(channels, height, width)`` of one image; height and width at least 4.
        out_features: Size of the feature vector fed to a guide's heads.
        activation: One of :data:`ACTIVATIONS`.
    """

    def __init__(
        self, data_shape: Sequence[int], out_features: int = 256, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.data_shape = _check_shape("data_shape", data_shape)
        if len(self.data_shape) != 3 or min(self.data_shape[1:]) < 4:
            raise ValueError(
                "data_shape must be (channels, height, width) with height, width >= 4 for "
                f"ConvEncoder, got {self.data_shape}"
            )
        channels, height, width = self.data_shape
        act = ACTIVATIONS[check_choice("activation", activation, ACTIVATIONS)]
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 32, 4, stride=2, padding=1),
            act(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1),
            act(),
        )
        flat = 64 * _conv_out(_conv_out(height)) * _conv_out(_conv_out(width))
        self.dense = nn.Sequential(nn.Linear(flat, out_features), act())
        self.out_features = check_int("out_features", out_features, minimum=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_shape = x.shape[:-3]
        h = self.conv(x.reshape(-1, *self.data_shape))
        return self.dense(h.flatten(1)).reshape(*batch_shape, -1)


class ConvDecoder(nn.Module):
    """The mirror image of :class:`ConvEncoder`: dense, then two stride-2 transposed convolutions.

    Arguments:
        latent_dim: Size of the latent vector.
        data_shape: ``(channels, height, width)`` of one image; height and width at least 4.
        hidden: Width of the dense layer before the feature map.
        activation: One of :data:`ACTIVATIONS`.
    """

    def __init__(
        self,
        latent_dim: int,
        data_shape: Sequence[int],
        hidden: int = 256,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.data_shape = _check_shape("data_shape", data_shape)
        if len(self.data_shape) != 3 or min(self.data_shape[1:]) < 4:
            raise ValueError(
                "data_shape must be (channels, height, width) with height, width >= 4 for "
                f"ConvDecoder, got {self.data_shape}"
            )
        channels, height, width = self.data_shape
        act = ACTIVATIONS[check_choice("activation", activation, ACTIVATIONS)]
        # The intermediate sizes of the encoder; transposed convolutions need them to undo the
        # rounding of odd sizes.
        self._mid = (_conv_out(height), _conv_out(width))
        self._low = (_conv_out(self._mid[0]), _conv_out(self._mid[1]))
        self.dense = nn.Sequential(
            nn.Linear(check_int("latent_dim", latent_dim, minimum=1), hidden),
            act(),
            nn.Linear(hidden, 64 * self._low[0] * self._low[1]),
            act(),
        )
        self.deconv1 = nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
        self.act = act()
        self.deconv2 = nn.ConvTranspose2d(32, channels, 4, stride=2, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch_shape = z.shape[:-1]
        h = self.dense(z.reshape(-1, z.shape[-1])).reshape(-1, 64, *self._low)
        h = self.act(self.deconv1(h, output_size=self._mid))
        h = self.deconv2(h, output_size=self.data_shape[1:])
        return h.reshape(*batch_shape, *self.data_shape)


@dataclass(frozen=True)
class MLPNetwork:
    """An MLP encoder and the decoder that mirrors it, by hidden sizes listed data side first.

    Arguments:
        hidden: Hidden layer sizes from the data towards the latent; the decoder runs them
            reversed, from the latent towards the data.
        activation: One of :data:`ACTIVATIONS`.

    Example:
        >>> net = MLPNetwork([200, 200])
        >>> net.encoder((1, 28, 28)).out_features, net.decoder(50, (1, 28, 28))(z).shape[-3:]
        (200, torch.Size([1, 28, 28]))
    """

    hidden: Sequence[int] = (256, 256)
    activation: str = "tanh"
    type: ClassVar[str] = "mlp"

    def __post_init__(self) -> None:
        if isinstance(self.hidden, str) or not isinstance(self.hidden, Sequence) or not self.hidden:
            raise TypeError(
                f"hidden must be a non-empty list of layer sizes such as [200, 200], got "
                f"{describe(self.hidden)}"
            )
        # A tuple: the description is frozen (hashable, and equal to another with equal sizes).
        object.__setattr__(self, "hidden", _check_sizes("hidden", self.hidden))
        check_choice("activation", self.activation, ACTIVATIONS)

    def encoder(self, data_shape: Sequence[int]) -> MLPEncoder:
        """The encoder from data ``[..., *data_shape]`` to features ``[..., hidden[-1]]``."""
        return MLPEncoder(data_shape, self.hidden, self.activation)

    def decoder(self, latent_dim: int, out_shape: Sequence[int]) -> MLPDecoder:
        """The decoder from latents ``[..., latent_dim]`` to ``[..., *out_shape]``."""
        return MLPDecoder(latent_dim, tuple(reversed(self.hidden)), out_shape, self.activation)


@dataclass(frozen=True)
class ConvNetwork:
    """A :class:`ConvEncoder` and the :class:`ConvDecoder` that mirrors it.

    Arguments:
        features: Width of the dense layer on each side of the convolutions.
        activation: One of :data:`ACTIVATIONS`.

    Example:
        >>> ConvNetwork(256).encoder((1, 28, 28)).out_features
        256
    """

    features: int = 256
    activation: str = "relu"
    type: ClassVar[str] = "conv"

    def __post_init__(self) -> None:
        check_int("features", self.features, minimum=1)
        check_choice("activation", self.activation, ACTIVATIONS)

    def encoder(self, data_shape: Sequence[int]) -> ConvEncoder:
        """The encoder from images ``[..., C, H, W]`` to features ``[..., features]``."""
        return ConvEncoder(data_shape, self.features, self.activation)

    def decoder(self, latent_dim: int, out_shape: Sequence[int]) -> ConvDecoder:
        """The decoder from latents ``[..., latent_dim]`` to ``[..., *out_shape]``."""
        return ConvDecoder(latent_dim, out_shape, self.features, self.activation)


#: A network description: what builds an encoder and its mirrored decoder.
Network = MLPNetwork | ConvNetwork

#: The network descriptions by ``type``, as a spec's ``{type = "mlp", ...}`` table names them.
NETWORKS: Registry[type[MLPNetwork] | type[ConvNetwork]] = Registry("network type")
NETWORKS.register(MLPNetwork.type, MLPNetwork)
NETWORKS.register(ConvNetwork.type, ConvNetwork)


def network(description: Network | Mapping[str, Any] | None = None) -> Network:
    """A network description from itself, a table, or ``None`` (the default MLP).

    Arguments:
        description: A :class:`MLPNetwork` or :class:`ConvNetwork`; a table
            ``{"type": "mlp", "hidden": [...], "activation": ...}`` or ``{"type": "conv",
            "features": ..., "activation": ...}`` (``type`` defaults to ``"mlp"``, unset keys to
            the class defaults); or ``None`` for ``MLPNetwork()``.

    Returns:
        The description.

    Raises:
        TypeError, ValueError: naming the key and what it allows.

    Example:
        >>> network({"type": "conv", "features": 128})
        ConvNetwork(features=128, activation='relu')
    """
    if description is None:
        return MLPNetwork()
    if isinstance(description, MLPNetwork | ConvNetwork):
        return description
    if not isinstance(description, Mapping):
        raise TypeError(
            "a network must be an MLPNetwork, a ConvNetwork or a table with 'type' ('mlp' or "
            f"'conv') and its options, got {describe(description)}"
        )
    options = dict(description)
    kind = NETWORKS[options.pop("type", MLPNetwork.type)]
    try:
        return kind(**options)
    except TypeError as error:
        if "unexpected keyword" not in str(error):
            raise
        allowed = sorted(kind.__dataclass_fields__)
        raise TypeError(f"a {kind.type!r} network takes {allowed}, got {sorted(options)}") from None
