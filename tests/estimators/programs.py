"""Plain Pyro programs, written the way users write them, with their exact answers.

Each model is a one-dimensional Normal-Normal per datapoint,

    z_i ~ N(m, s0^2),   x_i | z_i ~ N(z_i, s^2),

so that p(x_i) = N(x_i; m, s0^2 + s^2) and p(z_i | x_i) is Gaussian; they differ in how the user
writes the plates.
"""

import math

import pyro
import pyro.distributions as dist
import torch

F64 = torch.float64
PRIOR_LOC, PRIOR_SCALE, NOISE = 0.3, 1.2, 0.6


def t(value):
    return torch.as_tensor(value, dtype=F64)


def evidence(x, noise=NOISE):
    """log p(x_i) for each datapoint."""
    return dist.Normal(t(PRIOR_LOC), t(math.sqrt(PRIOR_SCALE**2 + noise**2))).log_prob(x)


def posterior(x, noise=NOISE):
    """(mean, sd) of p(z_i | x_i)."""
    precision = 1 / PRIOR_SCALE**2 + 1 / noise**2
    mean = (PRIOR_LOC / PRIOR_SCALE**2 + x / noise**2) / precision
    return mean, t(precision**-0.5).expand_as(mean)


def data(n=20, seed=3):
    generator = torch.Generator().manual_seed(seed)
    z = PRIOR_LOC + PRIOR_SCALE * torch.randn(n, dtype=F64, generator=generator)
    return z + NOISE * torch.randn(n, dtype=F64, generator=generator)


def subsampled_pair(batch_size):
    """A subsampled data plate: model and guide index the data with the plate's indices."""

    def model(x):
        with pyro.plate("data", len(x), subsample_size=batch_size) as ind:
            z = pyro.sample("z", dist.Normal(t(PRIOR_LOC), t(PRIOR_SCALE)))
            pyro.sample("x", dist.Normal(z, t(NOISE)), obs=x[ind])

    def guide(x):
        with pyro.plate("data", len(x), subsample_size=batch_size) as ind:
            loc, scale = posterior(x[ind])
            pyro.sample("z", dist.Normal(loc, scale))

    return model, guide


def loop_pair(batch_size):
    """The same, with a sequential plate: one site per datapoint."""

    def model(x):
        for i in pyro.plate("data", len(x), subsample_size=batch_size):
            z = pyro.sample(f"z_{i}", dist.Normal(t(PRIOR_LOC), t(PRIOR_SCALE)))
            pyro.sample(f"x_{i}", dist.Normal(z, t(NOISE)), obs=x[i])

    def guide(x):
        for i in pyro.plate("data", len(x), subsample_size=batch_size):
            loc, scale = posterior(x[i])
            pyro.sample(f"z_{i}", dist.Normal(loc, scale))

    return model, guide
