"""Which passages get queries: a seeded random order, or one stratified over k-means clusters of the corpus.

With a budget of hundreds of queries for thousands of passages, a random sample can leave whole topics of a
collection without a single query, and the student then learns nothing about them. The cluster order
(DUQGen, Chandradevan et al. 2024) splits the passage embeddings into k-means clusters and interleaves them
so that every prefix of the order holds each cluster in proportion to its size: the j-th passage (in seeded
random order) of a cluster of n gets the position (j + 1/2) / n, and the corpus is sorted by that position.
Both orders are prefix-stable, as the generate stage needs: a larger --max-passages extends a smaller run's
sample instead of drawing a new one.
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

import numpy as np

SAMPLES = ("random", "cluster")
MAX_QUERIES_PER_PASSAGE = 8


def queries_per_passage(passages: int, max_passages: int | None, keyphrases: int | None = 0) -> int:
    """A corpus smaller than the sample spends it as several LLM queries per passage, each in another form, up to
    MAX_QUERIES_PER_PASSAGE: ADI's 82 passages get 8 each at the 1,280-passage default, where one each left ~75
    training records, 3 steps and a model at about zero-shot; 8 each gained 1.14 nDCG@10 over eight draws
    (docs/results.md). A corpus of at least half the sample keeps one query per passage, and so does one that gets
    `keyphrases` queries per LLM passage: on 400-passage subsets of Cranfield and CISI, 3 each tied one each over
    four draws (-0.29) at about three times the time (docs/ablations.md)."""
    if not max_passages or passages >= max_passages or keyphrases:
        return 1
    return min(MAX_QUERIES_PER_PASSAGE, max_passages // max(passages, 1))


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any values: the same parts give the same seed in every process and run."""
    digest = hashlib.sha256("\0".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % (2**31 - 1)


def random_order(ids: Sequence[str], seed: int) -> list[int]:
    """Positions of `ids`, ordered by a hash of (seed, id): a random sample whose prefixes nest."""
    return sorted(range(len(ids)), key=lambda i: (derive_seed(seed, "sample", ids[i]), ids[i]))


def cluster_order(ids: Sequence[str], clusters: Sequence[int], seed: int) -> list[int]:
    """Positions of `ids` interleaved across `clusters` so that every prefix is proportional (module docstring)."""
    size: dict[int, int] = {}
    place: list[int] = [0] * len(ids)
    rank: list[int] = [0] * len(ids)  # position in the random order: ties between clusters follow it
    for r, i in enumerate(random_order(ids, seed)):
        rank[i] = r
        place[i] = size.get(clusters[i], 0)
        size[clusters[i]] = place[i] + 1
    return sorted(range(len(ids)), key=lambda i: ((place[i] + 0.5) / size[clusters[i]], rank[i]))


def sample_order(passages: Sequence, sample: str, seed: int, clusters: Sequence[int] | None = None) -> list:
    """Every passage, in the run's sample order: the LLM's passages are its first --max-passages, the keyphrase
    queries' passages the first few times as many. `clusters` (one per passage) only for the cluster sample."""
    ids = [p.id for p in passages]
    if sample == "cluster":
        if clusters is None or len(clusters) != len(passages):
            raise ValueError("the cluster sample needs one cluster per passage")
        order = cluster_order(ids, clusters, seed)
    else:
        order = random_order(ids, seed)
    return [passages[i] for i in order]


def kmeans_clusters(vectors: np.ndarray, k: int, seed: int) -> list[int]:
    """Cluster of each vector under faiss k-means (cosine: vectors are normalized first), deterministic per seed."""
    import faiss

    data = np.ascontiguousarray(vectors, dtype=np.float32)
    faiss.normalize_L2(data)
    k = max(1, min(k, len(data)))
    if k == 1:
        return [0] * len(data)
    # five restarts keep the best objective: one unlucky random start can split a topic and merge two others
    kmeans = faiss.Kmeans(data.shape[1], k, niter=20, nredo=5, seed=seed % (2**31 - 1), spherical=True,
                          min_points_per_centroid=1, verbose=False)
    kmeans.train(data)
    _, assigned = kmeans.index.search(data, 1)
    return assigned[:, 0].astype(int).tolist()


def passage_clusters(passages, seed: int, cache_dir=None) -> list[int]:
    """k-means clusters of the passages' embeddings by the default embedder; the embeddings land in the cache
    that relabel's dense retrieval reads, so the cluster sample costs no second encoding of the corpus."""
    from synthgen.retrieve import Embedder

    vectors = Embedder(None, cache_dir).encode_passages(passages)
    return kmeans_clusters(vectors, cluster_count(len(passages)), seed)


def cluster_count(passages: int) -> int:
    """About sqrt(corpus) clusters. It must not depend on the budget: a larger --max-passages has to extend the
    same order, not cluster anew."""
    return max(1, math.ceil(passages**0.5))
