"""Every estimator on Pyro programs as users write them: plates subsampled, nested, automatic or
fixed; dependent guide sites; scales and masks; programs with nothing to train; bad programs.

Exact identities first: with the exact posterior as guide, every log-weight equals log p(x_i),
so each bound equals the (scaled) evidence on every draw, to float64 rounding.
"""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from cases import OPTIONS
from programs import (
    F64,
    NOISE,
    PRIOR_LOC,
    PRIOR_SCALE,
    data,
    evidence,
    loop_pair,
    posterior,
    subsampled_pair,
    t,
)
from pyro import poutine
from pyro.infer import SVI

from pyro_vi.estimators import ESTIMATORS, get

NAMES = sorted(ESTIMATORS)
EXACT = 1e-9


def options(name):
    opts = dict(OPTIONS[name])
    if name == "meanfield":
        opts["num_particles"] = 4000  # checked by its mean, see assert_weights
    return opts


def assert_weights(name, log_w, expected):
    """Every log-weight equals ``expected`` (per column) to float64 rounding: with the exact
    posterior, log p(x, z) - log q(z) = log p(x) for every z. Except for the closed-form KL of
    ``meanfield``, whose weights are exact only in expectation: there the mean over its 4000
    particles must be within 4 standard errors (a z-test failing by chance with p = 6e-5)."""
    expected = expected.expand_as(log_w)
    if name != "meanfield":
        torch.testing.assert_close(log_w, expected, rtol=0, atol=EXACT)
        return
    error = log_w.std(0) / math.sqrt(log_w.shape[0])
    z = (log_w.mean(0) - expected[0]) / error
    assert float(z.abs().max()) < 4.0, z


def assert_loss(name, estimator, model, guide, args, expected):
    """``estimator.loss`` equals ``expected`` (exactly; for ``meanfield`` by the z-test of
    :func:`assert_weights` on the total)."""
    if name != "meanfield":
        assert estimator.loss(model, guide, *args) == pytest.approx(expected, abs=1e-8)
        return
    weights = estimator.log_weights(model, guide, *args)
    log_w = weights.log_w.detach()
    total = weights.scale * log_w.mean(0).sum() + weights.offset
    error = weights.scale * (log_w.var(0).sum() / log_w.shape[0]).sqrt()
    assert abs(float((-total - expected) / error)) < 4.0


# -- 1. subsampled plates ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_subsampled_plate_replays_the_guides_minibatch(name):
    # N = 20, B = 5, exact posterior guide: each weight is log p(x_i) of the datapoint the plate
    # drew, and the bound is (N / B) times their sum. Replaying a pruned guide trace made the
    # model draw another minibatch: about -720 against the exact -76.8.
    x = data(20)
    model, guide = subsampled_pair(batch_size=5)
    estimator = get(name, **options(name))
    for seed in range(3):
        pyro.set_rng_seed(seed)
        weights = estimator.log_weights(model, guide, x)
        ind = weights.model_trace.nodes["x"]["cond_indep_stack"][-1]
        assert weights.log_w.shape[1] == 5 and weights.scale == pytest.approx(4.0)
        index = _subsample_indices(weights)
        expected = evidence(x[index])
        assert_weights(name, weights.log_w, expected)
        assert ind.name == "data"
        if name != "meanfield":
            pyro.set_rng_seed(seed)
            loss = estimator.loss(model, guide, x)
            assert loss == pytest.approx(-4.0 * float(expected.sum()), abs=1e-8)


def _subsample_indices(weights):
    node = weights.passes[0].traces.raw_guide_trace.nodes["data"]
    return node["value"]


@pytest.mark.parametrize("name", ["elbo", "iwae", "dreg", "renyi"])
def test_loop_plate_with_subsampling(name):
    # A sequential plate: sites z_i, x_i per datapoint; the guide's indices are replayed, so the
    # model scores the same datapoints. The weights are joint (no vectorized data plate).
    x = data(12)
    model, guide = loop_pair(batch_size=4)
    estimator = get(name, **options(name), vectorize_particles=True)
    pyro.set_rng_seed(0)
    weights = estimator.log_weights(model, guide, x)
    index = weights.passes[0].traces.raw_guide_trace.nodes["data"]["value"]
    expected = 3.0 * float(evidence(x[index]).sum())
    torch.testing.assert_close(
        weights.log_w, torch.full_like(weights.log_w, expected), rtol=0, atol=1e-8
    )


