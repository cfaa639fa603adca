"""Per-datapoint (non-amortized) guides, semi-amortized refinement and the amortization gap."""

import pyro
import pyro.distributions as dist
import pyro.infer.autoguide
import pytest
import torch

from pyro_vi.architectures import mlp_vae
from pyro_vi.estimators import get
from pyro_vi.evaluation.refine import per_datapoint_elbo, refine
from pyro_vi.guides.amortized import AmortizedGuide
from pyro_vi.guides.local import LocalGuide
from pyro_vi.models.conjugate import NormalNormal

F64 = torch.float64


def fixed_normal_normal():
    model = NormalNormal(torch.tensor([0.5, -1.0], dtype=F64), 1.5, 0.8)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def test_local_guide_fits_each_datapoint():
    # Stochastic VI with free parameters per datapoint finds the exact posterior of each one
    # (it is in the family); STL keeps the final iterates still. Tolerances as in the
    # amortized tests: a few standard errors of the 2000-draw check.
    model = fixed_normal_normal()
    x = model.sample(12)
    guide = LocalGuide(model.model, num_data=12, family="diagonal").double()
    guide(x)
    optimizer = torch.optim.Adam(guide.parameters(), lr=0.05)
    estimator = get("stl", num_particles=8)
    for _ in range(600):
        optimizer.zero_grad()
        estimator.differentiable_loss(model.model, guide, x).backward()
        optimizer.step()
    with torch.no_grad():
        draws = torch.stack([guide(x)["z"] for _ in range(2000)])
        exact = model.posterior(x)
        assert float((draws.mean(0) - exact.mean).abs().max()) < 0.05
        assert float((draws.std(0) / exact.base_dist.scale - 1).abs().max()) < 0.08


def test_local_guide_needs_the_whole_data_or_an_index():
    model = fixed_normal_normal()
    guide = LocalGuide(model.model, num_data=12)
    with pytest.raises(ValueError, match="called with 5 rows and no index="):
        guide(model.sample(5))


def test_refinement_closes_the_amortization_gap():
    # An untrained encoder is a poor amortized posterior of NormalNormal; refining each
    # datapoint's context (8 features: enough for the 4 numbers of a 2-d diagonal Gaussian)
    # reaches the exact posterior, so every refined ELBO_i meets log p(x_i). 200 evaluation
    # particles give standard errors below 0.01 nats once refined.
    model = fixed_normal_normal()
    x = model.sample(6)
    guide = AmortizedGuide(model.model, torch.nn.Linear(2, 8).double())
    pyro.set_rng_seed(0)
    result = refine(model.model, guide, x, num_steps=400, learning_rate=0.05, estimator="stl")
    assert result.gap.shape == (6,)
    assert bool((result.gap > 0).all())
    evidence = model.log_evidence(x)
    assert torch.allclose(result.refined_elbo, evidence, atol=0.05)
    # The refined context is used by the guide only inside fixed_context.
    assert guide._fixed_context is None
    with guide.fixed_context(result.context):
        again = per_datapoint_elbo(model.model, guide, x, num_particles=200)
    assert torch.allclose(again, result.refined_elbo, atol=0.05)


def test_refine_rejects_other_guides():
    model, _ = mlp_vae((1, 8, 8), latent_dim=2, hidden=[16])
    guide = pyro.infer.autoguide.AutoNormal(model)
    with pytest.raises(TypeError, match="guide must be an AmortizedGuide"):
        refine(model, guide, torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="estimator must be 'elbo' or 'stl'"):
        refine(model, AmortizedGuide(model, [4]), torch.zeros(2, 1, 8, 8), estimator="iwae")


def test_local_guide_of_a_subsampling_model_reads_the_drawn_datapoints():
    # The model draws its own minibatch; each drawn datapoint must get its own row of the table
    # (the plate's indices), not the row of its position in the minibatch.
    x = torch.arange(10.0)

    def model(x):
        with pyro.plate("data", len(x), subsample_size=3) as index:
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x[index])

    guide = LocalGuide(model, num_data=10, family="diagonal")
    guide(x)  # builds the table
    with torch.no_grad():
        guide.encoder.table.copy_(torch.arange(10.0).unsqueeze(-1).expand_as(guide.encoder.table))
    seen = []
    guide.encoder.register_forward_hook(lambda module, inputs, output: seen.append(output))
    trace = pyro.poutine.trace(guide).get_trace(x)
    index = trace.nodes["data"]["value"]
    torch.testing.assert_close(seen[-1][:, 0], index.to(seen[-1].dtype))
