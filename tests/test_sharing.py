"""Reproducible sharing and replay (issue 20, part 7).

A share link is a full URL on this server carrying the preset (so the opened run is
graded), the stop rule, the stop strings and the backend, parsed back with validation
(a hostile base URL is refused, unknown values are notes) and never the owner token;
the trace header records stop rule, backend and preset (older traces: unknown); an
upload of a listed run adds an entry beside it; a trace whose header parses but whose
body is broken is refused naming the broken line; the Runs page replay shows the
selected step's metrics and leader text, and Play walks the steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from streamlit.testing.v1 import AppTest
from test_session_memory import records as synthetic_records

from explorer import history, query, replay
from explorer import session_keys as keys
from explorer.gate import Gate
from explorer.live import LiveRun
from explorer.presets import TEXT_PRESETS
from explorer.settings import DemoSettings, SettingsError, demo_settings
from powersmc_core import SMCConfig
from powersmc_core.io.trace import TraceError, dumps_trace, read_trace
from powersmc_core.models.loading import load_model

APP = str(Path(__file__).resolve().parents[1] / "app.py")
RUNS = "app_pages/runs.py"
FULL = DemoSettings()
DEMO = demo_settings({"POWERSMC_DEMO": "1"})
PRESETS = [p.name for p in TEXT_PRESETS]
OWNER = "Zq3_owner-token-0123456789abcdef"


def params_of(link: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(link).query, keep_blank_values=True))


def toy_entry(stop_rule: str = "EOS only", stop_strings: str = "") -> history.RunEntry:
    run = LiveRun(
        load_model("toy-random:3,8,0"),
        SMCConfig(n_particles=6, max_new_tokens=6, seed=2),
        [],
        model_name="toy-random:3,8,0",
        prompt_label="(empty)",
        stop_rule=stop_rule,
        stop_strings=stop_strings,
    )
    for _ in run.updates():
        pass
    return run.finish()


# ---- links ---------------------------------------------------------------------------------
def test_a_link_round_trips_base_url_preset_stop_rule_and_backend():
    preset = TEXT_PRESETS[1]
    config = SMCConfig(alpha=3.0, n_particles=12, max_new_tokens=40, seed=7)
    link = query.share_link(
        config,
        "smollm2",
        "ignored: the preset wins",
        base_url="https://demo.example.org:8443/powersmc/runs",
        preset=preset.name,
        stop_rule="\\boxed{} answer",
        backend="llamacpp",
    )
    assert link.startswith("https://demo.example.org:8443/powersmc/live_smc?")
    params = params_of(link)
    assert "prompt" not in params and params["preset"] == preset.name
    assert params["stop"] == "boxed" and params["backend"] == "llamacpp"
    back = query.parse_query_params(params, FULL, presets=PRESETS)
    assert back.messages == ()
    assert back.preset == preset.name and back.prompt is None
    assert back.stop_rule == "\\boxed{} answer" and back.backend == "llamacpp"
    assert back.config == {
        "alpha": 3.0,
        "n_particles": 12,
        "max_new_tokens": 40,
        "seed": 7,
        "schedule": "constant",
        "ess_threshold": 0.5,
    }
    values = query.widget_values(back)
    # The preset (not free text) is selected, so the opened run is graded against its answer.
    assert values[keys.LIVE_PROMPT_MODE] == "Preset problem"
    assert values[keys.LIVE_PRESET] == preset.name
    assert values["live_stop_rule"] == "\\boxed{} answer"
    assert values["backend_choice"] == "llamacpp"


def test_stop_strings_travel_with_their_rule():
    link = query.share_link(
        SMCConfig(n_particles=4),
        "toy-trap",
        base_url="http://localhost:8501/",
        stop_rule="stop strings",
        stop_strings="###,\\n\\n",
    )
    params = params_of(link)
    assert params["stop"] == "strings" and params["stops"] == "###,\\n\\n"
    back = query.parse_query_params(params, DEMO)
    assert back.stop_rule == "stop strings" and back.stop_strings == "###,\\n\\n"
    assert query.widget_values(back)["live_stop_strings"] == "###,\\n\\n"
    # strings under another rule are dropped with a note, never applied silently
    mixed = query.parse_query_params({"stop": "eos", "stops": "x"}, DEMO)
    assert mixed.stop_strings is None and mixed.stop_rule == "EOS only"
    assert any("stops ignored" in m for m in mixed.messages)


@pytest.mark.parametrize(
    "base",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "https://good.example@evil.example/",
        "http:///nohost",
        "https://host:notaport/",
        "https://host/pa th",
        "//evil.example/",
        "",
    ],
)
def test_a_hostile_base_url_is_refused(base):
    assert query.app_root(base) is None
    with pytest.raises(ValueError, match="http"):
        query.share_link(SMCConfig(), "toy-trap", base_url=base)


def test_the_public_url_setting_overrides_the_browser_and_is_validated():
    public = demo_settings({"POWERSMC_PUBLIC_URL": "https://proxy.example.org/smc/"})
    assert query.public_base(public, "http://10.0.0.5:8501/live_smc") == (
        "https://proxy.example.org/smc/"
    )
    assert query.public_base(FULL, "http://10.0.0.5:8501/live_smc") == "http://10.0.0.5:8501/"
    assert query.public_base(FULL, None) is None
    for bad in ("javascript:alert(1)", "ftp://x.org/", "https://u:p@x.org/"):
        with pytest.raises(SettingsError, match="POWERSMC_PUBLIC_URL"):
            demo_settings({"POWERSMC_PUBLIC_URL": bad})


def test_unknown_preset_stop_rule_and_backend_are_notes_not_exceptions():
    back = query.parse_query_params(
        {"preset": "<b>Nope</b>", "stop": "forever", "backend": "cuda-magic", "n": "4"},
        FULL,
        presets=PRESETS,
    )
    assert back.preset is None and back.stop_rule is None and back.backend is None
    assert back.config == {"n_particles": 4}
    text = " ".join(back.messages)
    assert "not a known preset" in text and "not a stop rule" in text
    assert "not a backend" in text
    demo = query.parse_query_params({"backend": "torch"}, DEMO)
    assert demo.backend is None and any("serves one backend" in m for m in demo.messages)
    assert "backend_choice" not in query.widget_values(demo)


def test_a_share_link_never_carries_the_owner_token():
    entry = toy_entry()
    state = {keys.OWNER: OWNER}
    history.remember(state, entry, budget=2**30)
    link = query.entry_share_link(entry, "https://demo.example.org/")
    assert OWNER not in link and "owner" not in params_of(link)
    assert link.startswith("https://demo.example.org/live_smc?")
    assert params_of(link)["stop"] == "eos" and params_of(link)["backend"] == "torch"


# ---- the trace header ----------------------------------------------------------------------
def test_the_trace_header_round_trips_stop_rule_backend_and_preset():
    entry = toy_entry("stop strings", "ab,\\n")
    assert entry.stop_rule == "stop strings" and entry.backend == "torch"
    entry.preset = TEXT_PRESETS[0].name
    text = history.entry_trace_text(entry)
    header = json.loads(text.splitlines()[0])
    assert header["stop_rule"] == "stop strings" and header["stop_strings"] == "ab,\\n"
    assert header["backend"] == "torch" and header["preset"] == TEXT_PRESETS[0].name
    back = Gate(FULL).upload(text.encode(), "run.jsonl")
    assert (back.stop_rule, back.stop_strings, back.backend, back.preset) == (
        "stop strings",
        "ab,\\n",
        "torch",
        TEXT_PRESETS[0].name,
    )
    assert "stop rule: stop strings (ab,\\n)" in history.context_line(back)


def test_an_old_trace_without_them_still_loads_as_unknown():
    old = dumps_trace(synthetic_records(4, 3), {"alpha": 2.0, "n_particles": 4}, meta={})
    assert "stop_rule" not in old.splitlines()[0]
    entry = Gate(FULL).upload(old.encode(), "old.jsonl")
    assert (entry.stop_rule, entry.backend, entry.preset) == (None, None, None)
    assert history.context_line(entry) == "stop rule: unknown · backend: unknown"


def test_a_hostile_header_context_is_dropped():
    header_meta = {"stop_rule": "rm -rf", "backend": "<script>", "preset": ["x"]}
    text = dumps_trace(synthetic_records(4, 2), {"n_particles": 4}, meta=header_meta)
    entry = Gate(FULL).upload(text.encode(), "x.jsonl")
    assert (entry.stop_rule, entry.backend, entry.preset) == (None, None, None)


def test_a_preset_run_records_its_preset_id():
    preset = TEXT_PRESETS[2]
    assert history.preset_id(preset.prompt, preset.answer) == preset.name
    assert history.preset_id(preset.prompt + " ", preset.answer) is None  # edited: free text
    assert history.preset_id(preset.prompt, "11") is None


# ---- uploads add entries -------------------------------------------------------------------
def test_uploading_a_listed_runs_trace_adds_a_second_entry():
    state: dict = {}
    entry = toy_entry()
    history.remember(state, entry, budget=2**30)
    data = history.entry_trace_text(entry).encode()
    imported = replay.import_upload(Gate(FULL), state, data, "mine.jsonl")
    runs = history.history(state)
    assert imported.fresh and len(runs) == 2
    assert runs[0] is imported.entry and runs[1] is entry
    assert imported.entry.run_id != entry.run_id and imported.entry.origin == entry.run_id
    assert f"upload of {entry.run_id}" in imported.entry.label
    again = replay.import_upload(Gate(FULL), state, data, "again.jsonl")  # the same bytes
    assert not again.fresh and len(history.history(state)) == 2


# ---- broken bodies -------------------------------------------------------------------------
def _lines() -> list[str]:
    return dumps_trace(synthetic_records(4, 8), {"n_particles": 4}, meta={}).splitlines()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda ls: [*ls[:6], ls[6][:40], *ls[7:]], "line 7: not valid JSON"),
        (lambda ls: [*ls[:6], "\x00\x00\x00", *ls[7:]], "line 7: not valid JSON"),
        (
            lambda ls: [*ls[:6], json.dumps({**json.loads(ls[6]), "ess": None}), *ls[7:]],
            "line 7",
        ),
        (
            lambda ls: [*ls[:6], ls[6].replace('"ess"', '"ESS"'), *ls[7:]],
            r"line 7: .*missing fields \['ess'\]",
        ),
        (lambda ls: [*ls[:6], ls[0], *ls[6:]], "line 7: a second header line"),
        (lambda ls: [*ls[:6], "[1, 2]", *ls[7:]], "line 7: expected a JSON object"),
        # blank lines count: the upload's range checks name the file's own line too
        (
            lambda ls: [
                ls[0],
                "",
                "",
                json.dumps({**json.loads(ls[1]), "tokens": [-5] * 4}),
                *ls[2:],
            ],
            "line 4: tokens must be integers >= -1",
        ),
    ],
)
def test_a_broken_body_names_its_line_not_the_header(mutate, message):
    bad = "\n".join(mutate(_lines())).encode()
    with pytest.raises(TraceError, match=message) as caught:
        Gate(FULL).upload(bad, "broken.jsonl")
    assert "missing header" not in str(caught.value)


def test_a_file_without_a_header_is_still_missing_one_even_with_a_broken_body():
    lines = _lines()
    with pytest.raises(TraceError, match=r"line 1: not a powersmc-trace file \(missing header"):
        read_trace("\n".join([*lines[1:4], "{broken", *lines[5:]]).encode())


# ---- the Runs page replay ------------------------------------------------------------------
@pytest.fixture
def runs_page(monkeypatch, fresh_app_state):
    monkeypatch.setenv("POWERSMC_DEMO", "1")
    monkeypatch.setattr(replay, "PLAY_FRAME_S", 0.0)  # frames as fast as the script runs
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["model_choice"] = "toy-trap"
    at.run()
    at.switch_page(RUNS).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texted_trace() -> tuple[list, bytes]:
    recs = synthetic_records(5, 9, text="<b>step</b> *x*")
    # each step's leader gets a text naming its step, so the page's text is checkable
    out = []
    for r in recs:
        leader = max(range(5), key=lambda i: (r.log_weights[i], -i))
        texts = list(r.texts)
        texts[leader] = f"leader at step {r.step} <img src=x onerror=alert(1)>"
        out.append(type(r)(**{**r.__dict__, "texts": tuple(texts)}))
    meta = {"run_id": "abcd1234", "stop_rule": "EOS only", "backend": "llamacpp"}
    text = dumps_trace(out, {"alpha": 2.0, "n_particles": 5}, meta=meta)
    return out, text.encode()


def metric(at: AppTest, label: str) -> str:
    (found,) = [m for m in at.metric if m.label == label]
    return found.value


def test_replay_at_step_k_shows_that_steps_metrics_and_text(runs_page):
    at = runs_page
    recs, data = _texted_trace()
    at.file_uploader(key="runs_upload").set_value(("t.jsonl", data, "application/jsonl")).run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [c.value.replace("\\", "") for c in at.caption]  # escape_markdown undone
    assert any("stop rule: EOS only · backend: llama.cpp" in c for c in captions)
    for k in (4, 1, 9):
        at.slider(key=replay.STEP).set_value(k).run()
        assert not at.exception, [e.value for e in at.exception]
        r = recs[k - 1]
        assert metric(at, "ESS") == f"{r.ess:.1f} / 5"
        assert metric(at, "log Ẑ so far") == f"{r.log_z:.3f}"
        assert metric(at, "lineages") == str(r.n_lineages)
        assert metric(at, "resampled") == ("yes" if r.resampled else "no")
        assert metric(at, "α_t") == f"{r.alpha:.3g}"
        codes = [c.value for c in at.code]
        assert f"leader at step {k} <img src=x onerror=alert(1)>" in codes  # shown as text
        assert not any(f"leader at step {j} " in c for c in codes for j in range(1, 10) if j != k)


def test_play_walks_every_step_then_stops(runs_page, monkeypatch):
    at = runs_page
    recs, data = _texted_trace()
    at.file_uploader(key="runs_upload").set_value(("t.jsonl", data, "application/jsonl")).run()
    seen: list[int] = []
    step_view = replay.step_view
    monkeypatch.setattr(replay, "step_view", lambda e, s: seen.append(s) or step_view(e, s))
    at.button(key="runs_play").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert seen[0] == 1 and seen[-1] == len(recs)
    assert sorted(set(seen)) == list(range(1, len(recs) + 1))
    assert at.session_state[replay.STEP] == len(recs)
    assert replay.PLAYING not in at.session_state  # stopped at the end
    assert len(at.get("plotly_chart")) == 7  # the heavy charts (diversity too) are back


def test_play_frames_are_bounded():
    assert replay.next_frame(5, 5) is None
    frames, step = [1], 1
    while (step := replay.next_frame(step, 2048)) is not None:
        frames.append(step)
    assert len(frames) <= replay.MAX_PLAY_FRAMES + 1 and frames[-1] == 2048


def test_the_runs_page_share_link_is_full_and_has_no_owner(runs_page, monkeypatch):
    monkeypatch.setenv("POWERSMC_PUBLIC_URL", "https://proxy.example.org/smc/")
    at = runs_page
    _, data = _texted_trace()
    at.file_uploader(key="runs_upload").set_value(("t.jsonl", data, "application/jsonl")).run()
    at.button(key="runs_share").click().run()
    assert not at.exception, [e.value for e in at.exception]
    owner = at.session_state[keys.OWNER]
    links = [c.value for c in at.code if "live_smc?" in c.value]
    assert links and links[0].startswith("https://proxy.example.org/smc/live_smc?")
    assert owner not in links[0] and "owner" not in params_of(links[0])
    assert params_of(links[0])["stop"] == "eos"


def test_a_link_sets_the_live_pages_stop_rule_and_strings(monkeypatch, fresh_app_state):
    monkeypatch.setenv("POWERSMC_DEMO", "1")
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(
        {"model": "toy-trap", "stop": "strings", "stops": "ab,c", "backend": "nope"}
    )
    at.run()
    toasts = [t.value for t in at.toast]
    at.switch_page("app_pages/live_smc.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="live_stop_rule").value == "stop strings"
    assert at.text_input(key="live_stop_strings").value == "ab,c"
    assert any("not a backend" in t for t in toasts)


# ---- a look-ahead run's link carries its sampler and rollout knobs -----------------------
def test_a_lookahead_link_carries_the_sampler_and_its_knobs_round_trip():
    config = SMCConfig(
        alpha=4.0, n_particles=4, max_new_tokens=6, block_size=2,
        rollout_k=3, rollout_m=2, rollout_h=2, lookahead_epsilon=0.25,
    )  # fmt: skip
    params = params_of(query.share_link(config, "toy-trap", method="lookahead"))
    assert params["sampler"] == "lookahead"
    assert (params["rollout_k"], params["rollout_m"], params["rollout_h"]) == ("3", "2", "2")
    assert (params["lookahead_epsilon"], params["block_size"]) == ("0.25", "2")
    link = query.parse_query_params(params, DemoSettings())
    assert link.method == "lookahead" and not link.messages
    assert {k: link.config[k] for k in query.ROLLOUT_FIELDS} == {
        "rollout_k": 3, "rollout_m": 2, "rollout_h": 2, "lookahead_epsilon": 0.25,
    }  # fmt: skip
    values = query.widget_values(link)
    assert values["live_method"] == "lookahead" and values["live_rollout_k"] == 3
    assert values["live_lookahead_epsilon"] == 0.25 and values["live_block"] == 2
    # Power-SMC's link stays as it was: no sampler, no knobs.
    plain = params_of(query.share_link(config, "toy-trap", method="smc"))
    assert "sampler" not in plain and "rollout_k" not in plain


def test_a_links_unknown_sampler_is_a_message_and_the_entry_link_reads_the_runs_method():
    link = query.parse_query_params({"sampler": "<b>mh</b>"}, DemoSettings())
    assert link.method is None and any("not a Live sampler" in m for m in link.messages)
    model = load_model("toy-trap")
    run = LiveRun(
        model,
        SMCConfig(alpha=4.0, n_particles=3, max_new_tokens=3),
        [],
        model_name="toy-trap",
        prompt_label="(empty)",
        method="lookahead",
    )
    for _ in run.updates():
        pass
    entry = run.finish()
    assert params_of(query.entry_share_link(entry))["sampler"] == "lookahead"
