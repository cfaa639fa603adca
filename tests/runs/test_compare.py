"""Comparisons compare like with like: one common metric, ranked; own bounds apart; an autoencoder's
reconstruction on its own axis with blank bound cells; the machine's load recorded and warned of;
per-epoch curves that leave training untouched."""

import csv
import json
import math
import re

import pytest
import torch

from pyro_vi.machine import BUSY_SHARE, OtherLoad, is_busy, load_snapshot
from pyro_vi.runs.comparison import BusyMachineWarning, rank_rows, run_row, write_comparison
from pyro_vi.runs.curves import EpochEvaluation, read_curve, scheduled
from pyro_vi.runs.training import train_spec
from pyro_vi.spec import load_data, load_spec

# A run of ~0.5 s: 100 digits, a 16-unit network, 2-D latents, 5 importance samples.
TINY = {
    "data": {"name": "digits", "limit": 100, "test_limit": 40},
    "model": {"latent_dim": 2, "decoder": {"hidden": [16]}},
    "guide": {"encoder": {"hidden": [16]}},
    "training": {"epochs": 2, "batch_size": 50, "eval_samples": 5},
}
AUTOENCODER = {**TINY, "model": {**TINY["model"], "kind": "autoencoder"}}


def _spec(raw=TINY, *overrides):
    return load_spec(raw, list(overrides))


