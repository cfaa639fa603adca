"""The public surface: every ``__all__`` name imports, every name the docs use resolves, ``import
pyro_vi`` stays light, and no module imports another that imports it back.

The names the docs use are parsed from README.md and docs/*.md (``from pyro_vi... import ...``
lines, dotted ``pyro_vi.x.y`` names, and the module table's backticked names), so the test
follows the docs: a renamed function fails here, where the docs name it.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pyro_vi

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGE = ROOT / "pyro_vi"


def _modules() -> list[str]:
    return sorted(name for _, name, _ in pkgutil.walk_packages(pyro_vi.__path__, prefix="pyro_vi."))


def _exported() -> list[tuple[str, str]]:
    pairs = []
    for module_name in ["pyro_vi", *_modules()]:
        module = importlib.import_module(module_name)
        pairs += [(module_name, name) for name in getattr(module, "__all__", ())]
    return pairs


def resolve(dotted: str) -> object:
    """The object ``dotted`` names: attributes where they exist, else submodules to import."""
    parts = dotted.split(".")
    value: object = importlib.import_module(parts[0])
    for depth, part in enumerate(parts[1:], start=2):
        try:
            value = getattr(value, part)
        except AttributeError:
            value = importlib.import_module(".".join(parts[:depth]))
    return value


def _doc_names() -> list[str]:
    """Every ``pyro_vi`` name the docs use, as a dotted path."""
    names: set[str] = set()
    for path in DOCS:
        text = path.read_text()
        for module, imported in re.findall(
            r"^\s*from (pyro_vi[\w.]*) import \(?([\w, \n]+?)\)?\s*$", text, flags=re.M
        ):
            names |= {f"{module}.{name.strip()}" for name in imported.split(",") if name.strip()}
        names |= set(re.findall(r"\bpyro_vi(?:\.[A-Za-z_]\w*)+", text))
        # The module table: | `pyro_vi.x` | `name`, `name(args)`, `sub.name` ... |
        for module, contents in re.findall(r"^\| `(pyro_vi[\w.]*)` \|(.*)\|\s*$", text, re.M):
            for token in re.findall(r"`([^`]+)`", contents):
                match = re.fullmatch(r"([A-Za-z_][\w.]*)(\(.*\))?", token)
                if match:
                    names.add(f"{module}.{match.group(1)}")
    return sorted(names)


@pytest.mark.parametrize(("module", "name"), _exported(), ids=lambda v: v)
def test_every_name_in_all_imports(module, name):
    assert hasattr(importlib.import_module(module), name), f"{module}.__all__ lists {name!r}"


def test_the_docs_use_names():
    assert len(_doc_names()) >= 20  # the parsing found the README's names


@pytest.mark.parametrize("name", _doc_names())
def test_every_name_the_docs_use_resolves(name):
    resolve(name)


@pytest.mark.parametrize(
    "package",
    [
        "pyro_vi",
        "pyro_vi.data",
        "pyro_vi.guides",
        "pyro_vi.guides.families",
        "pyro_vi.models",
        "pyro_vi.nets",
        "pyro_vi.spec",
        "pyro_vi.spec.kinds",
        "pyro_vi.runs",
        "pyro_vi.architectures",
        "pyro_vi.records",
        "pyro_vi.report",
    ],
)
def test_every_public_package_declares_all(package):
    assert importlib.import_module(package).__all__


def test_the_names_users_need_are_at_the_top():
    from pyro_vi.estimators import ESTIMATORS, get
    from pyro_vi.evaluation import log_likelihood
    from pyro_vi.spec import load_spec
    from pyro_vi.train import fit

    assert pyro_vi.fit is fit and pyro_vi.log_likelihood is log_likelihood
    assert pyro_vi.get_estimator is get and pyro_vi.ESTIMATORS is ESTIMATORS
    assert pyro_vi.load_spec is load_spec
    with pytest.raises(AttributeError, match="has no attribute 'fitt'"):
        pyro_vi.fitt  # noqa: B018


def test_import_pyro_vi_loads_neither_torch_nor_pyro():
    code = "import sys, pyro_vi; print('torch' in sys.modules, 'pyro' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]


def _module_imports(path: Path, module: str) -> set[str]:
    """The ``pyro_vi`` modules ``path`` imports when it is imported (not inside functions and
    not under ``TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for child in ast.walk(node) if not isinstance(node, ast.FunctionDef | ast.ClassDef) else ():
            if isinstance(child, ast.Import):
                found |= {alias.name for alias in child.names}
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1])
                    base = f"{base}.{child.module}" if child.module else base
                found.add(base)
                found |= {f"{base}.{alias.name}" for alias in child.names}
    return {name for name in found if name.startswith("pyro_vi")}


def test_no_import_cycles():
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _module_imports(path, name):
            # Importing a.b.c runs a and a.b first, unless the importer is inside them (then
            # they are already being imported).
            pieces = imported.split(".")
            for depth in range(1, len(pieces) + 1):
                target = ".".join(pieces[:depth])
                inside = name == target or name.startswith(target + ".")
                if target in modules and target != name and not inside:
                    targets.add(target)
        graph[name] = targets
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles
