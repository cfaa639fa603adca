"""Acceptance tests of the families' mathematics as a user's model sees it.

Exact identities first (float64): the density of a flow with a batch and particle layout against
an autograd change of variables, at dims 1 and 7; the log|det| of ``biject_to`` for constrained
latents; log p(x) from ``log_likelihood`` with every family set to the exact posterior of a
conjugate model. Then statistical checks with fixed seeds: samples follow the density, and
``refine`` never reports a datapoint worse off than it started.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch import nn
from torch.autograd.functional import jacobian

from pyro_vi.evaluation import log_likelihood, refine
from pyro_vi.guides.amortized import AmortizedGuide
from pyro_vi.guides.families import FAMILIES, DiagonalMixture, Flow, make_family
from pyro_vi.guides.families.flow import inverse_softplus
from pyro_vi.guides.local import LocalGuide
from pyro_vi.models.conjugate import NormalNormal

F64 = torch.float64
FLOWS = sorted(name for name in FAMILIES if issubclass(FAMILIES[name], Flow))
TRACTABLE = sorted(name for name in FAMILIES if FAMILIES[name].has_tractable_inverse)

# Small networks keep every case well under a second.
OPTIONS: dict[str, dict] = {
    "diagonal": {},
    "full_rank": {},
    "low_rank": {"rank": 1},
    "mixture": {"components": 3},
    "planar": {"num_steps": 2, "hidden": [8]},
    "radial": {"num_steps": 2, "hidden": [8]},
    "householder": {"num_reflections": 2, "hidden": [8]},
    "sylvester": {"num_steps": 2, "hidden": [8]},
    "iaf": {"num_steps": 2, "hidden": [8]},
    "spline_ar": {"num_steps": 2, "hidden": [8], "count_bins": 4},
    "affine_coupling": {"num_steps": 2, "hidden": [8]},
}


def hidden_for(name: str, dim: int) -> dict:
    options = dict(OPTIONS[name])
    if "hidden" in options:  # autoregressive networks need at least dim hidden units
        options["hidden"] = [max(8, 2 * dim)]
    return options


@torch.no_grad()
def perturb_(module: nn.Module, scale: float) -> nn.Module:
    for parameter in module.parameters():
        parameter.add_(scale * torch.randn_like(parameter))
    return module


def through(transforms, value: torch.Tensor) -> torch.Tensor:
    for transform in transforms:
        value = transform(value)
    return value


# -- exact identities -----------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 7])
@pytest.mark.parametrize("name", FLOWS)
def test_flow_density_with_batch_and_particles_is_the_change_of_variables(name, dim):
    # Each batch element has its own transforms' parameters (from its context row), and
    # Pyro's particle plate expands them: log q of the expanded sample must be, element by
    # element, log N(e) - log|det df/de| of that element's own flow. A modest perturbation
    # keeps the 7x7 Jacobians well conditioned, so float64 agrees to ~1e-12; 1e-8 leaves room.
    if name == "affine_coupling" and dim == 1:
        pytest.skip("a coupling step needs dim >= 2 (refused at construction)")
    pyro.set_rng_seed(0)
    family = perturb_(make_family(name, dim, 3, **hidden_for(name, dim)).to(F64), 0.1)
    context = torch.randn(2, 3, dtype=F64)
    q = family(context).expand([2, 2])  # [particles, batch]
    base = q.base_dist.sample()
    log_q = q.log_prob(through(q.transforms, base))  # the transforms' caches hold this z
    for b in range(2):
        single = family(context[b])
        for k in range(2):
            log_det = torch.linalg.slogdet(
                jacobian(lambda e, t=single.transforms: through(t, e), base[k, b])
            ).logabsdet
            expected = single.base_dist.log_prob(base[k, b]) - log_det
            assert abs(float((log_q[k, b] - expected).detach())) < 1e-8, (k, b)


def constrained_model(kind: str, num_data: int):
    def model(x):
        with pyro.plate("data", num_data):
            if kind == "gamma":
                z = pyro.sample("z", dist.Gamma(torch.tensor(2.0, dtype=F64), 1.0))
                loc = z
            elif kind == "gamma_vector":
                prior = dist.Gamma(torch.tensor(2.0, dtype=F64), 1.0).expand([3]).to_event(1)
                loc = pyro.sample("z", prior).sum(-1)
            elif kind == "beta":
                loc = pyro.sample("z", dist.Beta(torch.tensor(2.0, dtype=F64), 3.0))
            else:
                loc = pyro.sample("z", dist.Dirichlet(torch.ones(3, dtype=F64)))[..., 0]
            pyro.sample("x", dist.Normal(loc, 1.0), obs=x)

    return model


@pytest.mark.parametrize("family", ["diagonal", "mixture", "iaf", "planar"])
@pytest.mark.parametrize("kind", ["gamma", "gamma_vector", "beta", "dirichlet"])
def test_constrained_latent_density_includes_the_bijection(kind, family):
    # q(z) = q_u(T^-1 z) / |det dT/du| with T = biject_to(support) after the reshape; for the
    # simplex the density is over the first K - 1 coordinates (stick-breaking is square there).
    x = torch.randn(3, dtype=F64)
    model = constrained_model(kind, 3)
    pyro.set_rng_seed(0)
    guide = AmortizedGuide(model, [6], family=family, family_options=OPTIONS[family])
    trace = poutine.trace(guide).get_trace(x)
    fn, z = trace.nodes["z"]["fn"], trace.nodes["z"]["value"]
    assert bool(fn.support.check(z).all())
    (bijection,) = fn.transforms
    u = bijection.inv(z)  # from the cache: the exact unconstrained draw
    # scored before the Jacobian below refills the bijection's cache (a flow without an
    # inverse can only score the very tensor it drew)
    log_q, log_q_base = fn.log_prob(z), fn.base_dist.log_prob(u)

    def constrain(value: torch.Tensor) -> torch.Tensor:
        out = bijection(value)
        return (out[..., :-1] if kind == "dirichlet" else out).reshape(-1)

    log_det = torch.stack(
        [torch.linalg.slogdet(jacobian(constrain, row.clone())).logabsdet for row in u]
    )
    torch.testing.assert_close(log_q, log_q_base - log_det, rtol=0, atol=1e-10)


def exact_posterior_guide(model: NormalNormal, family: str) -> AmortizedGuide:
    """An amortized guide whose q(z | x) is exactly NormalNormal's posterior N(a x + c, v I):
    the encoder passes x through, the Gaussian heads are set to the posterior, and every flow
    step outputs only its bias, which the families set to the identity map."""
    dim = model.dim
    prior_var = float(model.prior_scale.detach()) ** 2
    noise_var = float(model.noise_scale.detach()) ** 2
    variance = 1.0 / (1.0 / prior_var + 1.0 / noise_var)
    encoder = nn.Linear(dim, dim).to(F64)
    options = dict(OPTIONS[family])
    if family in ("iaf", "spline_ar", "affine_coupling"):
        options["num_steps"] = 3  # the coordinates are reversed between steps: twice is none
    guide = AmortizedGuide(model.model, encoder, family=family, family_options=options)
    x = model.sample(2)
    guide(x)  # builds the families
    heads = guide.families["z"]
    with torch.no_grad():
        encoder.weight.copy_(torch.eye(dim, dtype=F64))
        encoder.bias.zero_()
        if isinstance(heads, Flow):
            for step in heads.steps:
                for layer in step.modules():
                    if isinstance(layer, nn.Linear):
                        layer.weight.zero_()
            heads = heads.base
        copies = heads.components if isinstance(heads, DiagonalMixture) else 1
        identity = torch.eye(dim, dtype=F64).repeat(copies, 1)
        heads.loc_head.weight.copy_(identity * variance / noise_var)
        heads.loc_head.bias.copy_((model.prior_loc * variance / prior_var).repeat(copies))
        heads.scale_head.weight.zero_()
        heads.scale_head.bias.fill_(inverse_softplus(math.sqrt(variance) - heads.min_scale))
    return guide


@pytest.mark.parametrize("family", ["diagonal", "mixture", *FLOWS[:-1]])
def test_log_likelihood_of_an_exact_posterior_guide_is_the_evidence(family):
    # With q the exact posterior, every log-weight log p(x, z) - log q(z | x) is log p(x), so
    # the estimate equals the evidence whatever the draws (through the flows' log|det| at the
    # identity, and the mixture's logsumexp over equal components). Float64 rounding is ~1e-15,
    # but the planar steps' identity is set in float32 at construction (u_hat ~ 1e-8, not 0);
    # a wrong density or log|det| would be off by far more than 1e-6.
    if family == "householder":
        pytest.skip("reflections are never the identity: the posterior mean would be rotated")
    if family == "spline_ar":
        # Pyro pads the boundary knot derivatives with 1 - min_derivative, not 1: the spline
        # with equal bins is the identity only up to ~1e-3 in log|det| near the boundary
        pytest.skip("no exact identity configuration")
    model = NormalNormal(torch.tensor([0.5, -1.0], dtype=F64), 1.5, 0.8)
    pyro.set_rng_seed(0)
    guide = exact_posterior_guide(model, family)
    x = model.sample(5)
    estimate = log_likelihood(model.model, guide, x, num_samples=20, chunk_size=10)
    torch.testing.assert_close(estimate, model.log_evidence(x).detach(), rtol=0, atol=1e-6)


# -- sampling follows the density -------------------------------------------------------------


@pytest.mark.parametrize("name", TRACTABLE)
def test_samples_follow_the_density(name):
    # Draw y from r = (q + n) / 2, half from the family's sampler and half from a wide normal
    # n, and weight each by q(y) / r(y) with q from log_prob at the fresh value. If the sampler
    # draws from q, E[w] = 1 and E[w y] = E_q[y]; the weights are bounded by 2, so the CLT holds
    # and 5 standard errors (p < 1e-6 per check, fixed seed) catch a sampler or a density that
    # disagree by a few percent of mass.
    pyro.set_rng_seed(0)
    family = perturb_(make_family(name, 2, 3, **OPTIONS[name]).to(F64), 0.3)
    draws = 20000
    with torch.no_grad():
        q = family(torch.randn(3, dtype=F64))
        own = q.rsample([draws // 2])
        wide = dist.Normal(own.mean(0), 3 * own.std(0)).to_event(1)
        y = torch.cat([own, wide.sample([draws // 2])])
        log_q = q.log_prob(y.clone())
        log_r = torch.logaddexp(log_q, wide.log_prob(y)) - math.log(2)
        weight = (log_q - log_r).exp()
        fresh = q.rsample([draws])  # an independent estimate of E_q[y] from the sampler
    mass, mass_error = weight.mean(), weight.std() / draws**0.5
    assert abs(float(mass) - 1) < 5 * float(mass_error)
    weighted = weight.unsqueeze(-1) * y
    gap = weighted.mean(0) - fresh.mean(0)
    error = (weighted.var(0) / draws + fresh.var(0) / draws).sqrt()
    assert bool((gap.abs() < 5 * error).all()), (gap, error)


# -- guides on user models ----------------------------------------------------------------------


def test_local_guide_takes_the_floating_dtype_of_the_data():
    # The table of contexts is made before the data is seen; on float64 data it used to stay
    # float32 and met the float64 families inside a Linear ("mat1 and mat2 must have the same
    # dtype").
    model = NormalNormal(torch.tensor([0.5, -1.0], dtype=F64), 1.5, 0.8)
    x = model.sample(6)
    guide = LocalGuide(model.model, num_data=6, family="full_rank")
    z = guide(x)["z"]
    assert z.dtype == F64 and z.shape == (6, 2)
    assert all(p.dtype == F64 for p in guide.parameters())


def test_refine_never_reports_a_datapoint_worse_than_its_start():
    # The amortized guide is the exact posterior, so its ELBO is log p(x_i) with no noise, and
    # no context does better. Refining with the (noisy) plain ELBO gradient and a large step
    # moves every context well off the optimum (a KL of tenths of a nat, against a standard
    # error of the 400-draw estimates of a few hundredths); refine used to report those worse
    # contexts, a negative amortization gap far beyond the noise. It must keep every start,
    # leave the encoder and the families untouched, and report the exact evidence again.
    model = NormalNormal(torch.tensor([0.5, -1.0], dtype=F64), 1.5, 0.8)
    pyro.set_rng_seed(0)
    guide = exact_posterior_guide(model, "diagonal")
    x = model.sample(4)
    weights = {name: value.clone() for name, value in guide.state_dict().items()}
    result = refine(model.model, guide, x, num_steps=20, learning_rate=0.3, eval_particles=400)
    evidence = model.log_evidence(x).detach()
    torch.testing.assert_close(result.amortized_elbo, evidence, rtol=0, atol=1e-9)
    torch.testing.assert_close(result.refined_elbo, evidence, rtol=0, atol=1e-9)
    assert bool((result.gap > -1e-9).all())
    for name, value in guide.state_dict().items():
        assert torch.equal(value, weights[name]), name
