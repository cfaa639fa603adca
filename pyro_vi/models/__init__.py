"""Pyro models: deep latent-variable models, their likelihoods and priors, and references.

==========================  ===========================================================
module                      contents
==========================  ===========================================================
:mod:`.vae`                 :class:`VAE`: z ~ p(z), x ~ likelihood(decoder(z))
:mod:`.conditional`         :class:`ConditionalVAE`: the decoder also reads a label
:mod:`.hierarchical`        :class:`HierarchicalVAE`: two stochastic layers
:mod:`.vq_vae`              :class:`VQVAE` and its quantizing :class:`VQGuide`
:mod:`.autoencoder`         :class:`Autoencoder` and its deterministic encoder
:mod:`.sbn`                 :class:`SigmoidBeliefNet`: binary latents, their relaxations
:mod:`.likelihoods`         p(x | z) by name: :data:`LIKELIHOODS`, :func:`make_likelihood`
:mod:`.priors`              p(z) by name: :data:`PRIORS`, :func:`make_prior`
:mod:`.conjugate`           exact references: :class:`NormalNormal`, :class:`FactorAnalysis`,
                            :class:`NormalNormalGlobal`
:mod:`.targets`             2-D unnormalized densities for flows: :data:`TARGETS`
==========================  ===========================================================

Each model is a Pyro callable ``model(x, ..., num_data=None)``; its guides live in
:mod:`pyro_vi.guides`, and :mod:`pyro_vi.architectures` builds a model with its guide.
"""

from pyro_vi.models.autoencoder import Autoencoder, AutoencoderGuide, FlatPrior, NoPriorError
from pyro_vi.models.conditional import ConditionalEncoder, ConditionalVAE
from pyro_vi.models.conjugate import (
    ConjugateModel,
    FactorAnalysis,
    NormalNormal,
    NormalNormalGlobal,
)
from pyro_vi.models.hierarchical import HierarchicalVAE
from pyro_vi.models.likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    CategoricalLikelihood,
    ContinuousBernoulliLikelihood,
    FixedGaussianLikelihood,
    GaussianLikelihood,
    Likelihood,
    NegativeBinomialLikelihood,
    PoissonLikelihood,
    as_likelihood,
    likelihood_options,
    make_likelihood,
)
from pyro_vi.models.priors import (
    PRIORS,
    MixturePrior,
    Prior,
    StandardNormalPrior,
    make_prior,
    prior_options,
)
from pyro_vi.models.sbn import BernoulliPrior, SigmoidBeliefNet
from pyro_vi.models.targets import TARGETS, Target, get_target
from pyro_vi.models.vae import VAE, DeepLatentModel
from pyro_vi.models.vq_vae import VQVAE, VQGuide

__all__ = [
    "LIKELIHOODS",
    "PRIORS",
    "TARGETS",
    "VAE",
    "VQVAE",
    "Autoencoder",
    "AutoencoderGuide",
    "BernoulliLikelihood",
    "BernoulliPrior",
    "CategoricalLikelihood",
    "ConditionalEncoder",
    "ConditionalVAE",
    "ConjugateModel",
    "ContinuousBernoulliLikelihood",
    "DeepLatentModel",
    "FactorAnalysis",
    "FixedGaussianLikelihood",
    "FlatPrior",
    "GaussianLikelihood",
    "HierarchicalVAE",
    "Likelihood",
    "MixturePrior",
    "NegativeBinomialLikelihood",
    "NoPriorError",
    "NormalNormal",
    "NormalNormalGlobal",
    "PoissonLikelihood",
    "Prior",
    "SigmoidBeliefNet",
    "StandardNormalPrior",
    "Target",
    "VQGuide",
    "as_likelihood",
    "get_target",
    "likelihood_options",
    "make_likelihood",
    "make_prior",
    "prior_options",
]
