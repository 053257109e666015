"""The layers: the library never holds the app, and no package imports itself in a loop.

- ``powersmc_core`` (the library) imports no streamlit: checked in the source (every
  ``import streamlit`` / ``from streamlit ...`` anywhere in a module, even inside a
  function) and at run time (a fresh interpreter imports every library module and
  ``streamlit`` must not be in ``sys.modules``).
- No import cycle within ``powersmc_core``, nor within the app package ``explorer/``:
  a graph of every import anywhere in a module, function-level ones too (a loop
  through a lazy import is still a loop in the design; ``if TYPE_CHECKING:`` blocks
  never run and are skipped), with relative and absolute imports resolved
  and ``from pkg import submodule`` counted as an import of the submodule. A cycle is
  printed when found.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = "powersmc_core"
APP = "explorer"


def _modules(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package (``__init__`` = package)."""
    base = ROOT / package
    found = {}
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _all_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import anywhere in a module (function bodies too), except ``if TYPE_CHECKING:``.

    A function-level import still ties two modules together: it runs on first call and
    a loop through it is a loop in the design, so it counts like a top-level one.
    """
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name ``from <...> import`` refers to, relative levels resolved."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere (function-level too)."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _all_imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(name, is_package, node)
                # "from pkg import sub" imports the submodule when sub is one.
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child) :], child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(graph[child])))
    return None


# ---- the checker itself can fail ---------------------------------------------------------
def test_find_cycle_finds_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_graph_resolves_relative_and_submodule_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("from .sub import b\nfrom typing import TYPE_CHECKING\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import a\n"
        "from ... import nothing\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    graph = import_graph("pkg")
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.sub", "pkg.sub.b"},
        "pkg.sub": set(),
        "pkg.sub.b": set(),
    }
    (pkg / "sub" / "b.py").write_text("from ..a import x\n")
    assert find_cycle(import_graph("pkg")) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    # A cycle closed by a function-level import is found too.
    (pkg / "sub" / "b.py").write_text("def f():\n    if True:\n        import pkg.a\n")
    assert import_graph("pkg")["pkg.sub.b"] == {"pkg.a"}
    assert find_cycle(import_graph("pkg")) == ["pkg.a", "pkg.sub.b", "pkg.a"]


# ---- the layers --------------------------------------------------------------------------
def test_library_source_never_imports_streamlit():
    offenders = []
    for name, path in _modules(LIBRARY).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                hits = [a.name for a in node.names if a.name.split(".")[0] == "streamlit"]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                hits = [node.module] if (node.module or "").split(".")[0] == "streamlit" else []
            else:
                continue
            offenders += [f"{name}:{node.lineno} imports {hit}" for hit in hits]
    assert not offenders, "the library must not import streamlit:\n" + "\n".join(offenders)


_IMPORT_ALL = r"""
import importlib, json, sys
missing, loaded = {}, []
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
        loaded.append(name)
    except ModuleNotFoundError as err:  # an optional backend's package (e.g. llama_cpp)
        if (err.name or "").split(".")[0] == "powersmc_core":
            raise
        missing[name] = err.name
print(json.dumps({"streamlit": sorted(m for m in sys.modules if m.split(".")[0] == "streamlit"),
                  "missing": missing, "loaded": loaded}))
"""


def test_importing_every_library_module_loads_no_streamlit():
    names = sorted(n for n in _modules(LIBRARY) if not n.endswith("__main__"))
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, json.dumps(names)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["streamlit"] == [], f"streamlit loaded by the library: {report['streamlit']}"
    # Only optional third-party backends may be absent; everything else must import.
    assert len(report["loaded"]) >= len(names) - len(report["missing"]) > 0, report


@pytest.mark.parametrize("package", [LIBRARY, APP])
def test_no_import_cycles(package):
    if not (ROOT / package / "__init__.py").is_file():
        pytest.skip(f"{package}/ does not exist in this checkout")
    graph = import_graph(package)
    assert len(graph) > 1
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle in {package}: " + " -> ".join(cycle or [])


def test_llamacpp_backend_borrows_nothing_from_the_torch_backend():
    """models/llamacpp/* imports no models/hf/* module: shared text handling is in text_io."""
    graph = import_graph(LIBRARY)
    torch_side = f"{LIBRARY}.models.hf"
    offenders = {
        name: sorted(t for t in targets if t == torch_side or t.startswith(torch_side + "."))
        for name, targets in graph.items()
        if name.startswith(f"{LIBRARY}.models.llamacpp")
    }
    assert any(name.endswith("llamacpp.model") for name in offenders)
    assert not {k: v for k, v in offenders.items() if v}, offenders


# ---- no private names across modules -----------------------------------------------------
def private_imports(package: str) -> list[str]:
    """``module:line imports name from other`` for every ``_private`` name imported from
    another module of ``powersmc_core`` or ``explorer`` (``__dunder__`` names are fine; a
    public name imported under a private alias is fine)."""
    offenders = []
    for name, path in _modules(package).items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _all_imports(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _resolve(name, is_package, node)
            if source.split(".")[0] not in (LIBRARY, APP) or source == name:
                continue
            offenders += [
                f"{name}:{node.lineno} imports {alias.name} from {source}"
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")
            ]
    return offenders


def test_private_import_checker_finds_one(tmp_path, monkeypatch):
    pkg = tmp_path / "powersmc_core"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def _helper():\n    pass\n")
    (pkg / "b.py").write_text(
        "from powersmc_core.a import _helper as helper\nfrom os import _exit\n"
        "def f():\n    from .a import _helper\n"
    )
    (pkg / "c.py").write_text("from powersmc_core.a import __doc__\nfrom . import a as _a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert sorted(private_imports("powersmc_core")) == [
        "powersmc_core.b:1 imports _helper from powersmc_core.a",
        "powersmc_core.b:4 imports _helper from powersmc_core.a",
    ]


@pytest.mark.parametrize("package", [LIBRARY, APP])
def test_no_module_imports_a_private_name_from_another(package):
    if not (ROOT / package / "__init__.py").is_file():
        pytest.skip(f"{package}/ does not exist in this checkout")
    offenders = private_imports(package)
    assert not offenders, "private names imported across modules:\n" + "\n".join(offenders)
