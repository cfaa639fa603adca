"""benchmarks/iwae_table.py: the schedule it trains by, a smoke run, and a killed row resumed.

The smoke runs use random grey levels (no MNIST needed), 300 training images (15 steps of 20 per
epoch), 3 epochs and evaluations of a few samples: seconds. Resumption is simulated with
``--max-chunks 1`` (the process stops after its first training chunk, as a kill after the first
checkpoint would leave it); the resumed row must end where the uninterrupted one ends, bit for
bit, since every chunk is seeded from (seed, chunk index) and the Adam state is restored.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SMOKE = ["--smoke", "--random-data", "--threads", "1", "--rows", "iwae-k5", "--budget", "3"]


@pytest.fixture(scope="module")
def table():
    spec = importlib.util.spec_from_file_location("iwae_table", BENCHMARKS / "iwae_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run(table, *argv):
    threads = torch.get_num_threads()
    try:
        return table.main(list(argv))
    finally:
        torch.set_num_threads(threads)


def load(path: Path):
    # Strict JSON: NaN or Infinity would be rejected by other readers.
    return json.loads(path.read_text(), parse_constant=pytest.fail)


@pytest.fixture(scope="module")
def uninterrupted(table, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    assert run(table, *SMOKE, "--out", str(out)) == 0
    return out


def test_full_schedule_is_the_papers(table):
    schedule = table.Schedule({"epochs": 3280}, 3000, 1e-3, "proportional")
    stages = schedule.stages(3000)
    assert [s["epochs"] for s in stages] == [3**i for i in range(8)]
    assert schedule.lr(0) == 1e-3
    assert schedule.lr(3000 * 3280 - 1) == pytest.approx(1e-4)
    assert schedule.total == 3000 * 3280


def test_truncated_schedules(table):
    proportional = table.Schedule({"epochs": 100}, 3000, 1e-3, "proportional")
    epochs = [s["epochs"] for s in proportional.stages(3000)]
    # Each stage keeps its share 3^i / 3280 of the budget (to the step; printed to 3 decimals).
    assert epochs == pytest.approx([100 * 3**i / 3280 for i in range(8)], abs=2e-3)
    assert proportional.lr(0) == 1e-3 and proportional.ends[-1] == 300000
    prefix = table.Schedule({"epochs": 100}, 3000, 1e-3, "prefix")
    assert [s["epochs"] for s in prefix.stages(3000)] == [1, 3, 9, 27, 60, 0, 0, 0]
    tail = table.Schedule({"epochs": 100}, 3000, 1e-3, "tail")
    # Stages 0-3 whole (40 epochs), stages 4-7 sharing the other 60 as 81 : 243 : 729 : 2187.
    assert [s["epochs"] for s in tail.stages(3000)] == [1, 3, 9, 27, 1.5, 4.5, 13.5, 40.5]
    assert tail.ends[-1] == 300000 and tail.lr(299999) == pytest.approx(1e-4)
    full = table.Schedule({"epochs": 3280}, 3000, 1e-3, "tail")
    assert full.ends == table.Schedule({"epochs": 3280}, 3000, 1e-3, "proportional").ends
    timed = table.Schedule({"seconds": 3280.0}, 3000, 1e-3, "proportional")
    assert timed.lr(0.5) == 1e-3 and timed.lr(1.5) == pytest.approx(1e-3 * 10 ** (-1 / 7))
    with pytest.raises(ValueError, match="prefix"):
        table.Schedule({"seconds": 60.0}, 3000, 1e-3, "prefix")


def test_budget_and_rows_parse(table):
    assert table.parse_budget("100") == {"epochs": 100}
    assert table.parse_budget("100e") == {"epochs": 100}
    assert table.parse_budget("90m") == {"seconds": 5400.0}
    assert table.parse_budget("2h") == {"seconds": 7200.0}
    with pytest.raises(ValueError, match="budget"):
        table.parse_budget("ten")
    assert table.Row.parse("miwae-k50") == table.Row("miwae", 50, 5)
    assert table.Row.parse("piwae-k5").outer == 5  # 5 x 1: model IWAE_5, guide ELBO of 5
    assert table.Row.parse("miwae-k50-m10").name == "miwae-k50-m10"
    assert len(table.parse_rows("all")) == 17
    with pytest.raises(ValueError, match="rows"):
        table.Row.parse("iwae-k50-m5")
    with pytest.raises(ValueError, match="rows"):
        table.Row.parse("foo-k5")


def test_smoke_writes_table(uninterrupted):
    data = load(uninterrupted / "iwae_table_cpu_smoke.json")
    (row,) = data["rows"]
    assert (row["arch"], row["row"], row["status"]) == ("one", "iwae-k5", "done")
    assert row["epochs"] == 3 and row["steps"] == 45 and row["resumptions"] == 0
    final = row["final"]
    assert final["settings"]["samples"] == 20 and final["settings"]["images"] == 100
    assert final["test_nll"] > 0 and final["test_nll_stderr"] > 0
    assert final["active_units"]["z"]["of"] == 50
    assert row["paper"] == 85.54
    assert [p["epoch"] for p in row["curve"]] == [1, 2, 3]
    for key in ("device_name", "torch", "pyro", "python", "date"):
        assert data["environment"][key]
    markdown = (uninterrupted / "iwae_table_cpu_smoke.md").read_text()
    assert "| one | `iwae-k5` | IWAE_K |" in markdown and "85.54" in markdown
    assert (uninterrupted / "iwae_table_cpu_smoke.png").stat().st_size > 0


def test_killed_row_resumes_where_it_stopped(table, uninterrupted, tmp_path):
    assert run(table, *SMOKE, "--out", str(tmp_path), "--max-chunks", "1") == 3
    stopped = load(tmp_path / "iwae_table_cpu_smoke.json")["rows"][0]
    assert stopped["status"] == "running" and stopped["chunks_done"] == 1
    assert (tmp_path / "one-iwae-k5" / "checkpoint.pt").exists()

    assert run(table, *SMOKE, "--out", str(tmp_path)) == 0
    resumed = load(tmp_path / "iwae_table_cpu_smoke.json")["rows"][0]
    whole = load(uninterrupted / "iwae_table_cpu_smoke.json")["rows"][0]
    assert resumed["resumptions"] == 1 and resumed["status"] == "done"
    assert resumed["curve"] == [
        {**point, "train_seconds": resumed_point["train_seconds"]}
        for point, resumed_point in zip(whole["curve"], resumed["curve"], strict=True)
    ]
    assert [e["train_bound"] for e in resumed["epoch_log"]] == [
        e["train_bound"] for e in whole["epoch_log"]
    ]
    assert resumed["final"]["test_nll"] == whole["final"]["test_nll"]

    # A finished row is kept, not trained again; other settings are refused, not mixed in.
    assert run(table, *SMOKE, "--out", str(tmp_path)) == 0
    assert load(tmp_path / "one-iwae-k5" / "state.json")["resumptions"] == 1
    with pytest.raises(SystemExit, match="other settings"):
        run(table, *SMOKE[:-1], "4", "--out", str(tmp_path))


def test_rewrite_adds_paired_differences(table, uninterrupted, tmp_path):
    # A second row in a copy of the smoke run folder, then the results rewritten from the
    # folder: the paired difference is the difference of the two rows' test NLLs (the mean of
    # per-image differences), with its paired standard error.
    import shutil

    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    results = str(out / "rewritten")
    assert run(table, *SMOKE[:-4], "--rows", "vae-k1", "--budget", "3", "--out", str(out)) == 0
    assert run(table, "--rewrite", "--out", str(out), "--results", results) == 0
    data = load(Path(results + ".json"))
    (pair,) = data["paired"]
    assert (pair["row"], pair["reference"], pair["images"]) == ("vae-k1", "iwae-k5", 100)
    nll = {row["row"]: row["final"]["test_nll"] for row in data["rows"]}
    assert pair["difference"] == pytest.approx(nll["vae-k1"] - nll["iwae-k5"], abs=1e-9)
    assert pair["stderr"] > 0
    assert "Paired differences of test NLL" in Path(results + ".md").read_text()
