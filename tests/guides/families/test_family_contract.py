"""One contract test per family: shapes, exact densities, gradients, state, dtype, Pyro use."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from family_cases import (
    BATCH,
    DIM,
    FEATURES,
    NAMES,
    PARTICLES,
    build,
    explicit_log_prob,
    flow_reference,
    is_flow,
    perturb_,
)
from pyro.infer import Trace_ELBO

from pyro_vi.estimators import get
from pyro_vi.guides.families import FAMILIES

# float64 identities: the densities are O(10) and the routes differ only in rounding (a
# Cholesky or LU of a 3x3 matrix, a few transcendental functions), ~1e-14; 1e-8 leaves room for
# ill-conditioned Jacobians of the perturbed flows without letting any real error through.
TOL = 1e-8


@pytest.mark.parametrize("name", NAMES)
def test_shapes_expand_and_particle_dims(name):
    family = build(name)
    q = family(torch.randn(BATCH, FEATURES))
    assert q.batch_shape == (BATCH,) and q.event_shape == (DIM,) and q.has_rsample

    expanded = q.expand([PARTICLES, BATCH])  # what Pyro's particle plate does
    z = expanded.rsample()
    assert z.shape == (PARTICLES, BATCH, DIM)
    assert expanded.log_prob(z).shape == (PARTICLES, BATCH)
    assert q.log_prob(z).shape == (PARTICLES, BATCH)  # broadcasting without the expand

    z = q.rsample(torch.Size([PARTICLES]))
    assert z.shape == (PARTICLES, BATCH, DIM)
    assert q.log_prob(z).shape == (PARTICLES, BATCH)

    q = family(torch.randn(PARTICLES, BATCH, FEATURES))  # a context with extra leading dims
    assert q.batch_shape == (PARTICLES, BATCH)
    z = q.rsample()
    assert z.shape == (PARTICLES, BATCH, DIM) and q.log_prob(z).shape == (PARTICLES, BATCH)
    assert bool(q.log_prob(z).isfinite().all())


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_is_the_exact_density(name):
    family = perturb_(build(name, dtype=torch.float64))
    if is_flow(name):
        # change of variables on one context row, against an autograd Jacobian of the flow
        q = family(torch.randn(FEATURES, dtype=torch.float64))
        for _ in range(3):
            z, expected = flow_reference(q, q.base_dist.sample())
            assert torch.allclose(q.log_prob(z), expected, rtol=0, atol=TOL)
    else:
        context = torch.randn(BATCH, FEATURES, dtype=torch.float64)
        q = family(context)
        z = q.expand([PARTICLES, BATCH]).rsample()
        expected = explicit_log_prob(family, context, z)
        assert torch.allclose(q.log_prob(z), expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter_and_the_context(name):
    family = build(name)
    context = torch.randn(BATCH, FEATURES, requires_grad=True)
    q = family(context)
    q.expand([PARTICLES, BATCH]).rsample().sum().backward()
    for parameter_name, parameter in [*family.named_parameters(), ("context", context)]:
        assert parameter.grad is not None, parameter_name
        assert bool(parameter.grad.isfinite().all()) and parameter.grad.abs().sum() > 0, (
            parameter_name
        )

    # log q at its own sample: the path through z and the density's own dependence cancel for
    # some parameters (a Gaussian's mean, a volume-preserving flow's reflections), so only
    # finiteness is asked of each, and a nonzero gradient of the context
    family.zero_grad(set_to_none=True)
    context.grad = None
    q = family(context)
    z = q.expand([PARTICLES, BATCH]).rsample()
    q.log_prob(z).sum().backward()
    assert all(p.grad is None or bool(p.grad.isfinite().all()) for p in family.parameters())
    assert context.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_fresh_values_are_scored_exactly_or_refused_clearly(name):
    family = perturb_(build(name, dtype=torch.float64))
    context = torch.randn(BATCH, FEATURES, dtype=torch.float64)
    q = family(context)
    expanded = q.expand([PARTICLES, BATCH])
    z = expanded.rsample()
    # what an estimator that sees only the trace site can read
    assert getattr(expanded, "has_tractable_inverse", True) == family.has_tractable_inverse
    if FAMILIES[name].has_tractable_inverse:
        # a copy misses the transform caches: the inverse is computed afresh and must agree
        cached, fresh = q.log_prob(z), q.log_prob(z.detach().clone())
        assert torch.allclose(cached, fresh, rtol=0, atol=TOL)
        # the score-function gradient that STL/DReG use reaches every parameter
        q.log_prob(torch.randn(PARTICLES, BATCH, DIM, dtype=torch.float64)).sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in family.parameters())
    else:
        with pytest.raises(NotImplementedError, match="no closed-form inverse"):
            expanded.log_prob(z.detach())


@pytest.mark.parametrize("name", NAMES)
def test_the_context_changes_the_distribution(name):
    family = build(name)
    first, second = torch.randn(2, BATCH, FEATURES)
    pyro.set_rng_seed(1)
    z_first = family(first).rsample()
    pyro.set_rng_seed(1)
    z_second = family(second).rsample()
    assert not torch.allclose(z_first, z_second)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    trained = perturb_(build(name, seed=0))
    fresh = build(name, seed=1)
    context = torch.randn(BATCH, FEATURES)

    def sample_and_score(family):
        pyro.set_rng_seed(2)
        q = family(context)
        z = q.rsample()
        return z, q.log_prob(z)

    z_trained, log_q_trained = sample_and_score(trained)
    assert not torch.allclose(sample_and_score(fresh)[0], z_trained)
    fresh.load_state_dict(trained.state_dict())
    z_fresh, log_q_fresh = sample_and_score(fresh)
    assert torch.equal(z_fresh, z_trained) and torch.equal(log_q_fresh, log_q_trained)
    if FAMILIES[name].has_tractable_inverse:
        value = torch.randn(BATCH, DIM)
        assert torch.equal(trained(context).log_prob(value), fresh(context).log_prob(value))


@pytest.mark.parametrize("name", NAMES)
def test_float64(name):
    family = build(name, dtype=torch.float64)
    q = family(torch.randn(BATCH, FEATURES, dtype=torch.float64))
    z = q.expand([PARTICLES, BATCH]).rsample()
    assert z.dtype == torch.float64 and q.log_prob(z).dtype == torch.float64
    if FAMILIES[name].has_tractable_inverse:
        fresh = torch.randn(BATCH, DIM, dtype=torch.float64)
        assert q.log_prob(fresh).dtype == torch.float64


@pytest.mark.parametrize("name", NAMES)
def test_trains_as_a_guide_under_a_particle_plate(name):
    family = build(name)
    x = torch.randn(BATCH, FEATURES)

    def model(x):
        with pyro.plate("data", BATCH):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([DIM]).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", BATCH):
            pyro.sample("z", family(x))

    losses = [
        Trace_ELBO(num_particles=PARTICLES, vectorize_particles=True).differentiable_loss,
        get("iwae", num_particles=PARTICLES).differentiable_loss,
        get("meanfield", num_particles=PARTICLES).differentiable_loss,  # MC KL where none closed
    ]
    for loss in losses:
        family.zero_grad()
        loss(model, guide, x).backward()
        assert all(
            p.grad is not None and bool(p.grad.isfinite().all()) for p in family.parameters()
        )


@pytest.mark.cuda
@pytest.mark.parametrize("name", NAMES)
def test_cuda(name):
    family = perturb_(build(name, dtype=torch.float64)).to("cuda")
    context = torch.randn(BATCH, FEATURES, dtype=torch.float64, device="cuda", requires_grad=True)
    q = family(context)
    z = q.expand([PARTICLES, BATCH]).rsample()
    log_q = q.log_prob(z)
    assert z.device.type == "cuda" and log_q.device.type == "cuda"
    (z.sum() + log_q.sum()).backward()
    assert context.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.device.type == "cuda" for p in family.parameters())
    if FAMILIES[name].has_tractable_inverse:
        # the same density on the CPU (float64: only the kernels' rounding differs)
        on_cpu = family.to("cpu")(context.detach().cpu()).log_prob(z.detach().cpu())
        assert torch.allclose(on_cpu, log_q.detach().cpu(), rtol=0, atol=TOL)
