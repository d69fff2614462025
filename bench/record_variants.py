"""Training records that need no LLM, or the LLM's records changed in one way, for one-change ablations.

    # ICT (inverse cloze task): the most salient sentence of a passage is the query, the passage without it the
    # positive, a passage from the base model's dense ranks 4-30 the hard negative (lever 4 of issue 9)
    .venv/bin/python bench/record_variants.py sentences --run RUN --out sentences.jsonl --count 640
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def sentences(run: Path, out: Path, count: int, seed: int) -> int:
    from synthgen.chunking import sentences as split_sentences
    from synthgen.records import Passage, read_records
    from synthgen.retrieve import DenseRetriever, Embedder, passage_text
    from synthgen.text import words

    passages = list(read_records(run / "passages.jsonl", Passage))
    document_frequency: collections.Counter[str] = collections.Counter()
    for passage in passages:
        document_frequency.update(set(words(passage.text)))

    def salience(sentence: str) -> float:
        tokens = words(sentence)
        return sum(math.log(len(passages) / document_frequency.get(w, 1)) for w in tokens) / max(len(tokens), 1)

    rng = random.Random(seed)
    order = list(range(len(passages)))
    rng.shuffle(order)
    items = []
    for at in order:
        parts = split_sentences(" ".join(passages[at].text.split()))
        usable = [i for i, s in enumerate(parts) if 6 <= len(s.split()) <= 40]
        if len(parts) < 3 or not usable:
            continue  # a passage of one or two sentences has no context left once one is taken out
        chosen = max(usable, key=lambda i: salience(parts[i]))
        items.append((at, parts[chosen], " ".join(parts[:chosen] + parts[chosen + 1:])))
        if len(items) == count:
            break
    hits = DenseRetriever(passages, Embedder()).search([query for _, query, _ in items], 30)
    with open(out, "w", encoding="utf-8") as handle:
        for (at, query, rest), ranked in zip(items, hits):
            pool = [h.index for h in ranked[3:] if h.index != at]
            positive = f"{passages[at].title} {rest}".strip()
            handle.write(json.dumps({"query": query, "pos": [positive], "neg": [passage_text(passages[rng.choice(pool)])]}) + "\n")
    return len(items)


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
    parser.add_argument("variant", choices=["sentences", "titled"])
    parser.add_argument("--run", type=Path, required=True, help="a run folder (passages.jsonl, train.jsonl)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=640, help="sentences: how many records")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    count = sentences(args.run, args.out, args.count, args.seed) if args.variant == "sentences" else titled(args.run, args.out)
    print(f"{count} records -> {args.out}")


if __name__ == "__main__":
    main()
