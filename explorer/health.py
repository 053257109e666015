"""Health probes for a deployed app.

Streamlit serves ``GET /_stcore/health`` → ``ok`` (HTTP 200) once the server accepts
sessions; that is the liveness probe (Docker ``HEALTHCHECK``, Kubernetes, uptime
monitors). ``python -m explorer.health`` adds a readiness check run next
to the server: the endpoint answers, the data folder is writable, and a toy
Power-SMC run completes (the engine imports and computes). Exit status 0 = healthy.

    python -m explorer.health --url http://127.0.0.1:8501 --deep
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["HEALTH_PATH", "deep_check", "main", "probe"]

HEALTH_PATH = "/_stcore/health"


def probe(url: str = "http://127.0.0.1:8501", timeout: float = 5.0) -> tuple[bool, str]:
    """(healthy, detail) from Streamlit's health endpoint at ``url``."""
    target = url.rstrip("/") + HEALTH_PATH
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:
            body = response.read(64).decode("utf-8", "replace").strip()
            return response.status == 200 and body == "ok", f"{response.status} {body}"
    except (urllib.error.URLError, OSError) as err:
        return False, f"{target}: {err}"


def deep_check(data_dir: str | Path | None = None) -> dict[str, Any]:
    """Data folder writable and a toy run end to end; ``{"ok": bool, ...}`` with timings."""
    from explorer.settings import demo_settings
    from powersmc_core.engine.config import SMCConfig
    from powersmc_core.engine.run import PowerSMC
    from powersmc_core.models.toy import ToyLM

    settings = demo_settings()
    folder = Path(data_dir) if data_dir is not None else Path(settings.data_dir)
    report: dict[str, Any] = {"demo": settings.enabled, "data_dir": str(folder)}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".health-", delete=True) as handle:
            handle.write(b"ok")
            handle.flush()
        report["data_dir_writable"] = True
    except OSError as err:
        report["data_dir_writable"] = False
        report["data_dir_error"] = str(err)
    start = time.perf_counter()
    try:
        result = PowerSMC(ToyLM.trap(), SMCConfig(n_particles=8, seed=0)).run([])
        report["engine"] = bool(abs(sum(result.weights) - 1.0) < 1e-9)
    except Exception as err:  # a health check reports, it does not raise
        report["engine"] = False
        report["engine_error"] = f"{type(err).__name__}: {err}"
    report["engine_seconds"] = round(time.perf_counter() - start, 4)
    report["ok"] = bool(report["data_dir_writable"] and report["engine"])
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8501", help="the app's base URL")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--deep", action="store_true", help="also check data folder and engine")
    parser.add_argument("--no-http", action="store_true", help="skip the endpoint (deep only)")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {}
    ok = True
    if not args.no_http:
        ok, detail = probe(args.url, args.timeout)
        report["endpoint"] = detail
    if args.deep:
        deep = deep_check()
        report.update(deep)
        ok = ok and deep["ok"]
    report["healthy"] = ok
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
