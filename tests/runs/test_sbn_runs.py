"""A relaxed sigmoid belief net is judged as the discrete model; comparisons show its bound."""

import json

import pyro
import pytest
import torch

from pyro_vi.runs.comparison import describe_guide, run_row
from pyro_vi.runs.evaluate import evaluate_built
from pyro_vi.spec import DataInfo, build, load_spec

SBN = {
    "data": {"name": "digits"},
    "model": {"kind": "sbn", "latent_dim": 4, "decoder": {"hidden": [8]}},
    "guide": {"encoder": {"hidden": [8]}},
}


def _spec(*overrides):
    return load_spec(SBN, list(overrides))


@pytest.mark.parametrize("relaxation", ["none", "concrete", "straight_through"])
def test_evaluation_reports_the_discrete_model(relaxation):
    spec = _spec(f"model.relaxation={relaxation}")
    built = build(spec, DataInfo((1, 8, 8)))
    test = (torch.bernoulli(torch.full((6, 1, 8, 8), 0.3)),)
    metrics = evaluate_built(built, test, num_samples=4, progress=False)
    assert {"test_elbo", "test_log_likelihood_iwae_4", "active_units"} <= set(metrics)
    assert ("test_relaxed_elbo_bound" in metrics) == (relaxation != "none")
    # The discrete test ELBO is the discrete pair's: the same number from the discrete model.
    judged = built.for_evaluation()
    pyro.set_rng_seed(0)
    expected = evaluate_built(judged, test, num_samples=4, progress=False)["test_elbo"]
    assert metrics["test_elbo"] == pytest.approx(expected)


def test_comparison_row_shows_the_relaxed_bound_it_trained_on(tmp_path):
    spec = _spec("model.relaxation=concrete", "model.temperature=0.5")
    metrics = {"test_elbo": -30.0, "test_relaxed_elbo_bound": -29.0}
    summary = {"metrics": metrics, "history": {"train_loss": [31.0]}}
    (tmp_path / "metrics.json").write_text(json.dumps(summary))
    row = run_row("concrete-run", spec, tmp_path)
    assert row["name"] == "concrete-run"
    assert (row["test_elbo"], row["test_bound"]) == (-30.0, -29.0)
    assert row["guide"] == "concrete (temperature 0.5)"
    assert describe_guide(_spec()) == "bernoulli"
