"""Hostile and bad input, module level: settings from the environment, model names,
prompts (control characters, over-long, token limit), URL query parameters (NaN, inf,
huge numbers, unknown keys) and config clamping. Every case must end in a usable
value plus a message, or an ``InputError`` / ``SettingsError`` with a clear text —
never another exception."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from explorer.inputs import (
    FIELD_KINDS,
    InputError,
    check_model_name,
    clamp_config,
    encode_prompt,
    escape_markdown,
    sanitize_prompt,
)
from explorer.query import QUERY_FIELDS, parse_query_params, share_query
from explorer.settings import DemoSettings, SettingsError, demo_settings
from powersmc_core.engine.config import SMCConfig
from powersmc_core.models.hf.model import HFModel

DEMO = demo_settings({"POWERSMC_DEMO": "1"})
FULL = demo_settings({})


# ---- environment -------------------------------------------------------------------------
def test_demo_mode_caps_and_allowlist():
    assert DEMO.enabled and not FULL.enabled
    assert DEMO.max_particles == 32 and DEMO.max_new_tokens == 96
    assert (DEMO.alpha_min, DEMO.alpha_max) == (0.5, 8.0)
    assert DEMO.allowed_models == ("smollm2", "toy-trap", "toy-random")
    assert not DEMO.custom_models and FULL.custom_models
    assert DEMO.trust_remote_code is False and FULL.trust_remote_code is False


def test_full_mode_bounds_are_the_settings_defaults():
    # One source for the caps: the full app's bounds are DemoSettings' own defaults.
    assert DemoSettings() == FULL
    assert (FULL.max_particles, FULL.max_new_tokens) == (256, 2048)
    assert FULL.max_upload_bytes == 20 * 2**20 and DEMO.max_upload_bytes == 5 * 2**20


def test_field_kinds_and_link_keys_come_from_smcconfig():
    names = {f.name for f in fields(SMCConfig)}
    assert set(FIELD_KINDS) == names
    assert FIELD_KINDS["n_particles"] == "int" and FIELD_KINDS["alpha"] == "float"
    assert FIELD_KINDS["proposal_temperature"] == "float" and FIELD_KINDS["schedule"] == "str"
    assert names <= set(QUERY_FIELDS) and set(QUERY_FIELDS.values()) <= names


def test_environment_overrides_are_validated():
    s = demo_settings(
        {
            "POWERSMC_DEMO": "true",
            "POWERSMC_DEMO_MAX_PARTICLES": "8",
            "POWERSMC_MAX_CONCURRENT_RUNS": "3",
            "POWERSMC_DEMO_MODELS": "toy-trap, TOY-RANDOM",
            "POWERSMC_DATA_DIR": "/tmp/x",
            "POWERSMC_STORE_MAX_MB": "1.5",
        }
    )
    assert s.max_particles == 8 and s.max_concurrent_runs == 3
    assert s.allowed_models == ("toy-trap", "toy-random")
    assert str(s.data_dir) == "/tmp/x" and s.store_max_bytes == int(1.5 * 2**20)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"POWERSMC_DEMO": "maybe"}, "POWERSMC_DEMO"),
        ({"POWERSMC_DEMO_MAX_PARTICLES": "nan"}, "integer"),
        ({"POWERSMC_DEMO_MAX_PARTICLES": "0"}, "[1, 256]"),
        ({"POWERSMC_DEMO_ALPHA_MAX": "inf"}, "POWERSMC_DEMO_ALPHA_MAX"),
        ({"POWERSMC_DEMO_ALPHA_MIN": "5", "POWERSMC_DEMO_ALPHA_MAX": "2"}, "above"),
        ({"POWERSMC_DEMO_MODELS": "smollm2,/etc/passwd"}, "only"),
        ({"POWERSMC_DEMO_MODELS": "HuggingFaceTB/SmolLM2-360M"}, "only"),
    ],
)
def test_bad_environment_fails_loudly(env, needle):
    with pytest.raises(SettingsError, match=None) as info:
        demo_settings(env)
    assert needle in str(info.value)


# ---- models --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("smollm2", "smollm2"),
        (" SmolLM2-135M-Instruct ", "smollm2"),
        ("toy-trap", "toy-trap"),
        ("toy-random", "toy-random"),
        ("toy-random:4,4,0", "toy-random:4,4,0"),
    ],
)
def test_allowlisted_models_pass(name, canonical):
    assert check_model_name(name, DEMO) == canonical


@pytest.mark.parametrize(
    "name",
    [
        "/etc/passwd",
        "../../secrets",
        "~/model",
        "HuggingFaceTB/SmolLM2-360M-Instruct",
        "random:llama-1b",
        "toy-random:9,4,0",
        "toy-random:4,99,0",
        "toy-random:4,4,-1",
        "toy-random:4,4,0/../../x",
        "smollm2\x00",
        "",
        None,
        123,
        "x" * 10_000,
    ],
)
def test_demo_rejects_paths_hub_ids_and_junk(name):
    with pytest.raises(InputError):
        check_model_name(name, DEMO)


def test_full_mode_passes_custom_names_but_not_control_characters():
    assert check_model_name(" my/model ", FULL) == "my/model"
    with pytest.raises(InputError):
        check_model_name("a\x00b", FULL)


# ---- prompts ------------------------------------------------------------------------------
def test_control_characters_are_removed_and_reported():
    text, notes = sanitize_prompt("Hi\x00 there\x1b[31m\u202e\r\nnext\tline\ufeff", 1000)
    assert text == "Hi there[31m\nnext\tline"
    assert notes and "control" in notes[0]


def test_lone_surrogates_cannot_reach_the_tokenizer():
    text, _ = sanitize_prompt("a\ud800b", 100)
    assert text == "ab"
    text.encode("utf-8")  # would raise UnicodeEncodeError with the surrogate


def test_unicode_is_normalised_not_stripped():
    text, notes = sanitize_prompt("e\u0301t\u00e9 🌞 👩💻", 100)
    assert text == "\u00e9t\u00e9 🌞 👩💻" and not notes


def test_a_zero_width_joiner_is_removed_even_inside_an_emoji():
    # Issue 19: joiners are invisible, so they go; an emoji sequence falls apart into its
    # visible parts, and the note says so.
    text, notes = sanitize_prompt("👩\u200d💻", 100)
    assert text == "👩💻" and "1 control or invisible" in notes[0]


@pytest.mark.parametrize("bad", ["", "   \n\t", "\x00\x01", None, b"bytes", 42])
def test_empty_or_non_text_prompt(bad):
    with pytest.raises(InputError):
        sanitize_prompt(bad, 100)


def test_over_long_prompt_is_refused_before_tokenising():
    with pytest.raises(InputError, match="characters; the limit is 4,096"):
        sanitize_prompt("a" * 1_000_000, 4096)


def tiny_text_model() -> HFModel:
    words = [f"w{i}" for i in range(40)]
    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        eos_token_id=2,
        bos_token_id=1,
    )
    return HFModel(LlamaForCausalLM(config), tokenizer, "tiny")


def test_token_limit_has_a_clear_message():
    model = tiny_text_model()
    settings = demo_settings({"POWERSMC_DEMO": "1", "POWERSMC_DEMO_MAX_PROMPT_TOKENS": "10"})
    assert len(encode_prompt(model, "w1 w2 w3", settings, chat=False)) <= 10
    with pytest.raises(InputError, match="more than the limit of 10") as info:
        encode_prompt(model, " ".join(["w5"] * 50), settings, chat=False)
    assert "Shorten" in str(info.value) or "shorten" in str(info.value)
    with pytest.raises(InputError, match="characters"):
        encode_prompt(model, "w1 " * 100_000, settings, chat=False)


def test_toy_model_refuses_text_prompts():
    from powersmc_core import ToyLM

    with pytest.raises(InputError, match="token prefix"):
        encode_prompt(ToyLM.trap(), "hello", DEMO)


def test_markdown_from_strangers_is_escaped():
    shown = escape_markdown("![x](https://evil.example/p.png) [click](javascript:alert(1)) **b**")
    assert "![" not in shown and "](" not in shown and "**" not in shown
    assert escape_markdown("y" * 1000, max_chars=10).endswith("…")


# ---- config clamping ----------------------------------------------------------------------
def test_clamp_config_caps_demo_values_with_messages():
    config, notes = clamp_config(
        {"alpha": 100.0, "n_particles": 10_000, "max_new_tokens": 10**9, "seed": -5}, DEMO
    )
    assert (config.alpha, config.n_particles, config.max_new_tokens) == (8.0, 32, 96)
    assert config.seed == 0
    assert len(notes) == 4 and "N must be in [1, 32]; got 10000; using 32" in notes
    assert "α must be in [0.5, 8]; got 100; using 8" in notes


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "nan", "1e999", "abc", None, True])
def test_clamp_config_replaces_non_finite_values(bad):
    config, notes = clamp_config({"alpha": bad, "ess_threshold": bad}, DEMO)
    assert config.alpha == SMCConfig().alpha and config.ess_threshold == SMCConfig().ess_threshold
    assert len(notes) == 2


def test_clamp_config_unknown_names():
    with pytest.raises(InputError, match="schedule"):
        clamp_config({"schedule": "<script>"}, DEMO)
    _, notes = clamp_config({"bogus": 1}, DEMO)
    assert any("bogus" in n for n in notes)


def test_full_mode_keeps_valid_configs_unchanged():
    config = SMCConfig(alpha=12.0, n_particles=200, max_new_tokens=1000, seed=7)
    assert clamp_config(config, FULL) == (config, [])


# ---- URL query parameters -----------------------------------------------------------------
@pytest.mark.parametrize(
    "value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "0x10", "", " "]
)
def test_query_non_finite_numbers_are_dropped_with_a_message(value):
    q = parse_query_params({"alpha": value, "kappa": value}, DEMO)
    assert q.config == {}
    assert len(q.messages) == 2 and all("ignored" in m for m in q.messages)


def test_query_values_are_clamped_and_parsed():
    q = parse_query_params(
        {"alpha": "50", "n": ["4", "1000"], "tokens": "64", "seed": "3", "schedule": "Linear"},
        DEMO,
    )
    assert q.config == {
        "alpha": 8.0,
        "n_particles": 32,
        "max_new_tokens": 64,
        "seed": 3,
        "schedule": "linear",
    }
    assert "α must be in [0.5, 8]; got 50; using 8" in q.messages
    assert "N must be in [1, 32]; got 1000; using 32" in q.messages


def test_query_rejects_hostile_values():
    q = parse_query_params(
        {
            "n": "9" * 5000,
            "seed": "1.5",
            "model": "/etc/passwd",
            "prompt": "x" * 100_000,
            "preset": "nope",
            "owner": "../../etc",
            "resampling": "os.system",
            "evil": "1",
        },
        DEMO,
        presets=["Addition: 17 + 25"],
    )
    assert q.config == {} and q.model is None and q.prompt is None and q.owner is None
    assert q.preset is None
    assert len(q.messages) == 8


def test_query_accepts_good_text_values():
    token = "A" * 22
    q = parse_query_params(
        {"model": "toy-trap", "prompt": "Hi\x07!", "preset": "P", "owner": token, "page": "live"},
        DEMO,
        presets=["P"],
    )
    assert (q.model, q.prompt, q.preset, q.owner) == ("toy-trap", "Hi!", "P", token)


def test_query_with_one_value_mentions_only_that_value():
    q = parse_query_params({"alpha": "2"}, DEMO)
    assert q.config == {"alpha": 2.0} and q.messages == ()


def test_query_never_raises_on_any_mapping():
    for params in ({1: 2}, {"alpha": None}, {"alpha": []}, {"alpha": ["1", "nan"]}, {"n": 3.0}):
        parse_query_params(params, DEMO)


def test_share_link_round_trips_and_never_carries_the_owner():
    config = SMCConfig(alpha=2.5, n_particles=8, max_new_tokens=16, seed=9, schedule="linear")
    query = share_query(config, "toy-trap")
    assert "owner" not in query
    q = parse_query_params(query, DEMO)
    assert q.messages == () and q.model == "toy-trap"
    assert SMCConfig(**{**SMCConfig().to_dict(), **q.config}).to_dict() == {**config.to_dict()}
