"""The JSON files a run writes follow one schema with a version (pyro_vi.records)."""

from __future__ import annotations

import json

import pytest

from pyro_vi.records import (
    SCHEMA_VERSION,
    check_version,
    epoch_record,
    read_json,
    summary_record,
    versioned,
    write_json,
)
from pyro_vi.train import History


def _history() -> History:
    return History(train_loss=[40.0, 35.0], test_loss=[41.0, 36.0], seconds=[0.1, 0.2])


def test_every_record_carries_the_version():
    history = _history()
    line = epoch_record(1, history)
    assert line == {
        "schema_version": SCHEMA_VERSION,
        "epoch": 2,
        "train_loss": 35.0,
        "test_loss": 36.0,
        "validation_loss": None,
        "seconds": 0.2,
        "bound": history.bound,
    }
    # Each epoch's own values, also when a resumed run writes its earlier epochs again.
    first = epoch_record(
        0, History(train_loss=[40.0, 35.0], seconds=[0.1, 0.2], validation_loss=[42.0, 37.0])
    )
    assert (first["train_loss"], first["validation_loss"], first["seconds"]) == (40.0, 42.0, 0.1)
    summary = summary_record({"test_elbo": -35.0}, history)
    assert summary["schema_version"] == SCHEMA_VERSION and summary["metrics"] == {
        "test_elbo": -35.0
    }
    assert summary["history"] == history.to_dict() and "config" not in summary
    assert list(versioned({"status": "complete"})) == ["schema_version", "status"]


def test_round_trip_and_older_files(tmp_path):
    path = write_json(tmp_path / "run.json", versioned({"status": "complete"}))
    assert read_json(path) == {"schema_version": SCHEMA_VERSION, "status": "complete"}
    assert not (tmp_path / "run.json.partial").exists()
    # A file written before the version existed has the same layout: it is read as it is.
    (tmp_path / "old.json").write_text(json.dumps({"status": "complete"}))
    assert read_json(tmp_path / "old.json") == {"status": "complete"}


def test_a_newer_schema_is_refused_by_name():
    with pytest.raises(ValueError, match=r"'new.json' has schema_version 99, newer than"):
        check_version({"schema_version": 99}, "new.json")


def test_a_damaged_json_file_is_an_error_naming_it(tmp_path):
    broken = tmp_path / "run.json"
    broken.write_text('{"status": "compl')
    with pytest.raises(ValueError, match=r"run.json' is not valid JSON"):
        read_json(broken)
    broken.write_text("[1, 2]")
    with pytest.raises(ValueError, match="holds list, not a JSON object"):
        read_json(broken)
