"""The student: a SentenceTransformer built from the base model, trained through its own forward.

Training calls the very modules that `SentenceTransformer(path)` rebuilds from the saved folder, and the
saved folder carries the training-side prefixes as its "query"/"document" prompts and the training
lengths as its query/document lengths, so `encode_query`/`encode_document` give the embeddings the model
was trained to produce. Texts are tokenized once, without padding; each mini-batch is padded only to
its own longest text.
"""

from __future__ import annotations

import warnings

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from synthgen.errors import UserError
from synthgen.machine import autocast

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
    # max_query_length cuts the training queries only (the LLM's are short; the cut bounds a step's padding). The
    # model reads a user's query as far as a passage: CISI's queries are paragraphs, and cut at 64 tokens the
    # adapted model lost 1.45 nDCG@10 points there (bench/results/cisi-query-length.json).
    transformer.query_length = spec.max_passage_length
    transformer.document_length = spec.max_passage_length
    model.max_seq_length = spec.max_passage_length
    model.prompts = {"query": spec.query_prefix.replace("{task}", spec.task), "document": spec.passage_prefix}
    model.default_prompt_name = None
    if spec.towers != "shared":
        from distill.towers import freeze_document_tower, split_towers

        model = split_towers(model)
        if spec.towers == "query":
            freeze_document_tower(model)
    return model.to(device)


def passages_as_loaded(spec: "ModelConfig") -> bool:
    """Whether `load_encoder` leaves the base model's passage embeddings as `SentenceTransformer(folder)` makes
    them (same pooling, no passage prefix, the folder's own length): then the embedding cache of that folder,
    which relabel filled, holds the base model's passages for evaluation too."""
    import json

    from distill.recipe import resolve_base_model

    config = resolve_base_model(spec.base) / "sentence_bert_config.json"
    try:
        length = json.loads(config.read_text()).get("max_seq_length")
    except (OSError, ValueError):
        return False
    return spec.pooling == "auto" and not spec.passage_prefix and length == spec.max_passage_length


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
        with warnings.catch_warnings():
            # peft reads transformers' deprecated `is_gradient_checkpointing`; the deprecation is theirs to fix and
            # says nothing a distill user can act on
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
            transformer.model = get_peft_model(transformer.model, config)
    except ValueError as exc:
        raise UserError(f"lora: {str(exc).splitlines()[0]} (set lora.target_modules)") from None
    for module in list(model)[1:]:
        module.requires_grad_(False)


def disable_dropout(model: "SentenceTransformer") -> None:
    """Every dropout layer off for training (the saved config keeps its rates; inference never drops out anyway).

    On a CPU a dropout layer is not free: its masks cost memory passes, and with attention dropout PyTorch's fused
    attention falls back to the plain path; on SciFact's records a step took well under half the time without."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def freeze_token_embeddings(model: "SentenceTransformer") -> None:
    """Stop training every transformer's token-embedding matrix.

    A fine-tune on a few thousand queries touches only the rows of the tokens it sees, and those rows drift from the
    rows it never sees; frozen, the vocabulary stays one space as the base learned it.
    """
    from transformers import PreTrainedModel

    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            module.get_input_embeddings().requires_grad_(False)


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
