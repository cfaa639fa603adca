"""pyro_vi: variational inference for deep latent-variable models on Pyro.

Subpackages: :mod:`pyro_vi.data` (datasets), :mod:`pyro_vi.nets` (networks),
:mod:`pyro_vi.models` (Pyro models, conjugate references), :mod:`pyro_vi.guides` (amortized
guides), :mod:`pyro_vi.estimators` (the bounds), :mod:`pyro_vi.train` (``fit``),
:mod:`pyro_vi.report` (figures), :mod:`pyro_vi.cli` (the ``pyro-vi`` command).
"""

__version__ = "0.1.0"
