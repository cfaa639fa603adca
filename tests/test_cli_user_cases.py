"""The pyro-vi command as a user meets it: their own files, folders that are not runs, spec files
that are not specs, resumes that change a part. Each bad input ends in one line naming the
problem (exit status 2) with nothing written, and nothing a user wrote is ever removed."""

import errno
import json
from pathlib import Path

import pytest

from pyro_vi.cli import main
from pyro_vi.spec import build, load_data, load_spec, save_spec
from pyro_vi.spec.schema import SpecError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# ~1 s on 2 CPU cores: one epoch on 120 digits, no IWAE evaluation.
TINY = [
    *("--epochs", "1", "--no-progress", "--set", "data.limit=120"),
    *("--set", "data.test_limit=40", "--set", "training.eval_samples=0"),
]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_a_missing_dataset_is_one_line(tmp_path, capsys):
    # The MNIST loader explains on three lines; the command's error is one.
    argv = ["train", str(CONFIGS / "vae_mnist.toml"), "--data-dir", str(tmp_path / "nowhere")]
    assert main([*argv, "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    line = _error_line(capsys)
    assert "mnist data not found" in line and "Get them from" in line
    assert not (tmp_path / "run").exists()


def test_a_text_column_of_a_csv_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("cells.csv").write_text("g1,g2,cell_type\n1,2,T\n3,4,B\n5,6,T\n")
    argv = ["train", "--set", 'data.path="cells.csv"', "--out", "run", *TINY]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "column 'cell_type' holds 'T' on line 2, not a number" in line
    # Named as the label column, it is told to be integer labels.
    assert main([*argv, "--set", 'data.label_column="cell_type"']) == 2
    line = _error_line(capsys)
    assert "label_column = 'cell_type'" in line and "'T' on line 2, not an integer" in line
    assert not Path("run").exists()


@pytest.mark.parametrize(("text", "shown"), [("[1, 2]", "[1, 2]"), ('"vae"', "'vae'")])
def test_a_spec_file_that_is_not_an_object(tmp_path, capsys, text, shown):
    spec = tmp_path / "spec.json"
    spec.write_text(text)
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert f"spec file {str(spec)!r} holds {shown}" in _error_line(capsys)
    with pytest.raises(SpecError, match="a spec is an object of sections"):
        load_spec(spec)


def test_build_and_load_data_take_a_dict_spec():
    raw = {"model": {"latent_dim": 3}, "data": {"limit": 50, "test_limit": 10}}
    data = load_data(raw)
    built = build(raw, data.info)
    assert built.spec.model["latent_dim"] == 3
    with pytest.raises(TypeError, match="spec must be a Spec .* or a dict, got int"):
        build(5, data.info)


def test_a_test_set_of_one_image_trains_evaluates_and_samples(tmp_path, capsys):
    # The interpolation figure needs two test images; with one, the run draws the others.
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), *TINY, "--set", "data.test_limit=1"]
    assert main(argv) == 0
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert (out / "reconstructions.png").is_file() and not (out / "interpolation.png").exists()
    assert main(["sample", str(out), "--num", "4", "--no-progress"]) == 0


def test_an_out_folder_with_a_users_files_is_refused_and_left_alone(tmp_path, capsys):
    # A run clears samples/ and its evaluation when it starts: never in a folder of a user's.
    out = tmp_path / "project"
    (out / "samples").mkdir(parents=True)
    (out / "samples" / "notes.txt").write_text("mine")
    (out / "metrics.json").write_text('{"mine": 1}')
    for extra in ([], ["--overwrite"]):
        assert main(["train", "--out", str(out), *TINY, *extra]) == 2
        assert "holds no run but other files (metrics.json, samples)" in _error_line(capsys)
    assert (out / "samples" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "samples"]


def test_an_out_folder_with_only_a_killed_writes_leftovers_is_free(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "spec.toml.partial").write_text("half a sp")
    assert main(["train", "--out", str(out), *TINY]) == 0
    assert not (out / "spec.toml.partial").exists()


@pytest.mark.parametrize("command", ["compare", "sweep"])
def test_compare_and_sweep_with_a_missing_dataset_write_nothing(tmp_path, capsys, command):
    config = str(CONFIGS / "vae_mnist.toml")
    specs = [config, str(CONFIGS / "iwae_mnist.toml")] if command == "compare" else [config]
    grid = ["--grid", "optimizer.lr=1e-3,3e-3"] if command == "sweep" else []
    out = tmp_path / "out"
    argv = [command, *specs, *grid, "--data-dir", str(tmp_path / "nowhere"), "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 2
    assert "mnist data not found" in _error_line(capsys)
    assert not out.exists()


def test_compare_refuses_a_taken_run_folder_before_training_any(tmp_path, capsys):
    spec = tmp_path / "a.toml"
    spec.write_text('name = "a"\n')
    out = tmp_path / "cmp"
    (out / "a-2").mkdir(parents=True)
    (out / "a-2" / "spec.toml").write_text('name = "a"\n')  # the second run's folder is taken
    assert main(["compare", str(spec), str(spec), "--out", str(out), *TINY]) == 2
    line = _error_line(capsys)
    assert f"{str(out / 'a-2')!r} already holds a run" in line
    assert "--resume it" not in line  # compare has no --resume
    assert not (out / "a").exists()


def test_resume_refuses_an_override_that_swaps_a_part_by_name(tmp_path, capsys):
    # spec.toml holds the ELBO's baseline_decay, which the IWAE does not take: the error must
    # be about resuming with another estimator, not about a key the user never wrote.
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--estimator", "iwae", "--epochs", "2"]) == 2
    line = _error_line(capsys)
    assert f'cannot resume {str(out)!r} with estimator.name="iwae"' in line
    assert "baseline_decay" not in line
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_a_spec_write_that_fails_midway_keeps_the_old_spec(tmp_path, monkeypatch):
    # A kill or a full disk while a resume rewrites spec.toml must not leave half a spec.
    path = tmp_path / "spec.toml"
    save_spec(load_spec({}), path)
    before = path.read_text()
    real_write_text = Path.write_text

    def half_then_full_disk(self, text, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_spec(load_spec({"training": {"epochs": 3}}), path)
    monkeypatch.undo()
    assert path.read_text() == before


@pytest.mark.parametrize("command", ["evaluate", "sample"])
def test_a_folder_that_is_no_run_is_not_told_to_resume(tmp_path, capsys, command):
    (tmp_path / "data.npy").write_text("not a run")
    assert main([command, str(tmp_path), "--no-progress"]) == 2
    line = _error_line(capsys)
    assert "is not a finished run folder" in line and "is it the folder of a run?" in line
    assert "--resume" not in line


def test_the_weights_of_an_unfinished_run_say_so(tmp_path):
    # A run killed mid-training was evaluated as "last (epoch 1 of 1)", as if it had finished.
    from pyro_vi.runs import load_run

    run = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    assert "unfinished" not in load_run(run).weights["description"]
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "training"}))  # as if killed
    description = load_run(run).weights["description"]
    assert "the run is unfinished (1 epoch(s) planned): pyro-vi train --resume" in description
