"""The captured training step computes what the eager step computes.

For a fixed seed both draw the same random numbers (the captured graph keeps random draws as
operations on torch's generators), so loss and gradients agree to float64 rounding on the
conjugate models (1e-5 is the issue's bound; measured: ~1e-13) and to float32 rounding on a VAE.
Capturing is checked for every estimator with the graph replayed as it is; compiling it with
inductor costs tens of seconds per program here, so the default suite compiles one estimator and
the slow suite all of them.
"""

import pyro
import pytest
import torch
from conjugate_cases import CONJUGATE, make_conjugate
from estimator_options import OPTIONS

from pyro_vi.architectures import mlp_vae
from pyro_vi.estimators import ESTIMATORS, get
from pyro_vi.train import fit
from pyro_vi.train.loop import _leaves
from pyro_vi.train.step import CapturedStep, EagerStep

NAMES = sorted(ESTIMATORS)


def gradients(step, params, batch, seed):
    for param in params:
        param.grad = None
    pyro.set_rng_seed(seed)
    loss = step(batch)
    return loss, [param.grad.clone() for param in params]


def compare(name, model, guide, batch, mode, atol):
    estimator = get(name, **OPTIONS[name])
    eager = EagerStep(model, guide, estimator, {})
    with pyro.poutine.trace(param_only=True) as capture:
        eager(batch)  # creates parameters, validates, learns the program's structure
    params, _ = _leaves(capture.trace, model, guide)
    captured = CapturedStep(eager, params, mode, torch.device("cpu"))
    for seed in (1, 2):
        with pyro.validation_enabled(False):
            want_loss, want = gradients(eager, params, batch, seed)
            got_loss, got = gradients(captured, params, batch, seed)
        torch.testing.assert_close(got_loss, want_loss, rtol=0, atol=atol)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=0, atol=atol)


@pytest.mark.parametrize("conjugate", CONJUGATE)
@pytest.mark.parametrize("name", NAMES)
def test_captured_graph_matches_eager_on_conjugate_models(name, conjugate):
    model = make_conjugate(conjugate)
    compare(name, model.model, model.guide, (model.sample(8),), "graph", 1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_captured_graph_matches_eager_on_a_vae(name):
    model, guide = mlp_vae((1, 8, 8), latent_dim=3, hidden=[16])
    x = torch.bernoulli(torch.full((6, 1, 8, 8), 0.3))
    compare(name, model, guide, (x,), "graph", 1e-4)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n != "iwae" else n for n in NAMES]
)
def test_inductor_matches_eager(name):
    model = make_conjugate("normal_normal")
    compare(name, model.model, model.guide, (model.sample(8),), "inductor", 1e-5)


def test_fit_with_a_captured_step_trains():
    model, guide = mlp_vae((1, 8, 8), latent_dim=2, hidden=[16])
    x = torch.bernoulli(torch.full((40, 1, 8, 8), 0.3))
    history = fit(
        model, guide, x, loss="iwae", epochs=3, batch_size=16, compile="graph", progress=False
    )
    # 40 images in batches of 16: the short last batch gets its own graph.
    assert history.epochs == 3 and history.train_loss[-1] < history.train_loss[0]


def test_uncapturable_programs_run_eagerly_with_one_warning():
    model, guide = mlp_vae((1, 8, 8), latent_dim=2, hidden=[8])
    x = torch.bernoulli(torch.full((20, 1, 8, 8), 0.3))
    with pytest.warns(UserWarning, match="compile='graph': running eagerly, since Trace_ELBO"):
        history = fit(model, guide, x, epochs=1, batch_size=10, compile="graph", progress=False)
    assert history.epochs == 1

    def branching_model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", pyro.distributions.Normal(0.0, 1.0))
            if bool((z > 10).any()):  # Python branching on a sampled value
                z = z * 2
            pyro.sample("x", pyro.distributions.Normal(z, 1.0), obs=x)

    def branching_guide(x):
        loc = pyro.param("loc", torch.zeros(len(x)))
        with pyro.plate("data", len(x)):
            pyro.sample("z", pyro.distributions.Normal(loc, 1.0))

    with pytest.warns(UserWarning, match="could not be captured"):
        fit(
            branching_model,
            branching_guide,
            torch.randn(8),
            loss="elbo",
            epochs=2,
            batch_size=8,
            compile="graph",
            progress=False,
        )
