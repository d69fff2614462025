"""The contrastive toolbox's losses, queue, re-mining and multi-positive relabeling against plain loops that
spell each definition out, on batches laid out by distill.data, including the edge cases: one positive, every
negative masked, an empty queue."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distill.data import build_dataset, epoch_batches, make_batch
from distill.losses import BatchTensors, ExtraNegatives, circle, cosent, info_nce, triplet
from distill.queue import PassageQueue
from distill.recipe import RemineConfig
from distill.remine import mine, window
from synthgen.records import TrainingExample
from synthgen.relabel import SelectionConfig, scaled_scores, select
from tests.test_relabel import cands, corpus


def cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


def multi_batch():
    """Examples with two and three positives (all drawn), shared passages and judge scores."""
    records = [
        TrainingExample(query="q1", pos=["A", "E"], neg=["B", "C"], pos_scores=[5.0, 4.0], neg_scores=[1.0, 2.0]),
        TrainingExample(query="q2", pos=["B", "G", "H"], neg=["A", "D"], pos_scores=[4.0, 3.9, 3.8], neg_scores=[3.0, 0.5]),
        TrainingExample(query="q3", pos=["F"], neg=["C", "A"], pos_scores=[2.0], neg_scores=[1.5, -1.0]),
    ]
    data = build_dataset(records, [])
    drawn = [(data.train[0], [0, 1], [0, 1]), (data.train[1], [0, 2, 1], [0, 1]), (data.train[2], 0, [0, 1])]
    batch = make_batch(drawn, hard_negatives=2)
    torch.manual_seed(0)
    q = torch.randn(3, 8, dtype=torch.float64)
    p = torch.randn(len(batch.passages), 8, dtype=torch.float64)
    return data, batch, BatchTensors.from_batch(batch, "cpu"), q, p


def columns(data, batch, i):
    """Positive and negative columns of query i, from the records' texts: every other column not one of its positives."""
    texts = [data.passages[row] for row in batch.passages]
    own = {data.passages[row] for row in data.train[i].pos}
    positives = [c for c in range(len(texts)) if texts[c] in own]
    return positives, [c for c in range(len(texts)) if texts[c] not in own]


def reference(data, batch, q, p, t, tau_plus=0.0, queue=None, queue_rows=()):
    """Mean over queries of the mean over positives of -log(e^s_p / (sum over positives and negatives)), or
    with tau_plus the negatives' sum replaced by Chuang's debiased N_g."""
    total = 0.0
    for i in range(len(q)):
        positives, negatives = columns(data, batch, i)
        neg = [cos(q[i], p[c]) / t for c in negatives]
        if queue is not None:
            neg += [cos(q[i], queue[k]) / t for k in range(len(queue)) if queue_rows[k] not in data.train[i].pos]
        pos = [cos(q[i], p[c]) / t for c in positives]
        terms = []
        for s in pos:
            if tau_plus == 0:
                terms.append(-s + math.log(sum(math.exp(x) for x in pos + neg)))
            else:
                n = len(neg)
                ng = max((sum(math.exp(x) for x in neg) - n * tau_plus * math.exp(s)) / (1 - tau_plus), n * math.exp(-1 / t))
                terms.append(-math.log(math.exp(s) / (sum(math.exp(x) for x in pos) + ng)))
        total += sum(terms) / len(terms)
    return total / len(q)


def test_batch_lays_out_every_drawn_positive():
    data, batch, b, q, p = multi_batch()
    assert batch.positives.sum(axis=1).tolist() == [2, 3, 1]
    assert not (batch.positives & batch.same_passage).any()
    # The first drawn positive is the one pair losses compare with the hard negatives.
    assert batch.candidates[:, 0].tolist() == batch.positive.tolist()
    assert batch.positives[np.arange(3), batch.positive].all()


