"""The pages' shared pieces: load the model, pick a prompt, the settings form, gated runs.

A page is a flat script: inputs -> guard -> call -> render. What several pages would
otherwise copy lives here (and it is the one ``explorer`` module besides ``views``
that draws Streamlit widgets):

* ``load_model_or_stop``: the sidebar's model, loaded once per server, or one error
  message and ``st.stop()``;
* ``pick_prompt``: a toy prefix, a preset problem or free text, with its known answer;
* ``knob_input`` / ``live_settings``: widgets for ``SMCConfig`` fields, kind and help
  read from the library's knobs (``config_knobs``), range from the mode's caps
  (``inputs.field_bounds``); the gate clamps again (a scripted client can skip the
  widgets) and says what it changed (``show_notes``);
* ``admit``, ``on_wait`` and ``run_with_status``: ask the gate for an admission (an
  ``Invalid settings`` error otherwise), report the queue while a run waits for its
  slot, and run it in a status box with one line and a progress tick per event.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from explorer import inputs, models, presets, query
from explorer import session_keys as keys
from explorer.gate import Admission, Gate, InputError, LimitError
from explorer.settings import DemoSettings, demo_settings
from powersmc_core.engine.config import config_knobs, range_message
from powersmc_core.models.base import LanguageModel
from powersmc_core.samplers.registry import unavailable

__all__ = [
    "Prompt",
    "Ran",
    "admit",
    "clamp_state",
    "knob_input",
    "live_defaults",
    "live_settings",
    "load_model_or_stop",
    "on_wait",
    "pick_prompt",
    "reset_for_model_kind",
    "run_with_status",
    "show_notes",
]


def load_model_or_stop(note: str = "") -> tuple[LanguageModel, str]:
    """The sidebar's model and its name, with the backend caption; on failure one error
    message and ``st.stop()``. ``note`` follows the spinner's "Loading model ..." text."""
    state = st.session_state
    name = state.get(keys.MODEL_NAME, models.DEFAULT_MODEL)
    try:
        with st.spinner(f"Loading model {name!r}{note}…"):
            model = models.load_cached(name, state.get(keys.MODEL_BACKEND))
    except (models.ModelLoadError, ValueError) as err:
        st.error(models.load_failure(name, err))
        st.stop()
    st.caption(inputs.escape_markdown(models.backend_caption(model)))
    return model, name


@dataclass(frozen=True)
class Prompt:
    """What to decode from: text or toy token ids, a label for history, a known answer."""

    prompt: str | Sequence[int]
    label: str
    reference: str | None = None


def pick_prompt(
    model: LanguageModel,
    prefix: str,
    *,
    toy_label: str,
    toy_note: str,
    default_text: str,
    modes: bool,
) -> Prompt:
    """A toy prefix (its exact answer shown), or a preset problem or free text.

    Widget keys are ``{prefix}_toy_prefix``, ``{prefix}_preset`` and ``{prefix}_prompt``;
    ``modes`` picks between presets and free text with a radio (``{prefix}_prompt_mode``),
    else "Free text" is the last entry of the preset list.
    """
    if models.is_toy(model):
        prefix_ids = st.selectbox(
            toy_label,
            presets.toy_prefix_options(model),
            format_func=lambda p: presets.prefix_label(model, p),
            key=f"{prefix}_toy_prefix",
        )
        reference = presets.toy_reference(model, prefix_ids)
        # The mode may be the empty completion: no answer to show, so none to grade.
        shown = "none (the mode is the empty completion)" if reference is None else reference
        st.caption(f"{toy_note}: **{shown}**")
        return Prompt(prefix_ids, presets.prefix_label(model, prefix_ids), reference)
    names = [p.name for p in presets.TEXT_PRESETS]
    if modes:
        mode = st.radio(
            "Prompt",
            ["Preset problem", "Free text"],
            horizontal=True,
            key=f"{prefix}_prompt_mode",
        )
        choice = (
            st.selectbox("Preset", names, key=f"{prefix}_preset") if mode != "Free text" else mode
        )
    else:
        choice = st.selectbox("Prompt", [*names, "Free text"], key=f"{prefix}_preset")
    if choice == "Free text":
        limit = _settings().max_prompt_chars
        text = st.text_area("Prompt", default_text, max_chars=limit, key=f"{prefix}_prompt")
        # Say now what the gate will strip (invisible characters); errors wait for Run.
        with contextlib.suppress(InputError):
            show_notes(inputs.sanitize_prompt(text, limit)[1])
        return Prompt(text, text if isinstance(text, str) else str(text))
    preset = presets.TEXT_PRESETS[names.index(choice)]
    st.caption(f"{preset.prompt}  — known answer: **{preset.answer}**")
    return Prompt(preset.prompt, preset.prompt, preset.answer)


