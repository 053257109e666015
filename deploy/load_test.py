"""Load test: K simulated users on the Live SMC page of a real, headless Streamlit server.

Starts the public server (``python -m explorer.serve``: ``streamlit run app.py`` behind
``explorer.guard``) on a free loopback port (127.0.0.1 only) in demo mode
with a throw-away data folder, then drives K Chromium pages at once (Playwright,
Debian's /usr/bin/chromium). Each user picks the model in the sidebar, presses Run
and waits for "Finished". Measured per run, from the click:

* time to first chart (a Plotly chart with data appears for this run),
* time to completion ("Finished in" shown),
* errors: a Streamlit exception box, an error alert, or a wait past the run timeout
  (must be 0).

Phase "latency": each user opens a fresh page for each of ``--runs`` runs (a new
visitor every time), for every model in ``--models``. Phase "memory": the K users
share ``--memory-runs`` consecutive runs on the toy model in long-lived pages while
the server's RSS is sampled after every run; growth is reported as the least-squares
slope over the second half (after warm-up) and as the difference between the mean RSS
of the last ten runs and of runs 11-20 (must stay flat: no leak of caches or figures).

Bounded: ``--deadline`` seconds overall (default 900); every wait has a timeout;
the server is stopped at the end whatever happens. Prints a JSON report and a
markdown table (for docs/deploy.md).

    python deploy/load_test.py --users 4 --runs 3 --models toy-random:3,8,0 smollm2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the app's package beside app.py, also without an install

from explorer.browser import CHROMIUM, CHROMIUM_ARGS, COUNT_CHARTS_WITH_DATA  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0


class Server:
    """``python -m explorer.serve`` on 127.0.0.1:<free port>, demo mode, temp data folder.

    Every simulated user comes from its own address: the server trusts loopback as a
    proxy and each browser context sends its own ``X-Forwarded-For`` (``user_headers``),
    so the per-address caps (one run, one queue place) apply per user as in production.
    """

    def __init__(self, env_extra: dict[str, str], log_path: Path, app_dir: Path = ROOT) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = tempfile.mkdtemp(prefix="powersmc-load-")
        env = {
            **os.environ,
            "POWERSMC_DEMO": "1",
            "POWERSMC_DATA_DIR": self.data,
            "HF_HUB_OFFLINE": "1",
            "POWERSMC_TRUSTED_PROXIES": "127.0.0.1",
            **env_extra,
        }
        self.log = log_path.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "explorer.serve",
                "--server.headless=true",
                "--server.address=127.0.0.1",
                f"--server.port={self.port}",
                "--browser.gatherUsageStats=false",
            ],
            cwd=app_dir,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as reply,
            ):
                if reply.status == 200:
                    return
            time.sleep(0.3)
        raise TimeoutError(f"server not healthy within {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


@dataclass
class Stats:
    first_chart: list[float] = field(default_factory=list)
    completion: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    runs: int = 0

    def summary(self) -> dict[str, object]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 3)

        return {
            "runs": self.runs,
            "errors": len(self.errors),
            "error_samples": self.errors[:5],
            "first_chart_p50_s": r(percentile(self.first_chart, 50)),
            "first_chart_p95_s": r(percentile(self.first_chart, 95)),
            "completion_p50_s": r(percentile(self.completion, 50)),
            "completion_p95_s": r(percentile(self.completion, 95)),
        }


async def pick_model(page, model: str, timeout_ms: int) -> None:
    """Choose ``model`` in the sidebar picker and wait until the Live page shows Run."""
    box = page.locator(".st-key-model_choice input[role='combobox']")
    await box.wait_for(state="visible", timeout=timeout_ms)
    if await box.input_value() != model:
        await box.click()
        await page.get_by_role("option", name=model, exact=True).click()
    await page.locator(".st-key-live_run button").wait_for(state="visible", timeout=timeout_ms)
    # the rerun triggered by the pick must have settled before Run is pressed
    await page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms
    )


async def count_errors(page) -> str | None:
    if await page.locator('[data-testid="stException"]').count():
        return "exception box"
    alerts = page.locator('[data-testid="stAlertContentError"]')
    if await alerts.count():
        return "error: " + (await alerts.first.inner_text())[:200]
    return None


SAVED_RUN_IDS = (
    r"""() => Array.from(document.body.innerText.matchAll(/run ([0-9a-f]{8}) saved/g), m => m[1])"""
)
NEW_RUN_FINISHED = f"""(before) => ({SAVED_RUN_IDS})().some(id => !before.includes(id))
    && !document.querySelector('[data-testid="stStatusWidget"]')"""


async def one_run(page, stats: Stats, run_timeout_ms: int) -> None:
    """Press Run; record time to first chart of this run and to its 'Finished … run <id> saved'."""
    charts_before = await page.evaluate(COUNT_CHARTS_WITH_DATA)
    finished_before = await page.evaluate(SAVED_RUN_IDS)
    start = time.perf_counter()
    await page.locator(".st-key-live_run button").click()
    try:
        # First chart of *this* run: on a fresh page there is no chart before the click; on
        # a reused page the previous run's charts stay, so wait for this run's progress bar
        # (drawn in the same redraw as the charts) or, for a run so short that the bar is
        # replaced before a poll sees it, for the run's end.
        if charts_before == 0:
            await page.wait_for_function(
                f"() => ({COUNT_CHARTS_WITH_DATA})() > 0", timeout=run_timeout_ms
            )
        else:
            await page.wait_for_function(
                f"""(before) => !!document.querySelector('[data-testid="stProgress"]')
                    || ({SAVED_RUN_IDS})().some(id => !before.includes(id))""",
                arg=finished_before,
                timeout=run_timeout_ms,
            )
        first_chart = time.perf_counter() - start
        await page.wait_for_function(NEW_RUN_FINISHED, arg=finished_before, timeout=run_timeout_ms)
        completion = time.perf_counter() - start
    except Exception as err:  # a timeout is an error of the run, not of the script
        stats.errors.append(f"timeout/wait: {type(err).__name__}: {str(err)[:160]}")
        stats.runs += 1
        return
    problem = await count_errors(page)
    stats.runs += 1
    if problem:
        stats.errors.append(problem)
        return
    stats.first_chart.append(first_chart)
    stats.completion.append(completion)


def user_headers(k: int) -> dict[str, str]:
    """User ``k``'s own client address (TEST-NET-2), forwarded by the trusted loopback."""
    return {"X-Forwarded-For": f"198.51.100.{k + 1}"}


