"""pyro-vi sweep: a grid of spec values as resumable run folders and one comparison; an Optuna
search with pruning; every bad argument refused before anything trains."""

import json
import sys

import pytest

from pyro_vi.cli import main
from pyro_vi.runs.sweep import combination_name, grid_points, parse_axes, sweep
from pyro_vi.spec import SpecError

# Runs of ~0.5 s: 100 digits, a 16-unit network, 2-D latents, 5 importance samples.
TINY = {
    "name": "tiny",
    "data": {"name": "digits", "limit": 100, "test_limit": 40},
    "model": {"latent_dim": 2, "decoder": {"hidden": [16]}},
    "guide": {"encoder": {"hidden": [16]}},
    "estimator": {"name": "iwae", "num_particles": 2},
    "training": {"epochs": 1, "batch_size": 50, "eval_samples": 5},
}
CURVES = {"curve_samples": 4, "curve_size": 20, "progress": False}
# This machine is shared: the tests' runs are timed on a busy one, which the record says.
pytestmark = pytest.mark.filterwarnings("ignore::pyro_vi.runs.comparison.BusyMachineWarning")


def test_values_are_typed_split_at_top_level_commas_and_strings_stay_strings():
    lr, hidden, name, flag = parse_axes(
        [
            "optimizer.lr=1e-3, 3e-4",
            "model.decoder.hidden=[16, 8],[32]",
            "data.name=5,digits",
            "model.conditional=true,false",
        ],
        string_keys=["data.name"],
    )
    assert lr.values == (1e-3, 3e-4)
    assert hidden.values == ([16, 8], [32])
    assert name.values == ("5", "digits")  # a string key's values are strings
    assert flag.values == (True, False)
    assert grid_points([lr, flag]) == [
        {"optimizer.lr": 1e-3, "model.conditional": True},
        {"optimizer.lr": 1e-3, "model.conditional": False},
        {"optimizer.lr": 3e-4, "model.conditional": True},
        {"optimizer.lr": 3e-4, "model.conditional": False},
    ]


def test_ranges_are_for_a_search_only():
    (lr, size) = parse_axes(
        ["optimizer.lr=log:1e-4:1e-2", "training.batch_size=int:20:200"], ranges=True
    )
    assert (lr.scale, lr.low, lr.high) == ("log", 1e-4, 1e-2)
    assert (size.scale, size.low, size.high) == ("int", 20, 200)
    with pytest.raises(ValueError, match="add --optuna N"):
        parse_axes(["optimizer.lr=log:1e-4:1e-2"])
    for bad, message in [
        ("optimizer.lr=log:0:1", "LOW > 0"),
        ("optimizer.lr=float:2:1", "LOW < HIGH"),
        ("training.batch_size=int:1.5:10", "an integer"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_axes([bad], ranges=True)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["optimizer.lr"], "malformed: it must look like KEY=VALUES"),
        (["=1,2"], "must be dotted names"),
        (["optimizer..lr=1"], "must be dotted names"),
        (["optimizer.lr="], "no values"),
        (["optimizer.lr=1e-3,,3e-4"], "an empty value"),
        (["training.seed=1,2", "training.seed=3"], "gives the key 'training.seed' twice"),
        (["training.seed=1,1"], "listed twice"),
        (["optimizer.lr=1e-3,0.001"], "listed twice"),
        ([], "at least one KEY=VALUES"),
    ],
)
def test_malformed_grid_arguments_are_named(arguments, message):
    with pytest.raises(ValueError, match=message):
        parse_axes(arguments)


def test_folder_names_are_short_readable_and_stable():
    point = {"optimizer.lr": 0.001, "estimator.num_particles": 5}
    assert combination_name(point) == "lr-0.001_num_particles-5"
    # Keys with the same last part keep enough of their path to tell them apart.
    both = {"training.seed": 0, "data.seed": 1, "model.decoder.hidden": [16, 8]}
    assert combination_name(both) == "training.seed-0_data.seed-1_hidden-16-8"


@pytest.mark.parametrize(
    ("grid", "optuna", "error", "message"),
    [
        (["train.lr=1e-3,3e-4"], None, SpecError, "did you mean 'optimizer.lr'"),
        (["optimizer.lr=1e-3,fast"], None, SpecError, "optimizer.lr = 'fast'"),
        (["estimator.num_particles=1.5"], None, SpecError, "num_particles must be an integer"),
        (["training.epochs=0,1"], None, SpecError, "training.epochs = 0"),
        (["optimizer.lr=log:1e-4:1e-2"], None, ValueError, "add --optuna N"),
        (["training.seed=0"], 0, ValueError, "--optuna N needs N >= 1"),
        (["estimator.num_particles=float:1:4"], 2, SpecError, "num_particles must be an integer"),
    ],
)
def test_bad_input_is_refused_before_anything_trains(tmp_path, grid, optuna, error, message):
    out = tmp_path / "sweep"
    with pytest.raises(error, match=message):
        sweep(TINY, grid, out, optuna=optuna, **CURVES)
    assert not out.exists()