def test_epoch_draws_up_to_n_positives_and_one_by_default():
    records = [TrainingExample(query=f"q{i}", pos=[f"P{i}", f"Q{i}", f"R{i}"], neg=[f"N{i}"]) for i in range(6)]
    data = build_dataset(records, [])
    one = epoch_batches(data.train, 0, 1, 3, 1)
    two = epoch_batches(data.train, 0, 1, 3, 1, positives=2)
    assert all(b.positives.sum(axis=1).tolist() == [1, 1, 1] for b in one)
    assert all(b.positives.sum(axis=1).tolist() == [2, 2, 2] for b in two)


@pytest.mark.parametrize("tau_plus", [0.0, 0.1, 0.3])
def test_multi_positive_and_debiased_info_nce_match_the_definition(tau_plus):
    data, batch, b, q, p = multi_batch()
    ours = float(info_nce(q, p, b, 0.1, tau_plus=tau_plus))
    assert ours == pytest.approx(reference(data, batch, q, p, 0.1, tau_plus), rel=1e-9)


def test_debiasing_lowers_the_loss_and_a_zero_rate_is_plain_info_nce():
    data, batch, b, q, p = multi_batch()
    plain = float(info_nce(q, p, b, 0.1))
    assert float(info_nce(q, p, b, 0.1, tau_plus=1e-12)) == pytest.approx(reference(data, batch, q, p, 0.1, 0.0), rel=1e-6)
    assert float(info_nce(q, p, b, 0.1, tau_plus=0.2)) < plain


@pytest.mark.parametrize("tau_plus", [0.0, 0.2])
def test_all_negatives_masked_gives_zero_loss_and_finite_gradients(tau_plus):
    records = [TrainingExample(query="q1", pos=["A"], neg=[]), TrainingExample(query="q2", pos=["B"], neg=[])]
    data = build_dataset(records, [])
    batch = make_batch([(data.train[0], 0, []), (data.train[1], 0, [])], hard_negatives=1)
    q = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    p = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    b = BatchTensors.from_batch(batch, "cpu")
    loss = info_nce(q, p, b, 0.05, in_batch_negatives=False, tau_plus=tau_plus)  # no hard negatives, no in-batch ones
    loss.backward()
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-12)
    assert torch.isfinite(q.grad).all() and torch.isfinite(p.grad).all()
    circ = circle(q, p, b, 0.25, 20.0, in_batch_negatives=False)
    circ.backward()
    assert float(circ.detach()) == 0.0 and torch.isfinite(q.grad).all()


def test_queue_entries_are_negatives_except_the_querys_own_positives():
    data, batch, b, q, p = multi_batch()
    torch.manual_seed(3)
    queue = PassageQueue(size=4, dimension=8)
    e_row = data.train[0].pos[1]  # "E", a positive of q1, seen in an earlier batch
    d_row = data.train[1].neg[1]  # "D", nobody's positive
    queue.push(torch.randn(3, 8, dtype=torch.float64), [d_row, e_row, data.train[1].pos[0]])
    queue.push(torch.randn(2, 8, dtype=torch.float64), [d_row, data.train[2].pos[0]])
    assert len(queue.rows) == 4  # the oldest entry fell out
    positives = [set(ex.pos) for ex in data.train]
    extra = queue.negatives(positives, "cpu")
    rows = queue.rows.tolist()
    for i, own in enumerate(positives):
        assert extra.excluded[i].tolist() == [r in own for r in rows]
    ours = float(info_nce(q, p, b, 0.1, extra=extra))
    expected = reference(data, batch, q, p, 0.1, queue=queue.embeddings.double(), queue_rows=rows)
    assert ours == pytest.approx(expected, rel=1e-6)
    # Scoring the queued positive as a negative (no mask) gives another loss: the mask is what the test sees.
    unmasked = ExtraNegatives(extra.embeddings, torch.zeros_like(extra.excluded))
    assert float(info_nce(q, p, b, 0.1, extra=unmasked)) != pytest.approx(ours, rel=1e-6)


def test_an_empty_queue_changes_nothing():
    data, batch, b, q, p = multi_batch()
    empty = PassageQueue(size=8, dimension=8).negatives([set(ex.pos) for ex in data.train], "cpu")
    assert float(info_nce(q, p, b, 0.1, extra=empty)) == pytest.approx(float(info_nce(q, p, b, 0.1)), rel=1e-12)
    assert float(info_nce(q, p, b, 0.1, tau_plus=0.1, extra=empty)) == pytest.approx(float(info_nce(q, p, b, 0.1, tau_plus=0.1)), rel=1e-12)


