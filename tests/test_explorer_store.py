"""Persisted runs: save / list / load per owner, bounded size (oldest removed first),
atomic writes, and crash recovery — a process killed mid-run (SIGKILL, no cleanup)
leaves a journal that the next start turns into an 'interrupted' run holding every
flushed record, while a journal whose writer is still alive is left alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from explorer.history import entry_from_stored
from explorer.live import LiveRun
from explorer.store import RunStore, owner_hash, tracked
from powersmc_core import PowerSMC, SMCConfig, ToyLM
from powersmc_core.io.trace import TraceError

ALICE, BOB = "alice-token-0123456789", "bob-token-0123456789ab"
REPO = Path(__file__).resolve().parents[1]


def toy_records(seed: int = 0, n: int = 8, tokens: int = 6):
    model = ToyLM.random(vocab_size=4, max_len=tokens, seed=1)
    config = SMCConfig(n_particles=n, max_new_tokens=tokens, seed=seed)
    run = PowerSMC(model, config).stream([])
    records = list(run)
    return records, config, run.result()


def full_length_toy_records(tokens: int):
    """toy_records of the first seed whose run lasts all ``tokens`` steps (no early EOS)."""
    for seed in range(100):
        records, config, result = toy_records(seed=seed, tokens=tokens)
        if len(records) == tokens:
            return records, config, result
    raise AssertionError(f"no seed below 100 runs {tokens} steps")


def as_json(records) -> list[str]:
    """Records compared through JSON: NaN (finished particles' entropy) equals itself there."""
    return [r.to_json() for r in records]


def save(store: RunStore, run_id: str, owner: str = ALICE, created: float = 1000.0, **kw):
    records, config, result = toy_records()
    return store.save(
        run_id,
        records,
        config,
        status=kw.pop("status", "finished"),
        owner=owner,
        model="toy",
        prompt="p",
        result=result,
        created=created,
        **kw,
    )


def test_save_list_load_round_trip(tmp_path):
    store = RunStore(tmp_path)
    records, config, result = toy_records()
    info = store.save(
        "run1",
        records,
        config,
        status="finished",
        owner=ALICE,
        model="toy",
        prompt="hi",
        result=result,
    )
    assert info is not None and info.n_steps == len(records) and info.status == "finished"
    [listed] = store.list(ALICE)
    assert listed.run_id == "run1" and listed.prompt == "hi"
    loaded = store.load("run1", ALICE)
    assert as_json(loaded.records) == as_json(records)
    assert loaded.result["chosen"] == result.chosen
    entry = entry_from_stored(loaded.trace(), "run1", loaded.info.status, loaded.info.created)
    assert entry.status == "finished" and entry.source == "stored"
    assert not list(tmp_path.rglob("*.part")), "no temp file left behind"
    raw = json.loads(info.path.read_text().split("\n", 1)[0])
    assert raw["owner"] == owner_hash(ALICE) and ALICE not in info.path.read_text()


def test_owners_never_see_each_others_runs(tmp_path):
    store = RunStore(tmp_path)
    save(store, "aaaa1", ALICE)
    save(store, "bbbb1", BOB)
    assert [r.run_id for r in store.list(ALICE)] == ["aaaa1"]
    assert [r.run_id for r in store.list(BOB)] == ["bbbb1"]
    assert store.list(None) == []
    with pytest.raises(KeyError):
        store.load("bbbb1", ALICE)
    assert not store.delete("bbbb1", ALICE)
    assert store.delete("bbbb1", BOB) and store.list(BOB) == []


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "", "a" * 100, "x.y", None])
def test_run_ids_cannot_name_paths(tmp_path, bad):
    store = RunStore(tmp_path)
    with pytest.raises(ValueError, match="run id"):
        save(store, bad)


def test_saving_again_replaces_the_earlier_save(tmp_path):
    store = RunStore(tmp_path)
    save(store, "run1", status="stopped")
    save(store, "run1", status="timed out")
    [info] = store.list(ALICE)
    assert info.status == "timed out" and len(list(store.final_dir.rglob("*.jsonl"))) == 1


