"""The 2-D targets: exact identities, normalizers by quadrature, shapes, the Pyro model.

Quadrature is checked against the mass *inside the plotting box*, computed independently and
(almost) exactly: a 1-D integral of normal CDFs for the banana and the funnel (their second
coordinate is Gaussian given the first), products of normal CDFs for the ring. What is left is
the error of the 2-D midpoint rule, which for these smooth, Gaussian-like integrands is
exponentially small in (scale / cell size)^2 (Poisson summation), except in the funnel's neck.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.transforms import Transform
from torch.distributions import constraints

from pyro_vi.estimators import compute_log_weights, get
from pyro_vi.models import targets
from pyro_vi.models.targets import TARGETS, Target, get_target

NAMES = sorted(TARGETS)


def _ndtr_difference(high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    return torch.special.ndtr(high) - torch.special.ndtr(low)


def _outer_integral(low: float, high: float, integrand) -> float:
    # The 1-D integrals below are of smooth functions on a fine float64 grid (10^6 midpoints):
    # their own error is far below every tolerance used here.
    n = 1_000_000
    step = (high - low) / n
    points = low + step * (torch.arange(n, dtype=torch.float64) + 0.5)
    return float(integrand(points).sum() * step)


def mass_in_bounds(target: Target) -> float:
    """The exact mass of the normalized target inside its bounds (two moons: its log Z)."""
    (low1, high1), (low2, high2) = target.bounds
    if target.name == "banana":
        s, b, sigma = targets.BANANA_SCALE, targets.BANANA_CURVATURE, targets.BANANA_NOISE

        def integrand(z1):
            mean = b * (z1**2 - s**2)
            conditional = _ndtr_difference((high2 - mean) / sigma, (low2 - mean) / sigma)
            return torch.exp(-0.5 * (z1 / s) ** 2) / (s * math.sqrt(2 * math.pi)) * conditional

        return _outer_integral(low1, high1, integrand)
    if target.name == "funnel":

        def integrand(v):
            scale = torch.exp(v / 2)
            conditional = _ndtr_difference(high2 / scale, low2 / scale)
            sd = targets.FUNNEL_SCALE
            return torch.exp(-0.5 * (v / sd) ** 2) / (sd * math.sqrt(2 * math.pi)) * conditional

        return _outer_integral(low1, high1, integrand)
    if target.name == "ring":
        means = targets.ring_means(torch.zeros((), dtype=torch.float64))
        scale = targets.RING_SCALE
        first = _ndtr_difference((high1 - means[:, 0]) / scale, (low1 - means[:, 0]) / scale)
        second = _ndtr_difference((high2 - means[:, 1]) / scale, (low2 - means[:, 1]) / scale)
        return float((first * second).mean())
    assert target.name == "two_moons"
    return math.exp(targets.MOONS_LOG_NORMALIZER)


# Relative tolerance of the 2000 x 2000 midpoint rule. Inside the box the narrowest scale of the
# banana (0.4), ring (0.35) and moons (0.4) spans >= 80 cells, where the rule's error
# (~exp(-2 pi^2 (scale / cell)^2), Poisson summation) is nil; what remains is the Euler-Maclaurin
# term of the box's edges, (cell^2 / 24) x the flux of grad p through them, and float64 summation
# (~1e-12). Banana: its tail crosses the top edge (0.26 % of the mass lies outside), the edge term
# is O(1e-9) (measured 4.5e-9 at 1000 cells, 1.1e-9 at 2000: the h^2 law), so 1e-8. Ring: the
# density at the edges is < 1e-20, so 1e-9. Two moons: the stored log Z integrates over R^2, and
# outside [-4, 4]^2 (|z| >= 4) exp(-U_1) <= 2 exp(-12.5), leaving about 1e-8 of the mass out
# (measured 9.3e-9), so 1e-7. Funnel: the neck is narrower than a cell (0.02 along x) for
# v < 2 log 0.02 = -7.8, where the rule can be off by a factor of order 1; those rows hold
# P(v < -7.8) = 0.5 % of the mass, and measured, the rule is off by 4e-4 at 1000 cells and 1.1e-6
# at 2000, so 1e-5.
RELATIVE_TOLERANCE = {"banana": 1e-8, "ring": 1e-9, "two_moons": 1e-7, "funnel": 1e-5}


@pytest.mark.parametrize("name", NAMES)
def test_density_integrates_to_the_normalizer_over_the_plotting_box(name):
    target = get_target(name)
    expected = mass_in_bounds(target)
    # The box holds nearly all of the mass: what it leaves out is not hiding a wrong normalizer.
    assert expected > 0.97 * math.exp(target.log_normalizer)
    measured = math.exp(target.log_mass_in_bounds(resolution=2000))
    assert measured == pytest.approx(expected, rel=RELATIVE_TOLERANCE[name])


def test_two_moons_normalizer_by_quadrature_over_a_wider_box():
    box = ((-6.0, 6.0), (-6.0, 6.0))  # exp(-U_1) < 1e-30 outside
    wide = Target("wide", targets.two_moons_log_density, box, None, "")
    assert wide.log_mass_in_bounds(resolution=2000) == pytest.approx(
        targets.MOONS_LOG_NORMALIZER, abs=1e-12
    )


def _normal(value, loc, scale):
    return dist.Normal(torch.as_tensor(loc, dtype=value.dtype), scale).log_prob(value)


def test_log_densities_match_torch_distributions():
    z = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    v, x = z.unbind(-1)
    s, b, sigma = targets.BANANA_SCALE, targets.BANANA_CURVATURE, targets.BANANA_NOISE
    banana = _normal(v, 0.0, s) + _normal(x, b * (v**2 - s**2), sigma)
    torch.testing.assert_close(targets.banana_log_density(z), banana, rtol=1e-12, atol=1e-12)
    funnel = _normal(v, 0.0, 3.0) + dist.Normal(0.0, torch.exp(v / 2)).log_prob(x)
    torch.testing.assert_close(targets.funnel_log_density(z), funnel, rtol=1e-12, atol=1e-12)
    means = targets.ring_means(z)
    ring = dist.MixtureSameFamily(
        dist.Categorical(logits=torch.zeros(8, dtype=torch.float64)),
        dist.Normal(means, targets.RING_SCALE).to_event(1),
    )
    torch.testing.assert_close(targets.ring_log_density(z), ring.log_prob(z))
    assert means.norm(dim=-1).allclose(torch.full((8,), 3.0, dtype=torch.float64))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(7,), (7, 3)], ids=["K", "KxB"])
def test_log_density_is_vectorized(name, shape):
    target = get_target(name)
    z = torch.randn(*shape, 2)
    log_density = target.log_density(z)
    assert log_density.shape == shape
    assert log_density.dtype == z.dtype
    assert torch.isfinite(log_density).all()
    one_by_one = torch.stack([target.log_density(point) for point in z.reshape(-1, 2)])
    torch.testing.assert_close(log_density.reshape(-1), one_by_one)


@pytest.mark.parametrize("name", NAMES)
def test_log_density_rejects_bad_points(name):
    log_density = get_target(name).log_density
    with pytest.raises(ValueError, match="z must have shape"):
        log_density(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="z must be a floating-point tensor"):
        log_density(torch.zeros(4, 2, dtype=torch.long))


def test_unknown_target_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown target 'moons'.*'two_moons'"):
        get_target("moons")


def test_grid_rejects_bad_resolution():
    with pytest.raises((TypeError, ValueError), match="resolution"):
        get_target("ring").grid(1)


# -- the Pyro model ---------------------------------------------------------------------------


class _Push(Transform):
    """u ~ N(0, I) -> z with law p: the banana's twist or the funnel's scaling, in closed form."""

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True

    def __init__(self, name):
        super().__init__(cache_size=0)
        self.name = name

    def _call(self, u):
        u1, u2 = u.unbind(-1)
        if self.name == "banana":
            s, b, sigma = targets.BANANA_SCALE, targets.BANANA_CURVATURE, targets.BANANA_NOISE
            z1 = s * u1
            return torch.stack([z1, sigma * u2 + b * (z1**2 - s**2)], -1)
        v = targets.FUNNEL_SCALE * u1
        return torch.stack([v, torch.exp(v / 2) * u2], -1)

    def _inverse(self, z):
        z1, z2 = z.unbind(-1)
        if self.name == "banana":
            s, b, sigma = targets.BANANA_SCALE, targets.BANANA_CURVATURE, targets.BANANA_NOISE
            return torch.stack([z1 / s, (z2 - b * (z1**2 - s**2)) / sigma], -1)
        return torch.stack([z1 / targets.FUNNEL_SCALE, z2 * torch.exp(-z1 / 2)], -1)

    def log_abs_det_jacobian(self, u, z):
        if self.name == "banana":
            return torch.full_like(u[..., 0], math.log(targets.BANANA_SCALE * targets.BANANA_NOISE))
        return math.log(targets.FUNNEL_SCALE) + z[..., 0] / 2


def exact_guide(name):
    """q = p for the banana or the funnel, reparameterized, with a parameter to train."""

    def guide():
        shift = pyro.param("shift", torch.zeros(2, dtype=torch.float64))
        base = dist.Normal(shift, 1.0).to_event(1)
        return pyro.sample("z", dist.TransformedDistribution(base, [_Push(name)]))

    return guide


ESTIMATORS = [
    ("elbo", {"num_particles": 4}),
    ("iwae", {"num_particles": 4}),
    ("renyi", {"alpha": 0.5, "num_particles": 4}),
    ("vrmax", {"num_particles": 4}),
    ("stl", {"num_particles": 4}),
    ("dreg", {"num_particles": 4}),
    ("miwae", {"num_outer": 2, "num_inner": 2}),
    ("ciwae", {"beta": 0.5, "num_particles": 4}),
    ("piwae", {"num_outer": 2, "num_inner": 2}),
]


@pytest.mark.parametrize("name", ["banana", "funnel"])
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=[e[0] for e in ESTIMATORS])
def test_every_estimator_returns_log_z_with_the_exact_guide(name, estimator):
    # With q = p every log-weight is log p~(z) - log q(z) = log Z = 0, so every bound is 0 to
    # float64 rounding: the model's joint density is the target's and nothing else (the masked
    # base adds nothing). The STL/DReG gradient of the exact guide is zero as well.
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    target = get_target(name)
    loss = get(estimator[0], **estimator[1])
    value = loss.loss(target.model, exact_guide(name))
    assert value == pytest.approx(-target.log_normalizer, abs=1e-12)
    surrogate = loss.differentiable_loss(target.model, exact_guide(name))
    surrogate.backward()
    gradient = pyro.param("shift").grad
    assert gradient is not None and torch.isfinite(gradient).all()
    if estimator[0] in ("stl", "dreg"):
        assert gradient.abs().max() < 1e-10


@pytest.mark.parametrize("name", NAMES)
def test_model_log_weight_is_the_target_log_density(name):
    # Any guide: log w = log p~(z) - log q(z), one joint column (a global latent, no data).
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    target = get_target(name)

    def guide():
        return pyro.sample("z", dist.Normal(torch.zeros(2), 2.0).to_event(1))

    weights = compute_log_weights(target.model, guide, (), {}, num_particles=6, plate_nesting=0)
    z = weights.guide_trace.nodes["z"]["value"]
    assert z.shape == (6, 2) and weights.log_w.shape == (6, 1)
    expected = target.log_density(z) - dist.Normal(torch.zeros(2), 2.0).to_event(1).log_prob(z)
    torch.testing.assert_close(weights.log_w[:, 0], expected)


@pytest.mark.parametrize("name", NAMES)
def test_model_runs_from_its_prior(name):
    trace = pyro.poutine.trace(get_target(name).model).get_trace()
    assert trace.nodes["z"]["value"].shape == (2,)
    assert float(trace.log_prob_sum()) == pytest.approx(
        float(get_target(name).log_density(trace.nodes["z"]["value"]))
    )
