"""Model kinds: what a spec's ``model.kind`` names, one file per kind.

===============  ============================================  ===============================
``model.kind``   model and guide                               builder in ``architectures``
===============  ============================================  ===============================
``vae``          VAE (conditional, two-layer), any family      :func:`vae`
``vq_vae``       VQ-VAE, quantizing deterministic encoder      :func:`vq_vae`
``autoencoder``  autoencoder, deterministic encoder            :func:`autoencoder`
``sbn``          sigmoid belief net, Bernoulli guide           :func:`sigmoid_belief_net`
===============  ============================================  ===============================

A kind (:class:`ModelKind`) carries its spec keys and their checks, its build (a call of its
public builder in :mod:`pyro_vi.architectures`, the same call a Python user writes), the
capabilities its model and guide offer an estimator, its extra metrics and its figures. The
resolver, :func:`~pyro_vi.spec.build`, run evaluation, figures and comparisons ask the kind
(:func:`kind_of`) instead of comparing names.

A new kind is one new file here, a :class:`ModelKind` subclass, and its registration below
(the order of registration is the order in which the docs and errors list the kinds); a kind
defined outside the package registers itself with :func:`register`.

The kinds live in :mod:`pyro_vi.spec` rather than :mod:`pyro_vi.models` because a kind builds
guides as well as models and knows the spec, the metrics and the figures: it sits above
models, guides and evaluation and below runs, so no arrow points back down.
"""

from pyro_vi.spec.kinds.autoencoder import AutoencoderKind
from pyro_vi.spec.kinds.base import KINDS, ModelKind, kind_of, register
from pyro_vi.spec.kinds.sbn import SigmoidBeliefNetKind
from pyro_vi.spec.kinds.vae import VAEKind
from pyro_vi.spec.kinds.vq_vae import VQVAEKind

# The registration, in the order the kinds are listed.
for _kind in (VAEKind, VQVAEKind, AutoencoderKind, SigmoidBeliefNetKind):
    register(_kind)
del _kind

__all__ = [
    "KINDS",
    "AutoencoderKind",
    "ModelKind",
    "SigmoidBeliefNetKind",
    "VAEKind",
    "VQVAEKind",
    "kind_of",
    "register",
]