async def latency_phase(browser, url: str, model: str, users: int, runs: int, args) -> Stats:
    stats = Stats()
    timeout_ms = int(args.run_timeout * 1000)

    async def user(k: int) -> None:
        for _ in range(runs):
            context = await browser.new_context(
                viewport={"width": 1400, "height": 1000}, extra_http_headers=user_headers(k)
            )
            page = await context.new_page()
            try:
                await page.goto(f"{url}/live_smc", timeout=timeout_ms)
                await pick_model(page, model, timeout_ms)
                await one_run(page, stats, timeout_ms)
            except Exception as err:
                stats.errors.append(f"user {k}: {type(err).__name__}: {str(err)[:160]}")
            finally:
                await context.close()

    await asyncio.gather(*(user(k) for k in range(users)))
    return stats


async def memory_phase(browser, server: Server, model: str, users: int, total: int, args) -> dict:
    stats = Stats()
    timeout_ms = int(args.run_timeout * 1000)
    samples: list[tuple[int, float]] = []
    counter = {"done": 0}
    pages = []
    for k in range(users):
        context = await browser.new_context(
            viewport={"width": 1400, "height": 1000}, extra_http_headers=user_headers(k)
        )
        page = await context.new_page()
        await page.goto(f"{server.url}/live_smc", timeout=timeout_ms)
        await pick_model(page, model, timeout_ms)
        pages.append((context, page))
    baseline = rss_mb(server.proc.pid)

    async def user(page) -> None:
        while counter["done"] < total:
            counter["done"] += 1
            await one_run(page, stats, timeout_ms)
            samples.append((len(samples) + 1, rss_mb(server.proc.pid)))

    try:
        await asyncio.gather(*(user(p) for _, p in pages))
    finally:
        for context, _ in pages:
            await context.close()
    xs = [float(i) for i, _ in samples]
    ys = [m for _, m in samples]
    half = len(samples) // 2
    report = stats.summary()
    report.update(
        {
            "rss_before_mb": round(baseline, 1),
            "rss_after_10_runs_mb": round(ys[9], 1) if len(ys) >= 10 else None,
            "rss_end_mb": round(ys[-1], 1) if ys else None,
            "rss_slope_second_half_mb_per_run": round(slope(xs[half:], ys[half:]), 4)
            if len(ys) >= 4
            else None,
            "rss_last10_minus_runs11to20_mb": round(
                statistics.fmean(ys[-10:]) - statistics.fmean(ys[10:20]), 1
            )
            if len(ys) >= 30
            else None,
            "rss_samples_mb": [round(y, 1) for y in ys],
        }
    )
    return report


