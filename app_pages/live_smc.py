"""Live SMC: run Power-SMC and watch the particle system evolve token by token.

Run asks `explorer.gate` for an admitted run (settings clamped to the caps, prompt
encoded) that lives in session state; the script iterates it inside the gate's queue
slot and redraws on an adaptive clock. Stop reruns the script: the run is
interrupted at its next redraw, then finished here with every step decoded so far.
A rerun for any other reason (a widget change) resumes the same run.
"""

import streamlit as st

from explorer import answer_view, history, inputs, models, presets, query
from explorer.gate import InputError, LimitError, open_gate
from powersmc_core.engine.config import SCHEDULES
from powersmc_core.engine.resampling import RESAMPLERS
from powersmc_core.plotting import live as charts

state = st.session_state
gate = open_gate(state)
st.title("Live Power-SMC")
st.caption(
    "N particles decode in one batch from q ∝ p^(1/τ_t); importance weights correct each token "
    "towards p^α_t, and the particles are resampled when the ESS drops below κ·N."
)
st.caption(
    "Target: π_α(y|x) ∝ p(y|x)^α over *complete* continuations y, those that end by EOS, at "
    "max new tokens, or by the stop rule. Under a stop rule the target is the α-power of the "
    "*stopped* law (a stopped y weighs p(y|x)^α), not π_α then cut at the stop: the two are "
    "compared exactly in the Theory lab."
)

model_name = state.get("model_name", models.DEFAULT_MODEL)
try:
    with st.spinner(
        f"Loading model {model_name!r} (the first load of the embedded model takes ~20 s)…"
    ):
        model = models.load_cached(model_name, state.get("model_backend"))
except (models.ModelLoadError, ValueError) as err:
    st.error(models.load_failure(model_name, err))
    st.stop()
st.caption(inputs.escape_markdown(models.backend_caption(model)))
toy = models.is_toy(model)

# ---- prompt ------------------------------------------------------------------------------
reference = None
if toy:
    prefixes = presets.toy_prefix_options(model)
    prefix = st.selectbox(
        "Prompt (token prefix of the toy model)",
        prefixes,
        format_func=lambda p: presets.prefix_label(model, p),
        key="live_toy_prefix",
    )
    prompt, prompt_label = prefix, presets.prefix_label(model, prefix)
    reference = presets.toy_reference(model, prefix)
    st.caption(f"Known answer (exact mode of π_α for every α > 0): **{reference}**")
else:
    mode = st.radio(
        "Prompt", ["Preset problem", "Free text"], horizontal=True, key="live_prompt_mode"
    )
    if mode == "Preset problem":
        names = [p.name for p in presets.TEXT_PRESETS]
        preset = presets.TEXT_PRESETS[names.index(st.selectbox("Preset", names, key="live_preset"))]
        prompt, reference = preset.prompt, preset.answer
        st.caption(f"{preset.prompt}  — known answer: **{preset.answer}**")
    else:
        prompt = st.text_area("Prompt", "Write a haiku about particles.", key="live_prompt")
    prompt_label = prompt if isinstance(prompt, str) else str(prompt)

