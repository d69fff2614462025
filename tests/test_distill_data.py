"""Training records -> unique rows, dev split, seeded epochs, and the batch layout with its duplicate masks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distill.data import build_dataset, dev_pool, epoch_batches, make_batch, read_examples, split_dev
from synthgen.errors import UserError
from synthgen.records import TrainingExample


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize(
    "line,message",
    [
        ('{"query": "q", "pos": ["p"]', ":2: malformed JSON"),
        ('{"query": "q"}', ":2: missing field 'pos'"),
        ('{"query": "q", "pos": "p"}', ":2: field 'pos' has the wrong type"),
        ('{"query": " ", "pos": ["p"]}', ":2: 'query' is empty"),
        ('{"query": "q", "pos": []}', ":2: 'pos' is empty"),
        ('{"query": "q", "pos": ["p"], "neg": ["a", "b"], "neg_scores": [0.1]}', ":2: 'neg_scores' has 1 entries for 2 passages"),
        ('{"query": "q", "pos": ["p"], "pos_ids": ["x", "y"]}', ":2: 'pos_ids' has 2 entries for 1 passages"),
    ],
)
def test_bad_record_names_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "train.jsonl", ['{"query": "ok", "pos": ["p"]}', line])
    with pytest.raises(UserError) as caught:
        read_examples(path)
    assert str(caught.value).startswith(f"{path}{message}")


def test_records_with_extra_fields_read(tmp_path):
    record = {"query": "q", "pos": ["p"], "neg": ["n"], "pos_scores": [2.0], "neg_scores": [0.5], "prompt": "x", "task": "t"}
    [example] = read_examples(write_lines(tmp_path / "t.jsonl", [json.dumps(record)]))
    assert example.task == "t" and example.neg_scores == [0.5]
    with pytest.raises(UserError, match="no training records"):
        read_examples(write_lines(tmp_path / "empty.jsonl", [""]))


def test_passages_are_one_row_when_id_or_text_is_shared():
    records = [
        TrainingExample(query="q1", pos=["alpha"], pos_ids=["a"], neg=["beta"], neg_ids=["b"], task="find facts"),
        TrainingExample(query="q2", pos=["beta"], neg=["alpha text changed"], neg_ids=["a"]),  # same text / same id
        TrainingExample(query="q1", pos=["gamma"], task="find facts"),
    ]
    data = build_dataset(records, [], query_prefix="task: {task} | query: ", passage_prefix="passage: ", task="default")
    assert data.passages == ["passage: alpha", "passage: beta", "passage: gamma"]
    assert data.queries == ["task: find facts | query: q1", "task: default | query: q2"]
    assert [(e.query, e.pos, e.neg) for e in data.train] == [(0, [0], [1]), (1, [1], [0]), (0, [2], [])]


def test_batch_layout_and_masks():
    records = [
        TrainingExample(query="q1", pos=["A", "B"], neg=["C"], pos_scores=[3.0, 2.0], neg_scores=[1.0]),
        TrainingExample(query="q2", pos=["B"], neg=["A"]),
        TrainingExample(query="q1", pos=["D"], neg=["C"]),
    ]
    data = build_dataset(records, [])
    drawn = [(data.train[0], 0, [0]), (data.train[1], 0, [0]), (data.train[2], 0, [0])]
    batch = make_batch(drawn, hard_negatives=2)
    rows = {text: batch.passages.index(i) for i, text in enumerate(data.passages)}
    assert sorted(batch.passages) == [0, 1, 2, 3]  # A, B, C, D each once although A, B and C appear twice
    assert batch.positive.tolist() == [rows["A"], rows["B"], rows["D"]]
    assert batch.candidates.tolist() == [[rows["A"], rows["C"], -1], [rows["B"], rows["A"], -1], [rows["D"], rows["C"], -1]]
    assert batch.teacher[0, :2].tolist() == [3.0, 1.0] and np.isnan(batch.teacher[1]).all()
    expected = np.zeros((3, 4), dtype=bool)
    expected[0, rows["B"]] = True  # B is q1's other positive: never its negative, though it is in the batch
    assert (batch.same_passage == expected).all()
    # q1 twice (examples 0 and 2), and B a positive of examples 0 and 1: neither pair is the other's negative
    assert batch.related_queries.tolist() == [[True, True, True], [True, True, False], [True, False, True]]


def test_epochs_are_seeded_and_cover_every_example():
    records = [TrainingExample(query=f"q{i}", pos=[f"p{i}"], neg=[f"n{i}-{j}" for j in range(5)]) for i in range(10)]
    data = build_dataset(records, [])
    first = epoch_batches(data.train, epoch=0, seed=1, batch_size=4, hard_negatives=2)
    again = epoch_batches(data.train, epoch=0, seed=1, batch_size=4, hard_negatives=2)
    other = epoch_batches(data.train, epoch=1, seed=1, batch_size=4, hard_negatives=2)
    assert [len(b.queries) for b in first] == [4, 4, 2]
    assert sorted(q for b in first for q in b.queries) == list(range(10))
    assert [b.queries for b in first] == [b.queries for b in again]
    assert [b.passages for b in first] == [b.passages for b in again]
    assert [b.queries for b in first] != [b.queries for b in other]
    assert all(len(b.passages) == 3 * len(b.queries) for b in first)  # one positive and two negatives each


def test_topic_batches_keep_each_topic_together():
    records = [TrainingExample(query=f"q{i}", pos=[f"p{i}"], neg=[f"n{i}"]) for i in range(24)]
    data = build_dataset(records, [])
    topics = [i % 6 for i in range(24)]  # six topics of four, scattered through the records
    for epoch in range(3):
        batches = epoch_batches(data.train, epoch=epoch, seed=1, batch_size=4, hard_negatives=1, topics=topics)
        assert sorted(q for b in batches for q in b.queries) == list(range(24))
        assert all(len({topics[q] for q in b.queries}) == 1 for b in batches)
    orders = {tuple(topics[b.queries[0]] for b in epoch_batches(data.train, e, 1, 4, 1, topics=topics)) for e in range(3)}
    assert len(orders) > 1  # the topics come in a new order each epoch


def test_a_broad_topics_batches_are_spread_over_the_epoch():
    records = [TrainingExample(query=f"q{i}", pos=[f"p{i}"], neg=[f"n{i}"]) for i in range(66)]
    data = build_dataset(records, [])
    topics = [i % 2 for i in range(64)] + [2, 2]  # two topics of eight batches, and two strays
    batches = epoch_batches(data.train, epoch=0, seed=1, batch_size=4, hard_negatives=1, topics=topics)
    assert len(batches) == 17 and sorted(q for b in batches for q in b.queries) == list(range(66))
    assert all(len({topics[q] for q in b.queries}) == 1 for b in batches)
    sequence = [topics[b.queries[0]] for b in batches if topics[b.queries[0]] < 2]
    switches = sum(a != b for a, b in zip(sequence, sequence[1:]))
    assert switches > 1  # not all of one topic, then all of the other


def test_dev_split_holds_out_whole_queries():
    records = [TrainingExample(query=f"q{i % 30}", pos=[f"p{i}"]) for i in range(90)]
    train, dev = split_dev(records, 10, seed=3)
    assert 10 <= len(dev) < 13 and len(train) + len(dev) == 90
    assert not {r.query for r in train} & {r.query for r in dev}
    assert split_dev(records, 10, seed=3) == (train, dev)
    assert split_dev(records, 0, seed=3) == (records, [])
    with pytest.raises(UserError, match="more than half"):
        split_dev(records, 46, seed=3)


def test_dev_pool_ranks_all_dev_passages():
    dev = [TrainingExample(query="q1", pos=["a"], neg=["b"]), TrainingExample(query="q1", pos=["c"]), TrainingExample(query="q2", pos=["b"])]
    data = build_dataset([], dev)
    queries, passages, relevant = dev_pool(data.dev)
    assert queries == [0, 1] and passages == [0, 1, 2]
    assert relevant == {0: {0, 2}, 1: {1}}
