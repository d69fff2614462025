"""Fusion and selection arithmetic on hand-made candidate lists (no models)."""

import pytest

from synthgen.errors import UserError
from synthgen.records import Passage, Query
from synthgen.judges import LLMJudges
from synthgen.relabel import (Candidates, SelectionConfig, drop_unlikely, fuse, fused_order, judge_batches, judge_ranks,
                              llm_pairs, near_duplicate, parse_judges, scaled_scores, select, summarize)

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()


def corpus(n: int) -> list[Passage]:
    # distinct texts: each passage has its own words, so no two are near-duplicates
    return [Passage(id=f"p{i}", text=" ".join(f"{w}{i}" for w in WORDS)) for i in range(n)]


def cands(scores: dict[str, list], seed: int | None = 0, seed_rank: int | None = 1) -> Candidates:
    n = len(next(iter(scores.values())))
    query = Query(id="q1", passage_id=f"p{seed}" if seed is not None else "", task="t", query="q", form="question")
    return Candidates(query, list(range(n)), seed, seed_rank, {k: list(v) for k, v in scores.items()})


def test_judge_ranks_share_ties_and_put_unjudged_last():
    assert judge_ranks([0.5, 0.9, 0.5, None, 0.1, None]) == [2, 1, 2, 5, 4, 6]
    assert judge_ranks([-1.0, -1.0, -1.0]) == [1, 1, 1]


def test_fusion_is_reciprocal_rank_arithmetic():
    c = cands({"a": [3.0, 2.0, 1.0], "b": [-5.0, -1.0, -3.0]})
    assert fuse(c, ["a", "b"], k=60) == pytest.approx([1 / 61 + 1 / 63, 1 / 62 + 1 / 61, 1 / 63 + 1 / 62])
    assert fused_order(c, ["a", "b"]) == [1, 0, 2]


def test_ties_go_to_the_seed_then_to_retrieval_order():
    c = cands({"a": [1.0, 2.0, 0.0], "b": [2.0, 1.0, 0.0]}, seed=1, seed_rank=2)
    assert fused_order(c, ["a", "b"]) == [1, 0, 2]  # 0 and 1 tie; 1 is the seed
    c = cands({"a": [1.0, 2.0, 0.0], "b": [2.0, 1.0, 0.0]}, seed=2, seed_rank=3)
    assert fused_order(c, ["a", "b"]) == [0, 1, 2]  # tie without the seed: retrieval order


def test_normalized_scores_work_for_negative_log_probabilities():
    c = cands({"ql": [-2.0, -3.0, -4.0, None], "dense": [0.9, 0.7, 0.5, 0.6]})
    assert scaled_scores(c, ["ql", "dense"]) == pytest.approx([1.0, 0.5 / 2 + 0.5 / 2, 0.0, 0.25 / 2])
    flat = cands({"ql": [-1.0, -1.0]})
    assert scaled_scores(flat, ["ql"]) == [1.0, 1.0]  # a judge that cannot tell them apart protects all


def test_positive_can_differ_from_the_seed_and_the_seed_is_never_a_negative():
    passages = corpus(6)
    c = cands({"ql": [-3.0, -1.0, -4.0, -5.0, -6.0, -7.0], "dense": [0.6, 0.9, 0.5, 0.4, 0.3, 0.2]})
    s = select(c, passages, ["ql", "dense"], SelectionConfig(negatives=10, ranks=(1, 20), margin=1.0))
    assert s.example.pos_ids == ["p1"] and s.example.seed_id == "p0" and not s.pos_is_seed
    assert "p0" not in s.example.neg_ids and s.example.neg_ids == ["p2", "p3", "p4", "p5"]
    assert s.example.pos_scores == [1.0] and all(x < 1.0 for x in s.example.neg_scores)
    seed_pos = select(c, passages, ["ql", "dense"], SelectionConfig(positive="seed", ranks=(1, 20), margin=1.0))
    assert seed_pos.example.pos_ids == ["p0"] and seed_pos.pos_is_seed
    assert seed_pos.example.neg_ids == ["p2", "p3", "p4", "p5"]  # p1 scores above the positive: protected


def test_candidates_above_the_margin_are_never_negatives():
    passages = corpus(5)
    close = cands({"ql": [-1.0, -1.01, -1.02, -1.03, -5.0]}, seed=None, seed_rank=None)
    s = select(close, passages, ["ql"], SelectionConfig(negatives=4, ranks=(1, 5), margin=0.95))
    # normalized: 1, .9975, .995, .9925, 0 -> only the last is below 95% of the positive's
    assert s.example.neg_ids == ["p4"] and s.negatives_short
    everyone = cands({"ql": [-1.0, -1.0, -1.0, -1.0, -1.0]}, seed=None, seed_rank=None)
    s = select(everyone, passages, ["ql"], SelectionConfig(negatives=4, ranks=(1, 5)))
    assert s.example is not None and s.example.neg == [] and s.negatives_short  # kept, with no negatives