@pytest.mark.parametrize("name", NAMES)
def test_particles_run_one_by_one_share_the_minibatch(name):
    # vectorize_particles=False runs the program once per particle; each run draws its own
    # subsample unless told otherwise, and a multi-sample bound would then reduce particles
    # of different datapoints column by column (found by the random-program property test).
    x = data(12)
    model, guide = subsampled_pair(batch_size=4)
    pyro.set_rng_seed(0)
    weights = get(name, **options(name), vectorize_particles=False).log_weights(model, guide, x)
    indices = [p.traces.raw_guide_trace.nodes["data"]["value"] for p in weights.passes]
    assert len(indices) == weights.num_particles > 1
    for index, run in zip(indices, weights.passes, strict=True):
        torch.testing.assert_close(index, indices[0])
        torch.testing.assert_close(run.traces.raw_model_trace.nodes["data"]["value"], index)
    assert weights.scale == pytest.approx(3.0)
    assert_weights(name, weights.log_w, evidence(x[indices[0]]))


# -- 2. nested plates under automatic dims ----------------------------------------------------


def nested_pair(num_features):
    """Data [D, N] under automatic dims: the data plate (dim -1) holds a feature plate (-2)."""

    def model(x):
        with pyro.plate("data", x.shape[-1]):
            z = pyro.sample("z", dist.Normal(t(PRIOR_LOC), t(PRIOR_SCALE)))
            with pyro.plate("features", num_features):
                pyro.sample("x", dist.Normal(z, t(NOISE)), obs=x)

    # The exact posterior of z_i given D observations x_{.i} with noise NOISE is that of one
    # observation, their mean, with noise NOISE / sqrt(D).
    def guide(x):
        with pyro.plate("data", x.shape[-1]):
            loc, scale = posterior(x.mean(0), NOISE / math.sqrt(num_features))
            pyro.sample("z", dist.Normal(loc, scale))

    return model, guide


def nested_evidence(x):
    """log p(x_{.i}) per datapoint: a D-dim Gaussian, covariance s0^2 11^T + s^2 I."""
    count = x.shape[0]
    covariance = PRIOR_SCALE**2 * torch.ones(count, count, dtype=F64)
    covariance += NOISE**2 * torch.eye(count, dtype=F64)
    mean = torch.full((count,), PRIOR_LOC, dtype=F64)
    return dist.MultivariateNormal(mean, covariance).log_prob(x.T)


@pytest.mark.parametrize("name", NAMES)
def test_nested_plates_under_automatic_dims_split_per_datapoint(name):
    # The data plate is the outermost one in cond_indep_stack order ("data"), not the one with
    # the smallest dim ("features", -2). Picking the inner plate turned every per-datapoint bound
    # into a joint one (-1054.8 against -930.4 measured on a VAE).
    num_features = 3
    x = data(3 * 7, seed=5).reshape(num_features, 7)
    model, guide = nested_pair(num_features)
    weights = get(name, **options(name)).log_weights(model, guide, x)
    assert weights.data_plate.name == "data" and weights.log_w.shape[1] == 7
    assert_weights(name, weights.log_w, nested_evidence(x))


def test_a_named_data_plate_wins_and_ambiguity_is_an_error():
    x = data(6, seed=1).reshape(2, 3)
    model, guide = nested_pair(2)
    weights = get("iwae", num_particles=3, data_plate="features").log_weights(model, guide, x)
    assert weights.log_w.shape[1] == 1  # z lies outside "features": joint weights

    def twisted(x):
        # Two observed sites nest the shared plates in opposite orders.
        a = pyro.plate("a", 2, dim=-1)
        b = pyro.plate("b", 3, dim=-2)
        with a, b:
            pyro.sample("x1", dist.Normal(t(0.0), t(1.0)), obs=x)
        with b, a:
            pyro.sample("x2", dist.Normal(t(0.0), t(1.0)), obs=x)

    with pytest.raises(ValueError, match=r"ambiguous.*\['a', 'b'\].*data_plate="):
        get("elbo").loss(twisted, lambda x: None, torch.zeros(3, 2, dtype=F64))


# -- 3, 4. dependent guide sites: STL, DReG, score --------------------------------------------

# A chain per datapoint: z1 ~ N(0, 1), z2 | z1 ~ N(A z1, S2^2), x | z2 ~ N(z2, S^2). The exact
# posterior factors as p(z1 | x) p(z2 | z1, x); the guide below has its own parameters for both
# factors, started at the exact values (or shifted away from them).
A, S2, S = 0.8, 0.5, 0.4


def chain_posterior(x):
    """Parameters of p(z1 | x) = N(m1, v1) and p(z2 | z1, x) = N(a z1 + b, v2)."""
    # z2 | z1, x: prior N(A z1, S2^2) times likelihood N(x; z2, S^2).
    v2 = 1 / (1 / S2**2 + 1 / S**2)
    a, b = v2 * A / S2**2, v2 * x / S**2
    # z1 | x: x | z1 ~ N(A z1, S2^2 + S^2).
    marginal = S2**2 + S**2
    v1 = 1 / (1 + A**2 / marginal)
    m1 = v1 * A * x / marginal
    return m1, v1, a, b, v2


