"""The guide-family benchmark runs end to end in smoke mode and writes what its docstring says."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "guide_families", BENCHMARKS / "guide_families.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_writes_valid_json_and_table(bench, tmp_path):
    threads = torch.get_num_threads()
    result = bench.main(["--smoke", "--random-data", "--threads", "1", "--out", str(tmp_path)])
    assert torch.get_num_threads() == threads  # restored
    # Strict JSON: NaN or Infinity would be rejected by other readers.
    path = tmp_path / "guide_families_cpu_smoke.json"
    loaded = json.loads(path.read_text(), parse_constant=pytest.fail)
    assert loaded == json.loads(json.dumps(result))
    for key in ("device", "device_name", "torch", "pyro", "python", "torch_threads", "date"):
        assert loaded["environment"][key], key
    settings = loaded["settings"]
    assert settings["smoke"] and settings["eval_k"] == bench.SMOKE["eval_k"]
    assert "random" in settings["data"]
    assert [row["family"] for row in loaded["rows"]] == list(bench.FAMILIES)
    for row in loaded["rows"]:
        assert not row["diverged"]
        assert row["guide_parameters"] > 0 and row["ms_per_step"]["median"] > 0
        # Bounds in nats per image: finite, negative, and the IWAE-K estimate with K = 10
        # draws is above the ELBO of the same images up to Monte Carlo noise (tens of nats per
        # image at initialization would be a bug, not noise).
        assert row["test_elbo"] < 0 and row["test_ll"] < 0
        assert row["test_ll"] > row["eval_elbo"] - 5
    table = (tmp_path / "guide_families_cpu_smoke.md").read_text()
    assert table.count("\n|") == 2 + len(bench.FAMILIES)


def test_full_sets_the_papers_evaluation(bench):
    args = bench.parse_args(["--full", "--random-data"])
    assert (args.eval_k, args.eval_images, args.steps) == (5000, 10000, bench.DEFAULTS["steps"])
    assert bench.parse_args(["--full", "--eval-k", "100"]).eval_k == 100


@pytest.mark.parametrize(
    "argv", [["--families", "diagonal,nope"], ["--estimator", "nope"], ["--smoke", "--full"]]
)
def test_bad_arguments_exit(bench, argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)


def test_minibatches_are_the_same_for_every_family(bench):
    first = bench.batches(250, 100, 7, seed=0)
    assert [len(b) for b in first] == [100] * 7  # the partial batch of each epoch is dropped
    assert all(
        torch.equal(a, b) for a, b in zip(first, bench.batches(250, 100, 7, seed=0), strict=True)
    )
    epoch = torch.cat(first[:2])
    assert len(set(epoch.tolist())) == 200  # no repeat within an epoch
