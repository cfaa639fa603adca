"""Enumerated latents: the model's are summed out of log p exactly by every estimator; the
guide's are summed out by ``elbo`` (through Pyro's TraceEnum_ELBO) and refused by the others."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from cases import OPTIONS
from pyro.infer import TraceEnum_ELBO

from pyro_vi.estimators import ESTIMATORS, get

F64 = torch.float64
NAMES = sorted(ESTIMATORS)
PROBS = torch.tensor([0.3, 0.7], dtype=F64)
LOCS = torch.tensor([-1.0, 1.5], dtype=F64)
NOISE = torch.tensor(0.8, dtype=F64)


def t(value):
    return torch.as_tensor(value, dtype=F64)


def mixture_model(x):
    with pyro.plate("data", len(x)):
        c = pyro.sample("c", dist.Categorical(PROBS), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(LOCS[c], NOISE), obs=x)


def mixture_evidence(x):
    components = dist.Normal(LOCS, NOISE).log_prob(x.unsqueeze(-1))
    return torch.logsumexp(PROBS.log() + components, -1)


@pytest.mark.parametrize("name", NAMES)
def test_a_model_with_only_enumerated_latents_has_its_exact_evidence(name):
    # Nothing is sampled: every log-weight is log sum_c p(c) p(x_i | c), exactly.
    x = t([0.3, -1.2, 2.0, 0.9])
    weights = get(name, **OPTIONS[name]).log_weights(mixture_model, lambda x: None, x)
    expected = mixture_evidence(x).expand_as(weights.log_w)
    torch.testing.assert_close(weights.log_w, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("vectorize", [True, False])
def test_a_batch_of_one_datapoint_with_an_enumerated_latent(name, vectorize):
    # A data plate of size 1 (batch_size=1, or an epoch's last batch) has no dim in Pyro's
    # packed tensors; contracting the enumerated latent to that plate raised KeyError (found by
    # the random-program property test).
    x = t([0.7])
    options = {**OPTIONS[name], "vectorize_particles": vectorize}
    weights = get(name, **options).log_weights(mixture_model, lambda x: None, x)
    expected = mixture_evidence(x).expand_as(weights.log_w)
    torch.testing.assert_close(weights.log_w, expected, rtol=0, atol=1e-12)


def subsampled_mixture_model(x):
    with pyro.plate("data", len(x), subsample_size=3) as index:
        c = pyro.sample("c", dist.Categorical(PROBS), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(LOCS[c], NOISE), obs=x[index])


@pytest.mark.parametrize("name", NAMES)
def test_particles_in_a_loop_share_the_minibatch_of_a_plate_only_the_model_enters(name):
    # The guide has no site in the subsampled plate (its latent is enumerated out of the model),
    # so the model draws the indices: each particle run one at a time must still score the first
    # run's minibatch, or a multi-sample bound reduces particles of different datapoints.
    x = t([0.3, -1.2, 2.0, 0.9, -0.4, 1.7, 0.1, -2.2])
    options = {**OPTIONS[name], "vectorize_particles": False}
    pyro.set_rng_seed(0)
    weights = get(name, **options).log_weights(subsampled_mixture_model, lambda x: None, x)
    indices = [run.traces.raw_model_trace.nodes["data"]["value"] for run in weights.passes]
    assert len(indices) == weights.num_particles > 1
    for index in indices:
        torch.testing.assert_close(index, indices[0])
    expected = mixture_evidence(x[indices[0]]).expand_as(weights.log_w)
    torch.testing.assert_close(weights.log_w, expected, rtol=0, atol=1e-12)


def nested_model(x):
    # A continuous latent per datapoint, a discrete one per datapoint and feature (x is [D, N]
    # under automatic dims: "data" at dim -1, "features" at -2).
    with pyro.plate("data", x.shape[-1]):
        z = pyro.sample("z", dist.Normal(t(0.0), t(1.0)))
        with pyro.plate("features", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(PROBS), infer={"enumerate": "parallel"})
            pyro.sample("x", dist.Normal(z + LOCS[c], NOISE), obs=x)


def nested_guide(x):
    with pyro.plate("data", x.shape[-1]):
        pyro.sample("z", dist.Normal(x.mean(0) / 2, t(0.7)))


@pytest.mark.parametrize("name", [n for n in NAMES if n != "meanfield"])
@pytest.mark.parametrize("particles", [1, 4])
def test_enumeration_in_a_nested_plate_under_the_data_plate(name, particles):
    # log w_ik = log p(z_ik) + sum_j log sum_c p(c) p(x_ji | z_ik, c) - log q(z_ik | x_i): the
    # sum over c per (datapoint, feature), the product over features, per datapoint.
    if particles == 1 and name == "vimco":
        pytest.skip("vimco needs two particles")
    x = t([[0.3, -1.2, 2.0, 0.9], [1.0, 0.1, -0.5, 0.2], [0.0, 0.0, 1.0, -1.0]])
    options = dict(OPTIONS[name])
    if name in ("miwae", "piwae"):
        options.update(num_outer=1, num_inner=particles)
    else:
        options["num_particles"] = particles
    weights = get(name, **options).log_weights(nested_model, nested_guide, x)
    z = weights.guide_trace.nodes["z"]["value"].reshape(particles, -1)
    prior = dist.Normal(t(0.0), t(1.0)).log_prob(z)
    guide = dist.Normal(x.mean(0) / 2, t(0.7)).log_prob(z)
    components = dist.Normal(z[:, None, :, None] + LOCS, NOISE).log_prob(x[None, :, :, None])
    likelihood = torch.logsumexp(PROBS.log() + components, -1).sum(1)
    torch.testing.assert_close(weights.log_w, prior + likelihood - guide, rtol=0, atol=1e-12)


def test_a_global_enumerated_latent_makes_the_weights_joint():
    # One discrete latent shared by all datapoints: p(x) = sum_c p(c) prod_i p(x_i | c) does
    # not split per datapoint.
    x = t([0.3, -1.2, 2.0])

    def model(x):
        c = pyro.sample("c", dist.Categorical(PROBS), infer={"enumerate": "parallel"})
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(LOCS[c], NOISE), obs=x)

    weights = get("iwae", num_particles=3).log_weights(model, lambda x: None, x)
    components = dist.Normal(LOCS, NOISE).log_prob(x.unsqueeze(-1)).sum(0)
    expected = torch.logsumexp(PROBS.log() + components, -1)
    assert weights.log_w.shape == (3, 1)
    torch.testing.assert_close(weights.log_w, expected.expand(3, 1), rtol=0, atol=1e-12)


def enumerated_guide(x):
    probs = pyro.param(
        "probs", t([0.5, 0.5]).expand(len(x), 2).clone(), constraint=dist.constraints.simplex
    )
    with pyro.plate("data", len(x)):
        pyro.sample("c", dist.Categorical(probs), infer={"enumerate": "parallel"})


def plain_mixture_model(x):
    with pyro.plate("data", len(x)):
        c = pyro.sample("c", dist.Categorical(PROBS))
        pyro.sample("x", dist.Normal(LOCS[c], NOISE), obs=x)


def test_elbo_sums_the_guides_enumerated_sites_through_trace_enum_elbo():
    x = t([0.3, -1.2, 2.0, 0.9])
    ours = get("elbo").differentiable_loss(plain_mixture_model, enumerated_guide, x)
    (ours_grad,) = torch.autograd.grad(ours, [pyro.param("probs").unconstrained()])
    theirs = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(
        plain_mixture_model, enumerated_guide, x
    )
    (their_grad,) = torch.autograd.grad(theirs, [pyro.param("probs").unconstrained()])
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours_grad, their_grad)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "elbo"])
def test_enumerated_guide_sites_are_refused_not_sampled(name):
    with pytest.raises(ValueError, match=r"guide marks \['c'\] for enumeration.*'elbo'"):
        get(name, **OPTIONS[name]).loss(plain_mixture_model, enumerated_guide, t([0.3, 1.0]))


def test_sequential_enumeration_in_the_model_is_refused():
    def model(x):
        with pyro.plate("data", len(x)):
            c = pyro.sample("c", dist.Categorical(PROBS), infer={"enumerate": "sequential"})
            pyro.sample("x", dist.Normal(LOCS[c], NOISE), obs=x)

    with pytest.raises(NotImplementedError, match="sequential"):
        get("iwae").loss(model, lambda x: None, t([0.3, 1.0]))


def test_elbo_with_an_enumerated_guide_and_nothing_to_train_still_returns_a_tensor():
    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("c", dist.Categorical(PROBS), infer={"enumerate": "parallel"})

    loss = get("elbo").differentiable_loss(plain_mixture_model, guide, t([0.3, 1.0]))
    assert isinstance(loss, torch.Tensor) and not loss.requires_grad
    expected = TraceEnum_ELBO(max_plate_nesting=1).loss(plain_mixture_model, guide, t([0.3, 1.0]))
    assert float(loss) == pytest.approx(expected)


def test_shapes_checked_by_the_program_see_the_real_context():
    # A program that asserts the shapes it gets with 10 vectorized particles and two plates
    # (Pyro's test_vectorized_num_particles): with max_plate_nesting given, the first run that
    # inspects the program runs it in that context too.
    data = torch.ones(50, 2)

    def model():
        with pyro.plate("components", 2):
            p = pyro.sample("p", dist.Beta(t(1.1), t(1.1)))
            assert p.shape == (10, 1, 2)
            with pyro.plate("data", data.shape[0]):
                pyro.sample("obs", dist.Bernoulli(p), obs=data.double())

    def guide():
        with pyro.plate("components", 2):
            pyro.sample("p", dist.Beta(t(1.1), t(1.1)))

    for name in ("elbo", "iwae", "dreg"):
        loss = get(name, num_particles=10, max_plate_nesting=2).loss(model, guide)
        assert loss == loss  # ran, not NaN


ENUMERATE = {"enumerate": "parallel"}


def chain_model():
    # Pyro's test_enum_in_model_ok: the program asserts the dims TraceEnum_ELBO gives its
    # enumerated sites, the model's left of the guide's.
    p = pyro.param("p", t(0.25))
    a = pyro.sample("a", dist.Bernoulli(p))
    b = pyro.sample("b", dist.Bernoulli(p + a / 2))
    c = pyro.sample("c", dist.Bernoulli(p + b / 2), infer=ENUMERATE)
    d = pyro.sample("d", dist.Bernoulli(p + c / 2))
    e = pyro.sample("e", dist.Bernoulli(p + d / 2))
    f = pyro.sample("f", dist.Bernoulli(p + e / 2), infer=ENUMERATE)
    pyro.sample("g", dist.Bernoulli(p + f / 2), obs=t(0.0))
    shapes = (b.shape, c.shape, d.shape, e.shape, f.shape)
    assert shapes == ((2,), (2, 1, 1), (2,), (2, 1), (2, 1, 1, 1))


def chain_guide():
    p = pyro.param("p", t(0.25))
    a = pyro.sample("a", dist.Bernoulli(p))
    b = pyro.sample("b", dist.Bernoulli(p + a / 2), infer=ENUMERATE)
    d = pyro.sample("d", dist.Bernoulli(p + b / 2))
    e = pyro.sample("e", dist.Bernoulli(p + d / 2), infer=ENUMERATE)
    assert (b.shape, d.shape, e.shape) == ((2,), (2,), (2, 1))


def test_a_program_asserting_trace_enum_dims_runs_with_elbo():
    # The first run that inspects the program enumerates the model's sites left of the
    # guide's, as TraceEnum_ELBO does; it used to restart the model's dims at the guide's and
    # crash on the program's own assert.
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    with pytest.warns(UserWarning, match="TraceEnum_ELBO"):
        ours = get("elbo", max_plate_nesting=0).loss(chain_model, chain_guide)
    pyro.set_rng_seed(0)
    theirs = TraceEnum_ELBO(max_plate_nesting=0).loss(chain_model, chain_guide)
    assert ours == pytest.approx(theirs, rel=1e-12)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "elbo"])
def test_a_program_asserting_trace_enum_dims_for_one_particle_is_refused_clearly(name):
    # With K vectorized particles the program's asserts fail, and run without enumeration they
    # fail too; it runs with one particle, so the refusal of the guide's enumeration is what
    # the user sees, not the program's AssertionError.
    pyro.clear_param_store()
    estimator = get(name, **OPTIONS[name], max_plate_nesting=0)
    with pytest.raises(ValueError, match=r"guide marks \['b', 'e'\] for enumeration"):
        estimator.loss(chain_model, chain_guide)


def test_a_program_checking_sequential_enumeration_shapes_is_probed_as_trace_enum_runs_it():
    # Pyro's test_enumerate_parallel_plate_ok with enumerate="sequential", expand=False: each
    # run of TraceEnum_ELBO gives a sequential site one value of its support, with a size-1 dim
    # for each plate; the program asserts it. The first run that inspects the program does so
    # too (it used to draw the site, and crash on the assert).
    def model():
        with pyro.plate("outer", 3):
            x = pyro.sample("x", dist.Categorical(torch.ones(3, 4) / 4))
            assert x.shape == (1,)

    guide = pyro.infer.config_enumerate(model, "sequential", expand=False)
    with pytest.warns(UserWarning, match="TraceEnum_ELBO"):
        ours = get("elbo", max_plate_nesting=1).loss(model, guide)
    theirs = TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide)
    assert ours == pytest.approx(theirs, rel=1e-12)
    with pytest.raises(ValueError, match=r"guide marks \['x'\] for enumeration"):
        get("iwae", num_particles=3, max_plate_nesting=1).loss(model, guide)


MARKOV_P = torch.tensor([[0.8, 0.2], [0.3, 0.7]], dtype=F64)
MARKOV_Y = t([0.5, -0.3])


def markov_model():
    x = torch.tensor(0)
    for step in pyro.markov(range(2)):
        x = pyro.sample(f"x_{step}", dist.Categorical(MARKOV_P[x]))
        pyro.sample(f"y_{step}", dist.Normal(x.to(F64), t(1.0)), obs=MARKOV_Y[step])


def markov_guide():
    # A sequential site, then a parallel one in the same markov scope; TraceEnum_ELBO gives
    # the parallel one shape (2,), and the program checks it.
    x = torch.tensor(0)
    for step in pyro.markov(range(2)):
        how = "sequential" if step == 0 else "parallel"
        x = pyro.sample(f"x_{step}", dist.Categorical(MARKOV_P[x]), infer={"enumerate": how})
    assert x.shape == (2,)


def test_a_sequential_site_is_booked_in_its_markov_scope_before_it_gets_its_value():
    # The probe's handler giving a sequential site its value lay inside the enum handler, which
    # then never booked the site, and the parallel site's markov scope raised KeyError inside
    # Pyro (found in review).
    with pytest.warns(UserWarning, match="TraceEnum_ELBO"):
        ours = get("elbo", max_plate_nesting=0).loss(markov_model, markov_guide)
    theirs = TraceEnum_ELBO(max_plate_nesting=0).loss(markov_model, markov_guide)
    assert ours == pytest.approx(theirs, rel=1e-12)
    with pytest.raises(ValueError, match=r"guide marks \['x_0', 'x_1'\] for enumeration"):
        get("iwae", max_plate_nesting=0).loss(markov_model, markov_guide)