def chain_evidence(x):
    return dist.Normal(t(0.0), t(math.sqrt(A**2 + S2**2 + S**2))).log_prob(x)


def chain_model(x):
    with pyro.plate("data", len(x)):
        z1 = pyro.sample("z1", dist.Normal(t(0.0), t(1.0)))
        z2 = pyro.sample("z2", dist.Normal(A * z1, t(S2)))
        pyro.sample("x", dist.Normal(z2, t(S)), obs=x)


def chain_guide_params(x, shift=0.0):
    m1, v1, a, b, v2 = chain_posterior(x)
    return {
        "m1": (m1 + shift).clone(),
        "s1": t(math.sqrt(v1)),
        "a": t(a),
        "b": (b - shift).clone(),
        "s2": t(math.sqrt(v2) * (1 + abs(shift))),
    }


def chain_guide(x):
    m1 = pyro.param("m1", lambda: chain_guide_params(x)["m1"])
    s1 = pyro.param("s1", lambda: chain_guide_params(x)["s1"], constraint=dist.constraints.positive)
    a = pyro.param("a", lambda: chain_guide_params(x)["a"])
    b = pyro.param("b", lambda: chain_guide_params(x)["b"])
    s2 = pyro.param("s2", lambda: chain_guide_params(x)["s2"], constraint=dist.constraints.positive)
    with pyro.plate("data", len(x)):
        z1 = pyro.sample("z1", dist.Normal(m1, s1))
        pyro.sample("z2", dist.Normal(a * z1 + b, s2))


def set_chain_params(x, shift):
    for name, value in chain_guide_params(x, shift).items():
        constraint = dist.constraints.positive if name.startswith("s") else dist.constraints.real
        pyro.param(name, value, constraint=constraint)


def guide_gradients(name, x, num_particles, seed, **extra):
    pyro.set_rng_seed(seed)
    estimator = get(name, num_particles=num_particles, **extra)
    loss = estimator.differentiable_loss(chain_model, chain_guide, x)
    params = [pyro.param(n).unconstrained() for n in ("m1", "s1", "a", "b", "s2")]
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


@pytest.mark.parametrize("name", ["stl", "dreg"])
def test_path_gradients_vanish_at_the_exact_posterior_with_dependent_sites(name):
    # q(z1 | x) q(z2 | z1, x) exact: log w = log p(x) for every draw, so the path derivative is
    # zero on every draw. Stopping gradients at the sampled values (not at the parameters) left
    # DReG's guide gradient nonzero here (z-scores -26 and +43 against IWAE's gradient).
    x = data(6, seed=2)
    set_chain_params(x, 0.0)
    for seed in range(3):
        grads = guide_gradients(name, x, 4, seed)
        assert float(grads.abs().max()) < 1e-10


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        pytest.param("dreg", "iwae", marks=pytest.mark.slow),
        pytest.param("stl", "elbo", marks=pytest.mark.slow),
        ("score", "elbo"),
    ],
)
def test_dependent_site_gradients_are_unbiased(name, reference):
    # Away from the posterior the guide gradient of DReG (STL, score) must have the expectation
    # of IWAE's (the ELBO's) reparameterized gradient. Over R = 400 seeds each, the z-score of
    # the difference of means per entry, with the two estimators' standard errors combined, is
    # N(0, 1) under unbiasedness; with 10 entries, |z| < 4.5 fails by chance with probability
    # about 1e-4, while the detached-value bugs gave |z| of 20-40.
    x = data(3, seed=4)
    set_chain_params(x, 0.7)
    draws = 400
    ours = torch.stack([guide_gradients(name, x, 3, seed) for seed in range(draws)])
    theirs = torch.stack([guide_gradients(reference, x, 3, 10_000 + s) for s in range(draws)])
    difference = ours.mean(0) - theirs.mean(0)
    error = (ours.var(0) / draws + theirs.var(0) / draws).sqrt()
    z = difference / error
    assert float(z.abs().max()) < 4.5, z


# -- 5. analytic KL when the guide visits sites in another order ------------------------------


def reversed_chain_guide(x):
    # The exact posterior factored the other way, p(z2 | x) p(z1 | z2): drawn z2 first.
    m1, v1, a, b, v2 = chain_posterior(x)
    # Joint of (z1, z2) | x: z1 ~ N(m1, v1), z2 = a z1 + b + N(0, v2).
    m2, var2 = a * m1 + b, a**2 * v1 + v2
    cov = a * v1
    with pyro.plate("data", len(x)):
        z2 = pyro.sample("z2", dist.Normal(m2, t(math.sqrt(var2))))
        loc1 = m1 + cov / var2 * (z2 - m2)
        pyro.sample("z1", dist.Normal(loc1, t(math.sqrt(v1 - cov**2 / var2))))