def test_total_size_is_bounded_oldest_removed_first(tmp_path):
    one = save(RunStore(tmp_path / "probe"), "probe").bytes
    store = RunStore(tmp_path / "s", max_bytes=int(3.5 * one), max_run_bytes=2 * one)
    for i in range(10):
        save(store, f"run{i}", created=1000.0 + i)
        assert store.total_bytes() <= store.max_bytes
    assert [r.run_id for r in store.list(ALICE)] == ["run9", "run8", "run7"]


def test_oversized_trace_is_compacted_or_refused(tmp_path):
    records, config, result = toy_records(seed=2, n=16, tokens=8)
    assert len(records) >= 5  # enough intermediate texts for compaction to pay
    full = RunStore(tmp_path / "a").save(
        "big1", records, config, status="finished", owner=ALICE, model="t", prompt="", result=result
    )
    small = RunStore(
        tmp_path / "b", max_run_bytes=full.bytes - 200
    )  # 200: timestamps vary in length
    info = small.save(
        "big1", records, config, status="finished", owner=ALICE, model="t", prompt="", result=result
    )
    assert info is not None and info.bytes < full.bytes
    loaded = small.load("big1", ALICE)
    assert loaded.header["compacted"] is True
    assert loaded.records[-1].texts == records[-1].texts  # the final texts are always kept
    assert [r.tokens for r in loaded.records] == [r.tokens for r in records]
    tiny = RunStore(tmp_path / "c", max_run_bytes=1000)
    assert tiny.save("big1", records, config, status="x", owner=ALICE, model="t", prompt="") is None


def test_journal_flushes_in_batches(tmp_path):
    store = RunStore(tmp_path, flush_s=3600, flush_steps=3)
    records, config, _ = full_length_toy_records(tokens=7)
    journal = store.begin("run1", config, owner=ALICE, model="toy", prompt="p")
    lines = lambda: journal.path.read_text().splitlines()  # noqa: E731
    assert json.loads(lines()[0])["status"] == "running"
    journal.sync(records[:2])
    assert len(lines()) == 1  # 2 < flush_steps: still buffered
    journal.sync(records[:4])
    steps = [json.loads(x) for x in lines()[1:]]
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    # Texts only on the last record of each batch: the journal stays O(N·T) in size.
    assert [s["texts"] is not None for s in steps] == [False, False, False, True]
    info = journal.finish(records, "finished")
    assert not journal.path.exists() and info.n_steps == len(records)
    assert as_json(store.load("run1", ALICE).records) == as_json(
        records
    )  # the final trace is complete


CRASHER = textwrap.dedent(
    """
    import os, signal, sys
    from powersmc_core import PowerSMC, SMCConfig, ToyLM
    from explorer.store import RunStore
    store = RunStore(sys.argv[1], flush_s=3600, flush_steps=2)
    for seed in range(100):  # the first seed whose run lasts all 8 steps
        config = SMCConfig(n_particles=4, max_new_tokens=8, seed=seed)
        records = list(PowerSMC(ToyLM.random(8, 8, seed=1), config).stream([]))
        if len(records) == 8:
            break
    assert len(records) == 8
    journal = store.begin("crash1", config, owner=sys.argv[2], model="toy", prompt="p")
    journal.sync(records[:2])       # flushed (2 = flush_steps)
    journal.sync(records[:3])       # buffered
    journal.sync(records[:4])       # flushed: 4 on disk
    journal.sync(records[:5])       # record 5 buffered: lost with the process
    journal._handle.write('{"kind": "step", "step": 5, "tok')  # a torn write
    journal._handle.flush()
    print("ready", flush=True)
    if sys.argv[3] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.read()                # 'alive': hold the journal until the parent closes stdin
    """
)


