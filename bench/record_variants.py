"""Training records that need no LLM, or the LLM's records changed in one way, for one-change ablations.

    # ICT (inverse cloze task): the most salient sentence of a passage is the query, the passage without it the
    # positive, a passage from the base model's dense ranks 4-30 the hard negative (lever 4 of issue 9)
    .venv/bin/python bench/record_variants.py sentences --run RUN --out sentences.jsonl --count 640
    # keyphrases: a passage's five most telling content words (tf x idf) as a keyword query for the passage,
    # a dense rank 4-30 passage as the hard negative
    .venv/bin/python bench/record_variants.py keyphrases --run RUN --out keyphrases.jsonl --count 640
    # random crops (Contriever): two independent spans of 10-50% of a passage's words, one the query, the other
    # the positive, a dense rank 4-30 passage as the hard negative
    .venv/bin/python bench/record_variants.py crops --run RUN --out crops.jsonl --count 640
    # titles: a document's title as the query (once per title, its first passage the seed), the passage the
    # positive; with --as-run the judges choose positive and negatives like any query (E5's title-passage pairs)
    .venv/bin/python bench/record_variants.py titles --run RUN --as-run TI --count 100000
    # the run's train.jsonl with each passage's title put back in front of its text (as retrieval and
    # evaluation see passages)
    .venv/bin/python bench/record_variants.py titled --run RUN --out titled.jsonl
    # the same LLM-free queries as a run folder, to be relabeled by the judges exactly as the LLM's queries are
    # (the teacher chooses positive and negatives), then mixed with the run's own train.jsonl
    .venv/bin/python bench/record_variants.py keyphrases --run RUN --as-run KP --count 640
    .venv/bin/synthgen relabel --run KP && cat RUN/train.jsonl KP/train.jsonl > mix.jsonl
    # the LLM's records of one run with the keyphrase records of another (two draws of the same collection):
    # which half of a draw carries the difference between two draws' results
    .venv/bin/python bench/record_variants.py swap --run RUN --other OTHER --out swap.jsonl
    # the run's train.jsonl with fewer keyphrase records: COUNT of them drawn at random (0: the LLM's alone), or
    # with --min-repeated K those whose query has at least K words its seed passage repeats (NPL, docs/results.md)
    .venv/bin/python bench/record_variants.py thinned --run RUN --out thinned.jsonl --count COUNT --seed 42
    # training data that hurts, to see whether a guard sees harm: the run's train.jsonl with the positive of a
    # fraction of its records replaced by a passage drawn at random from the run's
    .venv/bin/python bench/record_variants.py corrupt --run RUN --out corrupt.jsonl --fraction 0.5

A sentence's salience is the mean inverse document frequency of its words over the run's passages: the rarest
content, not boilerplate such as "Further studies are needed.". Train on the output with
`distill train RUN/model/recipe.yaml --set data.train=OUT --set output=MODEL` (concatenate it with the run's
train.jsonl for a mix).
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from synthgen.keyphrases import TASK as KEYPHRASE_TASK, is_keyphrase_id  # noqa: E402

# what each kind of LLM-free query asks, as the LLM's task descriptions do (the query-likelihood judge reads it)
TASKS = {"sentences": "Given a sentence, retrieve the passage it comes from",
         "keyphrases": KEYPHRASE_TASK,  # the task `synthgen generate` gives its keyphrase queries
         "crops": "Given a span of text, retrieve the passage it comes from",
         "titles": "Given the title of a document, retrieve the passage it belongs to"}


def _write_run(run: Path, passages: list, items: list[tuple[int, str, str]], kind: str, folder: Path) -> int:
    """The items' queries as a run folder (the run's passages, one query per item) for `synthgen relabel`: the
    query names its passage as the seed, and the positive text of the item is left to the judges."""
    import shutil

    from synthgen.records import Query, dumps

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "passages.jsonl", folder / "passages.jsonl")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as handle:
        for at, query, _ in items:
            passage_id = passages[at].id
            handle.write(dumps(Query(id=f"{passage_id}@{kind}", passage_id=passage_id, task=TASKS[kind], query=query,
                                     form=kind)) + "\n")
    return len(items)


def _write(passages: list, items: list[tuple[int, str, str]], out: Path, rng: random.Random) -> int:
    """(passage index, query, positive text) items as training records, each with a hard negative from the base
    model's dense ranks 4-30 for its query (never the passage itself)."""
    from synthgen.retrieve import DenseRetriever, Embedder, passage_text

    hits = DenseRetriever(passages, Embedder()).search([query for _, query, _ in items], 30)
    with open(out, "w", encoding="utf-8") as handle:
        for (at, query, positive), ranked in zip(items, hits):
            pool = [h.index for h in ranked[3:] if h.index != at]
            handle.write(json.dumps({"query": query, "pos": [positive], "neg": [passage_text(passages[rng.choice(pool)])]}) + "\n")
    return len(items)


