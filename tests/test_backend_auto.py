"""``--backend auto`` picks the backend measured faster at (model, N, threads).

The timing tables are stubbed (monkeypatched) and the calibration lives under a
temporary ``POWERSMC_CACHE_DIR``: nothing here times anything or loads a model.
"""

from __future__ import annotations

import json

import pytest

from powersmc_core.models import backend_timings, backends
from powersmc_core.models.backend_timings import (
    TimingRow,
    TimingTable,
    calibration_path,
    load_calibration,
    lookup,
    timing_table,
    write_calibration,
)
from powersmc_core.models.toy import ToyLM

# (N, threads, torch ms, llama.cpp ms): llama.cpp faster at small N, torch at N = 32, 1 thread.
ROWS = (
    TimingRow(8, 1, 90.0, 50.0),
    TimingRow(8, 2, 104.1, 48.7),
    TimingRow(32, 1, 31.0, 35.0),
    TimingRow(32, 2, 60.0, 55.0),
)


@pytest.fixture
def llamacpp_present(monkeypatch, tmp_path):
    """llama.cpp reported importable; an empty cache dir (no calibration unless written)."""
    monkeypatch.setattr(backends, "llamacpp_available", lambda: (True, "test double"))
    monkeypatch.setenv("POWERSMC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(backend_timings, "SHIPPED", {})


def stub_table(monkeypatch, rows=ROWS, source="stub table"):
    monkeypatch.setattr(backends, "timing_table", lambda model: TimingTable(source, rows))


def test_auto_picks_torch_where_the_table_says_torch_is_faster(monkeypatch, llamacpp_present):
    stub_table(monkeypatch)
    choice = backends.choose_backend("smollm2", "auto", "cpu", n_particles=32, threads=1)
    assert choice.name == "torch"
    assert (
        choice.reason == "auto: torch, measured 31 vs 35 ms/step at N = 32, 1 thread (stub table)"
    )


def test_auto_picks_llamacpp_where_the_table_says_it_is_faster(monkeypatch, llamacpp_present):
    stub_table(monkeypatch)
    choice = backends.choose_backend("smollm2", "auto", "cpu", n_particles=8, threads=2)
    assert choice.name == "llamacpp"
    assert "measured 49 vs 104 ms/step at N = 8, 2 threads (stub table)" in choice.reason
    assert choice.reason.endswith("; test double")  # the library line, as before


def test_auto_uses_the_nearest_measured_row_and_says_so(monkeypatch, llamacpp_present):
    stub_table(monkeypatch)
    # N = 24 is nearer 32 than 8 by ratio; 3 threads nearer 2 than 1.
    choice = backends.choose_backend("smollm2", "auto", "cpu", n_particles=24, threads=3)
    assert choice.name == "llamacpp"
    assert "at N = 32, 2 threads, nearest to N = 24, 3" in choice.reason
    # Unknown N: SMCConfig's default (16), nearest 8 by ratio (log 2 each way: the smaller).
    monkeypatch.setattr(backends, "default_threads", lambda: 1)
    choice = backends.choose_backend("smollm2", "auto", "cpu")
    assert choice.name == "llamacpp" and "N not given" in choice.reason
    assert "at N = 8, 1 thread, nearest to N = 16, 1" in choice.reason


def test_lookup_prefers_n_by_ratio_then_threads():
    table = TimingTable("t", ROWS)
    assert lookup(table, 1, 1) == ROWS[0]
    assert lookup(table, 64, 4) == ROWS[3]
    assert lookup(table, 17, 1) == ROWS[2]  # 17/8 > 32/17


def test_unmeasured_model_keeps_the_plain_rule_and_says_so(monkeypatch, llamacpp_present):
    choice = backends.choose_backend("smollm2", "auto", "cpu", n_particles=32, threads=1)
    assert choice.name == "llamacpp"
    assert "no timing measured for 'smollm2'" in choice.reason
    assert "--calibrate-backends" in choice.reason
    # Explicit requests and non-GGUF models never consult a table.
    stub_table(monkeypatch)
    assert backends.choose_backend("smollm2", "llamacpp", "cpu", 32, 1).name == "llamacpp"
    assert backends.choose_backend("toy-trap", "auto", "cpu", 8, 2).name == "torch"


def test_calibration_overrides_the_shipped_table(monkeypatch, llamacpp_present):
    shipped = TimingTable("shipped", (TimingRow(32, 1, 10.0, 90.0),))
    monkeypatch.setattr(backend_timings, "SHIPPED", {"smollm2": shipped})
    assert timing_table("smollm2") is shipped
    choice = backends.choose_backend("smollm2", "auto", "cpu", n_particles=32, threads=1)
    assert choice.name == "torch" and "(shipped)" in choice.reason
    path = write_calibration("smollm2", ROWS[2:3], "2026-12-03T19:00:00+00:00")
    assert path == calibration_path() and path.is_file()
    assert timing_table("smollm2") == TimingTable("calibration of 2026-12-03", ROWS[2:3])
    write_calibration("other", [TimingRow(32, 1, 50.0, 20.0)], "2026-12-04")
    assert load_calibration("smollm2") is not None  # another model's rows keep this one's
    # A newer calibration that says llama.cpp at N = 32: auto follows it, not the shipped row.
    write_calibration("smollm2", [TimingRow(32, 1, 40.0, 20.0)], "2026-12-05")
    choice = backends.choose_backend("smollm2", "auto", "cpu", n_particles=32, threads=1)
    assert choice.name == "llamacpp"
    assert "measured 20 vs 40 ms/step at N = 32, 1 thread (calibration of 2026-12-05)" in (
        choice.reason
    )


def test_calibration_from_another_machine_is_not_used(monkeypatch, llamacpp_present):
    write_calibration("smollm2", ROWS, "2026-12-03")
    real = backend_timings.machine_fingerprint()
    monkeypatch.setattr(
        backend_timings, "machine_fingerprint", lambda: {**real, "cpu": "another CPU"}
    )
    assert load_calibration("smollm2") is None


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2]",
        json.dumps({"version": 99}),
        "CALIBRATION_WITH_BAD_ROW",
    ],
)
def test_a_corrupt_calibration_is_ignored_with_a_warning(monkeypatch, llamacpp_present, content):
    if content == "CALIBRATION_WITH_BAD_ROW":
        write_calibration("smollm2", ROWS, "2026-12-03")
        data = json.loads(calibration_path().read_text())
        data["models"]["smollm2"]["rows"][0]["torch_ms"] = -1.0
        content = json.dumps(data)
    calibration_path().parent.mkdir(parents=True, exist_ok=True)
    calibration_path().write_text(content)
    with pytest.warns(UserWarning, match="ignoring the backend calibration .*--calibrate-backends"):
        choice = backends.choose_backend("smollm2", "auto", "cpu", n_particles=32, threads=1)
    assert choice.name == "llamacpp" and "no timing measured" in choice.reason
    # A calibration run repairs the file.
    write_calibration("smollm2", ROWS, "2026-12-03")
    assert load_calibration("smollm2") is not None


def test_load_model_with_backend_passes_n_and_threads_to_the_choice(monkeypatch):
    seen = {}

    def choose(name, backend, device, n_particles=None, threads=None):
        seen.update(n_particles=n_particles, threads=threads)
        return backends.BackendChoice("torch", "auto: torch, stubbed")

    toy = ToyLM.trap()
    monkeypatch.setattr(backends, "choose_backend", choose)
    monkeypatch.setattr("powersmc_core.models.loading.load_model", lambda name, **options: toy)
    model = backends.load_model_with_backend("smollm2", "auto", threads=3, n_particles=32)
    assert model is toy and seen == {"n_particles": 32, "threads": 3}
    assert backends.backend_of(model) == ("torch", "auto: torch, stubbed")