def test_fewer_candidates_than_negatives_asked():
    passages = corpus(4)
    c = cands({"ql": [-1.0, -2.0, -3.0, -4.0]})
    for strategy in ("random", "top", "lowest"):
        s = select(c, passages, ["ql"], SelectionConfig(negatives=7, strategy=strategy, ranks=(2, 20), margin=1.0))
        assert s.example.neg_ids == ["p1", "p2", "p3"] and s.negatives_short


def test_strategies_and_rank_window():
    passages = corpus(10)
    c = cands({"ql": [-float(i) for i in range(10)]})
    pick = lambda **kw: select(c, passages, ["ql"], SelectionConfig(margin=1.0, **kw)).example.neg_ids  # noqa: E731
    assert pick(negatives=2, strategy="top", ranks=(3, 8)) == ["p2", "p3"]
    assert pick(negatives=2, strategy="lowest", ranks=(3, 8)) == ["p6", "p7"]
    chosen = pick(negatives=3, strategy="random", ranks=(3, 8))
    assert len(chosen) == 3 and set(chosen) <= {f"p{i}" for i in range(2, 8)}
    assert chosen == sorted(chosen, key=lambda x: int(x[1:]))  # kept in rank order
    assert chosen == pick(negatives=3, strategy="random", ranks=(3, 8))  # same seed, same choice
    others = [tuple(pick(negatives=3, strategy="random", ranks=(3, 8), seed=s)) for s in range(1, 6)]
    assert any(o != tuple(chosen) for o in others)


def test_near_duplicates_of_the_positive_are_not_negatives():
    text = " ".join(WORDS)
    passages = [Passage("p0", text), Passage("p1", text + " one more sentence."), Passage("p2", "something else entirely here today")]
    assert near_duplicate(passages[0].text, passages[1].text, 0.6)
    assert not near_duplicate(passages[0].text, passages[2].text, 0.6)
    c = cands({"ql": [-1.0, -2.0, -3.0]}, seed=None, seed_rank=None)
    s = select(c, passages, ["ql"], SelectionConfig(ranks=(1, 3), margin=1.0))
    assert s.example.neg_ids == ["p2"]


def test_round_trip_filter_drops_queries_whose_seed_was_not_retrieved():
    passages = corpus(3)
    c = cands({"ql": [-1.0, -2.0, -3.0]}, seed=2, seed_rank=None)
    assert select(c, passages, ["ql"], SelectionConfig(round_trip=True)).dropped == "round_trip"
    assert select(c, passages, ["ql"], SelectionConfig(round_trip=False)).example is not None


def test_agreement_filter_keeps_a_query_only_when_enough_judges_put_its_positive_first():
    passages = corpus(4)
    judges = ["ql", "dense", "bm25"]
    # the fused top is p1 (ql and bm25 put it first); dense alone prefers p0
    split = cands({"ql": [-2.0, -1.0, -3.0, -4.0], "dense": [0.9, 0.8, 0.1, 0.0], "bm25": [1.0, 5.0, 2.0, 0.0]})
    assert select(split, passages, judges, SelectionConfig()).example.pos_ids == ["p1"]
    assert select(split, passages, judges, SelectionConfig(min_agreement=2)).example.pos_ids == ["p1"]
    dropped = select(split, passages, judges, SelectionConfig(min_agreement=3))
    assert dropped.example is None and dropped.dropped == "agreement"
    # every judge has its own top: whichever wins the fusion, only one judge put it first
    apart = cands({"ql": [-1.0, -2.0, -3.0, -4.0], "dense": [0.1, 0.9, 0.2, 0.0], "bm25": [0.0, 1.0, 5.0, 2.0]})
    assert select(apart, passages, judges, SelectionConfig(min_agreement=1)).example is not None
    assert select(apart, passages, judges, SelectionConfig(min_agreement=2)).dropped == "agreement"
    with pytest.raises(UserError, match="min-agreement"):
        SelectionConfig(min_agreement=-1).check()