# ---- settings from the library's knobs ---------------------------------------------------
def knob_input(
    where: Any,
    name: str,
    label: str,
    key: str,
    value: Any = None,
    step: Any = None,
    help: str | None = None,
    **options: Any,
) -> Any:
    """A widget for the ``SMCConfig`` field ``name``: a selectbox for a choice (the knob's
    choices), a slider for a fraction (a float the library bounds on both sides), else a
    number input. The help text is the knob's unless ``help`` is given.

    Numbers carry the mode's range (``inputs.field_bounds``, the table the gate and links
    clamp to), so the value on screen is the value that runs. A value in session state
    beyond it (a link, a scripted client) is clamped before the widget exists, with the
    gate's note: Streamlit would otherwise reset it to the default without a word.
    """
    knob = config_knobs()[name]
    help = help if help is not None else knob.help
    if knob.kind == "choice":
        choices = list(knob.choices)
        index = choices.index(value) if value in choices else 0
        return where.selectbox(label, choices, index=index, key=key, help=help, **options)
    low, high = inputs.field_bounds(_settings())[name]
    if value is not None:  # a page default over a tight cap (16 tokens) is capped silently
        value = min(max(value, low), high)
    note = clamp_state(st.session_state, key, name, low, high)
    if knob.low is not None and knob.high is not None and knob.kind == "float":
        widget = where.slider(label, low, high, value, step=step, key=key, help=help, **options)
    else:
        widget = where.number_input(
            label,
            min_value=low,
            max_value=high,
            value=value,
            step=step,
            key=key,
            help=help,
            **options,
        )
    if note is not None:
        where.warning(inputs.escape_markdown(note))
    return widget


def clamp_state(
    state: MutableMapping[str, Any], key: str, name: str, low: Any, high: Any
) -> str | None:
    """Clamp the widget value ``state[key]`` of field ``name`` into [low, high]; the note
    (``range_message``'s wording, as the gate writes it) or None when nothing changed.

    A value that is not a finite number is left to the widget (Streamlit refuses it) and
    to the gate, which says so at Run.
    """
    raw = state.get(key)
    number = inputs.as_int(raw) if isinstance(low, int) else inputs.as_float(raw)
    if number is None:
        return None
    bounded = min(max(number, low), high)
    if bounded == raw:
        return None
    state[key] = bounded
    if bounded == number:  # only the type changed (7.0 for an int widget): nothing to say
        return None
    return range_message(inputs.FIELD_LABELS.get(name, name), number, low, high, using=bounded)


def _settings() -> DemoSettings:
    """This server's settings (the gate's), read from the environment as ``open_gate`` does."""
    return demo_settings()


@dataclass(frozen=True)
class LiveSettings:
    """The Live SMC form: the requested config fields (before the gate's caps), the stop rule."""

    requested: dict[str, Any]
    stop_rule: str
    stop_strings: str
    method: str = "smc"  # Power-SMC or look-ahead SMC (``explorer.live.LIVE_METHODS``)


