"""The student: a SentenceTransformer built from the base model, trained through its own forward.

Training calls the very modules that `SentenceTransformer(path)` rebuilds from the saved folder, and the
saved folder carries the training-side prefixes as its "query"/"document" prompts and the training
lengths as its query/document lengths, so `encode_query`/`encode_document` give the embeddings the model
was trained to produce. Texts are tokenized once, without padding; each mini-batch is padded only to
its own longest text.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from synthgen.errors import UserError
from synthgen.machine import cpu_has_native_bf16

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

    from distill.recipe import LoraConfig, ModelConfig

POOLING_MODES = {"mean": "mean", "cls": "cls", "last-token": "lasttoken"}


def resolve_device(name: str) -> str:
    import torch

    if name != "auto":
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"train.device is {name} but no CUDA device is available")
        return name
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def resolve_precision(name: str, device: str) -> str:
    """fp32, bf16 or fp16 for autocast; the weights themselves stay fp32."""
    import torch

    on_cuda = device.startswith("cuda")
    if name == "auto":
        if on_cuda:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device == "cpu" and cpu_has_native_bf16() else "fp32"
    if name == "bf16" and device == "cpu" and not cpu_has_native_bf16():
        raise UserError("train.precision bf16: this CPU has no AVX512-BF16/AMX, so bf16 is emulated and far slower; use fp32 or auto")
    if name == "fp16" and not on_cuda:
        raise UserError(f"train.precision fp16 needs a CUDA device (device is {device}); use fp32 or auto")
    return name


def autocast(device: str, precision: str):
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def load_encoder(spec: "ModelConfig", device: str) -> "SentenceTransformer":
    """Load the base model and shape it as configured: pooling, a final Normalize, prompts and lengths, and
    with `towers: separate` a query and a passage copy behind a Router (distill/towers.py)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    from distill.recipe import resolve_base_model

    path = resolve_base_model(spec.base)
    try:
        model = SentenceTransformer(str(path), device=device, trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UserError(f"model.base: cannot load {path}: {str(exc).splitlines()[0]}") from None
    modules = list(model)
    if not modules or not isinstance(modules[0], Transformer):
        raise UserError(f"model.base: {path} does not start with a Transformer module; distill trains text encoders only")
    names = list(model._modules)
    pooling_at = next((i for i, m in enumerate(modules) if isinstance(m, Pooling)), None)
    if pooling_at is None:
        raise UserError(f"model.base: {path} has no Pooling module")
    if spec.pooling != "auto":
        dimension = modules[pooling_at].embedding_dimension
        model._modules[names[pooling_at]] = Pooling(dimension, pooling_mode=POOLING_MODES[spec.pooling])
    if not isinstance(modules[-1], Normalize):
        model.append(Normalize())
    transformer = model[0]
    limit = getattr(transformer.config, "max_position_embeddings", None)
    for key, value in (("model.max_query_length", spec.max_query_length), ("model.max_passage_length", spec.max_passage_length)):
        if isinstance(limit, int) and limit > 0 and value > limit:
            raise UserError(f"{key} is {value} but the base model takes at most {limit} tokens")
    transformer.query_length = spec.max_query_length
    transformer.document_length = spec.max_passage_length
    model.max_seq_length = spec.max_passage_length
    model.prompts = {"query": spec.query_prefix.replace("{task}", spec.task), "document": spec.passage_prefix}
    model.default_prompt_name = None
    if spec.towers == "separate":
        from distill.towers import split_towers

        model = split_towers(model)
    return model.to(device)


def add_lora(model: "SentenceTransformer", spec: "LoraConfig") -> None:
    """Wrap the transformer in peft LoRA adapters; only the adapters stay trainable."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=spec.target_modules or None,
        task_type="FEATURE_EXTRACTION",
    )
    transformer = model[0]
    try:
        transformer.model = get_peft_model(transformer.model, config)
    except ValueError as exc:
        raise UserError(f"lora: {str(exc).splitlines()[0]} (set lora.target_modules)") from None
    for module in list(model)[1:]:
        module.requires_grad_(False)


def save_encoder(model: "SentenceTransformer", path: Path, lora_save: str = "merged") -> None:
    """Write a folder `SentenceTransformer(path)` loads: merged weights by default, LoRA adapters if asked."""
    from peft import PeftModel

    transformer = model[0]
    if isinstance(getattr(transformer, "model", None), PeftModel) and lora_save == "merged":
        transformer.model = transformer.model.merge_and_unload()
    model.save(str(path), create_model_card=False)


def tokenize(model: "SentenceTransformer", texts: list[str], max_length: int, progress: bool = False, desc: str = "tokenize") -> list[np.ndarray]:
    """Token ids of each text, truncated as sentence-transformers truncates, without padding."""
    from tqdm.auto import tqdm

    tokenizer = model[0].tokenizer
    out: list[np.ndarray] = []
    step = 2048
    for start in tqdm(range(0, len(texts), step), desc=desc, disable=not progress or len(texts) <= step, leave=False):
        encoded = tokenizer(texts[start : start + step], truncation="longest_first", max_length=max_length)
        out.extend(np.asarray(ids, dtype=np.int64) for ids in encoded["input_ids"])
    return out


def collate(model: "SentenceTransformer", rows: list[np.ndarray], device: str) -> dict:
    """Pad a mini-batch to its own longest text, on the side the tokenizer pads."""
    import torch

    tokenizer = model[0].tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    left = tokenizer.padding_side == "left"
    for i, r in enumerate(rows):
        if left:
            ids[i, width - len(r) :], mask[i, width - len(r) :] = r, 1
        else:
            ids[i, : len(r)], mask[i, : len(r)] = r, 1
    features = {"input_ids": torch.from_numpy(ids).to(device), "attention_mask": torch.from_numpy(mask).to(device)}
    if "token_type_ids" in tokenizer.model_input_names:
        features["token_type_ids"] = torch.zeros_like(features["input_ids"])
    return features


def length_chunks(rows: list[np.ndarray], size: int) -> tuple[np.ndarray, list[list[int]]]:
    """Sort texts longest first and cut them into mini-batches of `size`, so little padding is computed.

    Returns the sorted order and the positions (into the sorted order's source) of each chunk.
    """
    order = np.argsort([-len(r) for r in rows], kind="stable")
    return order, [order[s : s + size].tolist() for s in range(0, len(order), size)]


def embedder(model: "SentenceTransformer", device: str, precision: str, task: str = "document") -> Callable[[list[np.ndarray]], "torch.Tensor"]:
    """A function from token rows to sentence embeddings (fp32, or fp64 for a fp64 model), through the model's forward.

    `task` ("query" or "document") picks the tower of a two-tower model; a shared encoder ignores it."""

    import torch

    def embed(rows: list[np.ndarray]) -> "torch.Tensor":
        with autocast(device, precision):
            out = model(collate(model, rows, device), task=task)["sentence_embedding"]
        return out if out.dtype == torch.float64 else out.float()

    return embed


def embed_rows(embed: Callable, rows: Iterable[np.ndarray], size: int) -> "torch.Tensor":
    """Embed many texts without gradients, in length-sorted mini-batches; result in the input order."""
    import torch

    rows = list(rows)
    order, chunks = length_chunks(rows, size)
    with torch.no_grad():
        parts = [embed([rows[i] for i in chunk]) for chunk in chunks]
    sorted_embeddings = torch.cat(parts)
    return sorted_embeddings[torch.from_numpy(np.argsort(order)).to(sorted_embeddings.device)]