def test_drop_unlikely_drops_the_llms_queries_least_likely_given_their_seed():
    passages = corpus(3)
    config = SelectionConfig(ranks=(1, 3), margin=1.0)
    made = []
    # the seed's query likelihood (the seed is p0, p1 or p2 in turn) decides, not the candidates' best score
    for n, seed_score in enumerate([-1.0, -6.0, -3.0, -5.0, -2.0, -4.0]):
        seed = n % 3
        scores = [-0.5 if i != seed else seed_score for i in range(3)]
        c = cands({"ql": scores}, seed=seed)
        c.query = Query(id=f"p{seed}@{n}", passage_id=f"p{seed}", task="t", query=f"q{n}", form="question")
        made.append(c)
    keyphrase = cands({"ql": [-9.0, -0.5, -0.5]})  # least likely of all, but the LLM did not write it
    keyphrase.query = Query(id="p0@keyphrases", passage_id="p0", task="t", query="k", form="keywords")
    unscored = cands({"ql": [None, -0.5, -0.5]})  # no seed score: it cannot be ranked, so it stays
    unscored.query = Query(id="p0@9", passage_id="p0", task="t", query="u", form="question")
    candidates = [*made, keyphrase, unscored]
    selections = [select(c, passages, ["ql"], config) for c in candidates]
    kept = drop_unlikely(candidates, selections, 0.5)
    assert [s.dropped for s in kept] == [None, "unlikely", None, "unlikely", None, "unlikely", None, None]
    assert kept[0] is selections[0] and kept[1].top1 == selections[1].top1
    assert [s.dropped for s in drop_unlikely(candidates, selections, 0.2)].count("unlikely") == 1  # int(0.2 x 6)
    assert summarize(kept, ["ql"])["dropped"] == {"unlikely": 3}
    with pytest.raises(UserError, match="drop-unlikely"):
        SelectionConfig(drop_unlikely=1.0).check()


def test_summary_counts_rates_and_agreement():
    passages = corpus(3)
    a = cands({"ql": [-1.0, -2.0, -3.0], "dense": [0.9, 0.5, 0.1]})
    b = cands({"ql": [-2.0, -1.0, -3.0], "dense": [0.9, 0.5, 0.1]})
    dropped = cands({"ql": [-1.0, -2.0, -3.0], "dense": [0.9, 0.5, 0.1]}, seed=2, seed_rank=None)
    config = SelectionConfig(round_trip=True, ranks=(1, 3), margin=1.0)
    summary = summarize([select(x, passages, ["ql", "dense"], config) for x in (a, b, dropped)], ["ql", "dense"])
    assert summary["written"] == 2 and summary["dropped"] == {"round_trip": 1}
    assert summary["positive_is_seed_rate"] == 1.0  # b: ql and dense tie at the top, the seed wins
    assert summary["judge_top1_agrees_with_fused"] == {"ql": 0.5, "dense": 1.0}
    assert summary["judge_top1_agreement"] == {"ql~dense": 0.5}


def test_llm_pairs_are_passage_major_and_include_the_seed():
    c1 = cands({"ql": [None] * 4}, seed=3, seed_rank=4)
    c2 = cands({"ql": [None] * 4}, seed=0, seed_rank=1)
    assert llm_pairs([c1, c2], depth=2) == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 3)]


def test_judge_batches_skip_known_pairs_and_never_split_a_passage():
    passages = corpus(4)
    many = [Candidates(Query(id=f"q{n}", passage_id="p0", task="t", query=f"query {n}", form="question"),
                       [0, 1, 2, 3], 0, 1) for n in range(3)]
    judges = LLMJudges(None, ["ql"], llm_name="hf:none")
    pairs = llm_pairs(many, depth=2)  # 3 queries x passages 0 and 1
    known = {judges.key("ql", many[0].query, passages[1]): -1.0}
    batches = judge_batches(many, passages, judges, pairs, known, batch_pairs=2)
    assert [[(q.id, p.id) for q, p, _ in b] for b in batches] == [
        [("q0", "p0"), ("q1", "p0"), ("q2", "p0")],  # 2 asked, 3 sent: passage 0's pairs stay together
        [("q1", "p1"), ("q2", "p1")]]  # q0 x p1 was judged already
    assert all(missing == ("ql",) for b in batches for _, _, missing in b)


def test_options_are_checked():
    with pytest.raises(UserError, match="--judges"):
        parse_judges("ql,magic")
    assert parse_judges("ql, dense,ql") == ("ql", "dense")
    for bad in (SelectionConfig(strategy="best"), SelectionConfig(ranks=(5, 2)), SelectionConfig(margin=0),
                SelectionConfig(positive="any"), SelectionConfig(negatives=-1)):
        with pytest.raises(UserError):
            bad.check()
