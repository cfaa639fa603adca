"""The documentation site builds without a warning (mkdocs in strict mode): every API page's
docstrings parse, every cross-reference resolves, every tutorial's example file exists."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_build_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "programs" / "index.html").exists()
    assert (tmp_path / "api" / "estimators" / "index.html").exists()
