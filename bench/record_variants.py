"""Training records that need no LLM, or the LLM's records changed in one way, for one-change ablations.

    # ICT (inverse cloze task): the most salient sentence of a passage is the query, the passage without it the
    # positive, a passage from the base model's dense ranks 4-30 the hard negative (lever 4 of issue 9)
    .venv/bin/python bench/record_variants.py sentences --run RUN --out sentences.jsonl --count 640
    # keyphrases: a passage's five most telling content words (tf x idf) as a keyword query for the passage,
    # a dense rank 4-30 passage as the hard negative
    .venv/bin/python bench/record_variants.py keyphrases --run RUN --out keyphrases.jsonl --count 640
    # the run's train.jsonl with each passage's title put back in front of its text (as retrieval and
    # evaluation see passages)
    .venv/bin/python bench/record_variants.py titled --run RUN --out titled.jsonl

A sentence's salience is the mean inverse document frequency of its words over the run's passages: the rarest
content, not boilerplate such as "Further studies are needed.". Train on the output with
`distill train RUN/model/recipe.yaml --set data.train=OUT --set output=MODEL` (concatenate it with the run's
train.jsonl for a mix).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import random
import sys
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _idf(passages: list) -> Callable[[str], float]:
    from synthgen.text import words

    document_frequency: collections.Counter[str] = collections.Counter()
    for passage in passages:
        document_frequency.update(set(words(passage.text)))
    return lambda word: math.log(len(passages) / document_frequency.get(word, 1))


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


def _passages(run: Path, seed: int) -> tuple[list, list[int], random.Random]:
    """The run's passages and a seeded order to take them in."""
    from synthgen.records import Passage, read_records

    passages = list(read_records(run / "passages.jsonl", Passage))
    rng = random.Random(seed)
    order = list(range(len(passages)))
    rng.shuffle(order)
    return passages, order, rng


def sentences(run: Path, out: Path, count: int, seed: int) -> int:
    from synthgen.chunking import sentences as split_sentences
    from synthgen.text import words

    passages, order, rng = _passages(run, seed)
    idf = _idf(passages)

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
    return _write(passages, items, out, rng)


def keyphrases(run: Path, out: Path, count: int, seed: int, size: int = 5) -> int:
    """A passage's `size` most telling content words (tf x idf), in the order they first appear, as a keyword
    query for the whole passage: the lexical signal BM25 wins on, without an LLM."""
    from synthgen.retrieve import passage_text
    from synthgen.text import STOPWORDS, words

    passages, order, rng = _passages(run, seed)
    idf = _idf(passages)
    items = []
    for at in order:
        tokens = [w for w in words(passages[at].text) if w not in STOPWORDS and not w.isdigit() and len(w) > 2]
        counts = collections.Counter(tokens)
        if len(counts) < 2 * size:
            continue  # too short to leave words out
        chosen = set(sorted(counts, key=lambda w: (-counts[w] ** 0.5 * idf(w), w))[:size])
        query = " ".join(dict.fromkeys(w for w in tokens if w in chosen))
        items.append((at, query, passage_text(passages[at])))
        if len(items) == count:
            break
    return _write(passages, items, out, rng)


def titled(run: Path, out: Path) -> int:
    titles: dict[str, str] = {}
    for line in open(run / "passages.jsonl", encoding="utf-8"):
        passage = json.loads(line)
        titles.setdefault(passage["text"], (passage.get("title") or "").strip())
    count = 0
    with open(out, "w", encoding="utf-8") as handle:
        for line in open(run / "train.jsonl", encoding="utf-8"):
            record = json.loads(line)
            for key in ("pos", "neg"):
                record[key] = [f"{titles.get(text, '')} {text}".strip() for text in record[key]]
            handle.write(json.dumps(record) + "\n")
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=["sentences", "keyphrases", "titled"])
    parser.add_argument("--run", type=Path, required=True, help="a run folder (passages.jsonl, train.jsonl)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=640, help="sentences, keyphrases: how many records")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.variant == "titled":
        count = titled(args.run, args.out)
    else:
        count = {"sentences": sentences, "keyphrases": keyphrases}[args.variant](args.run, args.out, args.count, args.seed)
    print(f"{count} records -> {args.out}")


if __name__ == "__main__":
    main()