async def main_async(args) -> dict:
    from playwright.async_api import async_playwright

    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    env = {"POWERSMC_MAX_CONCURRENT_RUNS": str(args.max_concurrent)}
    if args.torch_threads:
        env["OMP_NUM_THREADS"] = str(args.torch_threads)
    server = Server(env, out / "load-test-server.log", args.app_dir)
    report: dict = {
        "users": args.users,
        "runs_per_user": args.runs,
        "max_concurrent_runs": args.max_concurrent,
        "cpus": os.cpu_count(),
        # The server inherits POWERSMC_BACKEND (torch, llamacpp or auto, the app's default).
        "backend": os.environ.get("POWERSMC_BACKEND", "auto"),
        "load_average_at_start": os.getloadavg(),
        "phases": {},
    }
    try:
        server.wait_healthy(90)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, args=list(CHROMIUM_ARGS), headless=True
            )
            try:
                for model in args.models:
                    # one warm-up visit loads the model into the server's cache (not timed)
                    warm = await latency_phase(browser, server.url, model, 1, 1, args)
                    started = time.perf_counter()
                    stats = await latency_phase(
                        browser, server.url, model, args.users, args.runs, args
                    )
                    phase = stats.summary()
                    phase["wall_s"] = round(time.perf_counter() - started, 1)
                    phase["warmup_errors"] = warm.errors[:3]
                    report["phases"][f"latency:{model}"] = phase
                if args.memory_runs:
                    report["phases"][f"memory:{args.memory_model}"] = await memory_phase(
                        browser, server, args.memory_model, args.users, args.memory_runs, args
                    )
            finally:
                await browser.close()
    finally:
        server.stop()
    report["load_average_at_end"] = os.getloadavg()
    return report


def markdown(report: dict) -> str:
    lines = [
        "| phase | runs | errors | first chart p50 / p95 [s] | completion p50 / p95 [s] |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, p in report["phases"].items():
        lines.append(
            f"| {name} | {p['runs']} | {p['errors']} | {p['first_chart_p50_s']} / "
            f"{p['first_chart_p95_s']} | {p['completion_p50_s']} / {p['completion_p95_s']} |"
        )
    return "\n".join(lines)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM (e.g. an outer ``timeout``) unwinds like Ctrl-C: the server is still stopped."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=4, help="K simulated users at once")
    parser.add_argument("--runs", type=int, default=3, help="runs per user per model")
    parser.add_argument("--models", nargs="+", default=["toy-random:3,8,0", "smollm2"])
    parser.add_argument("--memory-runs", type=int, default=100)
    parser.add_argument("--memory-model", default="toy-random:3,8,0")
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--torch-threads", type=int, default=0, help="OMP_NUM_THREADS (0: unset)")
    parser.add_argument("--run-timeout", type=float, default=240.0, help="seconds per run")
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds for everything")
    parser.add_argument(
        "--app-dir", type=Path, default=ROOT, help="folder holding app.py (default: this repo)"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "test-output" / "load_test.json")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} missing: apt-get install -y chromium", file=sys.stderr)
        return 2
    if not 1 <= args.users <= 32 or not 0 <= args.memory_runs <= 1000 or not 1 <= args.runs <= 50:
        print(
            "bounds: 1 <= users <= 32, 1 <= runs <= 50, 0 <= memory-runs <= 1000", file=sys.stderr
        )
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        report = asyncio.run(asyncio.wait_for(main_async(args), timeout=args.deadline))
    except TimeoutError:
        print(f"load test stopped at its deadline of {args.deadline} s", file=sys.stderr)
        return 3
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    short = {
        k: ({kk: vv for kk, vv in v.items() if kk != "rss_samples_mb"} if k == "phases" else v)
        for k, v in report.items()
    }
    short["phases"] = {
        name: {kk: vv for kk, vv in p.items() if kk != "rss_samples_mb"}
        for name, p in report["phases"].items()
    }
    print(json.dumps(short, indent=1))
    print(markdown(report))
    errors = sum(p["errors"] for p in report["phases"].values())
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
