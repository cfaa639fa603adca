"""The discrete-latent benchmark runs end to end in smoke mode and writes what it promises."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "discrete_latents", BENCHMARKS / "discrete_latents.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_writes_json_table_and_figure(bench, tmp_path):
    threads = torch.get_num_threads()
    result = bench.main(["--smoke", "--random-data", "--out", str(tmp_path)])
    assert torch.get_num_threads() == threads  # restored
    stem = tmp_path / "discrete_latents_cpu_smoke"
    # Strict JSON: NaN or Infinity would be rejected by other readers.
    loaded = json.loads(stem.with_suffix(".json").read_text(), parse_constant=pytest.fail)
    assert loaded == json.loads(json.dumps(result))
    for key in ("device", "device_name", "torch", "pyro", "python", "torch_threads", "date"):
        assert loaded["environment"][key], key
    assert stem.with_suffix(".png").stat().st_size > 0
    rows = loaded["rows"]
    assert [row["variant"] for row in rows] == list(bench.VARIANTS)
    steps = bench.SMOKE["steps"]
    for row in rows:
        assert not row["diverged"] and row["steps"] == steps
        assert [point["step"] for point in row["curve"]] == bench.checkpoints(steps)
        assert [g["step"] for g in row["gradients"]] == [0, steps // 2, steps]
        for point in row["curve"]:
            # Bounds of the discrete model in nats per image: finite and negative.
            assert point["test_elbo"] < 0 and point["test_ll"] < 0
            assert ("relaxed_elbo" in point) == (row["relaxation"] != "none")
        seconds = [point["seconds"] for point in row["curve"]]
        assert seconds == sorted(seconds) and seconds[-1] > 0
        for group in ("guide", "model"):
            assert all(math.isfinite(g[group]["mean_variance"]) for g in row["gradients"])
    # Every variant starts from the same weights and is evaluated with the same random numbers.
    assert len({row["curve"][0]["test_ll"] for row in rows}) == 1
    table = stem.with_suffix(".md").read_text()
    assert table.count("\n| score") == 2 and "IWAE-" in table


def test_checkpoints(bench):
    assert bench.checkpoints(10000) == [0, 250, 500, *range(1000, 10001, 1000)]
    assert bench.checkpoints(6) == [0, 1, 2, 3, 4, 5, 6]
