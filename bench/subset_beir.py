"""A small collection cut from a BEIR-format one: a corpus of a few hundred passages with complete judgments.

The LLM queries per passage that a corpus gets depend on its size against the sample (1,280 passages): only a
corpus of fewer than 640 passages gets several. ADI (82) is the only small collection in ../shared, so the rule was
checked on subsets of Cranfield and CISI: the documents judged relevant to test queries drawn in a seeded random
order, until their union reaches `--size`. Every query drawn keeps all its relevant documents, so its judgments are
complete; with `--queries any` the other queries that have a relevant document inside are kept too, judged on what
is inside (more test queries for the paired comparison, at the price of partial judgments).

    .venv/bin/python bench/classic_to_beir.py cranfield SRC /tmp/cranfield
    .venv/bin/python bench/subset_beir.py /tmp/cranfield /tmp/cran400 --size 400 --seed 0 --queries drawn
    .venv/bin/python bench/subset_beir.py /tmp/cisi /tmp/cisi400 --size 400 --seed 0 --queries any
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv")
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=400, help="documents to reach (the last query drawn may pass it)")
    parser.add_argument("--seed", type=int, default=0, help="the order in which test queries are drawn")
    parser.add_argument("--queries", choices=("drawn", "any"), default="drawn",
                        help="test queries kept: those drawn, or any with a relevant document inside")
    args = parser.parse_args()

    with open(args.source / "qrels" / "test.tsv", newline="") as f:
        rows = [r for r in list(csv.reader(f, delimiter="\t"))[1:] if int(r[2]) > 0]
    relevant = defaultdict(list)
    for query, doc, _ in rows:
        relevant[query].append(doc)
    order = sorted(relevant)
    random.Random(args.seed).shuffle(order)
    docs: set[str] = set()
    drawn: set[str] = set()
    for query in order:
        if len(docs) >= args.size:
            break
        drawn.add(query)
        docs.update(relevant[query])
    kept = [r for r in rows if r[1] in docs and (args.queries == "any" or r[0] in drawn)]
    queries = {r[0] for r in kept}

    (args.out / "qrels").mkdir(parents=True, exist_ok=True)
    with open(args.out / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in kept))
    for name, ids in (("corpus.jsonl", docs), ("queries.jsonl", queries)):
        with open(args.source / name) as src, open(args.out / name, "w") as dst:
            dst.writelines(line for line in src if json.loads(line)["_id"] in ids)
    print(f"{len(docs)} documents, {len(queries)} test queries, {len(kept)} judgments in {args.out}")


if __name__ == "__main__":
    main()