def start_crasher(tmp_path: Path, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(tmp_path), ALICE, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_killed_process_leaves_an_interrupted_run(tmp_path):
    proc = start_crasher(tmp_path, "kill")
    assert proc.wait(60) == -signal.SIGKILL
    assert (tmp_path / "running" / "crash1.jsonl").exists()
    store = RunStore(tmp_path)  # a server restart
    assert store.recovered == ["crash1"]
    [info] = store.list(ALICE)
    assert info.status == "interrupted" and info.n_steps == 4
    run = store.load("crash1", ALICE)
    assert [r.step for r in run.records] == [1, 2, 3, 4] and run.result is None
    assert not (tmp_path / "running" / "crash1.jsonl").exists()
    assert RunStore(tmp_path).recovered == []  # recovery happens once


def test_journal_of_a_live_process_is_not_touched(tmp_path):
    proc = start_crasher(tmp_path, "alive")
    try:
        assert RunStore(tmp_path).recovered == []
        assert (tmp_path / "running" / "crash1.jsonl").exists()
    finally:
        proc.stdin.close()
        proc.wait(60)
    # The process exited without finishing its run: now it is interrupted.
    assert RunStore(tmp_path).recovered == ["crash1"]


def test_interrupted_before_any_step_is_still_listed(tmp_path):
    store = RunStore(tmp_path)
    journal = store.begin("early1", SMCConfig(), owner=ALICE, model="toy", prompt="p")
    journal._handle.close()  # simulate death: drop the lock without finishing
    journal._handle = None
    journal.closed = True
    store._journals.clear()
    restarted = RunStore(tmp_path)  # each store keeps its own index: list the new one's
    assert restarted.recovered == ["early1"]
    [info] = restarted.list(ALICE)
    assert info.status == "interrupted" and info.n_steps == 0
    assert restarted.load("early1", ALICE).records == []


def test_garbage_journal_becomes_an_unowned_interrupted_stub(tmp_path):
    (tmp_path / "running").mkdir(parents=True)
    (tmp_path / "running" / "junk1.jsonl").write_bytes(b"\x00\xff not json")
    (tmp_path / "running" / "..evil.jsonl").write_text("{}")
    store = RunStore(tmp_path)
    assert store.recovered == ["junk1"]
    assert not list((tmp_path / "running").iterdir())
    assert store.list(ALICE) == []


def test_tracked_live_run_is_saved_when_stopped_midway(tmp_path):
    store = RunStore(tmp_path)
    live = LiveRun(
        ToyLM.trap(),
        SMCConfig(n_particles=4, seed=0),
        [],
        model_name="toy-trap",
        prompt_label="(empty)",
    )

    class Stop(Exception):  # what Streamlit raises in the script thread on Stop / rerun
        pass

    with pytest.raises(Stop), tracked(live, ALICE, store) as journal:
        live.step()
        journal.sync(live.records)
        raise Stop
    [info] = store.list(ALICE)
    assert info.status == "stopped" and info.n_steps == 1
    assert not list((tmp_path / "running").iterdir())

    live2 = LiveRun(
        ToyLM.trap(),
        SMCConfig(n_particles=4, seed=1),
        [],
        model_name="toy-trap",
        prompt_label="(empty)",
    )
    with tracked(live2, ALICE, store) as journal:
        for update in live2.updates():
            journal.sync(update.records)
    stored = store.load(live2.run_id, ALICE)
    entry = entry_from_stored(stored.trace(), live2.run_id, stored.info.status, stored.info.created)
    assert entry.status == "finished" and as_json(entry.records) == as_json(live2.records)


def test_stored_file_tampered_with_is_reported_not_crashing(tmp_path):
    store = RunStore(tmp_path)
    info = save(store, "run1")
    lines = info.path.read_text().splitlines()
    step = json.loads(lines[1])
    step["ancestors"] = ["x"] * len(step["ancestors"])
    info.path.write_text("\n".join([lines[0], json.dumps(step), *lines[2:]]) + "\n")
    with pytest.raises(TraceError, match=r"malformed|ancestors"):
        store.load("run1", ALICE)


def test_store_from_settings(tmp_path, monkeypatch):
    from explorer.store import reset_run_store, run_store

    monkeypatch.setenv("POWERSMC_DATA_DIR", str(tmp_path))
    reset_run_store()
    try:
        store = run_store()
        assert store is run_store() and store.root == tmp_path / "runs"
        monkeypatch.setenv("POWERSMC_PERSIST", "0")
        reset_run_store()
        assert run_store() is None
    finally:
        reset_run_store()
    assert os.environ.get("POWERSMC_PERSIST") == "0"