# ---- settings ----------------------------------------------------------------------------
with st.expander("Sampler settings", expanded=True):
    c1, c2, c3, c4 = st.columns(4)
    alpha = c1.number_input(
        "α (power)", value=4.0, step=0.5, key="live_alpha", help="Target p^α; α > 1 sharpens."
    )
    n_particles = c2.number_input(
        "N (particles)",
        value=8 if toy else 4,
        step=1,
        key="live_n",
        help=f"1 to {gate.settings.max_particles}",
    )
    max_new_tokens = c3.number_input(
        "max new tokens", value=8 if toy else 24, step=8, key="live_max_tokens"
    )
    seed = c4.number_input("seed", value=0, step=1, key="live_seed")
    c1, c2, c3, c4 = st.columns(4)
    schedule = c1.selectbox("bridging schedule", SCHEDULES, key="live_schedule")
    ramp_tokens = c2.number_input(
        "ramp tokens (linear)", value=16, step=1, key="live_ramp", disabled=schedule != "linear"
    )
    alpha_start = c3.number_input(
        "α start (bridging)",
        value=1.0,
        step=0.5,
        key="live_alpha_start",
        disabled=schedule == "constant",
    )
    target_ess = c4.slider(
        "target ESS/N (adaptive)",
        0.05,
        1.0,
        0.5,
        key="live_target_ess",
        disabled=schedule != "adaptive",
    )
    c1, c2, c3, c4 = st.columns(4)
    kappa = c1.slider(
        "ESS threshold κ",
        0.0,
        1.0,
        0.5,
        step=0.05,
        key="live_kappa",
        help="Resample when ESS < κ·N",
    )
    resampling = c2.selectbox(
        "resampling",
        sorted(RESAMPLERS),
        index=sorted(RESAMPLERS).index("systematic"),
        key="live_resampling",
    )
    block_size = c3.number_input(
        "block size",
        value=1,
        step=1,
        key="live_block",
        help="Resampling is considered every block_size tokens",
    )
    custom_tau = c4.checkbox(
        "custom proposal τ",
        key="live_tau_custom",
        help="Default τ_t = 1/α_t (minimum-variance proposal)",
    )
    tau = None
    if custom_tau:
        tau = c4.number_input("proposal temperature τ", value=0.5, step=0.05, key="live_tau")
        st.warning(
            "The proposal temperature differs from the default 1/α_t: weights stay correct, but "
            "the incremental-weight variance is no longer minimal, so expect lower ESS."
        )
    c1, c2 = st.columns([1, 3])
    stop_rule = c1.selectbox(
        "stop rule", inputs.STOP_RULES, index=1 if not toy else 0, key="live_stop_rule"
    )
    stop_strings = c2.text_input(
        "stop strings (comma-separated)",
        "\\n\\n",
        max_chars=inputs.MAX_STOP_FIELD_CHARS,
        key="live_stop_strings",
        disabled=stop_rule != "stop strings",
    )

b1, b2, _ = st.columns([1, 1, 6])
run_clicked = b1.button("Run", type="primary", key="live_run", icon=":material/play_arrow:")
stop_clicked = b2.button("Stop", key="live_stop", icon=":material/stop:")
status = st.empty()

active = state.get("live_active")
if stop_clicked and active is not None:
    entry = active.finish()
    del state["live_active"]
    active = None
    if entry.records:  # a Stop before the first token leaves nothing to keep
        history.remember(state, entry)
        state["live_last"] = entry
    status.info(f"Stopped at step {len(entry.records)}; the decoded part is kept (see Runs).")

if run_clicked:
    requested = dict(
        alpha=alpha,
        n_particles=n_particles,
        ess_threshold=kappa,
        resampling=resampling,
        schedule=schedule,
        alpha_start=alpha_start,
        ramp_tokens=ramp_tokens,
        target_ess=target_ess,
        proposal_temperature=tau,
        block_size=block_size,
        max_new_tokens=max_new_tokens,
        seed=seed,
    )
    try:
        admitted = gate.live(
            model,
            model_name,
            requested,
            prompt,
            prompt_label,
            stop_rule,
            stop_strings,
            reference=reference,
        )
    except InputError as err:
        st.error(f"Invalid settings: {inputs.escape_markdown(err)}")
    else:
        for note in admitted.notes:
            st.warning(inputs.escape_markdown(note))
        if active is not None and active.live.records:  # a new run supersedes one in flight
            history.remember(state, active.finish())
        active = state["live_active"] = admitted

# ---- charts ------------------------------------------------------------------------------
row1 = st.columns(2)
row2 = st.columns(2)
slots = {
    "ess": row1[0].empty(),
    "schedule": row1[1].empty(),
    "weights": row2[0].empty(),
    "heatmap": row2[1].empty(),
    "renyi": st.empty(),
}
row4 = st.columns(2)
slots["genealogy"] = row4[0].empty()
table_slot = row4[1].empty()
label = models.token_labeler(model)