def test_triplet_matches_the_definition():
    data, batch, b, q, p = multi_batch()
    terms = [max(0.0, 0.3 - cos(q[i], p[batch.candidates[i, 0]]) + cos(q[i], p[c]))
             for i in range(3) for c in batch.candidates[i, 1:] if c >= 0]
    assert float(triplet(q, p, b, 0.3)) == pytest.approx(sum(terms) / len(terms), rel=1e-9)


def test_cosent_matches_the_definition_and_ignores_the_scale_of_the_scores():
    data, batch, b, q, p = multi_batch()
    exps = [1.0]
    for i in range(3):
        cands_i = [int(c) for c in batch.candidates[i]]
        t = batch.teacher[i]
        for x in range(len(cands_i)):
            for y in range(len(cands_i)):
                if cands_i[x] >= 0 and cands_i[y] >= 0 and t[x] > t[y]:
                    exps.append(math.exp(20 * (cos(q[i], p[cands_i[y]]) - cos(q[i], p[cands_i[x]]))))
    assert len(exps) == 1 + 3 * 3
    assert float(cosent(q, p, b, 20.0)) == pytest.approx(math.log(sum(exps)), rel=1e-9)
    b.teacher = b.teacher * 7 - 3
    assert float(cosent(q, p, b, 20.0)) == pytest.approx(math.log(sum(exps)), rel=1e-9)


def test_circle_matches_the_definition():
    data, batch, b, q, p = multi_batch()
    m, gamma = 0.25, 16.0
    total = 0.0
    for i in range(3):
        positives, negatives = columns(data, batch, i)
        sp = [cos(q[i], p[c]) for c in positives]
        sn = [cos(q[i], p[c]) for c in negatives]
        a = sum(math.exp(gamma * max(0, s + m) * (s - m)) for s in sn)
        c = sum(math.exp(-gamma * max(0, 1 + m - s) * (s - 1 + m)) for s in sp)
        total += math.log(1 + a * c)
    assert float(circle(q, p, b, m, gamma)) == pytest.approx(total / 3, rel=1e-9)


def test_relabel_keeps_every_candidate_above_the_margin_as_a_positive_when_asked():
    passages = corpus(6)
    c = cands({"ql": [-1.0, -1.05, -1.1, -5.0, -6.0, -7.0], "dense": [0.9, 0.89, 0.88, 0.4, 0.3, 0.2]})
    norm = scaled_scores(c, ["ql", "dense"])
    one = select(c, passages, ["ql", "dense"], SelectionConfig(ranks=(1, 20), margin=0.9))
    assert one.example.pos_ids == ["p0"]  # the default: one positive, as before
    many = select(c, passages, ["ql", "dense"], SelectionConfig(ranks=(1, 20), margin=0.9, positives=3)).example
    assert many.pos_ids == ["p0", "p1", "p2"] and len(many.pos) == 3
    assert many.pos_scores == pytest.approx([norm[0], norm[1], norm[2]], abs=1e-6)
    assert min(many.pos_scores) >= 0.9 * many.pos_scores[0]
    assert not set(many.neg_ids) & set(many.pos_ids)
    capped = select(c, passages, ["ql", "dense"], SelectionConfig(ranks=(1, 20), margin=0.9, positives=2)).example
    assert capped.pos_ids == ["p0", "p1"]