def _fake_run(path, *, kind="vae", metrics=None, share=0.0, train_losses=(40.0, 35.0)):
    """A run folder as training writes it, without training (for the table's logic alone)."""
    path.mkdir(parents=True)
    metrics = {"training_seconds": 1.0, "reconstruction_log_likelihood": -30.0, **(metrics or {})}
    history = {"train_loss": list(train_losses)}
    (path / "metrics.json").write_text(json.dumps({"metrics": metrics, "history": history}))
    (path / "run.json").write_text(json.dumps({"status": "complete", "environment": {}}))
    epochs = [
        {"epoch": e + 1, "train_loss": loss, "test_loss": loss, "seconds": 0.5}
        for e, loss in enumerate(train_losses)
    ]
    (path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    test = {"size": 40, "reconstruction": -30.0}
    if kind != "autoencoder":
        test.update(elbo=-34.0, log_likelihood=-33.0)
    curve = [
        {
            "epoch": e + 1,
            "seconds": 0.5,
            "other_cpu_share": share,
            "load_average": [1.0, 1.0, 1.0],
            "test": test,
        }
        for e in range(len(train_losses))
    ]
    (path / "eval_curve.jsonl").write_text("".join(json.dumps(c) + "\n" for c in curve))
    return path


def test_rows_rank_on_the_common_likelihood_and_leave_an_autoencoders_bounds_blank(tmp_path):
    vae = _fake_run(
        tmp_path / "vae",
        metrics={"test_elbo": -34.0, "test_log_likelihood_iwae_5": -33.0},
    )
    # IWAE's own bound is higher than its ELBO: it must not decide the ranking.
    iwae = _fake_run(
        tmp_path / "iwae",
        metrics={"test_elbo": -35.0, "test_iwae_bound": -30.0, "test_log_likelihood_iwae_5": -33.5},
    )
    autoencoder = _fake_run(tmp_path / "ae", kind="autoencoder")
    rows = [
        run_row("iwae", _spec(TINY, "estimator.name=iwae"), iwae),
        run_row("ae", _spec(AUTOENCODER), autoencoder),
        run_row("vae", _spec(), vae),
    ]
    ranked = rank_rows(rows)
    assert [(r["name"], r["rank"]) for r in ranked] == [("vae", 1), ("iwae", 2), ("ae", None)]
    vae_row, iwae_row, ae_row = ranked
    assert vae_row["test_bound"] == -34.0  # the ELBO is the VAE's own bound
    assert iwae_row["test_bound"] == -30.0
    assert (ae_row["test_elbo"], ae_row["log_likelihood"], ae_row["test_bound"]) == (None,) * 3
    assert ae_row["reconstruction_log_likelihood"] == -30.0

    written = write_comparison(tmp_path / "out", rows, [iwae, autoencoder, vae], "epochs")
    table = written["markdown"].read_text()
    ae_line = next(line for line in table.splitlines() if line.startswith("|  | ae |"))
    header = next(line for line in table.splitlines() if line.startswith("| rank |"))
    headings, cells = (_cells(line) for line in (header, ae_line))
    by_heading = dict(zip(headings, cells, strict=True))
    for blank in ("log p(x) IWAE-K", "test ELBO", "own test bound", "rank"):
        assert by_heading[blank] == "", blank
    assert by_heading["recon. log p(x\\|z)"] == "-30.00"
    assert "not comparable" in table and "K = 5" in table
    with open(written["csv"]) as file:
        ae_csv = next(row for row in csv.DictReader(file) if row["name"] == "ae")
    assert ae_csv["test_elbo"] == "" and ae_csv["log_likelihood"] == ""
    stored = json.loads(written["json"].read_text())
    assert [row["name"] for row in stored["rows"]] == ["vae", "iwae", "ae"]
    assert written["figure"].stat().st_size > 10_000


def test_a_busy_machine_is_in_the_table_and_on_stderr(tmp_path):
    quiet = _fake_run(tmp_path / "quiet", metrics={"test_elbo": -34.0}, share=0.05)
    busy = _fake_run(tmp_path / "busy", metrics={"test_elbo": -34.0}, share=0.8)
    rows = [run_row("quiet", _spec(), quiet), run_row("busy", _spec(), busy)]
    assert rows[1]["other_cpu_share"] == pytest.approx(0.8) and rows[1]["busy"]
    assert not rows[0]["busy"]
    with pytest.warns(BusyMachineWarning, match="busy"):
        written = write_comparison(tmp_path / "out", rows, [quiet, busy], "seconds")
    table = written["markdown"].read_text()
    assert "Warning: the machine was busy" in table and "busy 80%" in table
    assert "80% busy" in table and "5%" in table


def test_the_load_meter_reads_a_share_and_the_load_average():
    meter = OtherLoad()
    sum(i * i for i in range(200_000))  # some CPU time of this process's own
    share = meter.share()
    assert share is None or 0.0 <= share <= 1.0
    snapshot = load_snapshot()
    assert snapshot["cpu_count"] >= 1
    assert snapshot["load_average"] is None or len(snapshot["load_average"]) == 3
    assert is_busy(BUSY_SHARE + 0.01) and not is_busy(BUSY_SHARE) and not is_busy(None)


def _cells(line):
    """A Markdown table row's cells (an escaped pipe, ``\\|``, stays inside its cell)."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def _weights(path):
    state = torch.load(path / "checkpoint.pt", weights_only=True)
    return [v for part in ("model", "guide") for v in state[part].values()]


def test_epoch_curves_leave_training_untouched(tmp_path):
    spec = _spec(TINY, "training.epochs=1")
    data = load_data(spec)
    plain = train_spec(spec, tmp_path / "plain", progress=False, data=data)
    evaluation = EpochEvaluation(tmp_path / "scored", data, num_samples=4, size=20)
    scored = train_spec(spec, tmp_path / "scored", progress=False, data=data, on_epoch=evaluation)
    # The evaluation's random draws are taken from saved-and-restored generators.
    assert scored.history.train_loss == plain.history.train_loss
    for a, b in zip(_weights(plain.path), _weights(scored.path), strict=True):
        assert torch.equal(a, b)
    (point,) = read_curve(scored.path)
    assert point["epoch"] == 1 and point["num_samples"] == 4 and point["test"]["size"] == 20
    # IWAE-4 is at least the ELBO up to Monte Carlo noise on 20 images.
    assert point["test"]["log_likelihood"] > point["test"]["elbo"] - 1.0
    assert "other_cpu_share" in point and point["cpu_count"] >= 1


def test_a_resumed_runs_curve_holds_each_epoch_once(tmp_path):
    spec = _spec(TINY, "training.epochs=1")
    data = load_data(spec)
    first = EpochEvaluation(tmp_path / "run", data, num_samples=4, size=20)
    run = train_spec(spec, tmp_path / "run", progress=False, data=data, on_epoch=first)
    longer = _spec(TINY, "training.epochs=2")
    again = EpochEvaluation(tmp_path / "run", data, num_samples=4, size=20)
    train_spec(longer, progress=False, data=data, resume=run.path, on_epoch=again)
    assert [point["epoch"] for point in read_curve(run.path)] == [1, 2]


def test_an_autoencoders_curve_has_only_its_reconstruction(tmp_path):
    spec = _spec(AUTOENCODER, "training.epochs=1")
    data = load_data(spec)
    evaluation = EpochEvaluation(tmp_path / "ae", data, num_samples=4, size=20)
    train_spec(spec, tmp_path / "ae", progress=False, data=data, on_epoch=evaluation)
    (point,) = read_curve(tmp_path / "ae")
    assert set(point["test"]) == {"size", "reconstruction"}
    assert math.isfinite(point["test"]["reconstruction"])


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_curve_settings_are_checked(bad, tmp_path):
    with pytest.raises(ValueError, match="curve_samples"):
        EpochEvaluation(tmp_path, None, num_samples=bad)
    with pytest.raises(ValueError, match="curve_size"):
        EpochEvaluation(tmp_path, None, size=bad)


def test_curves_are_scored_every_epoch_then_on_a_ladder_shared_by_every_run():
    epochs = [epoch for epoch in range(1, 1001) if scheduled(epoch)]
    assert epochs[:21] == [*range(1, 21), 25]
    assert epochs[21:] == [
        30,
        40,
        50,
        60,
        80,
        100,
        120,
        150,
        200,
        250,
        300,
        400,
        500,
        600,
        800,
        1000,
    ]
