"""Evaluation: importance-sampled log-likelihood, active units, gradient SNR.

Exact identities first (the exact-posterior guide makes every importance weight equal p(x_i), and
the path-derivative gradients of STL and DReG exactly zero), then statistical checks against
numbers known in closed form, with fixed seeds and tolerances derived in the comments.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import constraints

from pyro_vi.architectures import mlp_vae
from pyro_vi.data import load_digits
from pyro_vi.estimators import get
from pyro_vi.evaluation import (
    GradientStats,
    active_units,
    gradient_snr,
    log_likelihood,
    posterior_mean,
)
from pyro_vi.models.conjugate import FactorAnalysis, NormalNormal, NormalNormalGlobal
from pyro_vi.plates import data_plate

F64 = torch.float64

# The deliberately wrong guide for NormalNormal: the exact posterior N(m_i, v I) moved by SHIFT
# posterior standard deviations and widened by WIDEN in every dimension. Wider than the posterior
# keeps the importance weights' variance finite (it is infinite below a factor 1/sqrt(2)).
SHIFT, WIDEN = 0.5, 1.25


def chi_square_plus_one(shift: float, widen: float, dim: int) -> float:
    """E_q[(p/q)^2] for p = N(0, I), q = N(shift, widen^2 I) in `dim` dimensions: the relative
    second moment of the normalized importance weight w / p(x), in closed form (a Gaussian
    integral of p^2 / q, finite for widen^2 > 1/2)."""
    precision = 2.0 - 1.0 / widen**2
    linear = -shift / widen**2
    constant = -(shift**2) / widen**2
    per_dim = widen / math.sqrt(precision) * math.exp(0.5 * (linear**2 / precision - constant))
    return per_dim**dim


def make_normal_normal():
    generator = torch.Generator().manual_seed(1)
    return NormalNormal(torch.randn(3, dtype=F64, generator=generator), 1.3, 0.7)


def make_factor_analysis():
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(5, 2, dtype=F64, generator=generator)
    noise = torch.rand(5, dtype=F64, generator=generator) + 0.2
    return FactorAnalysis(weight, torch.randn(5, dtype=F64, generator=generator), noise)


def shifted_guide(model, shift=SHIFT, widen=WIDEN):
    """A hand-written guide: the exact posterior, shifted and widened."""

    def guide(x):
        posterior = model.posterior(x).base_dist
        loc = posterior.loc + shift * posterior.scale
        with data_plate(x):
            pyro.sample("z", dist.Normal(loc, widen * posterior.scale).to_event(1))

    return guide


# -- log_likelihood: exact identities ---------------------------------------------------------


@pytest.mark.parametrize("make", [make_normal_normal, make_factor_analysis])
@pytest.mark.parametrize(
    "num_samples, chunk_size, batch_size",
    [(1, 100, None), (7, 3, None), (100, 30, 6), (250, 250, 1)],
)
def test_exact_guide_gives_the_exact_evidence(make, num_samples, chunk_size, batch_size):
    model = make()
    x = model.sample(20)
    estimate = log_likelihood(
        model.model,
        model.guide,
        x,
        num_samples=num_samples,
        chunk_size=chunk_size,
        batch_size=batch_size,
    )
    assert estimate.shape == (20,) and estimate.dtype == F64
    # Every weight is p(x_i) up to float64 rounding (log-weights agree to ~1e-15), so the mean of
    # any number of them, chunked or not, is log p(x_i) to a few ulps of values ~10.
    torch.testing.assert_close(estimate, model.log_evidence(x), rtol=0, atol=1e-12)


def test_a_program_written_for_one_draw_is_evaluated_one_draw_at_a_time():
    # The model checks its shapes, so its draws cannot run vectorized: log_likelihood draws them
    # one at a time, with one warning, and still gets the exact evidence.
    model = make_normal_normal()
    x = model.sample(6)

    def checking_model(x):
        z = model.model(x)  # [6, D] as written; [K, 6, D] with K draws vectorized
        if z.dim() != 2:
            raise ValueError(f"z has shape {tuple(z.shape)}")

    with pytest.warns(UserWarning, match="draws them one at a time"):
        estimate = log_likelihood(checking_model, model.guide, x, num_samples=4, chunk_size=2)
    torch.testing.assert_close(estimate, model.log_evidence(x), rtol=0, atol=1e-12)


# -- log_likelihood: a wrong guide ------------------------------------------------------------


def test_wrong_guide_converges_to_the_evidence_as_samples_grow():
    model = make_normal_normal()
    x = model.sample(20)
    exact = model.log_evidence(x)
    guide = shifted_guide(model)
    few = log_likelihood(model.model, guide, x, num_samples=10) - exact
    many = log_likelihood(model.model, guide, x, num_samples=5000, chunk_size=1000) - exact
    # The log of a mean of S weights has standard deviation ~ sqrt(rho / S) with
    # rho = E[(w/p)^2] - 1 = 0.753 here (delta method): 0.012 at S = 5000, 0.27 at S = 10. Its
    # distribution is right-skewed (a rare large weight pulls it up), so the per-datapoint bound
    # is a generous 6.5 standard deviations, 0.08 (the largest error over 20 seeds x 20
    # datapoints was 0.056). The mean error must also shrink by ~sqrt(500) ~ 22 in theory
    # (measured 14-35 over 20 seeds) ...
    rho = chi_square_plus_one(SHIFT, WIDEN, 3) - 1
    assert rho == pytest.approx(0.753, abs=1e-3)
    assert many.abs().max() < 6.5 * math.sqrt(rho / 5000)
    # ... of which we ask a factor 5.
    assert many.abs().mean() < few.abs().mean() / 5


def test_wrong_guide_is_below_the_evidence_in_expectation():
    model = make_normal_normal()
    x = model.sample(2000)
    error = log_likelihood(model.model, shifted_guide(model), x, num_samples=10)
    error = error - model.log_evidence(x)
    # E[log mean of S weights] < log p(x) (Jensen); at S = 10 the gap is ~rho / (2S) = 0.038
    # while the mean over 2000 datapoints has standard error ~sqrt(rho / 10 / 2000) = 0.006: the
    # mean must lie 3 of its own standard errors below zero.
    standard_error = error.std() / math.sqrt(len(error))
    assert error.mean() + 3 * standard_error < 0


def test_chunking_and_batching_agree_statistically_and_a_seed_repeats():
    model = make_normal_normal()
    x = model.sample(20)
    exact = model.log_evidence(x)
    guide = shifted_guide(model)
    num_samples = 2000
    pyro.set_rng_seed(3)
    plain = log_likelihood(model.model, guide, x, num_samples=num_samples)
    pyro.set_rng_seed(3)
    again = log_likelihood(model.model, guide, x, num_samples=num_samples)
    pyro.set_rng_seed(3)
    cut = log_likelihood(
        model.model, guide, x, num_samples=num_samples, chunk_size=37, batch_size=7
    )
    torch.testing.assert_close(plain, again, rtol=0, atol=0)
    # Different chunks and batches hand different random numbers to each (draw, datapoint)
    # pair, so only the distribution is the same: both within 5 standard deviations
    # sqrt(rho / S) = 0.019 of the truth, and of each other within 5 * sqrt(2) of them (the
    # worst over 30 seeds was 3.6 standard deviations).
    sigma = math.sqrt((chi_square_plus_one(SHIFT, WIDEN, 3) - 1) / num_samples)
    assert (plain - exact).abs().max() < 5 * sigma
    assert (cut - exact).abs().max() < 5 * sigma
    assert (plain - cut).abs().max() < 5 * math.sqrt(2) * sigma
    assert not torch.equal(plain, cut)


def test_modules_are_evaluated_in_eval_mode_and_restored():
    model, guide = mlp_vae((1, 4, 4), latent_dim=2, hidden=(8,))
    seen = []
    guide.encoder.register_forward_hook(lambda module, inputs, output: seen.append(module.training))
    x = torch.bernoulli(torch.full((5, 1, 4, 4), 0.5))
    result = log_likelihood(model, guide, x, num_samples=4)
    assert result.shape == (5,) and bool(torch.isfinite(result).all())
    assert seen and not any(seen)
    assert model.training and guide.training


# -- log_likelihood: refused models and bad input ---------------------------------------------


def test_global_latent_is_refused():
    model = NormalNormalGlobal(torch.zeros(2, dtype=F64), 1.0, 0.5)
    with pytest.raises(ValueError, match=r"guide sites \['z'\] lie outside the data plate"):
        log_likelihood(model.model, model.guide, model.sample(5), num_samples=3)


def test_observations_without_a_plate_are_refused():
    def model(x):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        likelihood = dist.Normal(z[..., None], 1.0).expand(z.shape + x.shape)
        pyro.sample("x", likelihood.to_event(1), obs=x)

    def guide(x):
        pyro.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="share no plate"):
        log_likelihood(model, guide, torch.zeros(4), num_samples=3)


def test_minibatch_scaling_is_refused():
    model = make_normal_normal()
    x = model.sample(4)
    with pytest.raises(ValueError, match="leave num_data out"):
        log_likelihood(model.model, model.guide, x, num_samples=3, num_data=100)

    def scaled_model(x):
        return model.model(x, num_data=100)

    def scaled_guide(x):
        return model.guide(x, num_data=100)

    with pytest.raises(ValueError, match="scales its terms by 25"):
        log_likelihood(scaled_model, scaled_guide, x, num_samples=3)


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"num_samples": 0}, ValueError, "num_samples must be an integer >= 1"),
        ({"num_samples": 2.5}, TypeError, "num_samples must be an integer"),
        ({"chunk_size": 0}, ValueError, "chunk_size must be an integer >= 1"),
        ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1"),
        ({"data_plate": 1}, TypeError, "data_plate must be a plate name"),
        ({"data_plate": "rows"}, ValueError, "data_plate='rows' is not a plate"),
    ],
)
def test_log_likelihood_bad_arguments(options, error, message):
    model = make_normal_normal()
    with pytest.raises(error, match=message):
        log_likelihood(model.model, model.guide, model.sample(4), **options)


def test_log_likelihood_bad_callables_and_data():
    model = make_normal_normal()
    x = model.sample(4)
    with pytest.raises(TypeError, match="model must be a callable"):
        log_likelihood("model", model.guide, x)
    with pytest.raises(TypeError, match="guide must be a callable"):
        log_likelihood(model.model, None, x)

    def model_xy(x, y):
        return model.model(x)

    def guide_xy(x, y):
        return model.guide(x)

    with pytest.raises(ValueError, match=r"different first dimensions \[3, 4\]"):
        log_likelihood(model_xy, guide_xy, x, torch.zeros(3), batch_size=2)


# -- active units -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_batch():
    generator = torch.Generator().manual_seed(0)
    return torch.bernoulli(load_digits().test[:200], generator=generator)


def test_active_units_counts_the_dimensions_the_encoder_uses(digits_batch):
    model, guide = mlp_vae((1, 8, 8), latent_dim=6, hidden=(32,))
    pyro.poutine.trace(guide).get_trace(digits_batch)  # its heads are built at the first call
    loc_head = guide.families["z"].loc_head
    with torch.no_grad():
        # Units 0, 2, 4: a posterior mean that ignores x (the bias alone), variance exactly 0.
        loc_head.weight[[0, 2, 4]] = 0.0
        # Units 1, 3, 5: amplified, so their variance (measured ~0.35) is far above 0.01.
        loc_head.weight[[1, 3, 5]] *= 5.0
    count, variances = active_units(model, guide, digits_batch)
    assert count == 3
    assert variances.shape == (6,)
    assert bool((variances[[0, 2, 4]] < 1e-12).all()) and bool((variances[[1, 3, 5]] > 0.1).all())
    # The exact posterior mean (the Normal's .mean) is used: A_u is its variance over the data.
    with torch.no_grad():
        (site,) = guide.structure.sites
        q = guide.posterior(site, guide.context(digits_batch))
        expected = q.mean.var(0, correction=0)
    torch.testing.assert_close(variances, expected)
    # Batches change nothing but memory.
    count_batched, batched = active_units(model, guide, digits_batch, batch_size=64)
    assert count_batched == 3
    torch.testing.assert_close(batched, expected)
    # The threshold decides: above every unit's variance, nothing is active.
    assert active_units(model, guide, digits_batch, threshold=10.0)[0] == 0


def test_active_units_monte_carlo_mean_without_a_closed_form():
    x = torch.linspace(-1.0, 1.0, 50).unsqueeze(-1)
    slopes = torch.tensor([2.0, 1.0, 0.0, 0.0])

    def model(x):
        with data_plate(x):
            z = pyro.sample("z", dist.Normal(torch.zeros(4), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z[..., :1], 1.0).to_event(1), obs=x)

    def guide(x):
        # loc + N(0, 1) written as a transformed distribution: it has no closed-form .mean.
        loc = x * slopes
        base = dist.Normal(torch.zeros_like(loc), 1.0)
        q = dist.TransformedDistribution(base, [dist.transforms.AffineTransform(loc, 1.0)])
        with data_plate(x):
            pyro.sample("z", q.to_event(1))

    num_samples = 2000
    count, variances = active_units(model, guide, x, num_samples=num_samples)
    exact = (x * slopes).var(0, correction=0)  # 1.39 and 0.35 for units 0, 1; 0 for 2, 3
    assert count == 2
    # With Monte Carlo errors e_i ~ N(0, 1/S) in the means, the estimate is
    # Var(loc) + 2 Cov(loc, e) + Var(e): the cross term has standard deviation
    # sqrt(Var(loc) / (S N)) (0.0037 for unit 0), Var(e) is 1/S (5e-4) give or take
    # sqrt(2/N)/S. Four standard deviations of the first plus 2/S covers both.
    tolerance = 4 * 2 * (exact / (num_samples * len(x))).sqrt() + 2 / num_samples
    assert bool(((variances - exact).abs() < tolerance).all())


def test_active_units_bad_input(digits_batch):
    model, guide = mlp_vae((1, 8, 8), latent_dim=2, hidden=(8,))
    x = digits_batch[:5]
    with pytest.raises(ValueError, match=r"site='w' is not a latent site of the guide.*\['z'\]"):
        active_units(model, guide, x, site="w")
    with pytest.raises(TypeError, match="site must be the name"):
        active_units(model, guide, x, site=3)
    with pytest.raises(ValueError, match="threshold must be >= 0.0"):
        active_units(model, guide, x, threshold=-1.0)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        active_units(model, guide, x, num_samples=0)
    conjugate = NormalNormalGlobal(torch.zeros(2), 1.0, 0.5)
    with pytest.raises(ValueError, match="not local to the data plate"):
        active_units(conjugate.model, conjugate.guide, conjugate.sample(5))


# -- gradient SNR -----------------------------------------------------------------------------


def own_parameter_guide(model, x, shift=0.0, widen=1.0):
    """A guide with parameters of its own, a loc per datapoint [N, D] and a shared scale [D],
    initialised at the exact posterior (shifted and widened when asked)."""
    posterior = model.posterior(x).base_dist
    loc0 = (posterior.loc + shift * posterior.scale).detach()
    scale0 = (widen * posterior.scale[0]).detach()

    def guide(x):
        loc = pyro.param("q_loc", loc0.clone())
        scale = pyro.param("q_scale", scale0.clone(), constraint=constraints.positive)
        with data_plate(x):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    return guide


@pytest.mark.parametrize("name, particles", [("stl", 1), ("stl", 4), ("dreg", 1), ("dreg", 8)])
def test_path_derivative_guide_gradients_vanish_at_the_exact_posterior(name, particles):
    model = make_normal_normal()
    x = model.sample(10)
    guide = own_parameter_guide(model, x)
    stats = gradient_snr(get(name, num_particles=particles), model.model, guide, x, num_draws=20)
    assert set(stats) == {"model", "guide"}
    assert stats["guide"].mean.numel() == 10 * 3 + 3 and stats["model"].mean.numel() == 5
    # log p(x, z) - log q(z) = log p(x) for every z, so d/dz of it is 0 up to float64 rounding
    # (measured |g| < 3e-15): every draw of the guide gradient is zero, its variance ~1e-30.
    assert stats["guide"].mean.abs().max() < 1e-12
    assert stats["guide"].variance.max() < 1e-24
    # The model's gradient is a real random quantity, and IWAE's guide gradient (with its score
    # term) is not zero at the exact posterior: the zeros above are the estimators' doing.
    assert stats["model"].mean_variance > 1e-3
    iwae = gradient_snr(get("iwae", num_particles=4), model.model, guide, x, num_draws=20)
    assert iwae["guide"].mean_variance > 1e-2


def snr(name, particles, model, guide, x):
    estimator = get(name, num_particles=particles)
    stats = gradient_snr(estimator, model.model, guide, x, num_draws=200, seed=0)
    return stats["guide"].mean_snr


@pytest.mark.slow
def test_iwae_guide_snr_falls_with_k_while_dregs_does_not():
    model = make_normal_normal()
    x = model.sample(10)
    guide = own_parameter_guide(model, x, SHIFT, WIDEN)
    iwae = [snr("iwae", k, model, guide, x) for k in (2, 32)]
    dreg = [snr("dreg", k, model, guide, x) for k in (2, 32)]
    # Rainforth et al.: IWAE's guide SNR is O(1/sqrt(K)), a factor 4 from K = 2 to 32. Measured
    # over 12 seeds: 0.28-0.31 -> 0.05-0.09, the second near the floor sqrt(2 / (pi * 200)) =
    # 0.056 that 200 draws of a zero-mean gradient read. We ask for a factor 2.
    assert iwae[1] < iwae[0] / 2
    # Tucker et al.: DReG's is O(sqrt(K)) asymptotically; measured 1.07-1.12 -> 2.81-2.93 over
    # the same seeds. We ask only that it does not fall, and that it ends far above IWAE's.
    assert dreg[1] > dreg[0]
    assert dreg[1] > 10 * iwae[1]


def test_gradient_snr_is_reproducible_and_takes_explicit_groups():
    model = make_normal_normal()
    x = model.sample(6)
    guide = own_parameter_guide(model, x, SHIFT, WIDEN)
    estimator = get("iwae", num_particles=3)
    first = gradient_snr(estimator, model.model, guide, x, num_draws=5, seed=7)
    second = gradient_snr(estimator, model.model, guide, x, num_draws=5, seed=7)
    torch.testing.assert_close(first["guide"].mean, second["guide"].mean, rtol=0, atol=0)
    torch.testing.assert_close(first["guide"].variance, second["guide"].variance, rtol=0, atol=0)
    # Explicit groups: a pyro.param's constrained value maps to its unconstrained leaf, and the
    # statistics equal the matching slice of the default "guide" group (same seed, same draws).
    scale = pyro.param("q_scale")
    named = gradient_snr(
        estimator, model.model, guide, x, params={"scale": scale}, num_draws=5, seed=7
    )
    torch.testing.assert_close(named["scale"].mean, first["guide"].mean[-3:])
    listed = gradient_snr(
        estimator, model.model, guide, x, params=[model.prior_loc], num_draws=5, seed=7
    )
    assert set(listed) == {"params"} and listed["params"].mean.numel() == 3
    summary = first["guide"].to_dict()
    assert summary["num_entries"] == 6 * 3 + 3 and summary["num_draws"] == 5


def test_gradient_stats_summaries():
    stats = GradientStats(
        mean=torch.tensor([1.0, -2.0, 0.0, 3.0], dtype=F64),
        variance=torch.tensor([4.0, 1.0, 0.0, 0.0], dtype=F64),
        num_draws=10,
    )
    # SNR per entry: 0.5, 2, nan (0/0), inf (3/0); the constant entries are left out of the mean.
    assert stats.snr[0] == 0.5 and stats.snr[1] == 2.0
    assert math.isnan(stats.snr[2]) and math.isinf(stats.snr[3])
    assert stats.mean_snr == pytest.approx(1.25)
    assert stats.mean_variance == pytest.approx(1.25)
    assert stats.to_dict()["constant_entries"] == 2


def test_gradient_snr_bad_input():
    model = make_normal_normal()
    x = model.sample(4)
    guide = own_parameter_guide(model, x)
    estimator = get("elbo")
    with pytest.raises(TypeError, match="estimator must be a Pyro ELBO"):
        gradient_snr(object(), model.model, guide, x)
    with pytest.raises(ValueError, match="num_draws must be an integer >= 2"):
        gradient_snr(estimator, model.model, guide, x, num_draws=1)
    with pytest.raises(ValueError, match=r"params\['params'\]\[0\] must be a leaf tensor"):
        gradient_snr(estimator, model.model, guide, x, params=[torch.ones(2)])
    with pytest.raises(TypeError, match=r"params\['params'\]\[0\] must be a torch.Tensor"):
        gradient_snr(estimator, model.model, guide, x, params=["q_loc"])
    with pytest.raises(ValueError, match="at least one parameter"):
        gradient_snr(estimator, model.model, guide, x, params={})
    with pytest.raises(TypeError, match="params must be a dict"):
        gradient_snr(estimator, model.model, guide, x, params=5)
    unused = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="none of the given parameters affects"):
        gradient_snr(estimator, model.model, model.guide, x, params=[unused], num_draws=2)


# -- programs as users write them -------------------------------------------------------------


def test_posterior_mean_of_a_subsampled_plate_follows_the_guides_indices():
    # The guide's subsample indices are replayed into the model (they were pruned before, so the
    # model drew its own minibatch); the means returned are those of the datapoints drawn.
    x = torch.linspace(-2, 2, 12, dtype=F64)

    def model(x):
        with pyro.plate("data", len(x), subsample_size=4) as ind:
            z = pyro.sample("z", dist.Normal(torch.zeros((), dtype=F64), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x[ind])

    def guide(x):
        with pyro.plate("data", len(x), subsample_size=4) as ind:
            pyro.sample("z", dist.Normal(x[ind] / 2, 0.5))

    means = posterior_mean(model, guide, x)
    assert means.shape == (4,)
    assert all(any(torch.isclose(m, x / 2).tolist()) for m in means)


def test_networks_held_by_closures_and_globals_are_evaluated_in_eval_mode():
    # A plain-function model and guide whose networks are a closure variable and a module-level
    # global: dropout must be off during log_likelihood (the estimate is then deterministic for a
    # fixed seed whatever the dropout rate), and training mode restored afterwards.
    encoder = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.9))

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            loc = _GLOBAL_DECODER(z)
            pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", encoder)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(encoder(x)[..., :2], 1.0).to_event(1))

    x = torch.randn(5, 3)
    seen = []
    _GLOBAL_DECODER[1].register_forward_hook(lambda m, i, o: seen.append(m.training))
    encoder[1].register_forward_hook(lambda m, i, o: seen.append(m.training))
    log_likelihood(model, guide, x, num_samples=3)
    assert seen and not any(seen)
    assert encoder.training and _GLOBAL_DECODER.training


_GLOBAL_DECODER = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Dropout(0.5))


def test_a_shared_observation_outside_the_data_plate_is_refused():
    def model(x):
        pyro.sample("shared", dist.Normal(0.0, 1.0), obs=torch.tensor(0.3))
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(x / 2, 0.7))

    with pytest.raises(ValueError, match="outside the data plate 'data' add a term shared"):
        log_likelihood(model, guide, torch.randn(4), num_samples=3)
