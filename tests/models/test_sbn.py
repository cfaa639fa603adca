"""The sigmoid belief net and its Bernoulli guide: exact densities, binary samples, every estimator,
the refusals, and the relaxations' documented limits."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI
from pyro.optim import Adam
from torch import nn
from torch.distributions.relaxed_bernoulli import LogitRelaxedBernoulli
from torch.nn.functional import logsigmoid

from pyro_vi.estimators import ESTIMATORS, compute_log_weights, get
from pyro_vi.evaluation import log_likelihood
from pyro_vi.guides.bernoulli import BernoulliGuide
from pyro_vi.models.sbn import (
    DEFAULT_TEMPERATURE,
    LogitConcrete,
    SigmoidBeliefNet,
    exact_log_marginal,
    straight_through_threshold,
)
from pyro_vi.nets import MLPDecoder, MLPEncoder

F64 = torch.float64
SHAPE = (1, 3, 3)
DIM = 3
RELAXED = ("concrete", "straight_through")
#: Estimators whose gradient needs rsample: they must refuse the discrete guide.
REPARAM_ONLY = sorted(name for name, cls in ESTIMATORS.items() if cls.requires_reparam)
SCORE_CAPABLE = sorted(name for name in ESTIMATORS if name not in REPARAM_ONLY)


def binary(n=5, dtype=torch.float32):
    return torch.bernoulli(torch.full((n, *SHAPE), 0.4, dtype=dtype))


def sbn(relaxation="none", temperature=None, dtype=torch.float32):
    """A tiny SBN and guide; a relaxation gets the same temperature for prior and guide."""
    if relaxation != "none" and temperature is None:
        temperature = 0.5
    model = SigmoidBeliefNet(
        MLPDecoder(DIM, [6], SHAPE),
        DIM,
        data_shape=SHAPE,
        relaxation=relaxation,
        temperature=temperature,
    ).to(dtype)
    guide = BernoulliGuide(MLPEncoder(SHAPE, [6]), DIM, temperature=temperature).to(dtype)
    return model, guide


def options(name):
    return {"num_outer": 2, "num_inner": 2} if name in ("miwae", "piwae") else {"num_particles": 3}


# -- the discrete model -----------------------------------------------------------------------


def test_log_density_matches_a_hand_computation():
    """log p(x, z) at a fixed z for a linear decoder with known weights, in float64."""
    decoder = nn.Linear(2, 3).double()
    with torch.no_grad():
        decoder.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0], [-1.5, 3.0]], dtype=F64))
        decoder.bias.copy_(torch.tensor([0.1, -0.2, 0.3], dtype=F64))
    model = SigmoidBeliefNet(decoder, 2, data_shape=(3,)).double()
    with torch.no_grad():
        model.prior.logits.copy_(torch.tensor([0.5, -1.0], dtype=F64))
    x = torch.tensor([[1.0, 0.0, 1.0]], dtype=F64)
    z = torch.tensor([[1.0, 0.0]], dtype=F64)
    trace = poutine.trace(poutine.condition(model, data={"z": z})).get_trace(x)
    with torch.no_grad():
        trace.compute_log_prob()
    # By hand: log sigmoid(0.5) + log(1 - sigmoid(-1)); decoder logits W z + b = (1.1, 0.3, -1.2).
    log_prior = math.log(1 / (1 + math.exp(-0.5))) + math.log(1 - 1 / (1 + math.exp(1.0)))
    logits = (1.1, 0.3, -1.2)
    log_lik = sum(
        math.log(1 / (1 + math.exp(-lo))) if xi else math.log(1 - 1 / (1 + math.exp(-lo)))
        for xi, lo in zip((1, 0, 1), logits, strict=True)
    )
    assert float(trace.nodes["z"]["log_prob"].sum()) == pytest.approx(log_prior, abs=1e-12)
    assert float(trace.nodes["x"]["log_prob"].sum()) == pytest.approx(log_lik, abs=1e-12)


def test_guide_samples_binary_codes_in_the_data_plate():
    model, guide = sbn()
    x = binary(7)
    trace = poutine.trace(guide).get_trace(x, num_data=70)
    node = trace.nodes["z"]
    assert node["value"].shape == (7, DIM)
    assert set(node["value"].unique().tolist()) <= {0.0, 1.0}
    assert not node["fn"].has_rsample
    assert [frame.name for frame in node["cond_indep_stack"]] == ["data"]
    assert node["scale"] == pytest.approx(10.0)  # num_data / B, as the model's
    model_trace = poutine.trace(poutine.replay(model, trace=trace)).get_trace(x, num_data=70)
    assert model_trace.nodes["z"]["scale"] == pytest.approx(10.0)


def test_importance_sampling_recovers_the_exact_log_marginal():
    """log p(x) = logsumexp over the 2^D codes (float64) against the IWAE-K estimate with the
    untrained guide: with K = 500 draws over 8 codes its bias and spread, ~ Var(w/p) / K, are
    ~0.01 nats here (measured), so 0.05 is 5 of them."""
    model, guide = sbn(dtype=F64)
    x = binary(4, F64)
    with torch.no_grad():
        exact = exact_log_marginal(model, x)
    iwae = log_likelihood(model, guide, x, num_samples=500)
    assert torch.allclose(iwae, exact, atol=0.05), (iwae, exact)


# -- every estimator --------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCORE_CAPABLE)
def test_every_score_capable_estimator_trains_the_discrete_sbn(name):
    model, guide = sbn()
    svi = SVI(model, guide, Adam({"lr": 1e-2}), loss=get(name, **options(name)))
    losses = [svi.step(binary(), num_data=20) for _ in range(3)]
    assert all(math.isfinite(loss) for loss in losses)
    for module in (model, guide):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


@pytest.mark.parametrize("name", REPARAM_ONLY)
def test_reparameterized_only_estimators_refuse_naming_the_site(name):
    model, guide = sbn()
    with pytest.raises(ValueError, match=rf"{name}.*reparameterized.*site 'z'.*'vimco'"):
        get(name, num_particles=2).loss(model, guide, binary())


@pytest.mark.parametrize("relaxation", RELAXED)
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_estimator_trains_the_relaxed_sbn(name, relaxation):
    model, guide = sbn(relaxation)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), loss=get(name, **options(name)))
    assert all(math.isfinite(svi.step(binary(), num_data=20)) for _ in range(2))
    assert all(p.grad is not None for p in guide.parameters())


# -- the relaxations --------------------------------------------------------------------------


def test_logit_concrete_density_is_torchs_and_stable():
    logits = torch.tensor([-3.0, 0.0, 2.5], dtype=F64)
    q = LogitConcrete(logits, 0.7)
    y = torch.tensor([-4.0, 0.3, 5.0], dtype=F64)
    reference = LogitRelaxedBernoulli(torch.tensor(0.7, dtype=F64), logits=logits).log_prob(y)
    assert torch.allclose(q.log_prob(y), reference, atol=1e-12)
    # log p = log lambda + a - lambda y - 2 softplus(a - lambda y): finite where torch's form
    # overflows (exp(a - lambda y) = exp(700) is inf in float32 and float64 alike).
    far = LogitConcrete(torch.tensor([0.0]), 0.7).log_prob(torch.tensor([-1000.0]))
    assert torch.isfinite(far).all()
    assert float(far) == pytest.approx(math.log(0.7) - 700.0, abs=1e-3)


def test_relaxed_sign_is_bernoulli_at_every_temperature():
    """1[y > 0] ~ Bernoulli(sigmoid(a)) exactly, whatever lambda: 40000 draws per unit, checked to
    4.5 standard errors (a false alarm once in ~10^5 runs per unit)."""
    logits = torch.tensor([-2.0, 0.0, 1.0, 3.0])
    for temperature in (5.0, 0.5, 1e-3):
        y = LogitConcrete(logits, temperature).rsample((40000,))
        frequency = (y > 0).double().mean(0)
        p = torch.sigmoid(logits).double()
        assert torch.all((frequency - p).abs() <= 4.5 * (p * (1 - p) / 40000).sqrt())


def test_relaxed_density_ratio_does_not_depend_on_temperature():
    """With equal prior and guide temperatures and the same noise L, log p(y) - log q(y) at
    y = (c + L) / lambda is c - a - ... free of lambda (an identity, float64)."""
    prior_logits = torch.tensor([0.4, -1.2], dtype=F64)
    guide_logits = torch.tensor([-0.7, 2.0], dtype=F64)
    ratios = []
    for temperature in (2.0, 0.3, 1e-3):
        pyro.set_rng_seed(0)
        y = LogitConcrete(guide_logits, temperature).rsample((5,))
        log_p = LogitConcrete(prior_logits, temperature).log_prob(y)
        ratios.append(log_p - LogitConcrete(guide_logits, temperature).log_prob(y))
    assert torch.allclose(ratios[0], ratios[1], atol=1e-10)
    assert torch.allclose(ratios[0], ratios[2], atol=1e-9)


def test_concrete_tends_to_straight_through_as_temperature_goes_to_zero():
    """For the same noise, the Concrete model's log-weight minus the straight-through model's is
    log p(x | sigmoid(y)) - log p(x | H(y)): E|sigmoid(y) - H(y)| <= 2 log(2) lambda max p_L, so
    the difference shrinks about linearly in lambda. At lambda = 1e-3 the mean absolute difference
    over 4 x 50 x 3 units is ~1e-3 nats (bounded here by 0.02); at lambda = 1 it is ~1 nat."""
    concrete, guide = sbn("concrete", dtype=F64)
    x = binary(50, F64)
    gaps = []
    for temperature in (1.0, 0.1, 1e-3):
        concrete.temperature = guide.temperature = temperature
        straight = SigmoidBeliefNet(
            concrete.decoder,
            DIM,
            data_shape=SHAPE,
            relaxation="straight_through",
            temperature=temperature,
            prior=concrete.prior,
        )
        weights = []
        for model in (concrete, straight):
            pyro.set_rng_seed(0)
            with torch.no_grad():
                log_w = compute_log_weights(
                    model, guide, (x,), {}, num_particles=4, plate_nesting=1
                ).log_w
            weights.append(log_w)
        gaps.append(float((weights[0] - weights[1]).abs().mean()))
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 0.02 < gaps[0]


def test_straight_through_elbo_is_below_the_discrete_elbo():
    """ELBO_ST = ELBO_discrete(Q) - E_Q KL(q(y | b) || p(y | b)) <= ELBO_discrete, both with
    the same parameters; the discrete ELBO is exact (enumeration of the 8 codes), the ST one a
    mean of 5000 draws per datapoint (standard error ~0.03 nats), checked below the exact value
    by 5 standard errors (the gap is ~0.5 nats with these prior logits)."""
    model, guide = sbn("straight_through", temperature=DEFAULT_TEMPERATURE, dtype=F64)
    with torch.no_grad():
        model.prior.logits.copy_(torch.tensor([2.0, -1.5, 0.5], dtype=F64))
    x = binary(2, F64)
    discrete_model, discrete_guide = model.discrete(), guide.discrete()
    codes = torch.tensor([[(k >> d) & 1 for d in range(DIM)] for k in range(8)], dtype=F64)
    q = discrete_guide.posterior(x)  # batch [2]
    log_q = torch.stack([q.log_prob(code.expand(2, DIM)) for code in codes])
    trace = poutine.trace(poutine.condition(discrete_model, data={"z": codes.unsqueeze(1)}))
    node = trace.get_trace(x).nodes
    log_joint = node["z"]["fn"].log_prob(codes.unsqueeze(1)) + node["x"]["fn"].log_prob(x)
    exact_elbo = (log_q.exp() * (log_joint - log_q)).sum(0)  # [2]
    with torch.no_grad():
        weights = compute_log_weights(model, guide, (x,), {}, num_particles=5000, plate_nesting=1)
    mean, stderr = weights.log_w.mean(0), weights.log_w.std(0) / math.sqrt(5000)
    assert torch.all(mean < exact_elbo - 5 * stderr), (mean, exact_elbo, stderr)


def test_straight_through_code_is_hard_with_the_sigmoid_gradient():
    y = torch.tensor([-2.0, 0.5, 3.0], requires_grad=True)
    code = straight_through_threshold(y)
    assert code.tolist() == [0.0, 1.0, 1.0]
    code.sum().backward()
    sig = torch.sigmoid(y.detach())
    assert torch.allclose(y.grad, sig * (1 - sig))


def test_discrete_views_share_the_parameters():
    model, guide = sbn("concrete")
    keys = set(model.state_dict()) | set(guide.state_dict())
    discrete_model, discrete_guide = model.discrete(), guide.discrete()
    assert discrete_model.relaxation == "none" and discrete_guide.temperature is None
    assert discrete_model.decoder is model.decoder and discrete_model.prior is model.prior
    assert discrete_guide.encoder is guide.encoder and discrete_guide.head is guide.head
    assert model.discrete() is discrete_model  # built once
    assert set(model.state_dict()) | set(guide.state_dict()) == keys  # not a submodule
    plain, plain_guide = sbn()
    assert plain.discrete() is plain and plain_guide.discrete() is plain_guide


def test_relaxed_site_holds_logits_and_the_decoder_reads_codes():
    model, guide = sbn("straight_through")
    x = binary()
    guide_trace = poutine.trace(guide).get_trace(x)
    y = guide_trace.nodes["z"]["value"]
    assert guide_trace.nodes["z"]["fn"].has_rsample
    assert not set(y.unique().tolist()) <= {0.0, 1.0}  # real logits, not codes
    assert torch.equal(model.code(y), (y > 0).float())
    assert torch.allclose(SigmoidBeliefNet.code(model.discrete(), y), y)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"relaxation": "gumbel"}, ValueError, r"relaxation must be one of \['none', 'concrete'"),
        ({"relaxation": 1}, TypeError, r"relaxation must be one of"),
        ({"temperature": 0.5}, ValueError, r"temperature is only used with a relaxation.*0\.5"),
        ({"relaxation": "concrete", "temperature": 0.0}, ValueError, r"temperature must be > 0"),
        ({"relaxation": "concrete", "temperature": "hot"}, TypeError, r"temperature must be a"),
        ({"prior": "standard_normal"}, TypeError, r"prior must be a BernoulliPrior or None"),
        ({"latent_dim": 0}, ValueError, r"latent_dim must be an integer >= 1, got 0"),
    ],
    ids=["relaxation", "relaxation-type", "unrelaxed", "zero", "string", "prior", "dim"],
)
def test_model_refuses_bad_arguments(kwargs, error, message):
    arguments = {"latent_dim": DIM, **kwargs}
    with pytest.raises(error, match=message):
        SigmoidBeliefNet(MLPDecoder(DIM, [4], SHAPE), data_shape=SHAPE, **arguments)


def test_guide_and_distribution_refuse_bad_arguments():
    with pytest.raises(ValueError, match=r"temperature must be > 0.0, got -1.0"):
        BernoulliGuide(MLPEncoder(SHAPE, [4]), DIM, temperature=-1.0)
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor, got \[1\]"):
        BernoulliGuide(MLPEncoder(SHAPE, [4]), DIM)([1])
    with pytest.raises(TypeError, match=r"logits must be a floating-point tensor"):
        LogitConcrete(torch.tensor([1, 2]), 0.5)
    with pytest.raises(ValueError, match=r"D must be <= 16, got 17"):
        wide = SigmoidBeliefNet(MLPDecoder(17, [4], SHAPE), 17, data_shape=SHAPE)
        exact_log_marginal(wide, binary())


def test_logit_concrete_expands_for_the_particle_plate():
    q = LogitConcrete(torch.zeros(3), 0.5).to_event(1).expand([4, 2])
    assert q.batch_shape == (4, 2) and q.event_shape == (3,)
    sample = q.rsample()
    assert sample.shape == (4, 2, 3) and q.log_prob(sample).shape == (4, 2)
    assert isinstance(q.base_dist, dist.Logistic)
    assert torch.allclose(q.base_dist.logits, torch.zeros(4, 2, 3))
    assert torch.isfinite(logsigmoid(sample)).all()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_steps_and_discrete_evaluation_on_a_device(device):
    for relaxation, name in (("none", "vimco"), ("straight_through", "dreg")):
        model, guide = sbn(relaxation)
        model, guide = model.to(device), guide.to(device)
        x = binary().to(device)
        svi = SVI(model, guide, Adam({"lr": 1e-2}), loss=get(name, num_particles=3))
        assert math.isfinite(svi.step(x, num_data=20))
        ll = log_likelihood(model.discrete(), guide.discrete(), x, num_samples=8)
        assert ll.device.type == device and torch.isfinite(ll).all()
        assert exact_log_marginal(model, x).device.type == device