def test_meanfield_falls_back_to_monte_carlo_for_sites_drawn_out_of_order():
    # Model: z1, then z2 | z1. Guide: z2, then z1 | z2. KL(q(z2) || p(z2 | z1)) would be the
    # wrong conditional (measured loss 1.62 against the ELBO's 0.62 with 200k particles). z2 now
    # uses log p - log q; z1's closed-form KL stays valid (the model draws nothing before it).
    # With the exact posterior as guide, the mean over draws must be log p(x): the z-score over
    # 4000 particles is N(0, 1), and |z| < 4 fails by chance with probability 6e-5.
    x = data(4, seed=7)
    estimator = get("meanfield", num_particles=4000)
    with pytest.warns(UserWarning, match=r"\['z2'\].*Monte Carlo"):
        weights = estimator.log_weights(chain_model, reversed_chain_guide, x)
    log_w = weights.log_w
    z = (log_w.mean(0) - chain_evidence(x)) / (log_w.std(0) / math.sqrt(log_w.shape[0]))
    assert float(z.abs().max()) < 4.0


def test_meanfield_in_order_uses_the_closed_form_without_warning():
    x = data(4, seed=7)
    set_chain_params(x, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = get("meanfield").loss(chain_model, chain_guide, x)
    assert math.isfinite(loss)


# -- 6. nothing to train ----------------------------------------------------------------------


def factor_only_model():
    pyro.factor("f", t(-1.5))


def constant_delta_pair():
    def model():
        z = pyro.sample("z", dist.Normal(t(0.0), t(1.0)))
        pyro.sample("x", dist.Normal(z, t(1.0)), obs=t(0.5))

    def guide():
        pyro.sample("z", dist.Delta(t(0.2)))

    return model, guide


@pytest.mark.parametrize("name", NAMES)
def test_programs_with_nothing_to_train_step_without_error(name):
    # No parameter reaches the loss: Pyro's SVI skips the backward pass, and so must we (it
    # crashed with "element 0 of tensors does not require grad").
    estimator = get(name, **options(name))
    svi = SVI(factor_only_model, lambda: None, pyro.optim.Adam({"lr": 0.1}), estimator)
    assert svi.step() == pytest.approx(1.5)
    model, guide = constant_delta_pair()
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.1}), get(name, **options(name)))
    prior, likelihood = dist.Normal(t(0.0), t(1.0)), dist.Normal(t(0.2), t(1.0))
    expected = -float(prior.log_prob(t(0.2)) + likelihood.log_prob(t(0.5)))
    assert svi.step() == pytest.approx(expected, abs=1e-12)


# -- 7. one particle runs the program as written; vectorization failures say what to do ------


def shape_checking_pair():
    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(t(0.0), t(1.0)))
            if z.shape != (len(x),):
                raise ValueError(f"z has shape {tuple(z.shape)}")
            pyro.sample("x", dist.Normal(z, t(1.0)), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.zeros(len(x), dtype=F64))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(loc, t(1.0)))

    return model, guide


@pytest.mark.parametrize("name", [n for n in NAMES if n != "vimco"])  # vimco needs K >= 2
def test_one_particle_adds_no_plate(name):
    model, guide = shape_checking_pair()
    opts = options(name)
    opts = {k: v for k, v in opts.items() if k not in ("num_particles", "num_outer", "num_inner")}
    if name in ("miwae", "piwae"):
        opts.update(num_outer=1, num_inner=1)
    else:
        opts["num_particles"] = 1
    loss = get(name, **opts).differentiable_loss(model, guide, data(5))
    assert loss.requires_grad


@pytest.mark.parametrize("name", NAMES)
def test_unvectorizable_programs_say_so_and_run_in_a_loop(name):
    # A program that checks its shapes fails with its particles vectorized; the estimator then
    # runs them one at a time, as Pyro does by default, with one warning saying why (and gives
    # the loop's answer: at the exact posterior, the evidence).
    model, guide = shape_checking_pair()
    x = data(5)
    estimator = get(name, **OPTIONS[name])
    with pytest.warns(UserWarning, match="runs them one at a time instead"):
        weights = estimator.log_weights(model, guide, x)
    assert len(weights.passes) == weights.num_particles == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per program: the estimator remembers
        estimator.loss(model, guide, x)
    estimator = get(name, **OPTIONS[name], vectorize_particles=False)
    estimator.differentiable_loss(model, guide, x).backward()
    grad = pyro.param("loc").unconstrained().grad
    assert grad is not None and bool(grad.abs().sum() > 0)
    assert estimator.log_weights(model, guide, x).log_w.shape == (6, 5)


