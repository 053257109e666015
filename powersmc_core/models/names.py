"""THE model-name parser: one string in, one ``ModelSpec`` out (nothing is loaded).

Names understood (case-insensitive for the built-ins):

* ``"smollm2"`` (alias ``"smollm2-135m-instruct"``): the embedded SmolLM2 GGUF;
* ``"toy-trap"``, ``"toy-random"``, ``"toy-random:V,L,seed"``: the enumerable ``ToyLM``
  (``V`` vocabulary size with EOS, ``L`` maximum length, ``seed``; ToyLM bounds them);
* ``"toy-pivotal:i"``: table i of the pivotal-decision family (``ToyLM.pivotal``: a rare
  first token holds most of pi_4's mass; ``theory.pivotal``);
* ``"random:<arch>"``: random weights with real dimensions (``RANDOM_INIT_CONFIGS``);
* a local folder holding ``config.json``, or a local ``.gguf`` file;
* otherwise a Hugging Face hub id (``owner/name``).

Use ``parse_model_name(name)`` wherever a name is validated (CLI, app settings,
evaluation specs) and ``load_model`` (``loading.py``) to get the model itself, so a
name means the same everywhere. ``ModelSpec.safe`` tells names that can never run
downloaded code or read user files (the embedded model and the toys) — what a public
demo may allow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from powersmc_core.models.errors import ModelNameError
from powersmc_core.models.random_init import RANDOM_INIT_CONFIGS
from powersmc_core.models.toy import MAX_LEN, MAX_VOCAB, PIVOTAL_INDICES

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_NAMES",
    "ModelSpec",
    "available_models",
    "parse_model_name",
]

DEFAULT_MODEL = "smollm2"
EMBEDDED_NAMES = ("smollm2", "smollm2-135m-instruct")
RANDOM_PREFIX = "random:"
_TOY_RANDOM = re.compile(r"^toy-random(?::(\d{1,6}),(\d{1,6}),(\d{1,19}))?$")
_TOY_PIVOTAL = re.compile(r"^toy-pivotal:(\d{1,6})$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# Families whose names can never load code or read files (what a demo may allow).
SAFE_KINDS = ("embedded", "toy")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model name.

    kind: ``embedded`` | ``toy`` | ``random-init`` | ``gguf`` | ``folder`` | ``hub``.
    name: the canonical name (``"smollm2"``, ``"toy-random:4,4,0"``, ``"random:tiny"``,
    the path as given, or the hub id). family: what an allowlist compares
    (``"smollm2"``, ``"toy-trap"``, ``"toy-random"``, else the kind).
    toy_args: (vocab_size, max_len, seed) of ``toy-random:V,L,seed``; (index,) of
    ``toy-pivotal:i``; None otherwise.
    arch: the ``random:<arch>`` key. path: the local folder or ``.gguf`` file.
    """

    name: str
    kind: str
    family: str
    toy_args: tuple[int, int, int] | tuple[int] | None = None
    arch: str | None = None
    path: Path | None = None

    @property
    def safe(self) -> bool:
        """True for names that cannot run hub code or read the machine's files."""
        return self.kind in SAFE_KINDS


def available_models() -> list[dict[str, str]]:
    """Built-in choices for a model picker: dicts with ``name``, ``description``, ``kind``."""
    models = [
        dict(
            name="smollm2",
            description="SmolLM2-135M-Instruct (embedded GGUF, dequantised once and cached)",
            kind="embedded",
        ),
        dict(
            name="toy-trap",
            description="6-token toy where temperature and power sampling disagree (exact)",
            kind="toy",
        ),
        dict(
            name="toy-random",
            description="random enumerable toy; 'toy-random:V,L,seed' sets vocab, length, seed",
            kind="toy",
        ),
    ]
    for arch, cfg in RANDOM_INIT_CONFIGS.items():
        models.append(
            dict(
                name=RANDOM_PREFIX + arch,
                description=f"random weights, {cfg['model_type']} dimensions "
                f"(hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers): benchmarks",
                kind="random-init",
            )
        )
    return models


def builtin_names() -> str:
    """The built-in names, comma-separated, for error messages."""
    return ", ".join(m["name"] for m in available_models())


def parse_model_name(name: str) -> ModelSpec:
    """Classify ``name`` (see the module docstring); raise ``ModelNameError`` saying why not.

    Folder and ``.gguf`` names are checked against the file system; hub ids only for
    their form (whether they exist is only known when loading).
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelNameError(f"empty model name: use one of {builtin_names()}")
    cleaned = name.strip()
    lowered = cleaned.lower()
    if lowered in EMBEDDED_NAMES:
        return ModelSpec(DEFAULT_MODEL, "embedded", DEFAULT_MODEL)
    if lowered.startswith("toy-"):
        return _toy(lowered)
    if lowered.startswith(RANDOM_PREFIX):
        arch = cleaned[len(RANDOM_PREFIX) :]
        if arch not in RANDOM_INIT_CONFIGS:
            raise ModelNameError(
                f"unknown random-init architecture {arch!r}: choose one of "
                f"{', '.join(RANDOM_INIT_CONFIGS)}"
            )
        return ModelSpec(RANDOM_PREFIX + arch, "random-init", "random-init", arch=arch)
    path = Path(cleaned).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNameError(
                f"folder {path} has no config.json: point at a folder written by "
                "save_pretrained (config.json + weights + tokenizer files)"
            )
        return ModelSpec(cleaned, "folder", "folder", path=path)
    if path.is_file() and path.suffix.lower() == ".gguf":
        return ModelSpec(cleaned, "gguf", "gguf", path=path)
    if cleaned.startswith(("/", "./", "../", "~", "\\")) or path.exists():
        raise ModelNameError(
            f"model path {cleaned!r} does not exist or is not a folder with config.json "
            f"(built-in names: {builtin_names()})"
        )
    if not _HUB_ID.match(cleaned):
        raise ModelNameError(
            f"unknown model {cleaned!r}: not a built-in name ({builtin_names()}), "
            "not a local folder, and not a valid hub id"
        )
    return ModelSpec(cleaned, "hub", "hub")


def _toy(lowered: str) -> ModelSpec:
    if lowered == "toy-trap":
        return ModelSpec("toy-trap", "toy", "toy-trap")
    pivotal = _TOY_PIVOTAL.match(lowered)
    if pivotal is not None:
        index = int(pivotal.group(1))
        if index >= PIVOTAL_INDICES:
            raise ModelNameError(
                f"bad toy model {lowered!r}: toy-pivotal:i needs 0 <= i < {PIVOTAL_INDICES}"
            )
        return ModelSpec(f"toy-pivotal:{index}", "toy", "toy-pivotal", toy_args=(index,))
    match = _TOY_RANDOM.match(lowered)
    if match is None:
        raise ModelNameError(
            f"bad toy model {lowered!r}: use 'toy-trap', 'toy-random', 'toy-random:V,L,seed' "
            "(e.g. toy-random:4,4,0) or 'toy-pivotal:i'"
        )
    if match.group(1) is None:
        return ModelSpec("toy-random", "toy", "toy-random")
    vocab, max_len, seed = (int(g) for g in match.groups())
    if not (2 <= vocab <= MAX_VOCAB and 1 <= max_len <= MAX_LEN and seed < 2**63):
        raise ModelNameError(
            f"bad toy model {lowered!r}: toy-random:V,L,seed needs 2 <= V <= {MAX_VOCAB}, "
            f"1 <= L <= {MAX_LEN} and 0 <= seed < 2**63"
        )
    return ModelSpec(lowered, "toy", "toy-random", toy_args=(vocab, max_len, seed))
