"""Re-mining hard negatives with the model being trained (ANCE, Xiong et al. 2021).

The negatives relabel chose were hard for the base model; after some steps the student has learned them
and makes other mistakes. Every `remine.every` steps the student embeds the training passages (or a seeded
sample, plus every positive) and each training query's hard negatives are drawn again from its current top
ranks. The false-negative protection is relabel's own (`synthgen.relabel.safe_negatives`): the student's
cosine and BM25 act as the two judges, fused by rank and min-max normalized per query as relabel does;
a passage at or above `remine.margin` x the positive's score, the seed passage, a near-duplicate of the
positive, and every positive of the same query are never negatives. The LLM judges are too slow to run
inside training; the negatives they approved stay in place for queries where nothing safe is found.
With `remine.curriculum` the rank window starts at its easy (deep) end and slides to its hard end.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from synthgen.records import Passage, Query
from synthgen.relabel import Candidates, fused_order, scaled_scores, safe_negatives
from synthgen.retrieve import BM25Retriever

if TYPE_CHECKING:
    import torch

    from distill.data import Dataset
    from distill.recipe import RemineConfig

JUDGES = ("dense", "bm25")
DUPLICATE_OVERLAP = 0.6  # relabel's default near-duplicate threshold
REMINED = "remined.jsonl"  # in the output folder: every re-mined list, for measuring false negatives


def window(ranks: list[int], progress: float, curriculum: bool) -> tuple[int, int]:
    """The rank window at `progress` (0..1) of training: the whole window, or for a curriculum half of it
    sliding from the deep end (easy) to the top (hard)."""
    lo, hi = ranks
    if not curriculum:
        return lo, hi
    width = max(1, (hi - lo + 1) // 2)
    deepest = hi - width + 1
    start = round(deepest - progress * (deepest - lo))
    return start, start + width - 1


def pool_rows(dataset: "Dataset", size: int, seed: int, step: int) -> list[int]:
    """Passage rows to re-encode: every positive, plus a seeded sample of the others (all when size is 0)."""
    positives = sorted({row for ex in dataset.train for row in ex.pos})
    others = sorted(set(range(len(dataset.passages))) - set(positives))
    if size and size < len(others):
        others = sorted(np.random.default_rng([seed, step]).choice(others, size=size, replace=False).tolist())
    return positives + others


def mine(dataset: "Dataset", queries: "torch.Tensor", passages: "torch.Tensor", rows: list[int], config: "RemineConfig",
         progress: float, seed: int, step: int) -> list[list[int] | None]:
    """New negative rows per training example (None: nothing safe found, keep the old ones).

    `queries[i]` embeds `dataset.train[i]`'s query and `passages[j]` the passage row `rows[j]`, both normalized."""
    lo, hi = window(config.ranks, progress, config.curriculum)
    at = {row: j for j, row in enumerate(rows)}
    corpus = [Passage(id=str(row), text=dataset.passages[row]) for row in rows]
    bm25 = BM25Retriever(corpus)
    positives_of: dict[int, set[int]] = {}
    for ex in dataset.train:
        positives_of.setdefault(ex.query, set()).update(ex.pos)
    dense = (queries @ passages.T).float()
    depth = min(config.ranks[1], len(rows))
    top = dense.topk(depth, dim=1).indices.tolist()
    out: list[list[int] | None] = []
    for i, ex in enumerate(dataset.train):
        listed = top[i] if at[ex.pos[0]] in top[i] else top[i][: depth - 1] + [at[ex.pos[0]]]
        c = Candidates(Query(str(i), "", "", dataset.queries[ex.query], ""), listed,
                       at.get(ex.seed) if ex.seed >= 0 else None, None)
        c.scores["dense"] = [float(dense[i, j]) for j in listed]
        c.scores["bm25"] = bm25.scores([dataset.queries[ex.query]], [listed])[0]
        order = fused_order(c, JUDGES)
        norm = scaled_scores(c, JUDGES)
        safe = safe_negatives(c, order, norm, listed.index(at[ex.pos[0]]), corpus, config.margin, (lo, hi), DUPLICATE_OVERLAP)
        safe = [k for k in safe if rows[listed[k]] not in positives_of[ex.query]]
        count = min(max(len(ex.neg), 1), len(safe))
        rng = random.Random(f"{seed}:{step}:{i}")
        out.append(sorted(rows[listed[k]] for k in rng.sample(safe, count)) if count else None)
    return out


def write_remined(path: Path, dataset: "Dataset", step: int) -> None:
    """Append this re-mining's negatives (passage ids) to the output folder's record of them."""
    with open(path, "a", encoding="utf-8") as handle:
        for ex in dataset.train:
            handle.write(json.dumps({"step": step, "query": dataset.queries[ex.query],
                                     "neg_ids": [dataset.passage_ids[row] for row in ex.neg]}) + "\n")
