"""Ready-made models with their guides: the calls a spec compiles to, and a few classics.

Each builder returns ``(model, guide)``, both Pyro callables over the same data plate, ready for
``SVI(model, guide, optim, loss)`` or :func:`pyro_vi.train.fit`. A spec's ``model.kind`` names one
builder (:mod:`pyro_vi.spec.kinds`), and :func:`pyro_vi.spec.build` calls it with the spec's
values, so a model built from a spec and the same model built here in Python are the same
modules, with the same parameter names and shapes:

==========================  ==================================================================
builder                     model and guide
==========================  ==================================================================
:func:`vae`                 :class:`~pyro_vi.models.vae.VAE` (or its conditional or
                            two-layer variant) and :class:`~pyro_vi.guides.AmortizedGuide`
:func:`vq_vae`              :class:`~pyro_vi.models.vq_vae.VQVAE` and its
                            :class:`~pyro_vi.models.vq_vae.VQGuide`
:func:`autoencoder`         :class:`~pyro_vi.models.autoencoder.Autoencoder` and its encoder
:func:`sigmoid_belief_net`  :class:`~pyro_vi.models.sbn.SigmoidBeliefNet` and
                            :class:`~pyro_vi.guides.bernoulli.BernoulliGuide`
:func:`mlp_vae`             :func:`vae` with an MLP on each side
:func:`conv_vae`            :func:`vae` with convolutions on each side
:func:`iwae_mlp_vae`        Burda et al.'s 784-200-200-50 (see its note on the guide)
==========================  ==================================================================

Networks are described by :class:`~pyro_vi.nets.MLPNetwork` or
:class:`~pyro_vi.nets.ConvNetwork` (or the same as a table, ``{"type": "mlp", "hidden": [...]}``);
the builder makes the decoder output what the likelihood reads
(:meth:`~pyro_vi.models.likelihoods.Likelihood.params_shape`: one logit per grey level for the
categorical likelihood).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from pyro_vi._checks import check_int
from pyro_vi.guides.amortized import AmortizedGuide
from pyro_vi.guides.bernoulli import BernoulliGuide
from pyro_vi.guides.hierarchical import HierarchicalGuide
from pyro_vi.models.autoencoder import Autoencoder, AutoencoderGuide
from pyro_vi.models.conditional import ConditionalEncoder, ConditionalVAE
from pyro_vi.models.hierarchical import HierarchicalVAE, check_latent_dims
from pyro_vi.models.likelihoods import Likelihood, as_likelihood
from pyro_vi.models.priors import Prior, resolve_prior
from pyro_vi.models.sbn import SigmoidBeliefNet, relaxed_temperatures
from pyro_vi.models.vae import VAE
from pyro_vi.models.vq_vae import VQVAE, VQGuide
from pyro_vi.nets import ConvNetwork, MLPNetwork, Network, network

__all__ = [
    "autoencoder",
    "conv_vae",
    "iwae_mlp_vae",
    "mlp_vae",
    "sigmoid_belief_net",
    "vae",
    "vq_vae",
]

#: A network description, or the same as a table (see :func:`pyro_vi.nets.network`).
NetworkLike = Network | Mapping[str, Any] | None
#: A likelihood module, its name, or a table with its name and options.
LikelihoodLike = Likelihood | str | Mapping[str, Any]
#: A prior module, its name, a table with its name and options, or ``None`` for N(0, I).
PriorLike = Prior | str | Mapping[str, Any] | None


def _parts(
    data_shape: Sequence[int], likelihood: LikelihoodLike, encoder: NetworkLike
) -> tuple[tuple[int, ...], Likelihood, tuple[int, ...], nn.Module]:
    """The datapoint's shape, the likelihood, the decoder's output shape and the encoder.

    Built in this order by every builder: the encoder draws its initial weights before the
    decoder, so a seed gives the same parameters whichever way the model is built.
    """
    shape = tuple(data_shape)
    likelihood = as_likelihood(likelihood, shape)
    out_shape = tuple(likelihood.params_shape(shape))
    return shape, likelihood, out_shape, network(encoder).encoder(shape)


def vae(
    data_shape: Sequence[int],
    latent_dim: int | Sequence[int] = 8,
    *,
    likelihood: LikelihoodLike = "bernoulli",
    prior: PriorLike = None,
    decoder: NetworkLike = None,
    encoder: NetworkLike = None,
    family: str = "diagonal",
    family_options: dict[str, Any] | None = None,
    num_classes: int | None = None,
    stochastic_hidden: Sequence[int] = (100, 100),
) -> tuple[VAE | ConditionalVAE | HierarchicalVAE, AmortizedGuide | HierarchicalGuide]:
    """A VAE and its amortized guide: the builder of ``model.kind = "vae"``.

    Arguments:
        data_shape: Shape of one datapoint, e.g. ``(1, 28, 28)``.
        latent_dim: D for one stochastic layer, or ``(D1, D2)`` for two (data side first:
            :class:`~pyro_vi.models.hierarchical.HierarchicalVAE`).
        likelihood: A :class:`~pyro_vi.models.likelihoods.Likelihood`, its name, or a table with
            its name and options (``{"name": "gaussian", "scale": 0.1}``).
        prior: p(z) of the top layer: a :class:`~pyro_vi.models.priors.Prior`, its name, a
            table with its name and options, or ``None`` for N(0, I).
        decoder: The decoder's network (default ``MLPNetwork()``: 256-256 tanh).
        encoder: The encoder's network (default ``MLPNetwork()``).
        family: The posterior family of every latent (:data:`~pyro_vi.guides.FAMILIES`).
        family_options: Its options, e.g. ``{"num_steps": 4}``.
        num_classes: C for a conditional VAE (decoder and encoder read the one-hot label;
            model and guide take ``(x, y)``), or ``None``.
        stochastic_hidden: With two layers, the hidden sizes of the networks between them.

    Returns:
        ``(model, guide)``.

    Raises:
        ValueError: a conditional model with two layers, or a bad size or name.

    Example:
        >>> model, guide = vae((1, 28, 28), 50, family="iaf", family_options={"num_steps": 4})
    """
    two_layers = isinstance(latent_dim, Sequence) and not isinstance(latent_dim, str)
    if num_classes is not None and two_layers:
        raise ValueError(
            f"num_classes={num_classes} with latent_dim={tuple(latent_dim)}: the conditional VAE "
            "has one stochastic layer; give an integer latent_dim"
        )
    if two_layers:
        dims: tuple[int, ...] = check_latent_dims(latent_dim)
    else:
        dims = (check_int("latent_dim", latent_dim, minimum=1),)
    shape, likelihood, out_shape, encoder_net = _parts(data_shape, likelihood, encoder)
    prior = resolve_prior(prior, dims[-1])
    decoder_net, family_options = network(decoder), dict(family_options or {})
    if two_layers:
        model = HierarchicalVAE(
            decoder_net.decoder(dims[0], out_shape),
            dims,
            stochastic_hidden,
            decoder_net.activation,
            likelihood,
            shape,
            prior,
        )
        activation = network(encoder).activation
        guide = HierarchicalGuide(
            encoder_net, dims, stochastic_hidden, activation, family, family_options
        )
        return model, guide
    if num_classes is not None:
        classes = check_int("num_classes", num_classes, minimum=1)
        decoder_module = decoder_net.decoder(dims[0] + classes, out_shape)
        model = ConditionalVAE(decoder_module, dims[0], classes, likelihood, shape, prior)
        encoder_net = ConditionalEncoder(encoder_net, classes)
        return model, AmortizedGuide(model, encoder_net, family, family_options, data_arg=(0, 1))
    model = VAE(decoder_net.decoder(dims[0], out_shape), dims[0], likelihood, shape, prior=prior)
    return model, AmortizedGuide(model, encoder_net, family, family_options)


def vq_vae(
    data_shape: Sequence[int],
    *,
    num_codes: int = 64,
    code_dim: int = 8,
    num_latents: int = 4,
    commitment: float = 0.25,
    likelihood: LikelihoodLike = "bernoulli",
    decoder: NetworkLike = None,
    encoder: NetworkLike = None,
) -> tuple[VQVAE, VQGuide]:
    """A VQ-VAE and its quantizing encoder: the builder of ``model.kind = "vq_vae"``.

    Arguments:
        data_shape: Shape of one datapoint.
        num_codes: K, the codebook size.
        code_dim: D, the size of a code vector.
        num_latents: n, the code vectors per datapoint (the decoder reads n * D numbers).
        commitment: beta, the commitment loss's weight.
        likelihood: As for :func:`vae`.
        decoder, encoder: The networks, as for :func:`vae`.

    Returns:
        ``(model, guide)``.

    Example:
        >>> model, guide = vq_vae((1, 8, 8), num_codes=32, num_latents=2)
    """
    shape, likelihood, out_shape, encoder_net = _parts(data_shape, likelihood, encoder)
    width = check_int("num_latents", num_latents, minimum=1) * check_int(
        "code_dim", code_dim, minimum=1
    )
    model = VQVAE(
        network(decoder).decoder(width, out_shape),
        num_codes,
        code_dim,
        num_latents,
        likelihood,
        shape,
    )
    return model, VQGuide(model, encoder_net, commitment)


def autoencoder(
    data_shape: Sequence[int],
    latent_dim: int = 8,
    *,
    likelihood: LikelihoodLike = "bernoulli",
    decoder: NetworkLike = None,
    encoder: NetworkLike = None,
) -> tuple[Autoencoder, AutoencoderGuide]:
    """A deterministic autoencoder as a model/guide pair: the builder of
    ``model.kind = "autoencoder"``.

    Arguments:
        data_shape: Shape of one datapoint.
        latent_dim: Size of the code.
        likelihood: As for :func:`vae`.
        decoder, encoder: The networks, as for :func:`vae`.

    Returns:
        ``(model, guide)``; minus the ELBO of the pair is the reconstruction loss, not a bound.
    """
    latent_dim = check_int("latent_dim", latent_dim, minimum=1)
    shape, likelihood, out_shape, encoder_net = _parts(data_shape, likelihood, encoder)
    model = Autoencoder(
        network(decoder).decoder(latent_dim, out_shape), latent_dim, likelihood, shape
    )
    return model, AutoencoderGuide(encoder_net, latent_dim)


def sigmoid_belief_net(
    data_shape: Sequence[int],
    latent_dim: int = 8,
    *,
    likelihood: LikelihoodLike = "bernoulli",
    decoder: NetworkLike = None,
    encoder: NetworkLike = None,
    relaxation: str = "none",
    temperature: float | None = None,
    prior_temperature: float | None = None,
) -> tuple[SigmoidBeliefNet, BernoulliGuide]:
    """A sigmoid belief net (binary latents) and its Bernoulli guide: the builder of
    ``model.kind = "sbn"``.

    Arguments:
        data_shape: Shape of one datapoint.
        latent_dim: D, the number of binary latents.
        likelihood: As for :func:`vae`.
        decoder, encoder: The networks, as for :func:`vae`.
        relaxation: One of :data:`~pyro_vi.models.sbn.RELAXATIONS`: ``"none"`` (discrete),
            ``"concrete"`` or ``"straight_through"``.
        temperature: The relaxed guide's temperature (default
            :data:`~pyro_vi.models.sbn.DEFAULT_TEMPERATURE` with a relaxation).
        prior_temperature: The relaxed prior's (default: ``temperature``).

    Returns:
        ``(model, guide)``.

    Raises:
        ValueError: a temperature without a relaxation, or an unknown relaxation.
    """
    temperature, prior_temperature = relaxed_temperatures(
        relaxation, temperature, prior_temperature
    )
    latent_dim = check_int("latent_dim", latent_dim, minimum=1)
    shape, likelihood, out_shape, encoder_net = _parts(data_shape, likelihood, encoder)
    model = SigmoidBeliefNet(
        network(decoder).decoder(latent_dim, out_shape),
        latent_dim,
        likelihood,
        shape,
        relaxation=relaxation,
        temperature=prior_temperature,
    )
    return model, BernoulliGuide(encoder_net, latent_dim, temperature=temperature)


def mlp_vae(
    data_shape: Sequence[int],
    latent_dim: int = 50,
    hidden: Sequence[int] = (200, 200),
    activation: str = "tanh",
    likelihood: LikelihoodLike = "bernoulli",
) -> tuple[VAE, AmortizedGuide]:
    """An MLP VAE: encoder data -> hidden... -> q(z | x); decoder z -> reversed(hidden) -> data.

    The same model and guide as ``vae(data_shape, latent_dim, likelihood=likelihood,
    encoder=MLPNetwork(hidden, activation), decoder=MLPNetwork(hidden, activation))``, and as a
    spec with those values.

    Arguments:
        data_shape: Shape of one datapoint, e.g. ``(1, 28, 28)``.
        latent_dim: Size of z.
        hidden: Hidden layer sizes of the encoder; the decoder uses them reversed.
        activation: Nonlinearity of every hidden layer.
        likelihood: A :class:`~pyro_vi.models.likelihoods.Likelihood` or its name
            (:data:`~pyro_vi.models.likelihoods.LIKELIHOODS`, default options).

    Returns:
        ``(model, guide)``; the guide is an :class:`~pyro_vi.guides.AmortizedGuide` with the
        diagonal Gaussian family, whose heads are built at its first call.

    Example:
        >>> model, guide = mlp_vae((1, 28, 28))  # the IWAE paper's 784-200-200-50 network
    """
    net = MLPNetwork(hidden, activation)
    return vae(data_shape, latent_dim, likelihood=likelihood, encoder=net, decoder=net)


def conv_vae(
    data_shape: Sequence[int],
    latent_dim: int = 16,
    features: int = 256,
    activation: str = "relu",
    likelihood: LikelihoodLike = "bernoulli",
) -> tuple[VAE, AmortizedGuide]:
    """A convolutional VAE: two stride-2 convolutions (32, 64 filters) and a dense layer to the
    latent parameters; the decoder is the mirror image with transposed convolutions.

    Arguments:
        data_shape: ``(channels, height, width)``.
        latent_dim: Size of z.
        features: Width of the dense layer on each side.
        activation: Nonlinearity.
        likelihood: As in :func:`mlp_vae`.
    """
    net = ConvNetwork(features, activation)
    return vae(data_shape, latent_dim, likelihood=likelihood, encoder=net, decoder=net)


def iwae_mlp_vae(likelihood: LikelihoodLike = "bernoulli") -> tuple[VAE, AmortizedGuide]:
    """The one-stochastic-layer architecture of Burda et al. (2016) for 28x28 binary images:
    784-200-200-50 with tanh, two deterministic layers each side, Bernoulli decoder: :func:`mlp_vae`
    with those sizes (its guide builds its heads at its first call).

    References:
        Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016, Sec. 5.
    """
    return mlp_vae((1, 28, 28), 50, (200, 200), "tanh", likelihood)
