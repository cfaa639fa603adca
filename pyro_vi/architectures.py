"""Ready-made VAEs: a generative model and its amortized guide, built together.

Each function returns ``(model, guide)``, both Pyro callables over the same data plate, ready for
``SVI(model, guide, optim, loss)`` or :func:`pyro_vi.train.fit`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyro_vi.guides.gaussian import AmortizedDiagonalNormal
from pyro_vi.models.likelihoods import Likelihood
from pyro_vi.models.vae import VAE
from pyro_vi.nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder


def mlp_vae(
    data_shape: Sequence[int],
    latent_dim: int = 50,
    hidden: Sequence[int] = (200, 200),
    activation: str = "tanh",
    likelihood: Likelihood | str = "bernoulli",
) -> tuple[VAE, AmortizedDiagonalNormal]:
    """An MLP VAE: encoder data -> hidden... -> (mu, sigma); decoder z -> reversed(hidden) -> data.

    Arguments:
        data_shape: Shape of one datapoint, e.g. ``(1, 28, 28)``.
        latent_dim: Size of z.
        hidden: Hidden layer sizes of the encoder; the decoder uses them reversed.
        activation: Nonlinearity of every hidden layer.
        likelihood: ``"bernoulli"`` (logits), ``"bernoulli_grey"``, ``"gaussian"`` (learned
            per-pixel variance) or a Likelihood module.

    Returns:
        ``(model, guide)``.

    Example:
        >>> model, guide = mlp_vae((1, 28, 28))  # the IWAE paper's 784-200-200-50 network
    """
    data_shape = tuple(data_shape)
    encoder = MLPEncoder(data_shape, hidden, activation)
    decoder = MLPDecoder(latent_dim, tuple(reversed(tuple(hidden))), data_shape, activation)
    model = VAE(decoder, latent_dim, likelihood, data_shape)
    return model, AmortizedDiagonalNormal(encoder, latent_dim)


def iwae_mlp_vae(likelihood: Likelihood | str = "bernoulli") -> tuple[VAE, AmortizedDiagonalNormal]:
    """The one-stochastic-layer architecture of Burda et al. (2016) for 28x28 binary images:
    784-200-200-50 with tanh, two deterministic layers each side, Bernoulli decoder.

    References:
        Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016, Sec. 5.
    """
    return mlp_vae(
        (1, 28, 28), latent_dim=50, hidden=(200, 200), activation="tanh", likelihood=likelihood
    )


def conv_vae(
    data_shape: Sequence[int],
    latent_dim: int = 16,
    features: int = 256,
    activation: str = "relu",
    likelihood: Likelihood | str = "bernoulli",
) -> tuple[VAE, AmortizedDiagonalNormal]:
    """A convolutional VAE: two stride-2 convolutions (32, 64 filters) and a dense layer to the
    latent parameters; the decoder is the mirror image with transposed convolutions.

    Arguments:
        data_shape: ``(channels, height, width)``.
        latent_dim: Size of z.
        features: Width of the dense layer on each side.
        activation: Nonlinearity.
        likelihood: As in :func:`mlp_vae`.
    """
    data_shape = tuple(data_shape)
    encoder = ConvEncoder(data_shape, features, activation)
    decoder = ConvDecoder(latent_dim, data_shape, features, activation)
    model = VAE(decoder, latent_dim, likelihood, data_shape)
    return model, AmortizedDiagonalNormal(encoder, latent_dim)
