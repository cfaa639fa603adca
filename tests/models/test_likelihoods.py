"""Observation models: densities against independent references, shapes, means, data checks."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.nn.functional import softplus

from pyro_vi.estimators import get
from pyro_vi.guides import AmortizedGuide
from pyro_vi.models.likelihoods import (
    LIKELIHOODS,
    CategoricalLikelihood,
    ContinuousBernoulliImage,
    ContinuousBernoulliLikelihood,
    DiscretizedImage,
    FixedGaussianLikelihood,
    GaussianLikelihood,
    make_likelihood,
)
from pyro_vi.models.likelihoods import likelihood_options as options
from pyro_vi.models.vae import VAE
from pyro_vi.nets import MLPDecoder, MLPEncoder

F64 = torch.float64
SHAPE = (1, 4, 4)
LEVELS = 5  # a small categorical grid k/4 keeps the tests fast
COUNTS = ("poisson", "negative_binomial")  # likelihoods of counts, not images in [0, 1]


def valid_data(name, n=6, shape=SHAPE, dtype=torch.float32):
    """Data in the support of the likelihood ``name``."""
    if name == "bernoulli":
        return torch.bernoulli(torch.full((n, *shape), 0.4, dtype=dtype))
    if name == "gaussian":
        return torch.randn(n, *shape, dtype=dtype)
    if name == "categorical":
        return torch.randint(0, LEVELS, (n, *shape)).to(dtype) / (LEVELS - 1)
    if name in COUNTS:
        return torch.poisson(torch.full((n, *shape), 3.0, dtype=dtype))
    return torch.rand(n, *shape, dtype=dtype)


def build(name, shape=SHAPE):
    return make_likelihood(name, shape, **({"num_levels": LEVELS} if name == "categorical" else {}))


# -- the contract, one case per likelihood ----------------------------------------------------


@pytest.mark.parametrize("name", LIKELIHOODS)
def test_contract_shapes_mean_and_log_prob(name):
    likelihood = build(name)
    params_shape = likelihood.params_shape(SHAPE)
    params = torch.randn(3, 6, *params_shape)  # [K particles, B datapoints, *params_shape]
    fn = likelihood(params, len(SHAPE))
    assert fn.batch_shape == (3, 6) and fn.event_shape == SHAPE
    assert fn.mean.shape == (3, 6, *SHAPE)
    if name != "gaussian" and name not in COUNTS:  # figures read fn.mean as an image in [0, 1]
        assert bool(((fn.mean >= 0) & (fn.mean <= 1)).all())
    x = valid_data(name)
    likelihood.check_data(x)
    log_p = fn.log_prob(x)
    assert log_p.shape == (3, 6) and bool(torch.isfinite(log_p).all())
    draws = fn.sample((2,))
    assert draws.shape == (2, 3, 6, *SHAPE)
    likelihood.check_data(draws.reshape(-1, *SHAPE))  # draws lie in the support
    assert fn.expand([4, 3, 6]).log_prob(x).shape == (4, 3, 6)


@pytest.mark.parametrize("name", LIKELIHOODS)
def test_contract_a_vae_trains_one_step(name):
    likelihood = build(name)
    decoder = MLPDecoder(2, [8], likelihood.params_shape(SHAPE))
    model = VAE(decoder, 2, likelihood)
    guide = AmortizedGuide(model, MLPEncoder(SHAPE, [8]))
    x = valid_data(name)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), get("iwae", num_particles=2))
    assert math.isfinite(svi.step(x))


def test_options_and_their_errors():
    assert options("gaussian") == {"scale": None}
    assert options("categorical") == {"num_levels": 256}
    assert options("bernoulli") == {} and options("continuous_bernoulli") == {}
    with pytest.raises(ValueError, match=r"takes no option 'sigma'; its options are \['scale'\]"):
        make_likelihood("gaussian", SHAPE, sigma=0.1)
    with pytest.raises(ValueError, match="takes no option 'scale'; its options are none"):
        make_likelihood("bernoulli", SHAPE, scale=0.1)
    with pytest.raises(ValueError, match=r"unknown likelihood 'laplace'; the likelihoods are \["):
        options("laplace")
    with pytest.raises(ValueError, match="scale must be > 0"):
        make_likelihood("gaussian", SHAPE, scale=0.0)
    with pytest.raises(TypeError, match="scale must be a real number"):
        make_likelihood("gaussian", SHAPE, scale="0.1")
    with pytest.raises(ValueError, match="num_levels must be an integer >= 2"):
        make_likelihood("categorical", SHAPE, num_levels=1)


# -- Gaussian -----------------------------------------------------------------------------------


def gaussian_log_density(x, loc, scale):
    """Hand-written sum_j log N(x_j; loc_j, scale_j^2) over the last three dimensions."""
    z = (x - loc) / scale
    terms = -0.5 * z**2 - torch.log(torch.as_tensor(scale, dtype=F64)) - 0.5 * math.log(2 * math.pi)
    return terms.expand(torch.broadcast_shapes(x.shape, loc.shape)).sum((-3, -2, -1))


def test_gaussian_learned_and_fixed():
    learned = make_likelihood("gaussian", SHAPE)
    fixed = make_likelihood("gaussian", SHAPE, scale=0.1)
    assert isinstance(learned, GaussianLikelihood) and isinstance(fixed, FixedGaussianLikelihood)
    # The learned scale is one parameter per pixel; the fixed one has none.
    assert [p.shape for p in learned.parameters()] == [SHAPE]
    assert list(fixed.parameters()) == []
    loc = torch.randn(2, 5, *SHAPE, dtype=F64)
    x = torch.randn(5, *SHAPE, dtype=F64)
    # Exact identities in float64: only rounding separates the two sides.
    reference = gaussian_log_density(x, loc, 0.1)
    assert torch.allclose(fixed(loc, 3).log_prob(x), reference, rtol=1e-12)
    learned = learned.double()
    reference = gaussian_log_density(x, loc, learned.scale.detach())
    assert torch.allclose(learned(loc, 3).log_prob(x), reference, rtol=1e-12)
    assert torch.equal(fixed(loc, 3).mean, loc)


# -- continuous Bernoulli ---------------------------------------------------------------------


def hand_continuous_bernoulli(logits, x):
    """log C(l) + x l - softplus(l) with C(l) = l / tanh(l / 2) (float64, |l| not tiny)."""
    return torch.log(logits / torch.tanh(logits / 2)) + x * logits - softplus(logits)


def test_continuous_bernoulli_matches_torch_and_the_formula():
    logits = torch.linspace(-10, 10, 201, dtype=F64)
    x = torch.rand(201, dtype=F64)
    ours = ContinuousBernoulliImage(logits, 0)
    reference = torch.distributions.ContinuousBernoulli(logits=logits)
    # torch goes through probabilities (1 - p ~ 5e-5 at l = 10), which costs it ~1e-12 in
    # float64; 1e-9 leaves room for that and none for a real error.
    assert torch.allclose(ours.log_prob(x), reference.log_prob(x), atol=1e-9)
    assert torch.allclose(ours.mean, reference.mean, atol=1e-9)
    # Beyond torch's accurate range (it clamps probabilities), the closed form is the reference.
    big = torch.tensor([-80.0, -30.0, -15.0, 15.0, 30.0, 80.0], dtype=F64)
    values = torch.tensor([0.0, 0.3, 1.0, 0.5, 0.9, 1.0], dtype=F64)
    expected = hand_continuous_bernoulli(big, values)
    assert torch.allclose(ContinuousBernoulliImage(big, 0).log_prob(values), expected, atol=1e-12)
    expected_mean = 1 / (1 - torch.exp(-big)) - 1 / big
    assert torch.allclose(ContinuousBernoulliImage(big, 0).mean, expected_mean, atol=1e-12)


def test_continuous_bernoulli_is_stable_in_float32_near_and_far_from_zero():
    # The closed forms cancel catastrophically at logits ~ 0 in float32; the Taylor branch must
    # join them without a jump, and large logits must not saturate.
    logits64 = torch.cat(
        [torch.linspace(-20, 20, 4001, dtype=F64), torch.tensor([0.0, 1e-7, -1e-7, 0.0999, 0.1])]
    )
    x64 = torch.rand_like(logits64)
    exact = ContinuousBernoulliImage(logits64, 0).log_prob(x64)
    ours = ContinuousBernoulliImage(logits64.float(), 0).log_prob(x64.float())
    assert bool(torch.isfinite(ours).all())
    # float32 rounding of x * l with |l| <= 20 is ~1e-6; 1e-4 bounds it with room to spare.
    assert torch.allclose(ours.double(), exact, atol=1e-4)
    mean32 = ContinuousBernoulliImage(logits64.float(), 0).mean
    assert torch.allclose(mean32.double(), ContinuousBernoulliImage(logits64, 0).mean, atol=1e-5)
    logits = torch.tensor([0.0, 1e-8], requires_grad=True)
    (grad,) = torch.autograd.grad(
        ContinuousBernoulliImage(logits, 0).log_prob(x64[:2]).sum(), logits
    )
    assert bool(torch.isfinite(grad).all())


@pytest.mark.parametrize("logit", [-20.0, -3.0, -0.05, 0.0, 1e-3, 0.5, 20.0])
def test_continuous_bernoulli_normalizes(logit):
    # Simpson's rule on 20001 points: error ~ h^4 f'''' ~ (5e-5)^4 * 20^4 * 20 << 1e-8 even for
    # the steepest density (l = 20, p(x) ~ 20 e^{20 (x - 1)}).
    grid = torch.linspace(0, 1, 20001, dtype=F64)
    density = ContinuousBernoulliImage(torch.full_like(grid, logit), 0).log_prob(grid).exp()
    weights = torch.ones_like(grid)
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    step = float(grid[1] - grid[0])
    assert float((weights * density).sum() * step / 3) == pytest.approx(1.0, abs=1e-8)
    mean = float((weights * density * grid).sum() * step / 3)
    assert float(ContinuousBernoulliImage(torch.tensor(logit, dtype=F64), 0).mean) == pytest.approx(
        mean, abs=1e-8
    )


def test_continuous_bernoulli_samples_have_the_mean():
    logits = torch.tensor([-20.0, -2.0, 0.0, 0.05, 3.0, 50.0])
    fn = ContinuousBernoulliImage(logits, 0)
    draws = fn.sample((20000,))
    assert bool(((draws >= 0) & (draws <= 1)).all())
    # Standard deviation of a [0, 1] variable <= 0.5, so of the mean <= 0.0036: 0.015 is 4 sd.
    assert torch.allclose(draws.mean(0), fn.mean, atol=0.015)


def test_continuous_bernoulli_checks_the_unit_interval():
    likelihood = make_likelihood("continuous_bernoulli", SHAPE)
    assert isinstance(likelihood, ContinuousBernoulliLikelihood)
    likelihood.check_data(torch.rand(3, *SHAPE))
    with pytest.raises(ValueError, match=r"continuous Bernoulli likelihood needs data in \[0, 1\]"):
        likelihood.check_data(torch.full((3, *SHAPE), 1.5))


# -- categorical ------------------------------------------------------------------------------


def test_categorical_params_shape_and_channel_layout():
    likelihood = make_likelihood("categorical", (1, 28, 28))
    assert isinstance(likelihood, CategoricalLikelihood)
    assert likelihood.params_shape((1, 28, 28)) == (256, 28, 28)
    assert CategoricalLikelihood(5).params_shape((3, 4, 4)) == (15, 4, 4)
    assert CategoricalLikelihood(5).params_shape((7,)) == (35,)
    # Channel c's logits for level l sit at decoder channel c * L + l.
    params = torch.full((2, 15, 4, 4), -50.0)
    for channel, level in enumerate([4, 0, 2]):
        params[:, channel * 5 + level] = 50.0
    fn = CategoricalLikelihood(5)(params, 3)
    expected = torch.tensor([1.0, 0.0, 0.5]).reshape(3, 1, 1).expand(2, 3, 4, 4)
    assert torch.equal(fn.sample(), expected)
    assert torch.allclose(fn.mean, expected)


def test_categorical_log_prob_matches_torch_categorical():
    logits = torch.randn(2, 3, 1, 4, 4, LEVELS, dtype=F64)  # [K, B, *event, L]
    levels = torch.randint(0, LEVELS, (3, 1, 4, 4))
    x = levels.to(F64) / (LEVELS - 1)
    reference = dist.Categorical(logits=logits).log_prob(levels).sum((-3, -2, -1))
    fn = DiscretizedImage(logits, 3)
    assert fn.batch_shape == (2, 3) and fn.event_shape == (1, 4, 4)
    assert torch.allclose(fn.log_prob(x), reference, rtol=1e-12)
    grid = torch.arange(LEVELS, dtype=F64) / (LEVELS - 1)
    assert torch.allclose(fn.mean, (logits.softmax(-1) * grid).sum(-1), rtol=1e-12)


def test_categorical_round_trip():
    likelihood = CategoricalLikelihood(LEVELS)
    fn = likelihood(torch.randn(200, LEVELS, 4, 4), 3)
    draws = fn.sample()
    likelihood.check_data(draws)  # on the grid and in [0, 1]
    levels = draws * (LEVELS - 1)
    assert torch.equal(levels, levels.round())
    assert set(levels.unique().tolist()) == set(range(LEVELS))  # every level is reachable
    # Scoring the level k at exactly k / (L - 1) gives the level's own log-probability.
    logits = fn.logits.log_softmax(-1).gather(-1, levels.long().unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(fn.log_prob(draws), logits.sum((-3, -2, -1)), atol=1e-5)


@pytest.mark.parametrize(
    ("data", "num_levels", "message"),
    [
        (torch.randint(0, 17, (20, 1, 4, 4)) / 16, 256, "fits num_levels=17"),
        (torch.randint(0, 256, (20, 1, 4, 4)) / 255, 17, "fits num_levels=256"),
        (torch.tensor([0.0, 0.5, 1.0]), 2, "fits num_levels=3"),
        (torch.rand(20, 1, 4, 4), 256, "on no grid"),
    ],
    ids=["digits", "mnist", "three", "continuous"],
)
def test_categorical_grid_errors_name_the_levels_the_data_needs(data, num_levels, message):
    with pytest.raises(
        ValueError, match=rf"num_levels={num_levels} needs data on the grid"
    ) as info:
        CategoricalLikelihood(num_levels).check_data(data)
    assert message in str(info.value)


def test_categorical_accepts_its_grid_and_rejects_the_outside():
    CategoricalLikelihood(256).check_data(torch.randint(0, 256, (20, 1, 4, 4)) / 255)
    CategoricalLikelihood(256).check_data(torch.bernoulli(torch.full((5, 3), 0.5)))
    with pytest.raises(ValueError, match=r"categorical likelihood needs data in \[0, 1\]"):
        CategoricalLikelihood(256).check_data(torch.tensor([0.0, -1.0]))
    with pytest.raises(ValueError, match="multiple of 5"):
        CategoricalLikelihood(5)(torch.zeros(2, 7, 4, 4), 3)


def test_the_other_checks_keep_their_messages():
    with pytest.raises(ValueError, match="binary data"):
        make_likelihood("bernoulli", SHAPE).check_data(torch.full((2, *SHAPE), 0.5))
    with pytest.raises(ValueError, match=r"data in \[0, 1\]"):
        make_likelihood("bernoulli_grey", SHAPE).check_data(torch.full((2, *SHAPE), 2.0))
    make_likelihood("gaussian", SHAPE).check_data(torch.full((2, *SHAPE), 7.0))


@pytest.mark.cuda
@pytest.mark.parametrize("name", LIKELIHOODS)
def test_every_likelihood_runs_on_cuda(name):
    check_on_device(name, "cuda")


def check_on_device(name, device):
    likelihood = build(name).to(device)
    params = torch.randn(2, 6, *likelihood.params_shape(SHAPE), device=device)
    fn = likelihood(params, len(SHAPE))
    x = valid_data(name).to(device)
    likelihood.check_data(x)
    for tensor in (fn.log_prob(x), fn.mean, fn.sample()):
        assert tensor.device == params.device