@pytest.mark.parametrize("name", ["elbo", "iwae", "dreg"])
def test_an_error_of_the_loop_as_well_does_not_switch_the_program_to_the_loop(name):
    # An error that the particle loop raises as well (a NaN parameter that Pyro's validation
    # refuses, say) is the program's own, not a vectorization failure: it is raised without the
    # warning that blames vectorization, and once the program is repaired its particles run
    # vectorized again (not K times as slowly for the rest of training).
    model, guide = subsampled_pair(batch_size=4)
    broken = {"now": False}

    def failing_model(x):
        if broken["now"]:
            raise ValueError("the program's own error")
        model(x)

    x = data(8)
    estimator = get(name, **OPTIONS[name])
    assert len(estimator.log_weights(failing_model, guide, x).passes) == 1
    broken["now"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="the program's own error"):
            estimator.loss(failing_model, guide, x)
    broken["now"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weights = estimator.log_weights(failing_model, guide, x)
    assert len(weights.passes) == 1 and weights.num_particles == 6


def test_the_loop_gives_the_vectorized_answer_at_the_exact_posterior():
    x = data(8)
    model, guide = subsampled_pair(batch_size=8)
    for name in NAMES:
        opts = options(name)
        if name == "meanfield":
            opts["num_particles"] = 300  # a loop of 4000 runs would be slow
        estimator = get(name, **opts, vectorize_particles=False)
        assert_loss(name, estimator, model, guide, (x,), -float(evidence(x).sum()))


# -- 8. masks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_masked_out_latent_sites(name):
    # Latents masked out entirely (poutine.mask(mask=False), or Distribution.mask(False))
    # contribute nothing. meanfield's closed-form KL of the second kind is a Python 0 in Pyro,
    # which crashed ('float' object has no attribute 'dim').
    x = data(5)
    model, guide = subsampled_pair(batch_size=5)

    def masked_model(x):
        with poutine.mask(mask=False):
            pyro.sample("w", dist.Normal(t(0.0), t(1.0)))
        pyro.sample("v", dist.Normal(t(0.0), t(1.0)).mask(False))
        model(x)

    def masked_guide(x):
        with poutine.mask(mask=False):
            pyro.sample("w", dist.Normal(t(3.0), t(2.0)))
        pyro.sample("v", dist.Normal(t(-1.0), t(0.5)).mask(False))
        guide(x)

    estimator = get(name, **options(name))
    assert_loss(name, estimator, masked_model, masked_guide, (x,), -float(evidence(x).sum()))


# -- 9. invalid programs are refused ----------------------------------------------------------


def test_guide_values_of_the_wrong_shape_are_refused():
    x = data(4)

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(t(0.0), t(1.0)).expand([len(x), 3]).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1), t(1.0)), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(t(0.0), t(1.0)).expand([len(x), 1]).to_event(1))

    for name in NAMES:
        with pytest.raises(ValueError, match="'z'"):
            get(name, **options(name)).loss(model, guide, x)


def test_a_plate_in_the_guide_but_not_in_the_model_is_refused():
    # Pyro warns ("Found plate statements in guide but not model") and goes on when the shapes
    # broadcast (a plate of size 1); the site's conditional independence then differs between
    # model and guide. A larger plate fails Pyro's own shape check first.
    def model(size):
        pyro.sample("z", dist.Normal(t(0.0), t(1.0)))

    def guide(size):
        with pyro.plate("extra", size):
            pyro.sample("z", dist.Normal(t(0.0), t(1.0)))

    for name in NAMES:
        with (
            pytest.warns(UserWarning, match="plate statements in guide but not model"),
            pytest.raises(ValueError, match=r"'z' lies in the plates \['extra'\] in the guide"),
        ):
            get(name, **OPTIONS[name]).loss(model, guide, 1)
        with pytest.raises(ValueError, match="shapes disagree at site 'z'"):
            get(name, **OPTIONS[name]).loss(model, guide, 3)


@pytest.mark.parametrize("name", ["stl", "dreg"])
def test_guide_factors_are_refused_by_path_gradients(name):
    x = data(4)
    model, guide = subsampled_pair(batch_size=4)

    def factored_guide(x):
        guide(x)
        pyro.factor("correction", t(0.1), has_rsample=True)

    with pytest.raises(ValueError, match=f"factor 'correction'.*'{name}'"):
        get(name, **options(name)).loss(model, factored_guide, x)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("stl", "dreg")])