def draw(records, config, heavy, tag):
    figures = charts.live_figures(
        records, config["ess_threshold"], config["alpha"], label, heavy=heavy
    )
    for name, fig in figures.items():
        slots[name].plotly_chart(fig, key=f"live_{name}_{tag}")
    with table_slot.container():
        table = charts.particle_table(records[-1], top_k=50)
        frame = table.frame
        st.markdown(f"**Particles at step {records[-1].step}**, sorted by weight")
        leader = inputs.escape_markdown(repr(frame["text"][0]))
        st.caption(f"Leader, particle {frame['particle'][0]}: {leader}")
        st.dataframe(
            charts.style_particle_table(frame),
            hide_index=True,
            height=min(560, 38 + 35 * len(frame)),
            column_config=charts.PARTICLE_COLUMNS,
        )
        if table.n_more:
            st.caption(table.more_caption)


def show_summary(entry):
    row = history.run_summary(entry)
    if st.button("Share this run", key="live_share", icon=":material/share:"):
        st.caption("A link to these settings (never your run history): append it to this site.")
        st.code(query.entry_share_link(entry), language=None)
    st.subheader("Chosen completion" + (" (stopped early)" if entry.status == "stopped" else ""))
    st.code(row["completion"] or "(empty)", language=None, wrap_lines=True)
    m = st.columns(6)
    m[0].metric("log p(y|x)", f"{row['log p']:.2f}")
    m[1].metric("log Ẑ", f"{row['log Z-hat']:.2f}")
    m[2].metric("latency (sampling)", f"{row['latency [s]']:.2f} s")
    m[3].metric("tokens/s (per particle)", f"{row['tokens/s']:.1f}")
    m[4].metric("resampling events", row["resamples"])
    if row["correct"] is not None:
        verdict = "✓ correct" if row["correct"] else f"✗ wrong (expected {entry.reference})"
        m[5].metric("answer", str(row["answer"]), verdict, delta_color="off", delta_arrow="off")
    else:
        m[5].metric("min ESS", f"{row['min ESS']:.1f}")
    rule = st.selectbox(
        "answer rule", answer_view.RULES, 1, answer_view.RULE_LABELS.get, key="live_answer_rule"
    )
    if (view := answer_view.answer_view(entry, rule)) is not None:
        st.markdown(view.headline)
        st.plotly_chart(view.figure, key=f"live_answers_{entry.run_id}")


if active is not None:
    cfg = active.config.to_dict()
    total = cfg["max_new_tokens"]

    run = None
    try:
        # The gate holds a queue slot (one run per visitor), stops at the run-time cap and
        # journals the run (finished, stopped or interrupted by a crash).
        with gate.running(active, lambda *w: status.info(gate.queue_message(*w))) as run:
            for draws, update in enumerate(run.events()):
                rec = update.record
                status.progress(
                    min(1.0, rec.step / total),
                    text=f"step {rec.step}/{total} · ESS {rec.ess:.1f}/{rec.n_particles} · "
                    f"{rec.n_lineages} lineages · {rec.elapsed:.1f} s",
                )
                draw(update.records, cfg, update.kind == "full", f"{active.live.run_id}_{draws}")
    except LimitError as err:  # busy visitor, full queue or queue timeout: nothing lost
        status.warning(inputs.escape_markdown(err))
        st.stop()
    entry = active.finish()
    history.remember(state, entry)
    state["live_last"] = entry
    del state["live_active"]
    if run is not None and run.timed_out:
        status.warning(
            f"Stopped at the demo's run-time cap after {len(entry.records)} steps; "
            f"the decoded part is kept (run {entry.run_id})."
        )
    else:
        status.success(
            f"Finished: {len(entry.records)} steps in {entry.compute_s:.2f} s of sampling "
            f"({entry.result.elapsed:.2f} s with live charts); run {entry.run_id} saved to Runs."
        )
    show_summary(entry)
elif state.get("live_last") is not None:
    entry = state["live_last"]
    if entry.records:
        if entry.model != model_name:  # drawn with another model: token ids cannot be named
            label = None
        draw(entry.records, entry.config, True, f"{entry.run_id}_static")
        show_summary(entry)
elif not stop_clicked:
    status.info("Choose settings and press Run: charts update live while the particles decode.")