def test_a_key_both_set_and_swept_is_refused(tmp_path):
    # The grid's values silently replaced the --set one.
    out = tmp_path / "sweep"
    with pytest.raises(ValueError, match=r"--set 'optimizer.lr=1e-3' and --grid .* both give"):
        sweep(TINY, ["optimizer.lr=3e-3,1e-2"], out, overrides=["optimizer.lr=1e-3"], **CURVES)
    assert not out.exists()


def test_a_grid_trains_each_combination_into_its_folder_and_one_table(tmp_path):
    out = tmp_path / "sweep"
    written = sweep(TINY, ["optimizer.lr=3e-3,1e-3"], out, **CURVES)
    names = ["lr-0.003", "lr-0.001"]
    for name in names:
        assert json.loads((out / name / "run.json").read_text())["status"] == "complete"
        assert (out / name / "eval_curve.jsonl").is_file()
    table = written["markdown"].read_text()
    assert "| optimizer.lr |" in table and "lr-0.003" in table
    rows = json.loads(written["json"].read_text())["rows"]
    assert {row["params"]["optimizer.lr"] for row in rows} == {3e-3, 1e-3}
    assert sorted(row["rank"] for row in rows) == [1, 2]
    assert written["figure"].is_file() and written["csv"].is_file()
    assert [run["outcome"] for run in json.loads((out / "sweep.json").read_text())["runs"]] == [
        "trained",
        "trained",
    ]


def test_a_sweep_started_again_skips_complete_runs_and_resumes_longer_ones(tmp_path):
    out = tmp_path / "sweep"
    sweep(TINY, ["training.seed=0"], out, **CURVES)
    stamp = (out / "seed-0" / "checkpoint.pt").stat().st_mtime_ns
    sweep(TINY, ["training.seed=0"], out, **CURVES)
    (run,) = json.loads((out / "sweep.json").read_text())["runs"]
    assert run["outcome"] == "skipped (complete)"
    assert (out / "seed-0" / "checkpoint.pt").stat().st_mtime_ns == stamp
    sweep(TINY, ["training.seed=0"], out, overrides=["training.epochs=2"], **CURVES)
    (run,) = json.loads((out / "sweep.json").read_text())["runs"]
    assert run["outcome"] == "resumed"
    curve = (out / "seed-0" / "eval_curve.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in curve] == [1, 2]
    # A folder holding a run of another spec is refused, naming what differs.
    with pytest.raises(SpecError, match="holds another run.*model.latent_dim"):
        sweep(TINY, ["training.seed=0"], out, overrides=["model.latent_dim=3"], **CURVES)


def test_the_command_line_sweep(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = [
        "sweep",
        "--grid",
        "training.seed=0,1",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--curve-samples",
        "4",
        "--curve-size",
        "20",
        "--no-progress",
        *("--set", "data.limit=100", "--set", "data.test_limit=40"),
        *("--set", "training.eval_samples=5", "--set", "model.latent_dim=2"),
        *("--set", "model.decoder.hidden=[16]", "--set", "guide.encoder.hidden=[16]"),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "| training.seed |" in printed.out and "[2/2] seed-1: trained" in printed.err
    assert main(["sweep", "--grid", "train.lr=1", "--out", str(tmp_path / "x")]) == 2
    assert "did you mean 'optimizer.lr'" in capsys.readouterr().err


def test_optuna_missing_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'pyro-vi\[sweep\]'"):
        sweep(TINY, ["training.seed=0,1"], tmp_path / "search", optuna=2, **CURVES)
    argv = ["sweep", "--grid", "training.seed=0,1", "--optuna", "2", "--out", str(tmp_path / "s")]
    assert main(argv) == 2
    assert "pip install 'pyro-vi[sweep]'" in capsys.readouterr().err


def test_an_optuna_search_prunes_and_continues(tmp_path):
    pytest.importorskip("optuna")
    out = tmp_path / "search"
    # A learning rate too small to learn anything is below the median after the first epoch.
    space = ["optimizer.lr=1e-2,1e-7", "data.validation=0.2"]
    spec = {**TINY, "training": {**TINY["training"], "epochs": 2}}
    written = sweep(spec, space, out, optuna=4, prune_startup=1, **CURVES)
    record = json.loads(written["optuna"].read_text())
    assert "validation split" in record["objective"]
    states = {trial["folder"]: trial["state"] for trial in record["trials"]}
    assert len(states) == 4 and set(states.values()) <= {"complete", "pruned"}
    for trial in record["trials"]:
        status = json.loads((out / trial["folder"] / "run.json").read_text())
        assert status["status"] == trial["state"] and "error" not in status
        if trial["state"] == "pruned":
            assert trial["params"]["optimizer.lr"] == 1e-7
    assert record["best"]["params"]["optimizer.lr"] == 1e-2
    assert "pruned" in states.values()  # TPE's first (random, seeded) draws include both
    # Started again with as many trials, the study is complete: nothing trains.
    again = sweep(spec, space, out, optuna=4, prune_startup=1, **CURVES)
    assert json.loads(again["optuna"].read_text())["trials"] == record["trials"]