def test_guide_factors_are_part_of_log_q(name):
    # A guide factor reweights q: it is subtracted from every log-weight.
    x = data(4)
    model, guide = subsampled_pair(batch_size=4)

    def factored_guide(x):
        guide(x)
        pyro.factor("correction", t(0.1), has_rsample=True)

    expected = -float(evidence(x).sum()) + 0.1
    assert_loss(name, get(name, **options(name)), model, factored_guide, (x,), expected)


# -- 10. observations outside the data plate that depend on its latents -----------------------


def coupled_model(x, total):
    # Observed per datapoint, and once more through the sum of all latents.
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(t(0.0), t(1.0)))
        pyro.sample("x", dist.Normal(z, t(1.0)), obs=x)
    pyro.sample("total", dist.Normal(z.sum(-1), t(1.0)), obs=total)


def coupled_guide(x, total):
    # Aimed at the coupling observation: sum z = total. A per-datapoint split of the weights
    # with "total" as a constant offset then reads E_q log p(total | z), far above its share of
    # log p(x, total).
    shift = (total - x.sum() / 2) / len(x)
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(x / 2 + shift, t(0.5)))


def _fifty(name):
    return (
        {"num_outer": 2, "num_inner": 10} if name in ("miwae", "piwae") else {"num_particles": 20}
    )


def test_a_reduction_over_the_wrong_dim_runs_the_particles_in_a_loop():
    # coupled_model's z.sum(-1) sums the data plate of one particle; with K particles in a plate
    # at dim -2 it leaves them at dim -1, a [K, K] log-density that Pyro's shape check accepts
    # (a wrong bound, silently). It is caught, and the particles run one at a time.
    estimator = get("iwae", num_particles=4)
    with pytest.warns(UserWarning, match=r"'total'.*dim -1.*one at a time"):
        weights = estimator.log_weights(coupled_model, coupled_guide, t([0.3, -1.1]), t(1.0))
    assert len(weights.passes) == 4 and weights.log_w.shape == (4, 1)


def coupled_evidence(x, total):
    count = len(x)
    # (x, total) jointly Gaussian: x = z + e, total = sum z + e'.
    cov = torch.zeros(count + 1, count + 1, dtype=F64)
    cov[:count, :count] = 2 * torch.eye(count, dtype=F64)
    cov[:count, count] = cov[count, :count] = 1.0
    cov[count, count] = count + 1.0
    return dist.MultivariateNormal(torch.zeros(count + 1, dtype=F64), cov).log_prob(
        torch.cat([x, total.reshape(1)])
    )


@pytest.mark.parametrize("name", ["iwae", "renyi", "miwae", "dreg"])
def test_observations_outside_the_data_plate_make_the_weights_joint(name):
    # "total" depends on every z_i, so log w does not split per datapoint: the weights are one
    # joint column, and E[IWAE_K] <= log p(x) (the per-datapoint split gave -5.29 against the
    # exact -6.97). Over 100 repetitions the mean bound must not exceed log p(x) by more than
    # 4 standard errors (chance 3e-5 if it is a bound).
    x, total = t([0.3, -1.1, 0.8]), t(2.5)
    # z.sum(-1) is written for one particle: the K particles run in a loop (asked for here; the
    # estimator would fall back to it with a warning).
    estimator = get(name, **{**options(name), **_fifty(name)}, vectorize_particles=False)
    bounds = torch.tensor(
        [-estimator.loss(coupled_model, coupled_guide, x, total) for _ in range(100)]
    )
    weights = estimator.log_weights(coupled_model, coupled_guide, x, total)
    assert weights.log_w.shape[1] == 1
    exact = float(coupled_evidence(x, total))
    assert float(bounds.mean()) < exact + 4 * float(bounds.std()) / math.sqrt(len(bounds))


def test_observations_outside_the_data_plate_that_do_not_depend_on_it_stay_per_datapoint():
    x = data(5)
    model, guide = subsampled_pair(batch_size=5)

    def regularized(x):
        model(x)
        pyro.factor("prior_on_nothing", t(-0.25))

    weights = get("iwae", num_particles=3).log_weights(regularized, guide, x)
    assert weights.log_w.shape == (3, 5) and float(weights.offset) == pytest.approx(-0.25)


# -- 11. parameters outside the param store ---------------------------------------------------


