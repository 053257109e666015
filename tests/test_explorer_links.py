"""Links, owner tokens, error pages and per-visitor limits (issue 13, findings 2-5 and 7).

Driven with AppTest in demo mode on the toy models: a link fills the Live SMC widgets
(clamped, with a message), hostile link keys reach the toast escaped, a token in a link
is never adopted without the visitor's confirmation and leaves the address bar, a page
that raises shows one escaped line instead of a traceback, and two tabs of one browser
share one run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit
from streamlit.testing.v1 import AppTest

from explorer import query
from explorer.errors import visitor_message
from explorer.gate import Gate, LimitError
from explorer.identity import VISITOR_COOKIE, issue_visitor_cookie, visitor_key
from explorer.limits import RunLimiter
from explorer.settings import demo_settings
from powersmc_core import SMCConfig
from powersmc_core.models.loading import load_model

APP = str(Path(__file__).resolve().parents[1] / "app.py")
LIVE = "app_pages/live_smc.py"
DEMO = demo_settings({"POWERSMC_DEMO": "1"})


@pytest.fixture(autouse=True)
def demo_env(monkeypatch, tmp_path):
    monkeypatch.setenv("POWERSMC_DEMO", "1")
    monkeypatch.setenv("POWERSMC_DATA_DIR", str(tmp_path))
    yield
    streamlit.config.set_option("client.showErrorDetails", "full")


def visit(params: dict[str, str], page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(params)
    at.run()
    at.first_toasts = [t.value for t in at.toast]  # the link's messages, on the first run
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_shared_link_fills_the_live_widgets_clamped_with_a_message():
    at = visit(
        {"model": "toy-trap", "n": "16", "alpha": "2", "tokens": "500", "prompt": "hello"},
        LIVE,
    )
    assert at.session_state["model_name"] == "toy-trap"
    assert at.number_input(key="live_n").value == 16
    assert at.number_input(key="live_alpha").value == 2.0
    assert at.number_input(key="live_max_tokens").value == DEMO.max_new_tokens  # 500 -> 96
    assert any("500" in t and "96" in t for t in at.first_toasts)
    assert at.session_state["live_prompt"] == "hello"
    assert at.session_state["live_prompt_mode"] == "Free text"
    at = visit({"model": "toy-random", "schedule": "linear", "n": "999"}, LIVE)
    assert at.selectbox(key="live_schedule").value == "linear"
    assert at.number_input(key="live_n").value == DEMO.max_particles


def test_a_chopthin_link_fills_eta_clamped_to_its_bound_and_the_run_uses_it():
    at = visit({"model": "toy-trap", "resampling": "chopthin", "chopthin_eta": "2"}, LIVE)
    assert at.selectbox(key="live_resampling").value == "chopthin"
    eta = at.number_input(key="live_chopthin_eta")
    assert eta.value == 4.0 and not eta.disabled  # Gandy & Lau's bound: η >= 4
    assert any("chopthin η" in t and "got 2" in t for t in at.first_toasts)
    at = visit({"model": "toy-trap", "chopthin_eta": "8"}, LIVE)
    assert at.number_input(key="live_chopthin_eta").value == 8.0
    assert at.number_input(key="live_chopthin_eta").disabled  # systematic: η unused


@pytest.mark.parametrize(
    "key", ["![](http://127.0.0.1:8765/pix.png)", "[Session expired: log in](//ev.il)"]
)
def test_hostile_link_keys_reach_the_toast_escaped(key):
    at = visit({key: "1"})
    toasts = at.first_toasts
    assert toasts, "the unknown key is reported"
    for text in toasts:
        assert "](" not in text and "![" not in text  # no image, no link survives
        assert "\\[" in text


def test_a_token_in_a_link_is_offered_never_adopted_and_leaves_the_address_bar():
    token = "attackerChosenToken02"
    at = visit({"owner": token, "model": "toy-trap"}, LIVE)
    assert at.session_state["owner"] != token and query.valid_owner(at.session_state["owner"])
    assert "owner" not in at.query_params
    assert at.session_state["owner_offer"] == token
    at.run()  # a rerun does not adopt it either
    assert at.session_state["owner"] != token
    at.button(key="owner_import").click().run()  # the visitor's explicit import step
    assert at.session_state["owner"] == token and "owner_offer" not in at.session_state
    assert "owner" not in at.query_params


def test_without_a_link_the_server_issues_a_token_not_shown_in_the_address_bar():
    at = visit({})
    assert query.valid_owner(at.session_state["owner"])
    assert "owner" not in at.query_params and not at.button


def test_a_share_link_never_carries_the_owner_token():
    link = query.share_link(
        SMCConfig(n_particles=8),
        "toy-trap",
        "hi",
    )
    assert link.startswith("live_smc?") and "owner" not in link and "n=8" in link
    parsed = query.parse_query_params(
        dict(p.split("=", 1) for p in link.split("?", 1)[1].split("&")), DEMO
    )
    assert parsed.config["n_particles"] == 8 and parsed.model == "toy-trap"


def test_demo_mode_hides_error_details():
    visit({})
    assert streamlit.config.get_option("client.showErrorDetails") == "none"


def test_a_page_that_raises_shows_one_escaped_line_not_a_traceback(monkeypatch):
    from powersmc_core.plotting import live as charts

    def boom(*_a, **_k):
        raise OverflowError("math range error at ![](http://ev.il/x.png)")

    at = visit({}, "app_pages/runs.py")
    monkeypatch.setattr(charts, "live_figures", boom)
    from explorer import history

    run_state = at.session_state
    entry = _toy_entry()
    history.remember(run_state, entry)
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("OverflowError" in e and "](" not in e for e in errors), errors
    assert visitor_message(RuntimeError("/srv/app/x.py secret")).count("/srv") == 0


def _toy_entry():
    from explorer.live import LiveRun
    from powersmc_core import SMCConfig

    run = LiveRun(
        load_model("toy-trap"),
        SMCConfig(n_particles=4, max_new_tokens=3),
        [],
        model_name="toy-trap",
        prompt_label="",
    )
    for _ in run.updates():
        pass
    return run.finish()


# ---- per-visitor limits ----------------------------------------------------------------
def test_tabs_of_one_browser_are_one_visitor_and_a_forged_cookie_is_only_a_session():
    signed = issue_visitor_cookie()
    token, signature = signed.split(".")
    one = visitor_key({VISITOR_COOKIE: signed}, "s1")
    assert one == visitor_key({VISITOR_COOKIE: signed}, "s2") != visitor_key({}, "s1")
    assert one.startswith("visitor:") and token not in one  # only a hash is kept
    forged = [f"{token}.{signature[:-1]}x", f"{token}x.{signature}", token, "", "a.b.c"]
    for value in [*forged, f"{secrets_token()}.{signature}"]:
        assert visitor_key({VISITOR_COOKIE: value}, "s1") == "session:s1"
    # Streamlit's XSRF cookie is minted by the client at will: never an identity.
    assert visitor_key({"_streamlit_xsrf": "2|00|11|1700000000"}, "s1") == "session:s1"


def secrets_token() -> str:
    import secrets

    return secrets.token_urlsafe(18)


def test_a_second_tab_of_the_same_visitor_is_told_a_run_is_in_progress():
    limiter = RunLimiter(max_concurrent=2, max_queue=4)
    model = load_model("toy-trap")
    same = visitor_key({VISITOR_COOKIE: issue_visitor_cookie()}, "tab1")
    tab1, tab2 = (Gate(DEMO, limiter=limiter, visitor=same) for _ in range(2))
    other = Gate(DEMO, limiter=limiter, visitor="session:someone-else")
    requested = {"alpha": 2.0, "n_particles": 4, "max_new_tokens": 2}
    first = tab1.live(model, "toy-trap", requested, [], "", "EOS only")
    with tab1.running(first):
        second = tab2.live(model, "toy-trap", requested, [], "", "EOS only")
        with pytest.raises(LimitError, match="already in progress"), tab2.running(second):
            pass
        with other.running(other.live(model, "toy-trap", requested, [], "", "EOS only")):
            assert limiter.stats()["active"] == 2  # the other visitor got the second slot


# ---- stop strings ----------------------------------------------------------------------
def test_a_non_ascii_stop_string_matches():
    from explorer.inputs import make_stop

    rule = make_stop("stop strings", "é,\\n\\n")
    rule.reset(3)
    assert rule.update(["caf", "x", "a\n"]) == [False, False, False]
    assert rule.update(["é", "y", "\n"]) == [True, False, True]  # "é" was "Ã©" before


@pytest.mark.parametrize(
    ("field", "message"),
    [
        (",".join(["ab"] * 2_000_000), "characters; the limit is"),  # the issue's 2M strings
        (",".join(["ab"] * 17), "17 given; the limit is 16"),
        ("x" * 65, "longer than 64"),
    ],
)
def test_stop_strings_are_bounded_in_count_and_length(field, message):
    from explorer.inputs import InputError, make_stop

    with pytest.raises(InputError, match=message):
        make_stop("stop strings", field)
    with pytest.raises(InputError, match=message):
        Gate(DEMO).live(
            load_model("toy-trap"), "toy-trap", {"n_particles": 2}, [], "", "stop strings", field
        )


def test_the_live_run_time_cap_holds_within_one_step():
    """Steps between two redraws are checked too: the run stops at the first step past it."""
    clock = [0.0]
    limiter = RunLimiter(max_concurrent=1, max_run_s=1.0, clock=lambda: clock[0])
    gate = Gate(DEMO, limiter=limiter, visitor="session:cap")
    admitted = gate.live(
        load_model("toy-trap"),
        "toy-trap",
        {"n_particles": 4, "max_new_tokens": 8},
        [],
        "",
        "EOS only",
    )
    admitted.live.throttle.poll = lambda now: None  # never redraw: only the step check can stop
    step = admitted.live.step

    def slow_step():
        clock[0] += 0.6  # every step costs 0.6 s of the 1 s cap
        return step()

    admitted.live.step = slow_step
    with gate.running(admitted) as run:
        events = list(run.events())
    assert run.timed_out and events == []
    assert len(admitted.live.records) == 2  # 1.2 s > 1 s: stopped after the 2nd step


def test_share_this_run_gives_a_settings_link_without_the_owner_token():
    at = visit({"model": "toy-trap"}, LIVE)
    at.button(key="live_run").click().run()
    at.button(key="live_share").click().run()
    assert not at.exception
    links = [c.value for c in at.code if str(c.value).startswith("live_smc?")]
    assert links and "model=toy-trap" in links[0]
    assert at.session_state["owner"] not in links[0] and "owner" not in links[0]
