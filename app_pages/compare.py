"""Compare: one prompt through plain decoding, low temperature, Power-SMC, MH and best-of-N.

Both modes (one prompt, a graded task set) run through `explorer.gate`: settings are
clamped to the caps with a message, and the run holds a queue slot. A comparison is kept
in session state (`comparison.CompareSession`): Stop keeps the methods that finished,
any other rerun resumes it; each method gets a share of the run-time cap.
"""

import streamlit as st

from explorer import comparison, inputs, models, page_kit
from explorer import session_keys as keys
from explorer.gate import LimitError, open_gate
from explorer.page_kit import knob_input
from explorer.views import comparison_results, run_comparison

state = st.session_state
gate = open_gate(state)
st.title("Compare methods")
st.caption(
    "The same prompt through every sampler on the same model: latency (and its ratio to plain "
    "decoding), speed, the sequence log-likelihood per token of the returned completion, and the "
    "answer, graded when the prompt is a preset with a known answer (only if it ended). Each "
    "method gets a share of the run-time cap (at least an equal share of what is left, more "
    "when the methods before it were quick); Stop keeps what finished."
)

model, model_name = page_kit.load_model_or_stop()
toy = models.is_toy(model)
picked = page_kit.pick_prompt(
    model,
    "cmp",
    toy_label="Prompt (token prefix)",
    toy_note="Known answer (exact mode of π_α)",
    default_text="Name three prime numbers.",
    modes=False,
)
prompt, reference = picked.prompt, picked.reference

defaults = comparison.page_defaults(toy, gate.settings.enabled)  # demo: finishes in the cap
c1, c2, c3, c4, c5, c6 = st.columns(6)
requested = {
    "alpha": knob_input(c1, "alpha", "α (power)", "cmp_alpha", 4.0, 0.5),
    "n_particles": knob_input(
        c2, "n_particles", "N (SMC particles, best-of-N)", "cmp_n", defaults["n_particles"], 1
    ),
    "max_new_tokens": knob_input(
        c3, "max_new_tokens", "max new tokens", "cmp_max_tokens", defaults["max_new_tokens"], 8
    ),
    "seed": knob_input(c5, "seed", "seed", "cmp_seed", 0, 1),
}
mh_steps = c4.number_input(
    "MH steps per block", value=defaults["mh_steps"], step=1, key="cmp_mh_steps"
)
repeats = c6.number_input(
    "repeats (timing)", value=1, step=1, key="cmp_repeats", help=comparison.REPEATS_HELP
)
offered, chosen, not_offered = comparison.method_choices(model)
methods = st.multiselect(
    "Methods",
    offered,
    default=chosen,
    format_func=comparison.COMPARE_METHODS.get,
    key="cmp_methods",
    help="Rollout methods (look-ahead SMC, rollout power sampling) are opt-in: each token "
    "costs K·M·H rollout forwards.",
)
for note in not_offered:
    st.caption(inputs.escape_markdown(f"Not offered on this model: {note}"))
requested |= page_kit.rollout_settings(methods, "cmp", block_size=True)  # shown when chosen
stop_rule = st.selectbox("stop rule", inputs.STOP_RULES, index=0 if toy else 1, key="cmp_stop_rule")

# The comparison in flight lives in session state: Stop (a rerun) keeps what finished,
# any other rerun resumes it; the gate frees its queue slot whichever way it ends.
session = comparison.CompareSession(state)
b1, b2, _ = st.columns([2, 1, 5])
run_clicked = b1.button("Run comparison", type="primary", key="cmp_run")
stop_clicked = b2.button("Stop", key="cmp_stop", icon=":material/stop:")
queue_box = st.empty()
if stop_clicked and session.stop() is None:
    queue_box.info("No comparison is running.")
if run_clicked:
    admitted = page_kit.admit(
        gate.compare, model, model_name, requested, prompt, methods, mh_steps, stop_rule,
        repeats, reference=reference,
    )  # fmt: skip
    if admitted is not None:
        session.start(admitted)
if session.active is not None:
    run_comparison(gate, session, queue_box)
if (last := session.last) is not None:
    comparison_results(last)

# ---- task mode: a small graded task set through the evaluation harness ----------------
api = comparison.evaluation_api()
if api is not None:
    st.divider()
    st.subheader("Task set")
    st.caption(
        "Every selected method on a small generated task set with exact answers, through the "
        "same harness as `python -m powersmc_core eval`: accuracy with a Wilson 95% interval, "
        "log-likelihood per token, latency and its ratio to plain decoding."
    )
    t1, t2, t3 = st.columns(3)
    if toy:
        task = t1.selectbox("Task", ["toy"], key="cmp_task")
        t1.caption("Toy task: the prompt above; the answer is the exact mode of π_α.")
    else:
        task = t1.selectbox("Task", ["arithmetic", "word", "mixed"], key="cmp_task")
    n_problems = t2.number_input("problems", value=3, step=1, key="cmp_task_n")
    difficulty = t3.selectbox("difficulty", [1, 2, 3], key="cmp_task_difficulty")
    if st.button("Run task set", key="cmp_task_run"):
        queue_box = st.empty()
        bar = st.progress(0.0, text="starting…")

        def advance(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=f"{done} / {total} runs")

        admitted = page_kit.admit(
            gate.task_set, model, model_name, requested, methods, mh_steps, n_problems, task,
            difficulty, toy_prompt=prompt if toy else None, toy_answer=reference if toy else None,
            progress=advance, what="task settings",
        )  # fmt: skip
        if admitted is not None:
            try:
                with gate.running(admitted, page_kit.on_wait(gate, queue_box)) as run:
                    done = next(iter(run.events()), None)  # one TaskRows, or None at the cap
            except LimitError as err:
                st.warning(inputs.escape_markdown(err))
            else:
                if done is None:
                    st.warning(
                        f"Stopped at the run-time cap ({gate.settings.max_run_seconds:g} s); "
                        "choose fewer problems or methods."
                    )
                else:
                    summary = api.summary_table(done.rows)
                    state[keys.TASK_LAST] = {"rows": done.rows, "summary": summary}
    task_last = state.get(keys.TASK_LAST)
    if task_last is not None:
        st.dataframe(task_last["summary"], hide_index=True, key="cmp_task_table")
        st.plotly_chart(
            api.accuracy_latency_figure(task_last["summary"]), key="cmp_task_accuracy_latency"
        )
        with st.expander("Every graded run"):
            st.dataframe(task_last["rows"], hide_index=True, key="cmp_task_rows")