@pytest.mark.parametrize("name", ["piwae", "dreg", "stl"])
def test_parameters_captured_by_closure_get_their_gradient(name):
    # The same program with the guide's width a closure nn.Parameter or a pyro.param: the same
    # seed gives the same draws, so the gradients must be equal.
    x = data(4)
    width = torch.nn.Parameter(t(0.9))

    def model(x):
        with pyro.plate("data", len(x)):
            z1 = pyro.sample("z1", dist.Normal(t(0.0), t(1.0)))
            z2 = pyro.sample("z2", dist.Normal(z1, t(0.5)))
            pyro.sample("x", dist.Normal(z2, t(0.5)), obs=x)

    def guide(x, scale=None):
        scale = width if scale is None else scale
        with pyro.plate("data", len(x)):
            z1 = pyro.sample("z1", dist.Normal(x / 2, scale))
            pyro.sample("z2", dist.Normal(z1, scale))

    def registered(x):
        guide(x, pyro.param("width", t(0.9)))

    pyro.set_rng_seed(0)
    get(name, **options(name)).differentiable_loss(model, guide, x).backward()
    pyro.set_rng_seed(0)
    get(name, **options(name)).differentiable_loss(model, registered, x).backward()
    assert width.grad is not None
    torch.testing.assert_close(width.grad, pyro.param("width").unconstrained().grad)


# -- 12. scales, Rényi near alpha = 1 ---------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_a_minibatch_scaled_by_hand_is_a_subsampled_plate(name):
    # poutine.scale(scale=N / B) around a data plate of B points (older Pyro code) must give
    # the bound of a plate of size N subsampled to the same B points: the scale multiplies each
    # datapoint's bound; it does not temper the weights. A guide away from the posterior makes
    # the weights vary, so that tempering would show; the same seed gives the same draws.
    x = data(5)
    loc, scale = posterior(x)

    def model(x, num_data=None):
        subsample = None if num_data is None else torch.arange(len(x))
        with pyro.plate("data", num_data or len(x), subsample=subsample):
            z = pyro.sample("z", dist.Normal(t(PRIOR_LOC), t(PRIOR_SCALE)))
            pyro.sample("x", dist.Normal(z, t(NOISE)), obs=x)

    def guide(x, num_data=None):
        subsample = None if num_data is None else torch.arange(len(x))
        with pyro.plate("data", num_data or len(x), subsample=subsample):
            pyro.sample("z", dist.Normal(loc + 0.4, 1.5 * scale))

    def by_hand(fn):
        def scaled(x):
            with poutine.scale(scale=4.0):
                fn(x)

        return scaled

    pyro.set_rng_seed(1)
    manual = get(name, **OPTIONS[name]).loss(by_hand(model), by_hand(guide), x)
    pyro.set_rng_seed(1)
    subsampled = get(name, **OPTIONS[name]).loss(model, guide, x, num_data=20)
    assert manual == pytest.approx(subsampled, rel=1e-12)


def test_renyi_reaches_the_elbo_smoothly():
    log_w = torch.randn(50, 7) * 3 - 100  # float32, far from 0 as real log-weights are
    elbo = log_w.double().mean(0)
    for gap in (1e-1, 1e-3, 1e-6, 0.0):
        got = get("renyi", alpha=1 - gap).bound(log_w).double()
        # L_alpha = ELBO + (1 - alpha) Var(log w) / 2 + O((1 - alpha)^2)
        expected = elbo + gap * log_w.double().var(0, correction=0) / 2
        tolerance = 1e-4 * 100 + (gap * 9) ** 2 * 50  # float32 rounding of ~100, O(gap^2) rest
        assert torch.allclose(got, expected, atol=tolerance), (gap, got - expected)
    assert torch.equal(get("renyi", alpha=1.0).bound(log_w), log_w.mean(0))


# -- Pyro's autoguides, obs_mask --------------------------------------------------------------


def global_model(x):
    # One latent mean shared by all datapoints: posterior N(m, v) in closed form.
    loc = pyro.sample("loc", dist.Normal(t(PRIOR_LOC), t(PRIOR_SCALE)))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(loc, t(NOISE)), obs=x)


def global_posterior(x):
    precision = 1 / PRIOR_SCALE**2 + len(x) / NOISE**2
    mean = (PRIOR_LOC / PRIOR_SCALE**2 + float(x.sum()) / NOISE**2) / precision
    return mean, precision**-0.5


def global_evidence(x):
    count = len(x)
    covariance = PRIOR_SCALE**2 * torch.ones(count, count, dtype=F64)
    covariance += NOISE**2 * torch.eye(count, dtype=F64)
    mean = torch.full((count,), PRIOR_LOC, dtype=F64)
    return float(dist.MultivariateNormal(mean, covariance).log_prob(x))