def _read_passages(run: Path) -> list:
    """The run's passages.jsonl as Passage records."""
    from synthgen.records import Passage, read_records

    return list(read_records(run / "passages.jsonl", Passage))


def _passages(run: Path, seed: int) -> tuple[list, list[int], random.Random]:
    """The run's passages and a seeded order to take them in."""
    passages = _read_passages(run)
    rng = random.Random(seed)
    order = list(range(len(passages)))
    rng.shuffle(order)
    return passages, order, rng


def sentences(passages: list, order: list[int], rng: random.Random, count: int) -> list[tuple[int, str, str]]:
    from synthgen.chunking import sentences as split_sentences
    from synthgen.keyphrases import idf as corpus_idf
    from synthgen.text import words

    idf = corpus_idf(passages)

    def salience(sentence: str) -> float:
        tokens = words(sentence)
        return sum(idf(w) for w in tokens) / max(len(tokens), 1)

    items = []
    for at in order:
        parts = split_sentences(" ".join(passages[at].text.split()))
        usable = [i for i, s in enumerate(parts) if 6 <= len(s.split()) <= 40]
        if len(parts) < 3 or not usable:
            continue  # a passage of one or two sentences has no context left once one is taken out
        chosen = max(usable, key=lambda i: salience(parts[i]))
        rest = " ".join(parts[:chosen] + parts[chosen + 1:])
        items.append((at, parts[chosen], f"{passages[at].title} {rest}".strip()))
        if len(items) == count:
            break
    return items


def keyphrases(passages: list, order: list[int], rng: random.Random, count: int) -> list[tuple[int, str, str]]:
    """synthgen.keyphrases' queries (what `synthgen generate --keyphrase-queries` writes), for a seeded random
    order of the passages instead of the run's sample."""
    from synthgen.keyphrases import idf, keyphrase_query
    from synthgen.retrieve import passage_text

    weight = idf(passages)
    items = []
    for at in order:
        query = keyphrase_query(passages[at].text, weight)
        if query is not None:
            items.append((at, query, passage_text(passages[at])))
        if len(items) == count:
            break
    return items


def crops(passages: list, order: list[int], rng: random.Random, count: int) -> list[tuple[int, str, str]]:
    """Contriever's cropping (Izacard et al. 2022): two independent random spans, each 10-50% of the passage's
    words, as the query and its positive; the passage's title goes with the positive, as retrieval sees it."""
    def span(tokens: list[str]) -> str:
        length = rng.randint(round(0.1 * len(tokens)), round(0.5 * len(tokens)))
        start = rng.randrange(len(tokens) - length + 1)
        return " ".join(tokens[start:start + length])

    items = []
    for at in order:
        tokens = passages[at].text.split()
        if len(tokens) < 40:
            continue  # a 10% span of a short passage is a word or two, not a query
        items.append((at, span(tokens), f"{passages[at].title} {span(tokens)}".strip()))
        if len(items) == count:
            break
    return items


