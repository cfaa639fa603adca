"""The speed benchmark runs, and its hand-written references compute what the library computes.

The benchmark's ratios mean something only if both sides do the same work: for identical
parameters and identical noise, each hand-written reference must give the library's log-weights,
bound and gradient. The values are checked in float32 (what the benchmark runs): both sides sum
the same ~800 terms of size ~1 per log-weight in a different order, so they agree to a few float32
ulps of the sum, far inside rtol 1e-5. The gradients are checked in float64, where the only
difference left is summation order (~1e-13 relative), so a tolerance of 1e-9 still catches any
real difference in the estimator, such as a missing or extra term.
"""

import importlib.util
import json
import subprocess
from pathlib import Path

import pyro
import pytest
import torch

from pyro_vi import estimators
from pyro_vi.architectures import iwae_mlp_vae

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def speed():
    spec = importlib.util.spec_from_file_location(
        "estimator_speed", BENCHMARKS / "estimator_speed.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speed_smoke_writes_valid_json(speed, tmp_path):
    threads = torch.get_num_threads()
    try:
        # One thread: a tiny batch gains nothing from two, and a busy machine slows
        # multi-threaded steps far more than single-threaded ones.
        result = speed.main(["--smoke", "--threads", "1", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    path = tmp_path / "estimator_speed_cpu_smoke.json"
    # Strict JSON: NaN or Infinity would be rejected by other readers.
    loaded = json.loads(path.read_text(), parse_constant=pytest.fail)
    assert loaded == json.loads(json.dumps(result))
    assert (tmp_path / "estimator_speed_cpu_smoke.md").read_text().count("\n|") >= 2
    env = loaded["environment"]
    for key in ("device_name", "torch", "pyro", "python", "torch_threads", "date"):
        assert env[key], key
    rows = {(row["estimator"], row["K"]) for row in loaded["rows"]}
    expected = {(name, k) for name in speed.ESTIMATORS for k in loaded["settings"]["ks"]}
    assert rows == {(name, k) for name, k in expected if speed.runs_at(name, k)}
    for row in loaded["rows"]:
        assert {"library", "handwritten"} <= set(row["variants"])
        for variant in row["variants"].values():
            assert variant["ms_median"] > 0
            assert variant["n"] == loaded["settings"]["repeats"][str(row["K"])]
        assert row["rounds"]["rounds_used"] == variant["n"]
        assert row["ratios"]["library_over_handwritten"] > 0
    renyi = [row for row in loaded["rows"] if row["estimator"] in ("renyi", "iwae")]
    assert all({"pyro_vectorized", "pyro_sequential"} <= set(r["variants"]) for r in renyi)
    assert set(loaded["summary"]) >= {"met", "missed"}


def test_speed_rejects_unknown_estimator(speed):
    with pytest.raises(SystemExit):
        speed.parse_args(["--estimators", "elbo,nope"])


def test_outer_inner_split(speed):
    assert [speed.outer_inner(k) for k in (1, 5, 50, 6)] == [(1, 1), (5, 1), (5, 10), (3, 2)]


CASES = [
    (name, k, one_backward)
    for name in estimators.ESTIMATORS
    for k in (1, 6)
    if not (name == "vimco" and k == 1)  # VIMCO's leave-one-out needs two particles
    for one_backward in ((False, True) if name in ("stl", "dreg") else (False,))
]
IDS = [f"{name}-K{k}" + ("-1bw" if one else "") for name, k, one in CASES]


def _pair(speed, name, num_particles, dtype, one_backward=False):
    model, guide = iwae_mlp_vae()
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3, dtype=dtype))
    model.to(dtype)
    guide.to(dtype)
    with pyro.poutine.block():
        guide(x)  # the guide builds its encoder and heads, in x's dtype, at its first call
    options = speed.estimator_options(name, num_particles)
    library = estimators.get(name, **options)
    fused = speed.handwritten.make(name, model, guide, one_backward=one_backward, **options)
    return model, guide, library, fused, x


@pytest.mark.parametrize(("name", "num_particles", "one_backward"), CASES, ids=IDS)
def test_handwritten_bound_matches_library(speed, name, num_particles, one_backward):
    model, guide, library, fused, x = _pair(speed, name, num_particles, torch.float32, one_backward)
    pyro.set_rng_seed(1)
    expected = library.log_weights(model, guide, x).log_w.detach()
    pyro.set_rng_seed(1)
    actual = fused.log_weights(x).detach()
    assert actual.shape == (num_particles, 8)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    pyro.set_rng_seed(2)
    expected_bound = -library.loss(model, guide, x)
    pyro.set_rng_seed(2)
    actual_bound = float(fused.bound(x))
    assert actual_bound == pytest.approx(expected_bound, rel=1e-5)


@pytest.mark.parametrize(("name", "num_particles", "one_backward"), CASES, ids=IDS)
def test_handwritten_gradient_matches_library(speed, name, num_particles, one_backward):
    model, guide, library, fused, x = _pair(speed, name, num_particles, torch.float64, one_backward)
    params = fused.parameters()
    pyro.set_rng_seed(3)
    expected_loss = library.loss_and_grads(model, guide, x)
    # The library writes into the same tensors: the modules' parameters are Pyro's params.
    expected = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    pyro.set_rng_seed(3)
    actual_loss = fused.loss_and_grads(x)
    assert actual_loss == pytest.approx(expected_loss, rel=1e-12)
    for param, grad in zip(params, expected, strict=True):
        scale = float(grad.abs().max())
        torch.testing.assert_close(param.grad, grad, rtol=1e-9, atol=1e-9 * scale)


DEVICE_CHECK = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.sh"


def test_device_check_script_parses_and_names_its_modes():
    # The script runs for real only where a GPU is lent (and as DEVICE=cpu SMOKE=1 by hand,
    # minutes); here: bash accepts it, and a wrong mode is refused with its usage.
    subprocess.run(["bash", "-n", str(DEVICE_CHECK)], check=True)
    done = subprocess.run(["bash", str(DEVICE_CHECK), "train"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "prepare|run" in done.stderr
