import numpy as np
import pytest

from relabel_corpus import passages, queries
from synthgen.errors import UserError
from synthgen.records import Passage
from synthgen.relabel import Retrievers, retrieve_candidates
from synthgen.retrieve import BM25Retriever, DenseRetriever, Embedder, HybridRetriever, rank_fusion


@pytest.fixture(scope="module")
def minilm(minilm_path, tmp_path_factory):
    return Embedder(minilm_path, cache_dir=tmp_path_factory.mktemp("emb-cache"))


def top1(retriever, corpus, texts):
    return [corpus[row[0].index].id for row in retriever.search(texts, 3)]


def test_each_retriever_finds_the_known_answer(minilm):
    corpus, qs = passages(), queries()
    expected = [q.passage_id for q in qs]
    texts = [q.query for q in qs]
    dense = DenseRetriever(corpus, minilm, progress=False)
    bm25 = BM25Retriever(corpus)
    assert top1(dense, corpus, texts) == expected
    assert top1(bm25, corpus, texts) == expected
    assert top1(HybridRetriever(dense, bm25), corpus, texts) == expected
    for kind in ("hnsw", "ivf"):  # the approximate indexes agree with exact search on a corpus this small
        assert top1(DenseRetriever(corpus, minilm, index=kind, progress=False), corpus, texts) == expected


def test_an_approximate_index_is_built_once_and_read_back(minilm, tmp_path):
    minilm = Embedder(minilm.path, cache_dir=tmp_path)  # a cache of its own: no index built by another test
    corpus, texts = passages(), [q.query for q in queries()]
    for kind in ("hnsw", "ivf"):
        first = DenseRetriever(corpus, minilm, index=kind, progress=False)
        again = DenseRetriever(corpus, minilm, index=kind, progress=False)
        assert first.index_built and not again.index_built
        assert len(list(minilm.cache_dir.glob(f"index-{kind}-*.faiss"))) == 1
        assert again.search(texts, 5) == first.search(texts, 5)
        edited = [Passage(id=p.id, title=p.title, text=p.text + " Edited.") if n == 0 else p for n, p in enumerate(corpus)]
        assert DenseRetriever(edited, minilm, index=kind, progress=False).index_built  # another corpus: built again


def test_scores_are_cosines_and_bm25_scores_of_the_candidates(minilm):
    corpus = passages()
    dense = DenseRetriever(corpus, minilm, progress=False)
    q = minilm.encode_queries(["why does iron rust in water"])
    hits = dense.search_vectors(q, len(corpus))[0]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    np.testing.assert_allclose(dense.scores(q, [[h.index for h in hits]])[0], [h.score for h in hits], rtol=1e-5)
    bm25 = BM25Retriever(corpus)
    row = bm25.search(["iron rust"], len(corpus))[0]
    assert bm25.scores(["iron rust"], [[h.index for h in row]])[0] == pytest.approx([h.score for h in row])
    assert row[0].score > 0 and row[-1].score == 0  # passages without the words score 0
    assert bm25.search(["the of and"], 2)[0][0].score == 0  # stopwords only: no crash, nothing matches


def test_rank_fusion_arithmetic():
    fused = rank_fusion([[7, 8, 9], [9, 7]], k=60)
    assert fused[7] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[8] == pytest.approx(1 / 62)
    assert fused[9] == pytest.approx(1 / 63 + 1 / 61)
    assert sorted(fused, key=lambda i: -fused[i]) == [7, 9, 8]


def test_embedding_cache_hits_and_misses(minilm_path, tmp_path):
    corpus = passages()[:3]
    first = Embedder(minilm_path, cache_dir=tmp_path)
    assert first.missing(corpus) == 3
    assert first.seconds_per_passage([p.text for p in corpus]) > 0 and first.missing(corpus) == 3  # a probe caches nothing
    vectors = first.encode_passages(corpus, progress=False)
    assert first.encoded == 3 and first.missing(corpus) == 0
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)  # normalized
    again = Embedder(minilm_path, cache_dir=tmp_path)  # a new run: everything comes from disk
    np.testing.assert_array_equal(again.encode_passages(corpus, progress=False), vectors)
    assert again.encoded == 0
    edited = [corpus[0], Passage(corpus[1].id, corpus[1].text + " Edited.", corpus[1].title), corpus[2]]
    third = Embedder(minilm_path, cache_dir=tmp_path)
    assert third.missing(edited) == 1
    new = third.encode_passages(edited, progress=False)
    assert third.encoded == 1  # only the edited passage
    assert not np.allclose(new[1], vectors[1]) and np.array_equal(new[0], vectors[0])


def test_embedding_cache_is_keyed_by_the_embedder(minilm_path, tiny_bert_path, tmp_path):
    corpus = passages()[:2]
    Embedder(minilm_path, cache_dir=tmp_path).encode_passages(corpus, progress=False)
    other = Embedder(tiny_bert_path, cache_dir=tmp_path)
    assert other.encode_passages(corpus, progress=False).shape == (2, 32)
    assert other.encoded == 2


def test_the_seed_is_always_a_candidate(minilm):
    corpus, qs = passages(), queries()
    index = Retrievers(corpus, minilm, progress=False)
    odd = [qs[0].__class__(id="q", passage_id="comet.txt#0", task="", query="what happens when magma erupts", form="")]
    (found,) = retrieve_candidates(qs[:1], index, "hybrid", 3)
    assert found.passages[0] == found.seed and found.seed_rank == 1
    (added,) = retrieve_candidates(odd, index, "hybrid", 3)
    assert len(added.passages) == 3 and added.passages[-1] == index.position["comet.txt#0"]
    assert added.seed_rank is None


def test_bad_embedder_and_method_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a sentence-transformers model folder"):
        Embedder(tmp_path)
    with pytest.raises(UserError, match="unknown retrieval method"):
        Retrievers(passages(), None).retriever("sparse")


def test_a_damaged_cache_shard_is_reported_and_rebuilt(minilm_path, tmp_path, capsys):
    corpus = passages()[:3]
    vectors = Embedder(minilm_path, cache_dir=tmp_path).encode_passages(corpus, progress=False)
    shards = list(tmp_path.rglob("shard-*.npz"))
    assert len(shards) == 1
    shards[0].write_bytes(shards[0].read_bytes()[:100])  # a torn shard (a copy cut short, a bad disk)
    again = Embedder(minilm_path, cache_dir=tmp_path)
    np.testing.assert_allclose(again.encode_passages(corpus, progress=False), vectors, atol=1e-6)
    assert again.encoded == 3
    err = capsys.readouterr().err
    assert "warning: damaged embedding cache shard" in err and shards[0].name in err
    assert len(list(tmp_path.rglob("shard-*.npz"))) == 1  # rebuilt
    assert Embedder(minilm_path, cache_dir=tmp_path).encode_passages(corpus, progress=False).shape == (3, 384)
