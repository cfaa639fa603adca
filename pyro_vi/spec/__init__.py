"""Declarative specs: a few lines of TOML (or a dict) that compile to a Pyro model, a guide, an
estimator and an optimizer.

Example (``configs/iwae_mnist.toml``, abridged)::

    [data]
    name = "mnist"
    [model]
    latent_dim = 50
    decoder = { hidden = [200, 200], activation = "tanh" }
    [guide]
    encoder = { hidden = [200, 200], activation = "tanh" }
    [estimator]
    name = "iwae"
    num_particles = 5

In Python::

    spec = load_spec("configs/iwae_mnist.toml", ["training.epochs=1"])
    data = load_data(spec)
    built = build(spec, data.info)
    fit(built.model, built.guide, data.train, loss=built.estimator, optim=built.optimizer())

Every key, its default and what it allows is listed in :mod:`pyro_vi.spec.resolve`; a bad spec
raises :class:`SpecError` before anything is built.
"""

from pyro_vi.spec.build import Built, Data, DataInfo, build, load_data, make_optimizer, materialize
from pyro_vi.spec.io import apply_overrides, load_spec, read_spec_file, save_spec, spec_to_toml
from pyro_vi.spec.resolve import DEFAULT_SPEC, Spec, resolve
from pyro_vi.spec.schema import SpecError

__all__ = [
    "DEFAULT_SPEC",
    "Built",
    "Data",
    "DataInfo",
    "Spec",
    "SpecError",
    "apply_overrides",
    "build",
    "load_data",
    "load_spec",
    "make_optimizer",
    "materialize",
    "read_spec_file",
    "resolve",
    "save_spec",
    "spec_to_toml",
]
