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


# -- step_overhead.py ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def overhead():
    spec = importlib.util.spec_from_file_location("step_overhead", BENCHMARKS / "step_overhead.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("program", ["library", "user"])
@pytest.mark.parametrize("k", [1, 3])
def test_overhead_floor_computes_the_library_elbo(overhead, program, k):
    """The floor variant times the same objective as the others: for the same parameters and
    noise (float64, same seed) its loss is pyro_vi's ELBO loss and Pyro's Trace_ELBO loss, up to
    summation order."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    x = (torch.rand(6, 1, 28, 28) < 0.13).double()
    vae, encoder = iwae_mlp_vae()
    vae.double()
    encoder.double()
    with pyro.poutine.block():
        encoder(x)
    model, guide = (vae, encoder) if program == "library" else overhead.user_program(vae, encoder)
    elbo = estimators.get("elbo", num_particles=k)
    trace_elbo = pyro.infer.Trace_ELBO(
        num_particles=k, vectorize_particles=k > 1, max_plate_nesting=1
    )
    losses = []
    for compute in (
        lambda: overhead.pyro_floor_loss(model, guide, x, k),
        lambda: elbo.differentiable_loss(model, guide, x),
        lambda: trace_elbo.differentiable_loss(model, guide, x),
    ):
        pyro.set_rng_seed(1)
        losses.append(float(compute().detach()))
    assert losses[1] == pytest.approx(losses[0], rel=1e-12)
    assert losses[2] == pytest.approx(losses[0], rel=1e-12)


def test_overhead_smoke_writes_valid_json(overhead, tmp_path):
    result = overhead.main(["--smoke", "--out", str(tmp_path)])
    loaded = json.loads(
        (tmp_path / "step_overhead_cpu_smoke.json").read_text(), parse_constant=pytest.fail
    )
    assert loaded == json.loads(json.dumps(result))
    assert {(row["program"], row["K"]) for row in loaded["rows"]} == {
        (program, k) for program in overhead.PROGRAMS for k in overhead.DEFAULT_KS
    }
    for row in loaded["rows"]:
        assert set(row["variants"]) == set(overhead.VARIANTS)
        assert all(v["ms_median"] > 0 for v in row["variants"].values())
        assert row["ratios_to_torch"]["torch"] == 1.0
        assert set(row["overhead_ms"]) == {
            "pyro_runtime",
            "pyro_vi_core",
            "pyro_trace_elbo_over_floor",
        }
    assert (tmp_path / "step_overhead_cpu_smoke.md").read_text().count("\n|") >= 5
