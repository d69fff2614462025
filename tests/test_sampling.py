"""Which passages get queries: the random and the cluster-stratified orders (synthgen.sampling)."""

from collections import Counter

import numpy as np
import pytest

from synthgen.generate import GenerateConfig, plan
from synthgen.records import Passage
from synthgen.sampling import (MAX_QUERIES_PER_PASSAGE, cluster_count, cluster_order, kmeans_clusters,
                               queries_per_passage, random_order)


def _ids(n):
    return [f"doc{i}.txt#{i % 3}" for i in range(n)]


def test_random_order_is_a_seeded_permutation():
    ids = _ids(50)
    order = random_order(ids, seed=3)
    assert sorted(order) == list(range(50))
    assert order == random_order(ids, seed=3)
    assert order != random_order(ids, seed=4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cluster_order_keeps_every_prefix_proportional(seed):
    ids = _ids(120)
    rng = np.random.default_rng(seed)
    clusters = rng.choice(4, size=120, p=[0.55, 0.25, 0.15, 0.05]).tolist()
    sizes = Counter(clusters)
    order = cluster_order(ids, clusters, seed)
    assert sorted(order) == list(range(120))
    assert order == cluster_order(ids, clusters, seed)
    for m in range(1, 121):
        taken = Counter(clusters[i] for i in order[:m])
        for c, n in sizes.items():
            assert abs(taken[c] - m * n / 120) <= 1.0, (m, c, taken[c], m * n / 120)


def test_a_small_cluster_is_reached_early_where_a_random_sample_can_miss_it():
    ids = _ids(200)
    clusters = [1 if i % 40 == 0 else 0 for i in range(200)]  # 5 passages in a cluster of their own
    order = cluster_order(ids, clusters, seed=0)
    assert sum(clusters[i] for i in order[:40]) == 1  # 40 x 5 / 200 = 1, exactly as many as its share


@pytest.mark.parametrize("seed", range(6))
def test_kmeans_finds_separated_groups_and_is_deterministic(seed):
    rng = np.random.default_rng(seed)
    centers = np.eye(8, dtype=np.float32)[:3] * 10
    vectors = np.concatenate([c + rng.normal(scale=0.1, size=(30, 8)).astype(np.float32) for c in centers])
    first = kmeans_clusters(vectors, 3, seed=seed)
    assert first == kmeans_clusters(vectors, 3, seed=seed)
    groups = [set(first[i * 30 : (i + 1) * 30]) for i in range(3)]
    assert all(len(g) == 1 for g in groups) and len(set.union(*groups)) == 3
    assert kmeans_clusters(vectors[:1], 3, seed=0) == [0]


def test_cluster_count_grows_with_the_corpus_only():
    assert cluster_count(5183) == 72
    assert cluster_count(22) == 5
    assert cluster_count(1) == 1


def test_plan_with_the_cluster_sample_covers_each_cluster_in_proportion():
    passages = [Passage(id=f"p{i}", text=f"text {i}") for i in range(40)]
    clusters = [i % 4 for i in range(40)]
    items = plan(passages, GenerateConfig(sample="cluster", max_passages=8), clusters)
    assert Counter(clusters[int(item.passage.id[1:])] for item in items) == {0: 2, 1: 2, 2: 2, 3: 2}
    longer = plan(passages, GenerateConfig(sample="cluster", max_passages=12), clusters)
    assert [i.id for i in longer[:8]] == [i.id for i in items]  # a larger budget extends the smaller one
    with pytest.raises(ValueError):
        plan(passages, GenerateConfig(sample="cluster"))


def test_a_corpus_smaller_than_the_sample_spends_it_as_several_queries_per_passage_up_to_a_cap():
    assert queries_per_passage(82, 1280) == MAX_QUERIES_PER_PASSAGE  # ADI: 15 would fill the sample
    assert [queries_per_passage(n, 1280) for n in (200, 427, 640, 641, 5183)] == [6, 2, 2, 1, 1]
    assert queries_per_passage(10, None) == 1  # no sample size: every passage, once
    assert queries_per_passage(0, 1280) == MAX_QUERIES_PER_PASSAGE  # an empty corpus plans nothing either way
    assert queries_per_passage(82, 1280, keyphrases=6) == 1  # keyphrase queries come too: one LLM query each
    assert queries_per_passage(82, 1280, keyphrases=None) == MAX_QUERIES_PER_PASSAGE  # not decided yet: by size
