"""Retrieval quality of an encoder on a BEIR-format folder: exact cosine search over the whole corpus.

Passages are embedded as `title + " " + text` with the model's "document" prompt and queries with its
"query" prompt (`encode_document` / `encode_query`), so a model trained with prefixes is evaluated the way
it was trained. Matryoshka sizes reuse one embedding pass: truncate, renormalize, search again.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from distill.metrics import NAMES, mean_metrics
from synthgen.errors import UserError
from synthgen.records import iter_corpus_lines, iter_json_lines

DEPTH = 100  # ranks kept per query: the deepest cutoff of any metric


@dataclass
class BeirData:
    passage_ids: list[str]
    passages: list[str]  # title + " " + text
    query_ids: list[str]  # judged queries that have a text, in qrels order
    queries: list[str]
    qrels: dict[str, dict[str, int]]


def load_beir(folder: Path, split: str = "test") -> BeirData:
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for path in (folder / "corpus.jsonl", folder / "queries.jsonl", qrels_path):
        if not path.is_file():
            raise UserError(f"{folder} is not a BEIR folder with split '{split}': {path.name} is missing")
    passage_ids, passages = [], []
    for _, passage_id, title, text in iter_corpus_lines(folder / "corpus.jsonl"):
        passage_ids.append(passage_id)
        passages.append(f"{title} {text}".strip())
    texts = {}
    for number, obj in iter_json_lines(folder / "queries.jsonl"):
        if not isinstance(obj, dict) or "_id" not in obj or "text" not in obj:
            raise UserError(f"{folder / 'queries.jsonl'}:{number}: expected an object with '_id' and 'text'")
        texts[str(obj["_id"])] = str(obj["text"])
    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_path, encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or (number == 1 and row[0] == "query-id"):
                continue
            try:
                query_id, passage_id, grade = row[0], row[1], int(float(row[2]))
            except (IndexError, ValueError):
                raise UserError(f"{qrels_path}:{number}: expected 'query-id<TAB>corpus-id<TAB>score'") from None
            qrels.setdefault(query_id, {})[passage_id] = grade
    query_ids = [q for q in qrels if q in texts]
    if not query_ids:
        raise UserError(f"{qrels_path}: no judged query has a text in queries.jsonl")
    if not passages:
        raise UserError(f"{folder / 'corpus.jsonl'}: the corpus is empty")
    return BeirData(passage_ids, passages, query_ids, [texts[q] for q in query_ids], {q: qrels[q] for q in query_ids})


def search(queries: torch.Tensor, passages: torch.Tensor, depth: int = DEPTH, dim: int | None = None) -> list[list[int]]:
    """Exact cosine search: the `depth` best passage positions per query, best first."""
    if dim is not None:
        queries, passages = queries[:, :dim], passages[:, :dim]
    queries, passages = F.normalize(queries.float(), dim=-1), F.normalize(passages.float(), dim=-1)
    depth = min(depth, len(passages))
    ranked: list[list[int]] = []
    for start in range(0, len(queries), 1024):
        scores = queries[start : start + 1024] @ passages.T
        ranked.extend(scores.topk(depth, dim=1).indices.tolist())
    return ranked


def rank_dev(queries: torch.Tensor, passages: torch.Tensor, query_rows: Sequence[int], passage_rows: Sequence[int],
             relevant: dict[int, set[int]]) -> dict[str, dict[str, float]]:
    """Each dev query's metrics over the dev pool (distill.data.dev_pool: its rows, and the relevant ones per query),
    from embeddings of those rows: what `distill train` judges its models by, and bench/bench_guard.py repeats."""
    from distill.metrics import per_query_metrics

    runs = {str(qr): [str(passage_rows[i]) for i in row] for qr, row in zip(query_rows, search(queries, passages))}
    qrels = {str(qr): {str(pr): 1 for pr in relevant[qr]} for qr in query_rows}
    return per_query_metrics(runs, qrels)


def evaluate(
    model: Any,
    data: Path,
    split: str = "test",
    dims: Sequence[int] | None = None,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = True,
    name: str | None = None,
    precision: str = "auto",
    cache_dir: Path | None = None,
    passages_of: Path | None = None,
    keep: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """nDCG@10, Recall@10/@100, MRR@10 and MAP@100 of `model` (a folder or a SentenceTransformer) per size.

    `name` labels the model in the result (default: its folder). A folder's passage embeddings go through the
    embedding cache (synthgen.retrieve.Embedder, under `cache_dir`), so relabel's encoding of the same corpus
    with the base model, and any earlier evaluation of the same model, are not done again. `passages_of`: a
    folder whose passage embeddings a loaded `model` shares (see distill.encoder.passages_as_loaded), so that
    the loaded model's passages come from that folder's cache too. With `keep`, the query and passage
    embeddings and the loaded data go into it too (for `distill eval --plot`), under "queries", "passages"
    and "beir".

    Returns {"model", "data", "split", "queries", "passages", "passages_encoded", "encode_seconds",
    "dims": {"384": {...}, ...}}.
    """
    from sentence_transformers import SentenceTransformer

    from synthgen.machine import autocast, resolve_precision
    from synthgen.records import Passage
    from synthgen.retrieve import Embedder

    beir = load_beir(Path(data), split)
    if isinstance(model, SentenceTransformer) and passages_of is None:
        encoder, name = model, name or "model"
        where = str(encoder.device)
        # bf16 where the hardware computes it: 1.9x the texts/s of fp32 on a 2-core AVX512-BF16 CPU, and
        # all-MiniLM-L6-v2's SciFact nDCG@10 moves by +0.0006 (bench/bench_encode.py)
        started = time.perf_counter()
        with autocast(where, resolve_precision(precision, where)):
            passage_embeddings = encoder.encode_document(beir.passages, batch_size=batch_size, convert_to_tensor=True,
                                                         show_progress_bar=progress)
        encoded, seconds = len(beir.passages), time.perf_counter() - started
    else:
        folder = Path(passages_of or model)
        name = name or ("model" if isinstance(model, SentenceTransformer) else str(model))
        if not folder.is_dir():
            raise UserError(f"{folder}: no such model folder")
        embedder = Embedder(folder, cache_dir, batch_size, precision, device)
        encoder = model if isinstance(model, SentenceTransformer) else embedder.model
        passages = [Passage(id=i, text=t) for i, t in zip(beir.passage_ids, beir.passages)]
        passage_embeddings = torch.from_numpy(embedder.encode_passages(passages, progress=progress))
        encoded, seconds, where = embedder.encoded, embedder.encode_seconds, str(encoder.device)
    with autocast(where, resolve_precision(precision, where)):
        query_embeddings = encoder.encode_query(beir.queries, batch_size=batch_size, convert_to_tensor=True,
                                                show_progress_bar=progress)
    query_embeddings = query_embeddings.float().cpu()
    passage_embeddings = passage_embeddings.float().cpu()
    if keep is not None:
        keep.update(queries=query_embeddings, passages=passage_embeddings, beir=beir)
    size = passage_embeddings.shape[1]
    dims = list(dims) if dims else [size]
    too_big = [d for d in dims if not 0 < d <= size]
    if too_big:
        raise UserError(f"--dims {too_big[0]} is not in 1..{size}, the embedding size of {name}")
    scores = {}
    for d in dims:
        ranked = search(query_embeddings, passage_embeddings, dim=d)
        runs = {q: [beir.passage_ids[i] for i in row] for q, row in zip(beir.query_ids, ranked)}
        scores[str(d)] = mean_metrics(runs, beir.qrels)
    return {"model": name, "data": str(data), "split": split, "queries": len(beir.queries), "passages": len(beir.passages),
            "passages_encoded": encoded, "encode_seconds": seconds, "dims": scores}


def difference(result: dict[str, Any], baseline: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Model minus baseline, per size and metric, for the sizes both were measured at."""
    return {
        d: {m: result["dims"][d][m] - baseline["dims"][d][m] for m in NAMES}
        for d in result["dims"]
        if d in baseline["dims"]
    }


def format_table(result: dict[str, Any], baseline: dict[str, Any] | None = None) -> str:
    """A plain-text table: one row per size; with a baseline, one row per size and metric with the difference."""
    head = f"{result['data']} ({result['split']}): {result['queries']} queries, {result['passages']} passages"
    if baseline is None:
        lines = [head, "dim   " + "  ".join(f"{m:>10}" for m in NAMES)]
        for d, values in result["dims"].items():
            lines.append(f"{d:<5} " + "  ".join(f"{values[m]:>10.4f}" for m in NAMES))
        return "\n".join(lines)
    lines = [head, f"model:    {result['model']}", f"baseline: {baseline['model']}", f"{'dim':<5} {'metric':<11} {'model':>8} {'baseline':>9} {'diff':>8}"]
    for d, deltas in difference(result, baseline).items():
        for m in NAMES:
            lines.append(f"{d:<5} {m:<11} {result['dims'][d][m]:>8.4f} {baseline['dims'][d][m]:>9.4f} {deltas[m]:>+8.4f}")
    return "\n".join(lines)
