"""Compare: one prompt through plain decoding, low temperature, Power-SMC, MH and best-of-N.

Both modes (one prompt, a graded task set) run through `explorer.gate`: settings are
clamped to the caps with a message, and the run holds a queue slot.
"""

import streamlit as st

from explorer import comparison, inputs, models, presets
from explorer.gate import InputError, LimitError, open_gate
from powersmc_core.plotting import live as charts

state = st.session_state
gate = open_gate(state)
st.title("Compare methods")
st.caption(
    "The same prompt through every sampler on the same model: latency (and its ratio to plain "
    "decoding), speed, the sequence log-likelihood per token of the returned completion, and the "
    "answer, graded when the prompt is a preset with a known answer."
)

model_name = state.get("model_name", models.DEFAULT_MODEL)
try:
    with st.spinner(f"Loading model {model_name!r}…"):
        model = models.load_cached(model_name, state.get("model_backend"))
except (models.ModelLoadError, ValueError) as err:
    st.error(models.load_failure(model_name, err))
    st.stop()
st.caption(inputs.escape_markdown(models.backend_caption(model)))
toy = models.is_toy(model)

if toy:
    prefix = st.selectbox(
        "Prompt (token prefix)",
        presets.toy_prefix_options(model),
        format_func=lambda p: presets.prefix_label(model, p),
        key="cmp_toy_prefix",
    )
    prompt, reference = prefix, presets.toy_reference(model, prefix)
    st.caption(f"Known answer (exact mode of π_α): **{reference}**")
else:
    names = [p.name for p in presets.TEXT_PRESETS] + ["Free text"]
    choice = st.selectbox("Prompt", names, key="cmp_preset")
    if choice == "Free text":
        prompt, reference = (
            st.text_area("Prompt", "Name three prime numbers.", key="cmp_prompt"),
            None,
        )
    else:
        preset = presets.TEXT_PRESETS[names.index(choice)]
        prompt, reference = preset.prompt, preset.answer
        st.caption(f"{preset.prompt}  — known answer: **{preset.answer}**")

c1, c2, c3, c4, c5 = st.columns(5)
alpha = c1.number_input("α (power)", value=4.0, step=0.5, key="cmp_alpha")
n_particles = c2.number_input(
    "N (SMC particles, best-of-N)", value=8 if toy else 4, step=1, key="cmp_n"
)
max_new_tokens = c3.number_input(
    "max new tokens", value=8 if toy else 32, step=8, key="cmp_max_tokens"
)
mh_steps = c4.number_input("MH steps per block", value=4, step=1, key="cmp_mh_steps")
seed = c5.number_input("seed", value=0, step=1, key="cmp_seed")
methods = st.multiselect(
    "Methods",
    list(comparison.COMPARE_METHODS),
    default=list(comparison.COMPARE_METHODS),
    format_func=comparison.COMPARE_METHODS.get,
    key="cmp_methods",
)
stop_rule = st.selectbox("stop rule", inputs.STOP_RULES, index=0 if toy else 1, key="cmp_stop_rule")


requested = dict(alpha=alpha, n_particles=n_particles, max_new_tokens=max_new_tokens, seed=seed)
if st.button("Run comparison", type="primary", key="cmp_run"):
    queue_box = st.empty()
    try:
        admitted = gate.compare(model, model_name, requested, prompt, methods, mh_steps, stop_rule)
        for note in admitted.notes:
            st.warning(inputs.escape_markdown(note))
        runs = []
        with (
            st.status("Running the methods…", expanded=True) as box,
            gate.running(admitted, lambda *w: queue_box.info(gate.queue_message(*w))) as run,
        ):
            progress = st.progress(0.0)
            for k, result in enumerate(run.events()):
                runs.append(result)
                st.write(f"{comparison.COMPARE_METHODS[result[0]]}: {result[2]:.2f} s")
                progress.progress((k + 1) / len(methods))
            done = f"Ran {len(runs)} methods" + (" (run-time cap reached)" if run.timed_out else "")
            box.update(label=done, state="complete", expanded=False)
    except InputError as err:
        st.error(f"Invalid settings: {inputs.escape_markdown(err)}")
    except LimitError as err:
        st.warning(inputs.escape_markdown(err))
    else:
        if run.timed_out:
            st.warning(
                f"Stopped at the run-time cap ({gate.settings.max_run_seconds:g} s) after "
                f"{len(runs)} of {len(methods)} methods."
            )
        state["cmp_last"] = {
            "frame": comparison.comparison_frame(runs, model, reference),
            "runs": runs,
            "model": model_name,
        }

last = state.get("cmp_last")
if last is not None:
    frame = last["frame"]
    st.subheader(f"Results on {inputs.escape_markdown(last['model'])}")
    st.dataframe(
        frame.drop(columns=["key"]),
        hide_index=True,
        column_config={
            "latency [s]": st.column_config.NumberColumn(format="%.3f"),
            "× plain": st.column_config.NumberColumn(format="%.1f×"),
            "tokens/s": st.column_config.NumberColumn(format="%.1f"),
            "log p": st.column_config.NumberColumn(format="%.2f"),
            "log p / token": st.column_config.NumberColumn(format="%.3f"),
        },
        key="cmp_table",
    )
    left, right = st.columns(2)
    left.plotly_chart(charts.loglik_per_token_figure(frame), key="cmp_loglik")
    traces = {
        f"MH (final acceptance {r.extras.get('acceptance_rate', float('nan')):.2f})": r.extras[
            "acceptance_trace"
        ]
        for m, r, _ in last["runs"]
        if m == "mh" and r.extras
    }
    right.plotly_chart(charts.mh_acceptance_figure(traces), key="cmp_mh")

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

        try:
            admitted = gate.task_set(
                model,
                model_name,
                requested,
                methods,
                mh_steps,
                n_problems,
                task,
                difficulty,
                toy_prompt=prompt if toy else None,
                toy_answer=reference if toy else None,
                progress=advance,
            )
            for note in admitted.notes:
                st.warning(inputs.escape_markdown(note))
            with gate.running(admitted, lambda *w: queue_box.info(gate.queue_message(*w))) as run:
                rows = next(iter(run.events()), None)
        except InputError as err:
            st.error(f"Invalid task settings: {inputs.escape_markdown(err)}")
        except LimitError as err:
            st.warning(inputs.escape_markdown(err))
        else:
            if rows is None:
                st.warning(
                    f"Stopped at the run-time cap ({gate.settings.max_run_seconds:g} s); "
                    "choose fewer problems or methods."
                )
            else:
                state["cmp_task_last"] = {"rows": rows, "summary": api.summary_table(rows)}
    task_last = state.get("cmp_task_last")
    if task_last is not None:
        st.dataframe(task_last["summary"], hide_index=True, key="cmp_task_table")
        st.plotly_chart(
            api.accuracy_latency_figure(task_last["summary"]), key="cmp_task_accuracy_latency"
        )
        with st.expander("Every graded run"):
            st.dataframe(task_last["rows"], hide_index=True, key="cmp_task_rows")
