"""The three layers, read from the source's syntax trees (nothing is imported).

powersmc_core (library) <- explorer (the app's services) <- app.py + app_pages/ (pages).
``tests/test_layers.py`` checks that the library imports no streamlit and that neither
package has an import cycle; here:

* the library imports no app code, and the app's package imports no page (and
  Streamlit only to read the session id, and in the two page-kit modules that draw
  what several pages share: ``page_kit`` and ``views``);
* a page cannot start a sampler except through ``explorer.gate``: no page imports a
  sampler class, the sampler factory, a model loader, the limiter, the store or the
  live-run controller, nor calls anything by those names;
* pages stay thin: no page indexes session state with a string literal (the keys are
  named once, in ``explorer.session_keys``) and none is longer than ``PAGE_LINE_BUDGET``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "powersmc_core"
APP_PACKAGE = ROOT / "explorer"
PAGES = [ROOT / "app.py", *sorted((ROOT / "app_pages").glob("*.py"))]

# Modules a page may not import (they start samplers, load models or bypass the queue).
FORBIDDEN_MODULES = (
    "powersmc_core.engine.run",
    "powersmc_core.samplers.registry",
    "powersmc_core.samplers.baselines",
    "powersmc_core.models.loading",
    "powersmc_core.evaluation.api",
    "powersmc_core.evaluation.runner",
    "explorer.limits",
    "explorer.store",
    "explorer.live",
    "explorer.uploads",
)
# Names a page may neither import nor call (whatever module they come from).
FORBIDDEN_NAMES = {
    "PowerSMC",
    "SMCRun",
    "MHSampler",
    "BestOfN",
    "make_sampler",
    "build_sampler",
    "load_model",
    "RunLimiter",
    "RunSlot",
    "global_limiter",
    "LiveRun",
    "tracked",
    "compare_runs",
    "run_checks",
    "run_task_comparison",
    "smc_estimate",
    "tv_vs_n",
    "ess_traces",
    "read_upload",
    "read_trace",
    "read_trace_safely",
}


def imports(path: Path, source: str | None = None) -> list[tuple[str, list[str]]]:
    """(module, imported names) for every import in ``path``; relative ones made absolute."""
    tree = ast.parse(source if source is not None else path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append((module, [alias.name for alias in node.names]))
    return found


def test_the_library_imports_no_app_code():
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted(LIBRARY.rglob("*.py"))
        for module, _ in imports(path)
        if module.split(".")[0] in ("explorer", "app_pages", "app")
    ]
    assert not offenders, offenders


def test_the_app_package_never_imports_pages_and_streamlit_only_for_the_session_id():
    found = {
        f"{path.name}: {module}"
        for path in sorted(APP_PACKAGE.glob("*.py"))
        for module, _ in imports(path)
        if module.split(".")[0] in ("streamlit", "app_pages", "app")
    }
    # limits reads Streamlit's script context and runtime (lazily, inside the calls): the
    # session id, whether its browser is still connected, its peer address, its uploads;
    # serve.py is the server launcher (Streamlit's CLI, minus the metrics route); page_kit
    # and views are the widgets several pages share (model, prompt, settings, charts).
    assert found == {
        "limits.py: streamlit.runtime.scriptrunner",
        "limits.py: streamlit.runtime",
        "views.py: streamlit",
        "page_kit.py: streamlit",
        "serve.py: streamlit.web",
        "serve.py: streamlit.web.server.starlette",
    }, found


def page_violations(path: Path, source: str | None = None) -> list[str]:
    source = source if source is not None else path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    found = []
    for module, names in imports(path, source):
        if any(module == m or module.startswith(m + ".") for m in FORBIDDEN_MODULES):
            found.append(f"imports {module}")
        for name in names:
            if f"{module}.{name}" in FORBIDDEN_MODULES or name in FORBIDDEN_NAMES:
                found.append(f"imports {name} from {module}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in FORBIDDEN_NAMES:
                found.append(f"calls {called} (line {node.lineno})")
    return found


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_pages_start_runs_only_through_the_gate(path):
    assert not page_violations(path), page_violations(path)


def test_page_scan_catches_a_direct_sampler():
    source = (
        "from powersmc_core.engine.run import PowerSMC\n"
        "from explorer import limits\n"
        "import explorer.store\n"
        "limits.global_limiter()\n"
    )
    found = page_violations(ROOT / "app_pages" / "bad.py", source)
    assert "imports powersmc_core.engine.run" in found
    assert "imports PowerSMC from powersmc_core.engine.run" in found
    assert "imports limits from explorer" in found
    assert "imports explorer.store" in found
    assert any(f.startswith("calls global_limiter") for f in found)


# ---- thin pages ------------------------------------------------------------------------
PAGE_LINE_BUDGET = 150  # Live SMC was 311 lines and Compare 198 before the page kit
STATE_NAMES = {"state", "session_state"}  # st.session_state, or a page's alias of it
STATE_METHODS = {"get", "pop", "setdefault", "__getitem__", "__setitem__", "__delitem__"}


def _is_state(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id in STATE_NAMES) or (
        isinstance(node, ast.Attribute) and node.attr in STATE_NAMES
    )


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, (ast.Constant, ast.JoinedStr)) and (
        isinstance(node, ast.JoinedStr) or isinstance(node.value, str)
    )


def raw_state_keys(source: str) -> list[str]:
    """Lines where session state is indexed, read, popped or tested with a string literal."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript) and _is_state(node.value) and _is_text(node.slice):
            found.append(f"line {node.lineno}: state[{ast.unparse(node.slice)}]")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in STATE_METHODS
            and _is_state(node.func.value)
            and node.args
            and _is_text(node.args[0])
        ):
            found.append(f"line {node.lineno}: state.{node.func.attr}({ast.unparse(node.args[0])})")
        elif (
            isinstance(node, ast.Compare)
            and _is_text(node.left)
            and any(_is_state(c) for c in node.comparators)
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_pages_name_session_keys_through_session_keys(path):
    assert not raw_state_keys(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_pages_stay_within_the_line_budget(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= PAGE_LINE_BUDGET, f"{path.name}: {lines} lines; move logic to explorer/"


def test_state_key_scan_catches_raw_keys():
    source = (
        "import streamlit as st\n"
        "state = st.session_state\n"
        'st.session_state["live_last"] = 1\n'
        'x = state.get("model_name")\n'
        'if "owner" not in state: pass\n'
        'del state["live_active"]\n'
        "y = state[keys.OWNER]\n"
    )
    found = raw_state_keys(source)
    assert len(found) == 4, found
    assert not any("keys.OWNER" in f for f in found)