def test_remined_negatives_respect_the_margin_and_spare_positives_and_seeds():
    """Twelve passages around one query: a near copy of the positive scores above the margin and must be spared,
    and so must the seed passage and the other positive of the same query, wherever they rank."""
    rng = np.random.default_rng(0)
    texts = [" ".join(f"w{k}x{i}" for k in range(12)) for i in range(12)]
    many = [texts[k] for k in (2, *range(4, 12))]  # nine negatives: every safe passage is drawn
    records = [TrainingExample(query="the query", pos=[texts[0]], neg=many, pos_ids=["d0"],
                               neg_ids=["d2", *(f"d{k}" for k in range(4, 12))], seed_id="d3"),
               TrainingExample(query="the query", pos=[texts[1]], neg=[texts[6]], pos_ids=["d1"], neg_ids=["d6"])]
    others = [TrainingExample(query=f"other {i}", pos=[texts[i]], pos_ids=[f"d{i}"]) for i in range(12)]
    data = build_dataset(others + records, [])  # the others first: passage row i is texts[i]
    data.train = data.train[-2:]
    rows = list(range(len(data.passages)))
    assert data.passages == texts and data.train[0].seed == 3
    query = torch.tensor(rng.normal(size=8))
    passages = torch.tensor(rng.normal(size=(12, 8))) * 0.3
    passages[0] = query  # the positive
    passages[2] = query + 0.01  # near it: above the margin, never a negative
    # Far from the query: only their own rules spare them. 3 is example 0's seed, 1 the other positive of its query.
    passages[3] = -query * 0.2
    passages[1] = -query * 0.3
    q = torch.nn.functional.normalize(torch.stack([query, query]), dim=-1)
    p = torch.nn.functional.normalize(passages, dim=-1)
    config = RemineConfig(every=1, ranks=[1, 12], margin=0.95)
    picked = mine(data, q, p, rows, config, progress=0.5, seed=0, step=1)
    assert picked[0] and not {0, 1, 2, 3} & set(picked[0])
    assert picked[1] is None or 0 not in picked[1]
    # The margin is what spares passage 2: with margin 1 it is fair game for a query whose positive is passage 0.
    loose = mine(data, q, p, rows, RemineConfig(every=1, ranks=[1, 12], margin=1.0), 0.5, 0, 1)
    assert any(2 in (negs or []) for negs in loose)


def test_curriculum_slides_the_window_from_easy_to_hard():
    assert window([3, 20], 0.0, False) == (3, 20)
    assert window([3, 20], 0.0, True) == (12, 20)
    assert window([3, 20], 1.0, True) == (3, 11)
    lo, hi = window([3, 20], 0.5, True)
    assert 3 < lo < 12 and hi - lo == 8


@pytest.mark.parametrize("overrides,message", [
    (["loss.contrastive=triplet", "loss.tau_plus=0.1"], "loss.tau_plus applies to loss.contrastive infonce only"),
    (["loss.contrastive=cosent", "loss.queue_size=8"], "the queue adds negatives to infonce or circle"),
    (["loss.contrastive=triplet", "data.hard_negatives=0"], "data.hard_negatives must be > 0"),
    (["loss.tau_plus=1"], "loss.tau_plus must be in [0, 1)"),
    (["loss.false_negative_margin=-0.1"], "loss.false_negative_margin must be >= 0"),
    (["loss.contrastive=triplet", "loss.false_negative_margin=0.1"], "loss.false_negative_margin applies to loss.contrastive infonce only"),
    (["loss.contrastive=simcse"], "loss.contrastive must be one of"),
    (["model.towers=separate", "lora.enabled=true"], "does not combine with lora.enabled"),
    (["remine.every=5", "data.simcse=true"], "remine needs queries"),
    (["train.dropout=false", "data.simcse=true"], "data.simcse needs train.dropout"),
    (["loss.contrastive=circle", "loss.passage_negatives=true"], "loss.passage_negatives applies to loss.contrastive infonce only"),
    (["model.towers=query", "lora.enabled=true"], "model.towers query does not combine with lora.enabled"),
    (["remine.ranks=[5,2]"], "remine.ranks must be"),
    (["data.positives=0"], "data.positives must be >= 1"),
])
def test_toolbox_options_are_checked(overrides, message):
    from distill.recipe import load_recipe
    from synthgen.errors import UserError

    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_recipe(None, overrides, check_files=False)


def test_relabel_positives_must_be_at_least_one():
    from synthgen.errors import UserError

    with pytest.raises(UserError, match="--positives must be 1 or more"):
        SelectionConfig(positives=0).check()
