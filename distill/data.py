"""Training records -> tables of unique texts, and per-epoch batches with the masks the loss needs.

Every query and passage is stored once (passages are the same passage when they share an id or a text),
so each text is tokenized once for the whole run and embedded once per batch however often it appears,
and "the same passage" is simply the same row: a passage that is one example's positive and another's
negative is one column of the score matrix, never a negative of itself. The batches of an epoch are a pure
function of (seed, epoch), so a resumed run draws exactly the batches the killed run would have drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synthgen.errors import UserError
from synthgen.records import TrainingExample, from_dict, iter_json_lines


@dataclass
class Example:
    query: int  # row in Dataset.queries
    pos: list[int]  # rows in Dataset.passages
    neg: list[int]
    pos_scores: list[float] = field(default_factory=list)  # the judge's scores, aligned with pos / neg when present
    neg_scores: list[float] = field(default_factory=list)
    seed: int = -1  # row of the passage the query was written from, when it is among the passages (re-mining spares it)


@dataclass
class Dataset:
    queries: list[str]  # query texts as the encoder sees them (prefix and task filled in)
    passages: list[str]  # passage texts as the encoder sees them (prefix added)
    train: list[Example]
    dev: list[Example]
    passage_ids: list[str] = field(default_factory=list)  # each passage row's id ("" when the records gave none)


@dataclass
class Batch:
    queries: list[int]  # query rows, one per example
    passages: list[int]  # passage rows, each once: the columns of the score matrix
    positive: np.ndarray  # [B] column of each example's positive
    candidates: np.ndarray  # [B, 1+k] columns of the example's positive then its hard negatives; -1 pads
    teacher: np.ndarray  # [B, 1+k] the judge's scores for `candidates`; nan where unknown
    same_passage: np.ndarray  # [B, P] True where a column is another positive of the example (never a negative)
    # [B, B] True where two examples' queries must not be each other's negatives: the same query (the diagonal
    # included), or a positive passage in common (an LLM query and a keyphrase query of one passage)
    related_queries: np.ndarray
    positives: np.ndarray  # [B, P] True at every column drawn as a positive of the example (data.positives)


def read_examples(path: Path) -> list[TrainingExample]:
    """Read training records; a malformed or inconsistent line is a one-line error naming file and line."""
    records = []
    for number, obj in iter_json_lines(Path(path)):
        where = f"{path}:{number}"
        record = from_dict(TrainingExample, obj, where)
        if not record.query.strip():
            raise UserError(f"{where}: 'query' is empty")
        if not record.pos:
            raise UserError(f"{where}: 'pos' is empty (every record needs a positive passage)")
        for name, values, against in (
            ("pos_ids", record.pos_ids, record.pos),
            ("neg_ids", record.neg_ids, record.neg),
            ("pos_scores", record.pos_scores, record.pos),
            ("neg_scores", record.neg_scores, record.neg),
        ):
            if values and len(values) != len(against):
                raise UserError(f"{where}: '{name}' has {len(values)} entries for {len(against)} passages")
        records.append(record)
    if not records:
        raise UserError(f"{path}: no training records")
    return records


def split_dev(records: list[TrainingExample], dev_size: int, seed: int) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """Hold out about `dev_size` records, whole queries at a time, so no dev query is also trained on."""
    if dev_size == 0:
        return records, []
    if dev_size * 2 > len(records):
        raise UserError(f"data.dev_size ({dev_size}) is more than half of the {len(records)} records; lower it or set data.dev")
    queries = sorted({r.query for r in records})
    order = np.random.default_rng([seed, 7]).permutation(len(queries))
    counts: dict[str, int] = {}
    for r in records:
        counts[r.query] = counts.get(r.query, 0) + 1
    held: set[str] = set()
    taken = 0
    for index in order:
        if taken >= dev_size:
            break
        held.add(queries[index])
        taken += counts[queries[index]]
    return [r for r in records if r.query not in held], [r for r in records if r.query in held]


def build_dataset(
    train: list[TrainingExample],
    dev: list[TrainingExample],
    query_prefix: str = "",
    passage_prefix: str = "",
    task: str = "",
) -> Dataset:
    """Give every distinct query and passage one row; prefixes are applied here, once."""
    queries: list[str] = []
    query_rows: dict[str, int] = {}
    passages: list[str] = []
    passage_ids: list[str] = []
    by_text: dict[str, int] = {}
    by_id: dict[str, int] = {}

    def query_row(record: TrainingExample) -> int:
        text = query_prefix.replace("{task}", record.task or task) + record.query
        if text not in query_rows:
            query_rows[text] = len(queries)
            queries.append(text)
        return query_rows[text]

    def passage_row(text: str, pid: str) -> int:
        row = by_text.get(text)
        if row is None and pid:
            row = by_id.get(pid)
        if row is None:
            row = len(passages)
            passages.append(passage_prefix + text)
            passage_ids.append(pid)
        by_text.setdefault(text, row)
        if pid:
            by_id.setdefault(pid, row)
        return row

    def convert(record: TrainingExample) -> Example:
        pos_ids = record.pos_ids or [""] * len(record.pos)
        neg_ids = record.neg_ids or [""] * len(record.neg)
        return Example(
            query=query_row(record),
            pos=[passage_row(t, i) for t, i in zip(record.pos, pos_ids)],
            neg=[passage_row(t, i) for t, i in zip(record.neg, neg_ids)],
            pos_scores=list(record.pos_scores),
            neg_scores=list(record.neg_scores),
        )

    converted = [convert(r) for r in train], [convert(r) for r in dev]
    for record, example in zip([*train, *dev], [*converted[0], *converted[1]]):
        example.seed = by_id.get(record.seed_id, -1) if record.seed_id else -1
    return Dataset(queries, passages, *converted, passage_ids=passage_ids)


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return -(-n_examples // batch_size)


def epoch_batches(examples: list[Example], epoch: int, seed: int, batch_size: int, hard_negatives: int,
                  positives: int = 1, topics: list[int] | None = None) -> list[Batch]:
    """The batches of one epoch: a seeded order, up to `positives` positives (one first, then the others in a
    seeded order) and up to `hard_negatives` negatives drawn per example.

    With `topics` (one per example) each topic is cut into whole batches (the topics' remainders pooled into
    mixed ones), so a batch's in-batch negatives are about the same thing as its positives: harder than a
    random batch's, at no cost (topic-aware sampling, Hofstaetter et al. 2021). The batches are then shuffled
    across topics: a broad topic's batches one after another would train the model on one topic at a time."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(examples))
    if topics is not None:
        order = _topic_order(order, topics, batch_size, rng)
    drawn = []
    for index in order:
        ex = examples[index]
        p = int(rng.integers(len(ex.pos)))
        if positives > 1 and len(ex.pos) > 1:
            others = [i for i in range(len(ex.pos)) if i != p]
            more = rng.choice(len(others), size=min(positives - 1, len(others)), replace=False).tolist()
            p = [p, *(others[i] for i in more)]
        k = min(hard_negatives, len(ex.neg))
        negs = sorted(rng.choice(len(ex.neg), size=k, replace=False).tolist()) if k else []
        drawn.append((ex, p, negs))
    return [make_batch(drawn[start : start + batch_size], hard_negatives) for start in range(0, len(drawn), batch_size)]


