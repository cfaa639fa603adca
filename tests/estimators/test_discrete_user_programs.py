"""Discrete latents and enumeration in programs written the way users write them: a masked
(padded) HMM, a Gaussian mixture under AutoDelta, the semi-supervised M2 VAE's label, Pyro's
straight-through relaxations, and Pyro's ``infer={"baseline": ...}`` options."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from cases import OPTIONS
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, config_enumerate
from pyro.infer.autoguide import AutoDelta
from pyro.ops.indexing import Vindex

from pyro_vi.estimators import ESTIMATORS, get

F64 = torch.float64
NAMES = sorted(ESTIMATORS)
ENUMERATE = {"enumerate": "parallel"}


def t(value):
    return torch.as_tensor(value, dtype=F64)


def grads(loss, params):
    return torch.autograd.grad(loss, params, allow_unused=True)


# -- a masked HMM: padded steps are summed out, not counted ------------------------------------

SEQUENCES = t([[[1, 0], [0, 0], [1, 1], [0, 1]], [[0, 1], [1, 1], [0, 0], [0, 0]]])
LENGTHS = torch.tensor([4, 2])


def padded_hmm(sequences, lengths, left=False):
    # Pyro's examples/hmm.py: variable-length sequences padded to T, each step masked past the
    # sequence's length (or, with left=True, before its start), hidden states enumerated.
    probs_x = pyro.param(
        "probs_x", t([[0.8, 0.2], [0.3, 0.7]]), constraint=dist.constraints.simplex
    )
    probs_y = pyro.param(
        "probs_y", t([[0.2, 0.7], [0.6, 0.1]]), constraint=dist.constraints.unit_interval
    )
    steps = sequences.shape[1]
    tones_plate = pyro.plate("tones", sequences.shape[-1], dim=-1)
    with pyro.plate("sequences", len(sequences), dim=-2):
        x = 0
        for step in pyro.markov(range(steps)):
            present = (steps - 1 - step < lengths) if left else (step < lengths)
            with poutine.mask(mask=present.unsqueeze(-1)):
                x = pyro.sample(
                    f"x_{step}", dist.Categorical(Vindex(probs_x)[..., x, :]), infer=ENUMERATE
                )
                with tones_plate as tones:
                    pyro.sample(
                        f"y_{step}",
                        dist.Bernoulli(Vindex(probs_y)[..., x, tones]),
                        obs=sequences[:, step],
                    )


@pytest.mark.parametrize("left", [False, True], ids=["right-padded", "left-padded"])
@pytest.mark.parametrize("name", ["elbo", "iwae", "dreg"])
def test_a_padded_hmm_has_trace_enum_elbos_bound_and_gradient(name, left):
    # A masked enumerated x_t was summed with its own log p masked too: each of its H values
    # counted with weight 1, adding log H per padded step (here 2 log 2, the bound above
    # log p(y)), and before unmasked steps (left padding) the chain's prior was dropped, so the
    # gradient of probs_x differed as well. TraceEnum_ELBO sums x_t's p(x_t | x_{t-1}) unmasked.
    def guide(sequences, lengths, left=False):
        pass

    pyro.clear_param_store()
    ours = get(name, **OPTIONS[name]).differentiable_loss(
        padded_hmm, guide, SEQUENCES, LENGTHS, left
    )
    theirs = TraceEnum_ELBO(max_plate_nesting=2).differentiable_loss(
        padded_hmm, guide, SEQUENCES, LENGTHS, left
    )
    params = [pyro.param(n).unconstrained() for n in ("probs_x", "probs_y")]
    assert float(ours.detach()) == pytest.approx(float(theirs.detach()), abs=1e-12)
    for mine, pyros in zip(grads(ours, params), grads(theirs, params), strict=True):
        torch.testing.assert_close(mine, pyros, rtol=0, atol=1e-12)


def test_too_small_a_max_plate_nesting_is_refused_by_name():
    # The particle plate (or the enumerated dims) then lands on the plate at dim -2, where
    # Pyro fails with "Shape mismatch inside plate('sequences')" and says nothing of the cause.
    with pytest.raises(ValueError, match=r"max_plate_nesting=1.*'sequences': -2.*at least 2"):
        get("iwae", num_particles=3, max_plate_nesting=1).loss(
            padded_hmm, lambda *args: None, SEQUENCES, LENGTHS
        )


# -- a Gaussian mixture with an enumerated assignment and an AutoDelta guide -----------------

DATA = t([0.0, 1.0, 10.0, 11.0, 12.0])


@config_enumerate
def gmm(data):
    # Pyro's GMM tutorial, written for one particle (locs[assignment] does not vectorize).
    weights = pyro.sample("weights", dist.Dirichlet(t([0.5, 0.5])))
    scale = pyro.sample("scale", dist.LogNormal(t(0.0), t(2.0)))
    with pyro.plate("components", 2):
        locs = pyro.sample("locs", dist.Normal(t(0.0), t(10.0)))
    with pyro.plate("data", len(data)):
        assignment = pyro.sample("assignment", dist.Categorical(weights))
        pyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)


def gmm_init(site):
    return {"weights": t([0.5, 0.5]), "scale": t(2.0), "locs": t([1.0, 10.0])}[site["name"]]


@pytest.mark.parametrize("particles", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_a_mixture_under_autodelta_has_trace_enum_elbos_loss_and_gradient(name, particles):
    # With every latent a point mass and the assignment summed out, every bound is log p(x,
    # MAP values) exactly, and every gradient is its gradient. 'score' and 'vimco' detached the
    # Delta values as if they were draws: the MAP parameters got no gradient at all.
    if name == "vimco" and particles == 1:
        pytest.skip("vimco needs two particles")
    pyro.clear_param_store()
    guide = AutoDelta(poutine.block(gmm, expose=["weights", "scale", "locs"]), init_loc_fn=gmm_init)
    guide(DATA)
    options = {"vectorize_particles": False}
    if name in ("miwae", "piwae"):
        options.update(num_outer=1, num_inner=particles)
    else:
        options.update({k: v for k, v in OPTIONS[name].items() if k != "num_particles"})
        options["num_particles"] = particles
    ours = get(name, **options).differentiable_loss(gmm, guide, DATA)
    theirs = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(gmm, guide, DATA)
    params = [p.unconstrained() for _, p in pyro.get_param_store().items()]
    assert float(ours.detach()) == pytest.approx(float(theirs.detach()), abs=1e-10)
    for mine, pyros in zip(grads(ours, params), grads(theirs, params), strict=True):
        torch.testing.assert_close(mine, pyros, rtol=0, atol=1e-10)


# -- Pyro's straight-through relaxations in the score-function estimators --------------------


def relaxed_program(kind):
    temperature = t(0.5)

    def relaxed(**kwargs):
        if kind == "bernoulli":
            return dist.RelaxedBernoulliStraightThrough(temperature, **kwargs)
        return dist.RelaxedOneHotCategoricalStraightThrough(temperature, **kwargs)

    weights = t([-1.0, 0.5, 2.0])

    def model(x):
        with pyro.plate("data", len(x)):
            if kind == "bernoulli":
                z = pyro.sample("z", relaxed(probs=t(0.4).expand(len(x))))
            else:
                z = pyro.sample("z", relaxed(probs=t([0.2, 0.5, 0.3]).expand(len(x), 3)))
                z = z @ weights
            pyro.sample("x", dist.Normal(z, t(0.5)), obs=x)

    def guide(x):
        shape = (len(x),) if kind == "bernoulli" else (len(x), 3)
        logits = pyro.param(f"logits_{kind}", torch.full(shape, 0.1, dtype=F64))
        with pyro.plate("data", len(x)):
            pyro.sample("z", relaxed(logits=logits))

    return model, guide


@pytest.mark.parametrize("kind", ["bernoulli", "one_hot"])
@pytest.mark.parametrize(("name", "reference"), [("score", "elbo"), ("vimco", "iwae")])
def test_straight_through_relaxations_keep_their_soft_sample_when_detached(name, reference, kind):
    # They keep the soft sample in value._unquantize and score it there; 'score' and 'vimco'
    # detached the value and lost it, scoring the hard value: a wrong bound for the Bernoulli
    # (3.20 against 3.46 here), NaN for the one-hot one. Same draws, same bound as 'elbo'/'iwae'.
    model, guide = relaxed_program(kind)
    x = t([0.2, 0.9, 0.6])
    losses = {}
    for estimator in (name, reference):
        pyro.set_rng_seed(0)
        losses[estimator] = get(estimator, num_particles=3).loss(model, guide, x)
    assert math.isfinite(losses[name])
    assert losses[name] == pytest.approx(losses[reference], abs=1e-10)


# -- Pyro's baseline options (TraceGraph_ELBO's infer={"baseline": {...}}) -------------------

X = t([-0.4, 0.3, 1.9, 2.6])


def bernoulli_model(x):
    with pyro.plate("data", len(x)):
        c = pyro.sample("c", dist.Bernoulli(t(0.3)))
        pyro.sample("x", dist.Normal(2 * c, t(1.0)), obs=x)


def guide_with(baseline):
    def guide(x):
        logits = pyro.param("logits", torch.zeros(len(x), dtype=F64))
        with pyro.plate("data", len(x)):
            pyro.sample("c", dist.Bernoulli(logits=logits), infer={"baseline": baseline})

    return guide


@pytest.mark.parametrize("name", ["elbo", "iwae"])
def test_baseline_options_pyro_refuses_are_refused_by_name(name):
    # A misspelt option was silently ignored (Pyro raises); so was giving both a network and a
    # value (Pyro asserts).
    pyro.clear_param_store()
    estimator = get(name, num_particles=2)
    with pytest.raises(ValueError, match=r"site 'c'.*unknown options \['use_decaying_avg'\]"):
        estimator.loss(bernoulli_model, guide_with({"use_decaying_avg": True}), X)
    network = torch.nn.Linear(1, 1).double()
    both = {"nn_baseline": network, "nn_baseline_input": X[:, None], "baseline_value": t(0.0)}
    with pytest.raises(ValueError, match=r"site 'c'.*both nn_baseline and baseline_value"):
        get(name, num_particles=2).loss(bernoulli_model, guide_with(both), X)


def test_a_baseline_value_with_a_gradient_is_trained_as_in_pyro():
    # Pyro fits a baseline_value that carries a gradient (the user's own predictor) to the cost by
    # squared error, as it does nn_baseline; it used to get no gradient. At b = 100, far above
    # every cost, the squared error's gradient 2 sum_i (b - cost_i) is positive and large.
    pyro.clear_param_store()
    b = torch.tensor(100.0, dtype=F64, requires_grad=True)
    loss = get("elbo").differentiable_loss(bernoulli_model, guide_with({"baseline_value": b}), X)
    (grad,) = torch.autograd.grad(loss, [b])
    assert float(grad) > 2 * len(X) * 90


def test_a_baseline_networks_input_is_detached_as_in_pyro():
    # The baseline's squared error must train the baseline network only: an encoder that
    # computes its input (here a parameter used nowhere else) gets no gradient from it.
    pyro.clear_param_store()
    encoder = torch.tensor(1.5, dtype=F64, requires_grad=True)
    network = torch.nn.Linear(1, 1).double()
    baseline = {
        "nn_baseline": lambda h: network(h).squeeze(-1),
        "nn_baseline_input": encoder * X[:, None],
    }
    loss = get("elbo").differentiable_loss(bernoulli_model, guide_with(baseline), X)
    encoder_grad, weight_grad = grads(loss, [encoder, network.weight])
    assert encoder_grad is None or float(encoder_grad) == 0.0
    assert weight_grad is not None and float(weight_grad.abs().sum()) > 0


def test_a_baseline_networks_input_is_one_argument_each_item_detached_as_in_pyro():
    # Pyro calls nn_baseline(detach_iterable(input)): a list stays one argument and each of its
    # tensors is detached; the list's items used to keep their graph (training the encoder).
    pyro.clear_param_store()
    encoder = torch.tensor(1.5, dtype=F64, requires_grad=True)
    network = torch.nn.Linear(2, 1).double()
    baseline = {
        "nn_baseline": lambda pair: network(torch.cat(pair, -1)).squeeze(-1),
        "nn_baseline_input": [encoder * X[:, None], X[:, None]],
    }
    loss = get("elbo").differentiable_loss(bernoulli_model, guide_with(baseline), X)
    encoder_grad, weight_grad = grads(loss, [encoder, network.weight])
    assert encoder_grad is None or float(encoder_grad) == 0.0
    assert weight_grad is not None and float(weight_grad.abs().sum()) > 0


def test_an_absent_nn_baseline_may_be_none_beside_a_value():
    # Pyro reads nn_baseline=None as no network; it was refused as "both".
    pyro.clear_param_store()
    options = {"nn_baseline": None, "baseline_value": t(0.0)}
    assert math.isfinite(get("elbo").loss(bernoulli_model, guide_with(options), X))


def test_the_decaying_average_is_added_to_a_users_baseline():
    # With K = 1, Pyro adds its decaying average to the user's baseline and fits the sum: the
    # squared error's gradient in b, 2 sum_i (b + average - cost_i), moves by 2 N average.
    def b_gradient(decaying: bool) -> float:
        pyro.clear_param_store()
        estimator = get("elbo")
        estimator._decaying_average = lambda name, options, cost: 7.0  # a known average
        b = torch.tensor(0.5, dtype=F64, requires_grad=True)
        options = {"baseline_value": b, "use_decaying_avg_baseline": decaying}
        pyro.set_rng_seed(0)
        loss = estimator.differentiable_loss(bernoulli_model, guide_with(options), X)
        return float(torch.autograd.grad(loss, [b])[0])

    assert b_gradient(True) - b_gradient(False) == pytest.approx(2 * len(X) * 7.0, rel=1e-12)


def test_estimators_that_do_not_use_a_sites_baseline_say_so():
    # The multi-sample bounds take VIMCO's leave-one-out signal; a site's baseline (and its
    # network, which then never trains) was silently ignored.
    pyro.clear_param_store()
    with pytest.warns(UserWarning, match=r"sites \['c'\] set infer\['baseline'\].*'iwae'"):
        get("iwae", num_particles=3).loss(bernoulli_model, guide_with({"baseline_value": 0.0}), X)


# -- the semi-supervised M2 VAE's label -------------------------------------------------------

OFFSETS = t([-2.0, 0.0, 2.5])
PRIOR = t([0.2, 0.5, 0.3])
NOISE = 0.6


def m2_model(x, y=None):
    # Kingma et al. (2014) M2, linear-Gaussian: y ~ OneHotCategorical, z ~ N(0, 1),
    # x ~ N(z + offset_y, NOISE^2); y observed in labelled batches, latent in unlabelled ones.
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(t(0.0), t(1.0)))
        y = pyro.sample("y", dist.OneHotCategorical(PRIOR), obs=y)
        pyro.sample("x", dist.Normal(z + y @ OFFSETS, t(NOISE)), obs=x)


def m2_guide(x, y=None):
    # The exact posterior, as Pyro's ss_vae writes its guide: q(y | x) only when y is missing,
    # then q(z | x, y).
    variance = 1 + NOISE**2
    with pyro.plate("data", len(x)):
        if y is None:
            logits = PRIOR.log() + dist.Normal(OFFSETS, math.sqrt(variance)).log_prob(x[:, None])
            y = pyro.sample("y", dist.OneHotCategorical(logits=logits))
        loc = (x - y @ OFFSETS) / variance
        pyro.sample("z", dist.Normal(loc, t(NOISE / math.sqrt(variance))))


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("stl", "dreg", "meanfield")])
def test_an_m2_label_sampled_by_an_exact_guide_gives_the_evidence(name):
    # One estimator on labelled and unlabelled batches in turn: every log-weight is log p(x, y)
    # (labelled) or log p(x) (unlabelled), exactly, with the label a OneHotCategorical that the
    # guide's z depends on ('meanfield' is exact in expectation only; 'stl' and 'dreg' refuse
    # the unlabelled label, which has no rsample).
    x, y = t([0.5, -1.7, 2.9, 0.1]), torch.eye(3, dtype=F64)[torch.tensor([1, 0, 2, 1])]
    components = dist.Normal(OFFSETS, math.sqrt(1 + NOISE**2)).log_prob(x[:, None]) + PRIOR.log()
    estimator = get(name, **OPTIONS[name])
    for labels, expected in [(y, (components * y).sum(-1)), (None, components.logsumexp(-1))]:
        weights = estimator.log_weights(m2_model, m2_guide, x, labels)
        torch.testing.assert_close(
            weights.log_w, expected.expand_as(weights.log_w), rtol=0, atol=1e-12
        )


def test_one_estimator_hands_programs_of_two_plate_depths_to_their_own_trace_enum_elbo():
    # The TraceEnum_ELBO that 'elbo' hands an enumerated guide to was built once, with the first
    # program's plate nesting: a deeper second program then failed inside Pyro.
    def flat_model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Bernoulli(t(0.3)))
            pyro.sample("x", dist.Normal(c, t(1.0)), obs=x[:, 0])

    def flat_guide(x):
        p = pyro.param("p_flat", t(0.5))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(p), infer=ENUMERATE)

    def nested_model(x):
        with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("feature", x.shape[1], dim=-1):
            c = pyro.sample("c", dist.Bernoulli(t(0.3)))
            pyro.sample("x", dist.Normal(c, t(1.0)), obs=x)

    def nested_guide(x):
        p = pyro.param("p_nested", t(0.5))
        with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("feature", x.shape[1], dim=-1):
            pyro.sample("c", dist.Bernoulli(p), infer=ENUMERATE)

    x = t([[0.2, 1.1], [0.9, -0.4], [1.5, 0.3]])
    estimator = get("elbo")
    with pytest.warns(UserWarning, match="TraceEnum_ELBO"):
        estimator.loss(flat_model, flat_guide, x)
        loss = estimator.loss(nested_model, nested_guide, x)
    expected = TraceEnum_ELBO(max_plate_nesting=2).loss(nested_model, nested_guide, x)
    assert loss == pytest.approx(expected, rel=1e-12)
