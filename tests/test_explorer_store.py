"""Persisted runs: save / list / load per owner, bounded size (oldest removed first),
atomic writes, and crash recovery — a process killed mid-run (SIGKILL, no cleanup)
leaves a journal that the next start turns into an 'interrupted' run holding every
flushed record, while a journal whose writer is still alive is left alone.

Scale and fairness: with 20,000 stored runs a save and a listing scan no folder (the
index is built once at open), one owner's saves evict only that owner's runs, a save the
total budget cannot hold is refused (``StoreFull``) without deleting anything, and the
index stays equal to the files across reopen, delete, recovery and the old flat layout."""

from __future__ import annotations

import builtins
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
from explorer.run_files import STORE_FULL_MESSAGE
from explorer.store import RunStore, StoreFull, owner_hash, tracked
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


def test_store_from_settings_takes_the_owner_quota(tmp_path, monkeypatch):
    from explorer.store import reset_run_store, run_store

    monkeypatch.setenv("POWERSMC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("POWERSMC_STORE_MAX_MB", "8")
    monkeypatch.setenv("POWERSMC_STORE_OWNER_MAX_MB", "2")
    reset_run_store()
    try:
        store = run_store()
        assert store.max_bytes == 8 * 2**20 and store.owner_max_bytes == 2 * 2**20
        assert store.max_run_bytes <= store.owner_max_bytes
    finally:
        reset_run_store()


# ---- scale: the index ----------------------------------------------------------------------


def write_stub(folder: Path, run_id: str, owner: str, created: float) -> int:
    """A minimal stored trace (a header line), written the cheap way: its size."""
    header = {
        "kind": "header",
        "format": "powersmc-trace",
        "run_id": run_id,
        "owner": owner,
        "created": created,
        "status": "finished",
        "model": "toy",
        "prompt": "p",
        "n_steps": 0,
    }
    line = json.dumps(header) + "\n"
    with open(folder / f"{int(created * 1000):015d}-{run_id}.jsonl", "w") as handle:
        handle.write(line)
    return len(line)


class FolderCalls:
    """Counts, while on, every folder scan, stat and file open the process makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on = False
        self.calls: dict[str, int] = {}
        patches = [
            (os, "scandir"),
            (os, "listdir"),
            (os, "walk"),
            (os, "stat"),
            (Path, "iterdir"),
            (Path, "glob"),
            (Path, "rglob"),
            (Path, "stat"),
            (Path, "exists"),
            (Path, "open"),
            (builtins, "open"),
        ]
        for owner, name in patches:
            label = f"{owner.__name__}.{name}"
            monkeypatch.setattr(owner, name, self._counted(label, getattr(owner, name)))

    def _counted(self, name: str, original):
        def counted(*args, **kwargs):
            if self.on:
                self.calls[name] = self.calls.get(name, 0) + 1
            return original(*args, **kwargs)

        return counted

    def during(self, action):
        self.calls, self.on = {}, True
        try:
            return action()
        finally:
            self.on = False


def test_save_and_list_do_not_scan_20000_stored_runs(tmp_path, monkeypatch):
    final = tmp_path / "final"
    total = 0
    crowd = [f"crowd-token-{i:04d}-xxxxxxxx" for i in range(200)]
    for i, token in enumerate(crowd):  # 200 owners x 100 runs
        folder = final / owner_hash(token)
        folder.mkdir(parents=True)
        for j in range(100):
            total += write_stub(folder, f"c{i:03d}r{j:03d}", owner_hash(token), 1000.0 + j)
    (final / owner_hash(ALICE)).mkdir()
    for j in range(3):
        total += write_stub(final / owner_hash(ALICE), f"alice{j}", owner_hash(ALICE), 2000.0 + j)

    store = RunStore(tmp_path)
    assert store.total_bytes() == total
    assert len(store.list(crowd[7], limit=1000)) == 100

    calls = FolderCalls(monkeypatch)
    listed = calls.during(lambda: store.list(ALICE))
    assert [r.run_id for r in listed] == ["alice2", "alice1", "alice0"]
    assert calls.calls == {}, "listing read or scanned files beyond the index"

    records, config, _ = toy_records()
    info = calls.during(
        lambda: store.save(
            "bob01", records, config, status="finished", owner=BOB, model="toy", prompt="p"
        )
    )
    # One file opened (the temp file it writes); no folder scanned, no file stat'ed or read.
    assert calls.calls == {"Path.open": 1}, f"a save touched more files: {calls.calls}"
    assert [r.run_id for r in store.list(BOB)] == ["bob01"]
    assert store.total_bytes() == total + info.bytes


# ---- fairness: the per-owner quota ---------------------------------------------------------


def ids(store: RunStore, owner: str) -> list[str]:
    return [r.run_id for r in store.list(owner)]


def test_one_owner_never_evicts_another(tmp_path):
    one = save(RunStore(tmp_path / "probe"), "probe").bytes
    store = RunStore(tmp_path / "s", max_bytes=int(10.5 * one), owner_max_bytes=int(3.5 * one))
    for i in range(4):  # over his quota at the 4th: his own oldest goes
        save(store, f"bob{i}", BOB, created=100.0 + i)
    bobs = ["bob3", "bob2", "bob1"]
    assert ids(store, BOB) == bobs
    for i in range(30):  # an owner saving far more than the whole budget holds
        save(store, f"alice{i}", ALICE, created=1000.0 + i)
        assert ids(store, BOB) == bobs, f"Bob lost a run at Alice's save {i}"
        assert store.owner_bytes(ALICE) <= store.owner_max_bytes
        assert store.total_bytes() <= store.max_bytes
    assert ids(store, ALICE) == ["alice29", "alice28", "alice27"]
    save(store, "bob2", ALICE, created=2000.0)  # a run id Bob also used: his stays his
    assert ids(store, BOB) == bobs and ids(store, ALICE)[0] == "bob2"
    assert store.load("bob2", BOB).header["owner"] == owner_hash(BOB)


def test_a_save_the_budget_cannot_hold_is_refused_and_deletes_nothing(tmp_path, caplog):
    one = save(RunStore(tmp_path / "probe"), "probe").bytes
    store = RunStore(tmp_path / "s", max_bytes=int(5.5 * one), owner_max_bytes=int(3.5 * one))
    for i in range(3):
        save(store, f"bob{i}", BOB, created=100.0 + i)
    for i in range(2):
        save(store, f"carol{i}", "carol-token-0123456789", created=200.0 + i)
    before = sorted(p.name for p in store.final_dir.rglob("*"))
    with pytest.raises(StoreFull) as refused:
        save(store, "alice1", ALICE)
    assert str(refused.value) == STORE_FULL_MESSAGE and "full" in STORE_FULL_MESSAGE
    assert "store full" in caplog.text
    assert sorted(p.name for p in store.final_dir.rglob("*")) == before, "nothing deleted"
    assert ids(store, BOB) == ["bob2", "bob1", "bob0"] and ids(store, ALICE) == []
    # Carol may still save: her own oldest run makes the room.
    save(store, "carol2", "carol-token-0123456789", created=300.0)
    assert ids(store, "carol-token-0123456789") == ["carol2", "carol1"]
    assert ids(store, BOB) == ["bob2", "bob1", "bob0"]


def test_a_full_store_keeps_a_tracked_run_in_the_session(tmp_path):
    one = save(RunStore(tmp_path / "probe"), "probe").bytes
    store = RunStore(tmp_path / "s", max_bytes=int(2.05 * one), max_run_bytes=2 * one)
    save(store, "bob0", BOB, created=1.0)
    save(store, "bob1", BOB, created=2.0)
    live = LiveRun(
        ToyLM.trap(),
        SMCConfig(n_particles=4, seed=1),
        [],
        model_name="toy-trap",
        prompt_label="(empty)",
    )
    with tracked(live, ALICE, store) as journal:  # no exception leaves the block
        for update in live.updates():
            journal.sync(update.records)
    assert live.done and live.records  # the run itself is whole, in the session
    assert journal.save_error == STORE_FULL_MESSAGE
    assert ids(store, ALICE) == [] and ids(store, BOB) == ["bob1", "bob0"]
    assert not list((tmp_path / "s" / "running").iterdir())  # not an 'interrupted' run later


# ---- the index equals the files ------------------------------------------------------------


def assert_index_matches_files(store: RunStore, *owners: str) -> None:
    """The index's totals and lists are what a fresh scan of the files finds."""
    files = list(store.final_dir.rglob("*.jsonl"))
    assert store.total_bytes() == sum(p.stat().st_size for p in files)
    for owner in owners:
        on_disk = sorted(
            p.name.split("-", 1)[1][: -len(".jsonl")]
            for p in files
            if json.loads(p.read_text().split("\n", 1)[0]).get("owner") == owner_hash(owner)
        )
        assert sorted(ids(store, owner)) == on_disk
        assert store.owner_bytes(owner) == sum(i.bytes for i in store.list(owner))
    fresh = RunStore(store.root, recover=False)
    assert fresh.total_bytes() == store.total_bytes()
    for owner in owners:
        assert ids(fresh, owner) == ids(store, owner)


def test_index_stays_right_across_reopen_delete_and_recovery(tmp_path):
    store = RunStore(tmp_path)
    for i in range(3):
        save(store, f"alice{i}", ALICE, created=1000.0 + i)
    save(store, "bob0", BOB)
    assert_index_matches_files(store, ALICE, BOB)

    reopened = RunStore(tmp_path)
    assert ids(reopened, ALICE) == ["alice2", "alice1", "alice0"]
    assert reopened.delete("alice1", ALICE) and not reopened.delete("alice1", ALICE)
    assert not reopened.delete("bob0", ALICE)
    assert ids(reopened, ALICE) == ["alice2", "alice0"]
    assert_index_matches_files(reopened, ALICE, BOB)
    assert reopened.delete("bob0", BOB) and not (reopened.final_dir / owner_hash(BOB)).exists()

    journal = reopened.begin("crash2", SMCConfig(), owner=ALICE, model="toy", prompt="p")
    journal.sync(toy_records()[0], force=True)
    journal._handle.close()  # the process dies: the lock goes, the journal stays
    journal._handle, journal.closed = None, True
    restarted = RunStore(tmp_path)
    assert restarted.recovered == ["crash2"]
    assert ids(restarted, ALICE)[0] == "crash2"  # newest: created when it began
    assert restarted.load("crash2", ALICE).info.status == "interrupted"
    assert_index_matches_files(restarted, ALICE, BOB)


def test_old_flat_layout_is_found_and_moved_into_owner_folders(tmp_path):
    store = RunStore(tmp_path)
    save(store, "old1", ALICE, created=1000.0)
    save(store, "old2", BOB, created=1001.0)
    save(store, "twice", ALICE, created=1002.0, status="stopped")
    for path in list(store.final_dir.rglob("*.jsonl")):  # what an older version left
        path.rename(store.final_dir / path.name)
    for folder in list(store.final_dir.iterdir()):
        if folder.is_dir():
            folder.rmdir()
    # A crash between a second save and removing the first: both saves on disk, the
    # earlier one (indexed first) in the owner's folder, the later one flat.
    flat_twice = next(store.final_dir.glob("*-twice.jsonl"))
    (store.final_dir / owner_hash(ALICE)).mkdir()
    flat_twice.rename(store.final_dir / owner_hash(ALICE) / flat_twice.name)
    later = save(RunStore(tmp_path / "other"), "twice", ALICE, created=1002.0)
    later.path.rename(flat_twice)
    (store.final_dir / "notes.txt").write_text("not a trace")

    opened = RunStore(tmp_path)
    assert ids(opened, ALICE) == ["twice", "old1"] and ids(opened, BOB) == ["old2"]
    assert opened.list(ALICE)[0].status == "finished"  # the later save of the two
    assert opened.load("old1", ALICE).info.path.parent.name == owner_hash(ALICE)
    assert sorted(p.name for p in opened.final_dir.iterdir() if p.is_file()) == ["notes.txt"]
    assert_index_matches_files(opened, ALICE, BOB)


def test_one_address_saves_a_bounded_number_of_bytes_a_day_whatever_its_owners(tmp_path):
    # Owners are per session, so a script rotating sessions has many: the address is
    # bounded too, and another address still saves.
    one = save(RunStore(tmp_path / "probe"), "probe").bytes
    clock = [0.0]
    store = RunStore(
        tmp_path / "s", address_max_bytes_per_day=int(3.5 * one), clock=lambda: clock[0]
    )
    for i in range(3):
        save(store, f"run{i}", f"owner-{i}-0123456789", address="203.0.113.5")
    with pytest.raises(StoreFull, match="network address"):
        save(store, "run3", "owner-3-0123456789", address="203.0.113.5")
    assert ids(store, "owner-3-0123456789") == []
    save(store, "other", "owner-9-0123456789", address="198.51.100.7")
    clock[0] = 86_401.0  # a day later the address may save again
    save(store, "run4", "owner-4-0123456789", address="203.0.113.5")