def _topic_order(order: np.ndarray, topics: list[int], batch_size: int, rng: np.random.Generator) -> np.ndarray:
    members: dict[int, list[int]] = {}
    for index in order.tolist():
        members.setdefault(topics[index], []).append(index)
    cuts, rest = [], []
    for group in members.values():
        whole = len(group) - len(group) % batch_size
        cuts += [group[start : start + batch_size] for start in range(0, whole, batch_size)]
        rest += group[whole:]
    cuts += [rest[start : start + batch_size] for start in range(0, len(rest), batch_size)]
    short = cuts.pop() if cuts and len(cuts[-1]) < batch_size else []  # stays last, so every batch is one cut
    shuffled = [index for cut in rng.permutation(len(cuts)).tolist() for index in cuts[cut]]
    return np.asarray(shuffled + short, dtype=np.int64)


def make_batch(drawn: list[tuple[Example, int | list[int], list[int]]], hard_negatives: int) -> Batch:
    """Lay out one batch: unique passage columns, candidate columns, teacher scores and the duplicate masks.

    Each drawn example names its positive (or several: the first is the one pair losses compare with its
    negatives) and its negatives by position in its `pos` and `neg` lists."""
    columns: dict[int, int] = {}

    def column(row: int) -> int:
        return columns.setdefault(row, len(columns))

    size = len(drawn)
    width = 1 + hard_negatives
    positive = np.zeros(size, dtype=np.int64)
    candidates = np.full((size, width), -1, dtype=np.int64)
    teacher = np.full((size, width), np.nan, dtype=np.float32)
    drawn = [(ex, p if isinstance(p, list) else [p], negs) for ex, p, negs in drawn]
    for i, (ex, ps, negs) in enumerate(drawn):
        positive[i] = candidates[i, 0] = column(ex.pos[ps[0]])
        for other in ps[1:]:
            column(ex.pos[other])
        if ex.pos_scores:
            teacher[i, 0] = ex.pos_scores[ps[0]]
        for j, n in enumerate(negs, start=1):
            candidates[i, j] = column(ex.neg[n])
            if ex.neg_scores:
                teacher[i, j] = ex.neg_scores[n]
    same_passage = np.zeros((size, len(columns)), dtype=bool)
    positives = np.zeros((size, len(columns)), dtype=bool)
    for i, (ex, ps, _) in enumerate(drawn):
        positives[i, [columns[ex.pos[p]] for p in ps]] = True
        for row in ex.pos:
            col = columns.get(row)
            if col is not None and not positives[i, col]:
                same_passage[i, col] = True
    query_rows = np.array([ex.query for ex, _, _ in drawn])
    positive_rows = [set(ex.pos) for ex, _, _ in drawn]
    shared_positive = np.array([[not a.isdisjoint(b) for b in positive_rows] for a in positive_rows], dtype=bool)
    return Batch(
        queries=query_rows.tolist(),
        passages=list(columns),
        positive=positive,
        candidates=candidates,
        teacher=teacher,
        same_passage=same_passage,
        related_queries=(query_rows[:, None] == query_rows[None, :]) | shared_positive,
        positives=positives,
    )


