"""Shared pieces of the estimator tests: the conjugate models, options per estimator, guides."""

import pyro
import pyro.distributions as dist
import torch
from estimator_options import OPTIONS  # noqa: F401 -- re-exported for the estimator tests


class LocalGaussianGuide:
    """A non-amortized guide for NormalNormal with parameters of its own: q(z_i) = N(m_i, s^2 I).

    ``shift`` and ``stretch`` move it away from the exact posterior (0 and 1 keep it exact).
    """

    def __init__(self, model, x, shift=0.0, stretch=1.0):
        with torch.no_grad():
            posterior = model.posterior(x)
            self.loc = (posterior.mean + shift).clone()
            self.scale = (posterior.base_dist.scale[0] * stretch).clone()

    def __call__(self, x, num_data=None):
        loc = pyro.param("guide_loc", self.loc)
        scale = pyro.param("guide_scale", self.scale, constraint=dist.constraints.positive)
        with pyro.plate("data", len(x)):
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))
