"""The three layers, read from the source's syntax trees (nothing is imported).

powersmc_core (library) <- explorer (the app's services) <- app.py + app_pages/ (pages).
``tests/test_layers.py`` checks that the library imports no streamlit and that neither
package has an import cycle; here:

* the library imports no app code, and the app's package imports no page (and
  Streamlit only to read the session id);
* a page cannot start a sampler except through ``explorer.gate``: no page imports a
  sampler class, the sampler factory, a model loader, the limiter, the store or the
  live-run controller, nor calls anything by those names.
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
    # limits.current_session_id reads Streamlit's script context (lazily, inside the call);
    # serve.py is the server launcher (Streamlit's CLI, minus the metrics route).
    assert found == {
        "limits.py: streamlit.runtime.scriptrunner",
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