def simcse_records(records: list[TrainingExample]) -> list[TrainingExample]:
    """SimCSE's data: every distinct positive passage once, as its own query and positive, no negatives and no
    LLM output; two forward passes with different dropout masks make the pair differ."""
    seen: dict[str, TrainingExample] = {}
    for r in records:
        for text, pid in zip(r.pos, r.pos_ids or [""] * len(r.pos)):
            seen.setdefault(text, TrainingExample(query=text, pos=[text], pos_ids=[pid] if pid else []))
    return list(seen.values())


def dev_pool(examples: list[Example], others: list[Example] = ()) -> tuple[list[int], list[int], dict[int, set[int]]]:
    """The dev task: each dev query ranks every passage of the dev slice (and of `others`, the training
    examples, for the larger pool); its positives are the relevant ones."""
    passage_rows = sorted({row for ex in (*examples, *others) for row in (*ex.pos, *ex.neg)})
    relevant: dict[int, set[int]] = {}
    for ex in examples:
        relevant.setdefault(ex.query, set()).update(ex.pos)
    return sorted(relevant), passage_rows, relevant


def statistics(dataset: Dataset, query_lengths: list[int], passage_lengths: list[int], max_query: int, max_passage: int) -> dict:
    """Numbers for the model card: how much data, how many negatives and scores, how much got truncated."""
    train = dataset.train
    q = np.array(query_lengths) if query_lengths else np.zeros(1)
    p = np.array(passage_lengths) if passage_lengths else np.zeros(1)
    return {
        "train_examples": len(train),
        "dev_examples": len(dataset.dev),
        "distinct_queries": len(dataset.queries),
        "distinct_passages": len(dataset.passages),
        "mean_positives": round(float(np.mean([len(e.pos) for e in train])), 2) if train else 0.0,
        "mean_hard_negatives": round(float(np.mean([len(e.neg) for e in train])), 2) if train else 0.0,
        "examples_with_scores": sum(1 for e in train if e.pos_scores and (e.neg_scores or not e.neg)),
        "query_tokens_mean": round(float(q.mean()), 1),
        "passage_tokens_mean": round(float(p.mean()), 1),
        "queries_truncated": round(float((q >= max_query).mean()), 4),
        "passages_truncated": round(float((p >= max_passage).mean()), 4),
    }