# The Live page's sampler choice; the rollout knobs' widget keys (``rollout_settings``).
LIVE_METHOD_LABELS = {"smc": "Power-SMC", "lookahead": "look-ahead SMC"}
LIVE_METHOD_KEY = "live_method"
ROLLOUT_KNOB_LABELS = {
    "rollout_k": ("K candidates", "Next tokens looked at per particle (default: the method's)"),
    "rollout_m": ("M rollouts", "Rollouts per candidate (default: the method's)"),
    "rollout_h": ("H depth", "Tokens per rollout (default: the method's)"),
}


def rollout_settings(
    methods: Sequence[str], prefix: str, block_size: bool = False
) -> dict[str, Any]:
    """K, M, H (and ε with look-ahead SMC) for the rollout methods among ``methods``; {} when
    none is selected (the widgets show only then). An empty box: the method's default (K = V
    on a toy for look-ahead, else 4/4/4; rollout 8/8/8); one boundary costs N·K·M·H forwards.
    ``block_size``: a block-size widget too (a page without one; SMC reads it as well)."""
    rollout = [m for m in methods if m in ("lookahead", "rollout")]
    if not rollout:
        return {}
    st.caption(
        "Rollout knobs: one block boundary costs up to N·K·M·H token forwards (the demo caps "
        "their product); leave a box empty for the method's default."
    )
    c = st.columns(4)
    values: dict[str, Any] = {
        name: knob_input(where, name, label, f"{prefix}_{name}", None, 1, help)
        for where, (name, (label, help)) in zip(c, ROLLOUT_KNOB_LABELS.items(), strict=False)
    }
    if "lookahead" in rollout:
        values["lookahead_epsilon"] = knob_input(
            c[3],
            "lookahead_epsilon",
            "look-ahead ε",
            f"{prefix}_lookahead_epsilon",
            0.1,
            0.01,
            "Share of Power-SMC's own proposal p^α in the look-ahead proposal",
        )
        if block_size:
            values["block_size"] = knob_input(
                st, "block_size", "block size (SMC, look-ahead)", f"{prefix}_block", 1, 1,
                "Boundaries (look-ahead and resampling) every block_size tokens",
            )  # fmt: skip
    return values


# Settings whose sensible value depends on the model's kind: a toy has no text to stop on
# and sequences of at most 8 tokens; an LLM is slow per step, so fewer particles; the
# presets' answers are \boxed{}. Widget key -> (label, SMCConfig field, toy, LLM default).
_KIND_DEFAULTS: dict[str, tuple[str, str | None, Any, Any]] = {
    query.LIVE_WIDGETS["n_particles"]: ("N", "n_particles", 8, 4),
    query.LIVE_WIDGETS["max_new_tokens"]: ("max new tokens", "max_new_tokens", 8, 24),
    query.LIVE_WIDGETS["schedule"]: ("schedule", None, "constant", "constant"),
    keys.LIVE_STOP_RULE: ("stop rule", None, inputs.STOP_RULES[0], inputs.STOP_RULES[1]),
}


def live_defaults(toy: bool) -> dict[str, Any]:
    """The Live form's defaults that depend on the model's kind, by widget key (numbers
    within the mode's caps: a default over a tight cap would be refused by its widget)."""
    bounds = inputs.field_bounds(_settings())
    values = {}
    for key, (_, name, toy_value, llm_value) in _KIND_DEFAULTS.items():
        value = toy_value if toy else llm_value
        if name is not None:
            low, high = bounds[name]
            value = min(max(value, low), high)
        values[key] = value
    return values


