"""Each loss term against a plain loop that spells the definition out, on batches laid out by distill.data."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from distill.data import build_dataset, make_batch
from distill.losses import BatchTensors, Objective, info_nce, kl_to_teacher, margin_mse
from distill.recipe import LossConfig
from synthgen.records import TrainingExample


def example_batch():
    """Four examples with shared passages, a repeated query, a second positive and judge scores."""
    records = [
        TrainingExample(query="q1", pos=["A", "E"], neg=["B", "C"], pos_scores=[5.0, 4.0], neg_scores=[1.0, 2.0]),
        TrainingExample(query="q2", pos=["B"], neg=["A", "D"], pos_scores=[4.0], neg_scores=[3.0, 0.5]),
        TrainingExample(query="q1", pos=["E"], neg=["D"]),
        TrainingExample(query="q3", pos=["F"], neg=["C", "A"], pos_scores=[2.0], neg_scores=[1.5, -1.0]),
    ]
    data = build_dataset(records, [])
    drawn = [(data.train[0], 0, [0, 1]), (data.train[1], 0, [0, 1]), (data.train[2], 0, [0]), (data.train[3], 0, [0, 1])]
    batch = make_batch(drawn, hard_negatives=2)
    torch.manual_seed(0)
    q = torch.randn(4, 8, dtype=torch.float64)
    p = torch.randn(len(batch.passages), 8, dtype=torch.float64)
    return data, batch, BatchTensors.from_batch(batch, "cpu"), q, p


def cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


def reference_info_nce(data, batch, q, p, temperature, in_batch=True, query_negatives=False, margin=0.0,
                       passage_negatives=False, weights=None):
    """The definition, one query at a time, with identities taken from the texts of the records.

    Example i of the batch is data.train[i]; its positives' texts are never its negatives, and with a `margin`
    neither is any column whose cosine is more than `margin` above the positive's. `weights`: one per example.
    """
    weights = [1.0] * len(q) if weights is None else weights
    texts = [data.passages[row] for row in batch.passages]
    queries = [data.queries[row] for row in batch.queries]
    positive_texts = [{data.passages[row] for row in data.train[j].pos} for j in range(len(q))]
    total = 0.0
    for i in range(len(q)):
        positive = int(batch.positive[i])
        own = {int(c) for c in batch.candidates[i] if c >= 0}
        other_positives = positive_texts[i] - {texts[positive]}
        logits = [cos(q[i], p[positive]) / temperature]
        for c in range(len(texts)):
            if c == positive or texts[c] in other_positives:
                continue
            if not in_batch and c not in own:
                continue
            logits.append(cos(q[i], p[c]) / temperature)
        if query_negatives:  # another query is a negative unless it is the same text or shares a positive text
            logits += [cos(q[i], q[j]) / temperature for j in range(len(q))
                       if queries[j] != queries[i] and not positive_texts[i] & positive_texts[j]]
        if margin > 0:
            logits = logits[:1] + [x for x in logits[1:] if x <= logits[0] + margin / temperature]
        if passage_negatives:  # the positive passage against the same passage columns the query is scored against
            logits += [cos(p[positive], p[c]) / temperature for c in range(len(texts))
                       if c != positive and texts[c] not in other_positives and (in_batch or c in own)]
        total += weights[i] * (-logits[0] + math.log(sum(math.exp(x) for x in logits)))
    return total / sum(weights)


def reference_passage_to_query(data, batch, q, p, temperature):
    """Each example's first positive against the batch's queries, one row at a time: its own query is the answer,
    a query of the same text or sharing a positive text is left out."""
    queries = [data.queries[row] for row in batch.queries]
    positive_texts = [{data.passages[row] for row in data.train[j].pos} for j in range(len(q))]
    total = 0.0
    for i in range(len(q)):
        passage = p[int(batch.positive[i])]
        logits = [cos(passage, q[i]) / temperature]
        logits += [cos(passage, q[j]) / temperature for j in range(len(q))
                   if queries[j] != queries[i] and not positive_texts[i] & positive_texts[j]]
        total += -logits[0] + math.log(sum(math.exp(x) for x in logits))
    return total / len(q)


@pytest.mark.parametrize("query_negatives", [False, True])
def test_symmetric_info_nce_is_the_mean_of_both_directions(query_negatives):
    data, batch, b, q, p = example_batch()
    ours = info_nce(q, p, b, 0.1, True, query_negatives, symmetric=True)
    forward = reference_info_nce(data, batch, q, p, 0.1, True, query_negatives)
    assert float(ours) == pytest.approx((forward + reference_passage_to_query(data, batch, q, p, 0.1)) / 2, rel=1e-9)


@pytest.mark.parametrize("in_batch,query_negatives", [(True, False), (True, True), (False, False), (False, True)])
def test_info_nce_matches_the_definition(in_batch, query_negatives):
    data, batch, b, q, p = example_batch()
    ours = info_nce(q, p, b, 0.1, in_batch, query_negatives)
    assert float(ours) == pytest.approx(reference_info_nce(data, batch, q, p, 0.1, in_batch, query_negatives), rel=1e-9)


@pytest.mark.parametrize("in_batch,query_negatives", [(True, False), (True, True), (False, True)])
def test_passage_negatives_add_the_positive_passages_own_row(in_batch, query_negatives):
    data, batch, b, q, p = example_batch()
    ours = info_nce(q, p, b, 0.1, in_batch, query_negatives, passage_negatives=True)
    reference = reference_info_nce(data, batch, q, p, 0.1, in_batch, query_negatives, passage_negatives=True)
    assert float(ours) == pytest.approx(reference, rel=1e-9)
    assert float(ours) > float(info_nce(q, p, b, 0.1, in_batch, query_negatives))  # more negatives, higher loss


@pytest.mark.parametrize("query_negatives", [False, True])
def test_false_negative_margin_leaves_out_negatives_far_above_the_positive(query_negatives):
    data, batch, b, q, p = example_batch()
    masked = info_nce(q, p, b, 0.1, True, query_negatives, false_negative_margin=0.2)
    assert float(masked) == pytest.approx(reference_info_nce(data, batch, q, p, 0.1, True, query_negatives, 0.2), rel=1e-9)
    assert float(masked) < float(info_nce(q, p, b, 0.1, True, query_negatives))  # some column was left out


@pytest.mark.parametrize("query_negatives", [False, True])
def test_confidence_weights_weigh_each_row_by_its_positives_judge_score(query_negatives):
    """A row weighs its positive's judge score clamped to [0, 1]: the fixture's raw scores are above 1 (q3's 2.0
    weighs 1), two rows get scores inside it, and the repeated q1 has no scores and weighs 1."""
    data, batch, b, q, p = example_batch()
    b.teacher[0, 0], b.teacher[1, 0] = 0.25, 0.5
    weights = [0.25, 0.5, 1.0, 1.0]
    config = LossConfig(query_negatives=query_negatives, temperature=0.1, confidence_weights=True)
    ours = Objective(config, q.shape[1]).term(q, p, b, None)
    assert float(ours) == pytest.approx(reference_info_nce(data, batch, q, p, 0.1, True, query_negatives, weights=weights), rel=1e-9)
    assert float(ours) != pytest.approx(reference_info_nce(data, batch, q, p, 0.1, True, query_negatives), rel=1e-6)


def test_a_repeated_passage_is_not_its_own_negative():
    """Two examples share one positive: with rows deduplicated it is one column, the positive of both."""
    records = [TrainingExample(query="q1", pos=["same"], neg=["x"]), TrainingExample(query="q2", pos=["same"], neg=["y"])]
    data = build_dataset(records, [])
    batch = make_batch([(data.train[0], 0, [0]), (data.train[1], 0, [0])], hard_negatives=1)
    assert len(batch.passages) == 3 and batch.positive.tolist() == [0, 0]
    torch.manual_seed(1)
    p = torch.randn(3, 8, dtype=torch.float64)
    q = p[:1] + 0.1 * torch.randn(2, 8, dtype=torch.float64)  # both queries close to their shared positive
    ours = float(info_nce(q, p, BatchTensors.from_batch(batch, "cpu"), 0.05))
    # Counting the copy as a negative (what a batch without deduplication does) gives a larger loss.
    naive_p = torch.cat([p[:1], p])
    naive = 0.0
    for i, pos in enumerate([0, 1]):
        logits = F.normalize(q[i], dim=0) @ F.normalize(naive_p, dim=1).T / 0.05
        naive += float(torch.logsumexp(logits, 0) - logits[pos])
    assert ours == pytest.approx(reference_info_nce(data, batch, q, p, 0.05), rel=1e-9)
    assert ours < 0.1 and naive / 2 > ours + 0.5  # the copy as a negative costs about log 2


def test_queries_of_one_passage_are_not_each_others_negatives():
    """An LLM query and a keyphrase query of the same passage in one batch: with query negatives on, each would
    push the other away though both mean the passage; a third query about another passage still counts."""
    records = [TrainingExample(query="what binds the receptor", pos=["P"], neg=["X"]),
               TrainingExample(query="receptor binding site", pos=["P"], neg=["Y"]),
               TrainingExample(query="unrelated", pos=["Z"], neg=["X"])]
    data = build_dataset(records, [])
    batch = make_batch([(data.train[i], 0, [0]) for i in range(3)], hard_negatives=1)
    b = BatchTensors.from_batch(batch, "cpu")
    torch.manual_seed(3)
    q = torch.randn(3, 8, dtype=torch.float64)
    p = torch.randn(len(batch.passages), 8, dtype=torch.float64)
    ours = float(info_nce(q, p, b, 0.1, True, True))
    assert ours == pytest.approx(reference_info_nce(data, batch, q, p, 0.1, True, True), rel=1e-9)
    # without the mask, the two queries of P would be each other's negatives: a different loss
    unmasked = BatchTensors.from_batch(batch, "cpu")
    unmasked.related_queries = torch.eye(3, dtype=torch.bool)
    assert float(info_nce(q, p, unmasked, 0.1, True, True)) != pytest.approx(ours, rel=1e-6)
    assert b.related_queries.tolist() == [[True, True, False], [True, True, False], [False, False, True]]


def test_matryoshka_truncates_then_renormalizes_and_weights():
    data, batch, b, q, p = example_batch()
    objective = Objective(LossConfig(temperature=0.1, matryoshka_dims=[8, 4, 2], matryoshka_weights=[1.0, 0.5, 0.25]), dimension=8)
    expected = sum(
        w * reference_info_nce(data, batch, q[:, :d], p[:, :d], 0.1) for d, w in ((8, 1.0), (4, 0.5), (2, 0.25))
    )
    assert float(objective(q, p, b)["loss"]) == pytest.approx(expected, rel=1e-9)
    # Scaling a vector's tail must not change the small sizes' terms: they renormalize after truncating.
    stretched = q.clone()
    stretched[:, 4:] *= 10
    small = Objective(LossConfig(temperature=0.1, matryoshka_dims=[4]), dimension=8)
    assert float(small(stretched, p, b)["loss"]) == pytest.approx(float(small(q, p, b)["loss"]), rel=1e-12)


def test_margin_mse_matches_the_definition():
    data, batch, b, q, p = example_batch()
    terms = []
    for i in range(len(q)):
        cands = [int(c) for c in batch.candidates[i]]
        t = batch.teacher[i]
        if math.isnan(t[0]):
            continue
        for k in range(1, len(cands)):
            if cands[k] >= 0 and not math.isnan(t[k]):
                student = cos(q[i], p[cands[0]]) - cos(q[i], p[cands[k]])
                terms.append((student - (float(t[0]) - float(t[k]))) ** 2)
    assert len(terms) == 6  # example 3 carries no scores and is left out
    assert float(margin_mse(q, p, b)) == pytest.approx(sum(terms) / len(terms), rel=1e-9)


def test_kl_to_teacher_matches_the_definition():
    data, batch, b, q, p = example_batch()
    total, rows = 0.0, 0
    for i in range(len(q)):
        t = batch.teacher[i]
        cands = [int(c) for k, c in enumerate(batch.candidates[i]) if c >= 0 and not math.isnan(t[k])]
        scores = [float(x) for x in t if not math.isnan(x)]
        if len(cands) < 2:
            continue
        s = [cos(q[i], p[c]) / 0.1 for c in cands]
        t_soft = [math.exp(x / 2.0) for x in scores]
        t_soft = [x / sum(t_soft) for x in t_soft]
        s_norm = math.log(sum(math.exp(x) for x in s))
        total += sum(tp * (math.log(tp) - (sx - s_norm)) for tp, sx in zip(t_soft, s))
        rows += 1
    assert rows == 3
    assert float(kl_to_teacher(q, p, b, 0.1, 2.0)) == pytest.approx(total / rows, rel=1e-9)


def test_objective_adds_the_weighted_distillation_term():
    data, batch, b, q, p = example_batch()
    plain = Objective(LossConfig(temperature=0.1), 8)(q, p, b)
    mixed = Objective(LossConfig(temperature=0.1, distill="margin_mse", distill_weight=0.3), 8)(q, p, b)
    assert "distill" not in plain
    assert float(mixed["loss"]) == pytest.approx(float(plain["loss"]) + 0.3 * float(margin_mse(q, p, b)), rel=1e-12)
