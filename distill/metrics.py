"""Ranking metrics, defined as trec_eval defines them (the tests hold them to pytrec_eval).

Gains are the qrels' relevance grades (trec_eval's nDCG, not the 2^rel - 1 variant); a passage is
relevant when its grade is >= 1; recall and MAP divide by all relevant passages of the query, retrieved
or not. Scores are averaged over the judged queries, a query without any relevant passage scoring 0.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

NAMES = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100")


def query_metrics(ranked: Sequence[str], grades: Mapping[str, int]) -> dict[str, float]:
    """The metrics of one query: `ranked` best first, `grades` its judged passages."""
    relevant = {doc for doc, grade in grades.items() if grade >= 1}
    hits = [doc in relevant for doc in ranked]
    dcg = sum(max(grades.get(doc, 0), 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:10]))
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    first = next((rank for rank, hit in enumerate(hits[:10]) if hit), None)
    found, precision_sum = 0, 0.0
    for rank, hit in enumerate(hits[:100]):
        if hit:
            found += 1
            precision_sum += found / (rank + 1)
    n = len(relevant)
    return {
        "ndcg@10": dcg / idcg if idcg > 0 else 0.0,
        "recall@10": sum(hits[:10]) / n if n else 0.0,
        "recall@100": sum(hits[:100]) / n if n else 0.0,
        "mrr@10": 1.0 / (first + 1) if first is not None else 0.0,
        "map@100": precision_sum / n if n else 0.0,
    }


def per_query_metrics(runs: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, float]]:
    """The metrics of each judged query that has a ranking, in the qrels' order."""
    return {q: query_metrics(runs[q], qrels[q]) for q in qrels if q in runs}


def mean_metrics(runs: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Mean of each metric over the judged queries that have a ranking."""
    return average(per_query_metrics(runs, qrels).values())


def average(per_query) -> dict[str, float]:
    per_query = list(per_query)
    if not per_query:
        return {name: 0.0 for name in NAMES}
    return {name: sum(m[name] for m in per_query) / len(per_query) for name in NAMES}


# Resamples of the paired bootstrap: enough that the 2.5th and 97.5th percentiles move by well under 0.1 points
# between seeds on 100 to 300 queries.
RESAMPLES = 10_000


def paired_interval(differences: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of per-query differences between two models on the same queries, by a seeded
    paired bootstrap over the queries: the same numbers every run. A difference whose interval holds 0 is within
    the query set's own noise; with 100 to 300 queries that is about +-1 to +-2 nDCG@10 points."""
    import numpy as np

    values = np.asarray(differences, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no differences to resample")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(RESAMPLES, values.size))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))