def reset_for_model_kind(state: MutableMapping[str, Any], toy: bool) -> str | None:
    """Reset the Live settings that do not carry over when the model's kind changes (toy
    <-> LLM) to the new kind's defaults; the line saying which, or None.

    The kind is remembered in session state: a rerun with the same kind resets nothing,
    and the first Live form of a session only records it, so a share link's values stay.
    """
    kind = "toy" if toy else "llm"
    last = state.get(keys.LIVE_MODEL_KIND)
    state[keys.LIVE_MODEL_KIND] = kind
    if last is None or last == kind:
        return None
    changed = []
    for key, value in live_defaults(toy).items():
        # A widget not drawn yet starts from the page default, which is the kind's already.
        if key in state and state[key] != value:
            state[key] = value
            changed.append(f"{_KIND_DEFAULTS[key][0]} to {value}")
    if not changed:
        return None
    model = "a toy model" if toy else "a language model"
    return f"Switched to {model}: reset {', '.join(changed)} (they do not carry over)."


def live_settings(
    toy: bool, max_particles: int, model: LanguageModel | None = None
) -> LiveSettings:
    """The Live SMC sampler settings (in an expander), every field keyed as a link sets it;
    settings of the other model kind are reset first (``reset_for_model_kind``). With
    ``model``, look-ahead SMC is offered where its rollouts can fork the model's state."""
    key = query.LIVE_WIDGETS  # SMCConfig field -> widget key (links fill these)
    reset = reset_for_model_kind(st.session_state, toy)
    if reset is not None:
        st.info(inputs.escape_markdown(reset), icon=":material/restart_alt:")
    default = live_defaults(toy)
    offered = ["smc"]
    if model is not None and unavailable("lookahead", model) is None:
        offered.append("lookahead")
    if st.session_state.get(LIVE_METHOD_KEY, "smc") not in offered:
        st.session_state[LIVE_METHOD_KEY] = "smc"  # a link's sampler this model cannot run
    with st.expander("Sampler settings", expanded=True):
        method = st.radio(
            "sampler",
            offered,
            format_func=LIVE_METHOD_LABELS.__getitem__,
            horizontal=True,
            key=LIVE_METHOD_KEY,
            help="Look-ahead SMC twists the proposal and the resampling by rollout estimates "
            "of each next token's future mass (K·M·H forwards per particle per boundary).",
        )
        c = st.columns(4)
        values = {
            "alpha": knob_input(
                c[0], "alpha", "α (power)", key["alpha"], 4.0, 0.5, "Target p^α; α > 1 sharpens."
            ),
            "n_particles": knob_input(
                c[1],
                "n_particles",
                "N (particles)",
                key["n_particles"],
                default[key["n_particles"]],
                1,
                f"1 to {max_particles}",
            ),
            "max_new_tokens": knob_input(
                c[2],
                "max_new_tokens",
                "max new tokens",
                key["max_new_tokens"],
                default[key["max_new_tokens"]],
                8,
            ),
            "seed": knob_input(c[3], "seed", "seed", key["seed"], 0, 1),
        }
        c = st.columns(4)
        schedule = values["schedule"] = knob_input(
            c[0], "schedule", "bridging schedule", key["schedule"], default[key["schedule"]]
        )
        values["ramp_tokens"] = knob_input(
            c[1],
            "ramp_tokens",
            "ramp tokens (linear)",
            key["ramp_tokens"],
            16,
            1,
            disabled=schedule != "linear",
        )
        values["alpha_start"] = knob_input(
            c[2],
            "alpha_start",
            "α start (bridging)",
            key["alpha_start"],
            1.0,
            0.5,
            disabled=schedule == "constant",
        )
        values["target_ess"] = knob_input(
            c[3],
            "target_ess",
            "target ESS/N (adaptive)",
            key["target_ess"],
            0.5,
            disabled=schedule != "adaptive",
        )
        c = st.columns(4)
        values["ess_threshold"] = knob_input(
            c[0],
            "ess_threshold",
            "ESS threshold κ",
            key["ess_threshold"],
            0.5,
            0.05,
            "Resample when ESS < κ·N",
        )
        values["resampling"] = knob_input(
            c[1], "resampling", "resampling", key["resampling"], "systematic"
        )
        values["chopthin_eta"] = knob_input(
            c[1],
            "chopthin_eta",
            "chopthin η (max/min weight)",
            key["chopthin_eta"],
            4.0,
            1.0,
            disabled=values["resampling"] != "chopthin",
        )
        values["block_size"] = knob_input(
            c[2],
            "block_size",
            "block size",
            key["block_size"],
            1,
            1,
            "Resampling is considered every block_size tokens",
        )
        values["proposal_temperature"] = None
        custom = c[3].checkbox(
            "custom proposal τ",
            key=keys.LIVE_TAU_CUSTOM,
            help="Default τ_t = 1/α_t (minimum-variance proposal)",
        )
        if custom:
            values["proposal_temperature"] = knob_input(
                c[3], "proposal_temperature", "proposal temperature τ", keys.LIVE_TAU, 0.5, 0.05
            )
            st.warning(
                "The proposal temperature differs from the default 1/α_t: weights stay correct, "
                "but the incremental-weight variance is no longer minimal, so expect lower ESS."
            )
        c1, c2 = st.columns([1, 3])
        stop_rule = c1.selectbox(
            "stop rule",
            inputs.STOP_RULES,
            index=inputs.STOP_RULES.index(default[keys.LIVE_STOP_RULE]),
            key=keys.LIVE_STOP_RULE,
        )
        stop_strings = c2.text_input(
            "stop strings (comma-separated)",
            "\\n\\n",
            max_chars=_settings().max_stop_chars,
            key=keys.LIVE_STOP_STRINGS,
            disabled=stop_rule != "stop strings",
        )
        if stop_rule == "stop strings":
            show_notes(inputs.clean_stop_strings(stop_strings)[1])
        values |= rollout_settings([method], "live")
    return LiveSettings(values, stop_rule, stop_strings, method)