def titles(passages: list, order: list[int], rng: random.Random, count: int) -> list[tuple[int, str, str]]:
    """Each distinct title of three words or more once, seeded by its first passage in corpus order (a chunked
    document's later passages share the title; the judges may prefer one of them)."""
    from synthgen.retrieve import passage_text

    first: dict[str, tuple[int, str]] = {}
    for at, passage in enumerate(passages):
        title = " ".join((passage.title or "").split())
        if len(title.split()) >= 3:
            first.setdefault(title.lower(), (at, title))
    rank = {at: i for i, at in enumerate(order)}
    chosen = sorted(first.values(), key=lambda item: rank[item[0]])[:count]
    return [(at, title, passage_text(passages[at])) for at, title in chosen]


def titled(run: Path, out: Path) -> int:
    titles: dict[str, str] = {}
    for passage in _read_passages(run):
        titles.setdefault(passage.text, (passage.title or "").strip())
    count = 0
    with open(out, "w", encoding="utf-8") as handle:
        for line in open(run / "train.jsonl", encoding="utf-8"):
            record = json.loads(line)
            for key in ("pos", "neg"):
                record[key] = [f"{titles.get(text, '')} {text}".strip() for text in record[key]]
            handle.write(json.dumps(record) + "\n")
            count += 1
    return count


def swap(run: Path, other: Path, out: Path) -> tuple[int, int]:
    """The run's LLM records, then the other run's keyphrase records, in train.jsonl's own order (LLM first)."""
    def records(folder: Path, keyphrases: bool) -> list[str]:
        lines = open(folder / "train.jsonl", encoding="utf-8").read().splitlines()
        return [line for line in lines if is_keyphrase_id(json.loads(line)["query_id"]) == keyphrases]

    llm, keyphrase = records(run, False), records(other, True)
    out.write_text("".join(line + "\n" for line in llm + keyphrase), encoding="utf-8")
    return len(llm), len(keyphrase)


def corrupt(run: Path, out: Path, fraction: float, rng: random.Random) -> tuple[int, int]:
    """The run's records, a `fraction` of them with a random passage (not one of the record's own) as the positive:
    the scores and ids of a replaced positive are dropped, so nothing downstream reads the judges' old choice."""
    texts = {passage.id: passage.text for passage in _read_passages(run)}
    ids = sorted(texts)
    every = set(ids)
    records = [json.loads(line) for line in open(run / "train.jsonl", encoding="utf-8")]
    replaced = 0
    for record in records:
        if rng.random() >= fraction:
            continue
        own = set(record.get("pos_ids", [])) | set(record.get("neg_ids", [])) | {record.get("seed_id")}
        if every <= own:
            continue  # no passage that is not the record's own
        choices: list[str] = []
        while not choices:  # draws again only when all 8 are the record's own (a tiny corpus)
            choices = [i for i in rng.sample(ids, min(8, len(ids))) if i not in own]
        pick = rng.choice(choices)
        record["pos"], record["pos_ids"] = [texts[pick]], [pick]
        record.pop("pos_scores", None)
        record.pop("neg_scores", None)
        replaced += 1
    out.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return len(records), replaced


