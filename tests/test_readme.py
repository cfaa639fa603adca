"""Every command and snippet in README.md runs, as written.

Each fenced ``bash`` block runs as one ``bash -e`` script and each ``python`` block with
``python -c`` (exec in a fresh interpreter), in a scratch folder holding copies of ``configs/``
and ``examples/`` (so that relative paths and written run folders behave as in a checkout), with
the virtual environment's ``python`` and ``pyro-vi`` first on ``PATH``. ``toml`` blocks are
specs: each is parsed and resolved.

Data: ``$HOME`` is a scratch folder whose ``data`` links to the shared datasets (``../shared/data``
beside the checkout, see ``shared_data.py``), so ``~/data`` in the README finds MNIST;
``$PYRO_VI_DATA`` points there too. Without the shared data, blocks that need it are skipped.

A block may be preceded by an HTML comment (invisible on GitHub) that says how to run it:

    <!-- readme-test: slow -->               long: runs only with ``pytest -m slow``
    <!-- readme-test: cuda -->               needs a GPU (the ``cuda`` mark)
    <!-- readme-test: data -->               reads the shared MNIST-family files
    <!-- readme-test: skip REASON -->        never run here, for REASON (installs, the suite)

Anything else in a block runs; a new block with a command that fails fails this test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from shared_data import find_shared_data

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: The fence languages the README may use; code must be in one of the first three.
LANGUAGES = {"bash", "python", "toml", "text"}
#: Seconds any block may take (a slow one on a loaded machine included) before it fails.
TIMEOUT = 900

_BLOCK = re.compile(
    r"(?:<!--\s*readme-test:(?P<directives>[^>]*)-->\s*\n)?^```(?P<language>[^\n`]*)\n"
    r"(?P<code>.*?)^```\s*$",
    re.MULTILINE | re.DOTALL,
)


@dataclass
class Block:
    language: str
    code: str
    line: int
    directives: list[str] = field(default_factory=list)
    skip: str | None = None

    @property
    def id(self) -> str:
        return f"line{self.line}-{self.language or 'plain'}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` with their directives, in order."""
    blocks = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("language")) + 1
        directives = (match.group("directives") or "").split()
        block = Block(match.group("language").strip(), match.group("code"), line)
        if directives and directives[0] == "skip":
            block.skip = " ".join(directives[1:]) or "marked skip"
            directives = ["skip"]
        block.directives = directives
        blocks.append(block)
    return blocks


BLOCKS = readme_blocks(README.read_text())
DATA = find_shared_data("PYRO_VI_DATA")
KNOWN = {"slow", "cuda", "data", "skip"}


def _params(language: str) -> list:
    params = []
    for block in BLOCKS:
        if block.language != language:
            continue
        marks = []
        if "slow" in block.directives:
            marks.append(pytest.mark.slow)
        if "cuda" in block.directives:
            marks.append(pytest.mark.cuda)
        if block.skip:
            marks.append(pytest.mark.skip(reason=block.skip))
        elif "data" in block.directives and DATA is None:
            marks.append(pytest.mark.skip(reason="needs the shared MNIST-family files"))
        params.append(pytest.param(block, id=block.id, marks=marks))
    return params


def test_the_readme_has_runnable_blocks_and_known_languages():
    languages = {block.language for block in BLOCKS}
    assert languages <= LANGUAGES, f"unknown fence languages {languages - LANGUAGES}"
    for block in BLOCKS:
        unknown = set(block.directives) - KNOWN
        assert not unknown, f"README line {block.line}: unknown readme-test directives {unknown}"
    runnable = [b for b in BLOCKS if b.language in ("bash", "python") and not b.skip]
    assert len(runnable) >= 5


def test_block_parser_reads_directives():
    text = (
        "intro\n\n<!-- readme-test: skip installs packages -->\n```bash\npip install x\n```\n"
        "\n```python\nprint(1)\n```\n<!-- readme-test: slow data -->\n```bash\nls\n```\n"
    )
    blocks = readme_blocks(text)
    assert [(b.language, b.skip, b.directives, b.line) for b in blocks] == [
        ("bash", "installs packages", ["skip"], 4),
        ("python", None, [], 8),
        ("bash", None, ["slow", "data"], 12),
    ]


@pytest.fixture
def checkout(tmp_path):
    """A scratch working folder like a checkout's root, and the environment to run in."""
    work = tmp_path / "work"
    work.mkdir()
    for folder in ("configs", "examples"):
        shutil.copytree(ROOT / folder, work / folder)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "MPLBACKEND": "Agg",
        # Two runs of a 2-core machine's tests at once must not each claim both cores.
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    if DATA is not None:
        (home / "data").symlink_to(DATA, target_is_directory=True)
        env["PYRO_VI_DATA"] = str(DATA)
    else:
        env["PYRO_VI_DATA"] = str(tmp_path / "no-data")
    return work, env


def _run(command: list[str], block: Block, work: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        command, cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    if result.returncode != 0:
        pytest.fail(
            f"README.md line {block.line}: the {block.language} block failed with status "
            f"{result.returncode}\n--- block ---\n{block.code}--- stdout (end) ---\n"
            f"{result.stdout[-3000:]}\n--- stderr (end) ---\n{result.stderr[-3000:]}",
            pytrace=False,
        )


@pytest.mark.parametrize("block", _params("bash"))
def test_bash_block_runs(block, checkout):
    work, env = checkout
    _run(["bash", "-e", "-o", "pipefail", "-c", block.code], block, work, env)


@pytest.mark.parametrize("block", _params("python"))
def test_python_block_runs(block, checkout):
    work, env = checkout
    _run([sys.executable, "-c", block.code], block, work, env)


@pytest.mark.parametrize("block", _params("toml"))
def test_toml_block_is_a_valid_spec(block):
    # A spec, or a section of one: resolving fills in every key it does not set.
    from pyro_vi.spec import load_spec

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    load_spec(tomllib.loads(block.code))