# ---- through the gate --------------------------------------------------------------------
def show_notes(notes: Sequence[str]) -> None:
    """One warning per change the caps made (escaped: a note may quote visitor text)."""
    for note in notes:
        st.warning(inputs.escape_markdown(note))


def admit(
    request: Callable[..., Admission], *args: Any, what: str = "settings", **kwargs: Any
) -> Admission | None:
    """``request(*args, **kwargs)`` (a ``Gate`` method) and show what the caps changed; on
    ``InputError`` show "Invalid {what}: ..." and return None."""
    try:
        admitted = request(*args, **kwargs)
    except InputError as err:
        st.error(f"Invalid {what}: {inputs.escape_markdown(err)}")
        return None
    show_notes(admitted.notes)
    return admitted


def on_wait(gate: Gate, box: Any) -> Callable[[int, float], None]:
    """``Gate.running``'s queue callback: the visitor's place in the queue, in ``box``."""
    return lambda position, waited: box.info(gate.queue_message(position, waited))


@dataclass(frozen=True)
class Ran:
    """What ``run_with_status`` collected: the run's events, and whether the cap cut it."""

    events: list[Any]
    timed_out: bool


def run_with_status(
    gate: Gate,
    admitted: Admission,
    label: str,
    total: int,
    line: Callable[[Any], str],
    done: Callable[[int, bool], str],
    queue_box: Any = None,
) -> Ran | None:
    """Run ``admitted`` inside the gate's queue slot, in an expanded status box titled
    ``label``: ``line(event)`` and a progress tick (of ``total``) per event, then the box
    collapses under ``done(n_events, timed_out)``. The queue position shows in ``queue_box``
    (a new placeholder by default). A visitor already running or a full queue: one
    warning, and None."""
    queue_box = st.empty() if queue_box is None else queue_box
    events: list[Any] = []
    try:
        with (
            st.status(label, expanded=True) as box,
            gate.running(admitted, on_wait(gate, queue_box)) as run,
        ):
            progress = st.progress(0.0)
            for event in run.events():
                events.append(event)
                st.write(line(event))
                progress.progress(len(events) / total)
            box.update(label=done(len(events), run.timed_out), state="complete", expanded=False)
    except LimitError as err:
        st.warning(inputs.escape_markdown(err))
        return None
    return Ran(events, run.timed_out)