def thinned(run: Path, out: Path, count: int, min_repeated: int | None, min_distinct: int | None,
            rng: random.Random) -> tuple[int, int]:
    """The run's records in train.jsonl's order, its keyphrase records cut to `count` drawn at random or, with
    `min_repeated`, to those whose query has that many words occurring more than once in the seed passage: in a
    short passage every word occurs once, and tf x idf then picks by idf alone; or, with `min_distinct`, to those
    whose seed passage has that many distinct content words (a length rule: five words of a short passage are most
    of it)."""
    from synthgen.keyphrases import content_words, distinct_content_words

    texts = {passage.id: passage.text for passage in _read_passages(run)}
    lines = open(run / "train.jsonl", encoding="utf-8").read().splitlines()
    records = [json.loads(line) for line in lines]
    keyphrase_rows = [i for i, r in enumerate(records) if is_keyphrase_id(r["query_id"])]
    llm_rows = set(range(len(records))) - set(keyphrase_rows)

    def repeated(record: dict) -> int:
        counts = collections.Counter(content_words(texts[record["seed_id"]]))
        return sum(counts[w] > 1 for w in record["query"].split())

    if min_repeated is not None:
        kept = {i for i in keyphrase_rows if repeated(records[i]) >= min_repeated}
    elif min_distinct is not None:
        kept = {i for i in keyphrase_rows if distinct_content_words(texts[records[i]["seed_id"]]) >= min_distinct}
    else:
        kept = set(rng.sample(keyphrase_rows, min(count, len(keyphrase_rows))))
    out.write_text("".join(line + "\n" for i, line in enumerate(lines) if i in kept or i in llm_rows), encoding="utf-8")
    return len(llm_rows), len(kept)


# the LLM-free kinds: each writes (passage index, query, positive text) items for --out or --as-run
KINDS = {"sentences": sentences, "keyphrases": keyphrases, "crops": crops, "titles": titles}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=[*KINDS, "titled", "swap", "corrupt", "thinned"])
    parser.add_argument("--run", type=Path, required=True, help="a run folder (passages.jsonl, train.jsonl)")
    output = parser.add_mutually_exclusive_group(required=True)
    output.add_argument("--out", type=Path, help="training records (JSONL)")
    output.add_argument("--as-run", type=Path, help="sentences, keyphrases, crops, titles: a run folder to relabel instead")
    parser.add_argument("--count", type=int, default=640,
                        help="sentences, keyphrases, crops, titles: how many; thinned: keyphrase records kept")
    parser.add_argument("--min-repeated", type=int, help="thinned: keep the keyphrase records with this many repeated words")
    parser.add_argument("--min-distinct", type=int,
                        help="thinned: keep the keyphrase records whose passage has this many distinct content words")
    parser.add_argument("--other", type=Path, help="swap: the run folder whose keyphrase records replace the run's")
    parser.add_argument("--fraction", type=float, default=0.5, help="corrupt: the share of positives replaced")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.variant == "corrupt":
        if args.out is None:
            sys.exit("corrupt changes the run's own records: give --out")
        total, replaced = corrupt(args.run, args.out, args.fraction, random.Random(args.seed))
        print(f"{replaced} of {total} positives replaced by random passages -> {args.out}")
        return
    if args.variant == "thinned":
        if args.out is None:
            sys.exit("thinned changes the run's own records: give --out")
        llm, keyphrase = thinned(args.run, args.out, args.count, args.min_repeated, args.min_distinct,
                                  random.Random(args.seed))
        print(f"{llm} LLM records + {keyphrase} keyphrase records -> {args.out}")
        return
    if args.variant == "swap":
        if args.out is None or args.other is None:
            sys.exit("swap writes records: give --other and --out")
        llm, keyphrase = swap(args.run, args.other, args.out)
        print(f"{llm} LLM records of {args.run} + {keyphrase} keyphrase records of {args.other} -> {args.out}")
        return
    if args.variant == "titled":
        if args.out is None:
            sys.exit("titled changes the run's own records: give --out")
        print(f"{titled(args.run, args.out)} records -> {args.out}")
        return
    passages, order, rng = _passages(args.run, args.seed)
    items = KINDS[args.variant](passages, order, rng, args.count)
    if args.as_run:
        print(f"{_write_run(args.run, passages, items, args.variant, args.as_run)} queries -> {args.as_run}/queries.jsonl")
    else:
        print(f"{_write(passages, items, args.out, rng)} records -> {args.out}")


if __name__ == "__main__":
    main()