@pytest.mark.parametrize("name", [n for n in NAMES if n != "meanfield"])
def test_pyro_autoguide_at_the_exact_posterior(name):
    # AutoMultivariateNormal: an auxiliary latent, then a Delta site per model latent carrying
    # the log-Jacobian. Set to the exact posterior, every weight is log p(x), and the path
    # gradients (STL, DReG) of its parameters vanish.
    from pyro.infer.autoguide import AutoMultivariateNormal
    from pyro.nn import PyroParam

    x = data(6)
    guide = AutoMultivariateNormal(global_model)
    guide(x)
    mean, sd = global_posterior(x)
    guide.loc = PyroParam(t([mean]))
    guide.scale = PyroParam(t([sd]), constraint=guide.scale_constraint)
    estimator = get(name, **OPTIONS[name])
    weights = estimator.log_weights(global_model, guide, x)
    expected = torch.full_like(weights.log_w, global_evidence(x))
    torch.testing.assert_close(weights.log_w, expected, rtol=0, atol=1e-9)
    if name in ("stl", "dreg"):
        loss = estimator.differentiable_loss(global_model, guide, x)
        grads = torch.autograd.grad(loss, [guide.loc, guide.scale_unconstrained])
        assert max(float(g.abs().max()) for g in grads) < 1e-9


@pytest.mark.parametrize("name", NAMES)
def test_pyro_autoguides_train_with_every_estimator(name):
    from pyro.infer.autoguide import AutoDelta, AutoDiagonalNormal, AutoIAFNormal, AutoNormal

    x = data(6)
    for make in (AutoNormal, AutoDiagonalNormal, AutoDelta, lambda m: AutoIAFNormal(m, [4])):
        pyro.clear_param_store()
        svi = SVI(
            global_model,
            make(global_model),
            pyro.optim.Adam({"lr": 0.01}),
            get(name, **OPTIONS[name]),
        )
        for _ in range(3):
            assert math.isfinite(svi.step(x))


def test_guide_messengers_are_refused():
    from pyro.infer.autoguide import AutoNormalMessenger

    with pytest.raises(TypeError, match="GuideMessenger.*AutoNormal"):
        get("elbo").loss(global_model, AutoNormalMessenger(global_model), data(4))


@pytest.mark.parametrize("name", [n for n in NAMES if n != "meanfield"])
def test_obs_mask_splits_observed_and_imputed_entries(name):
    # pyro.sample(..., obs=x, obs_mask=m) observes x where m holds and makes the rest the latent
    # "x_unobserved", which the guide samples where the model imputes (the guide masks the rest,
    # as the model does). With the exact posterior for observed entries and the prior (z, then
    # x | z) for masked ones, each weight is log p(x_i) where observed and 0 where masked.
    x = data(5)
    mask = torch.tensor([True, False, True, True, False])

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(t(PRIOR_LOC), t(PRIOR_SCALE)))
            pyro.sample("x", dist.Normal(z, t(NOISE)), obs=x, obs_mask=mask)

    def guide(x):
        loc, scale = posterior(x)
        loc = torch.where(mask, loc, t(PRIOR_LOC))
        scale = torch.where(mask, scale, t(PRIOR_SCALE))
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(loc, scale))
            with poutine.mask(mask=~mask):
                pyro.sample("x_unobserved", dist.Normal(z, t(NOISE)))

    weights = get(name, **OPTIONS[name]).log_weights(model, guide, x)
    expected = torch.where(mask, evidence(x), t(0.0)).expand_as(weights.log_w)
    torch.testing.assert_close(weights.log_w, expected, rtol=0, atol=1e-9)


def test_a_guide_scoring_entries_the_model_masks_out_warns():
    # Without the mask in the guide, its density at the observed entries of x_unobserved would
    # count in log q although the model ignores those values.
    x = data(3)
    mask = torch.tensor([True, False, True])

    def model(x):
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(t(0.0), t(1.0)), obs=x, obs_mask=mask)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("x_unobserved", dist.Normal(t(0.0), t(1.0)))

    with pytest.warns(UserWarning, match="'x_unobserved'.*mask"):
        get("elbo").loss(model, guide, x)


@pytest.mark.parametrize("name", ["stl", "dreg"])
def test_distributions_that_cannot_score_a_detached_sample_are_refused(name):
    # Pyro's straight-through relaxation keeps the soft sample on an attribute that .detach()
    # drops: log q at the detached copy is another number, and the path gradient would be wrong.
    x = data(4)

    def model(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.RelaxedBernoulliStraightThrough(t(0.5), probs=t(0.4)))
            pyro.sample("x", dist.Normal(t(0.0), t(1.0)), obs=x)

    def guide(x):
        probs = pyro.param("probs", torch.full((len(x),), 0.5, dtype=F64))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.RelaxedBernoulliStraightThrough(t(0.5), probs=probs))

    with pytest.raises(ValueError, match=r"RelaxedBernoulliStraightThrough.*site 'z'.*detached"):
        get(name, **OPTIONS[name]).loss(model, guide, x)
