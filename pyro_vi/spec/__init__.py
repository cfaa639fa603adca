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

Every key, its default and what it allows is listed in :mod:`pyro_vi.spec.resolve` and, for
the keys of each model kind, in :mod:`pyro_vi.spec.kinds`; a bad spec raises :class:`SpecError`
before anything is built, including an estimator that the model and guide cannot serve
(:mod:`pyro_vi.spec.capabilities`).

=========================  ===================================================================
module                     job
=========================  ===================================================================
:mod:`.schema`             the key types (:class:`~pyro_vi.spec.schema.Field`), SpecError
:mod:`.resolve`            a raw spec -> a complete, validated :class:`Spec`
:mod:`.kinds`              the model kinds: keys, build, capabilities, metrics, figures
:mod:`.capabilities`       the estimator/model/guide compatibility table
:mod:`.build`              a :class:`Spec` -> model, guide, estimator, optimizer
:mod:`.data_section`       the ``[data]`` keys: a named dataset or your own path, splits
:mod:`.data_loading`       a :class:`Spec` -> its data, read, split and checked against the model
:mod:`.io`                 TOML/JSON files and ``--set`` overrides
=========================  ===================================================================
"""

from pyro_vi.spec.build import Built, build, make_optimizer, materialize
from pyro_vi.spec.capabilities import Capabilities, check_capabilities
from pyro_vi.spec.data_loading import Data, DataInfo, load_data
from pyro_vi.spec.io import apply_overrides, load_spec, read_spec_file, save_spec, spec_to_toml
from pyro_vi.spec.kinds import KINDS, ModelKind, kind_of
from pyro_vi.spec.resolve import DEFAULT_SPEC, Spec, resolve
from pyro_vi.spec.schema import SpecError

__all__ = [
    "DEFAULT_SPEC",
    "KINDS",
    "Built",
    "Capabilities",
    "Data",
    "DataInfo",
    "ModelKind",
    "Spec",
    "SpecError",
    "apply_overrides",
    "build",
    "check_capabilities",
    "kind_of",
    "load_data",
    "load_spec",
    "make_optimizer",
    "materialize",
    "read_spec_file",
    "resolve",
    "save_spec",
    "spec_to_toml",
]
