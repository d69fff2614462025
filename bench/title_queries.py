"""A run folder whose queries are the corpus' own document titles, for the title-as-query ablation.

No LLM: each titled document's title becomes one query for its first passage, so `synthgen relabel` and
`distill train` can run on it exactly as on generated queries. It measures how much a free, structural signal
gives next to the LLM's queries (SciFact titles read much like its test claims).

    .venv/bin/python bench/title_queries.py ../shared/data/scifact/corpus.jsonl /tmp/titles
    .venv/bin/synthgen relabel --run /tmp/titles --judges dense,bm25
    .venv/bin/distill train recipes/cpu.yaml --set data.train=/tmp/titles/train.jsonl --set output=/tmp/titles/model \\
        --set eval.beir=../shared/data/scifact --set train.max_steps=30 --set train.mini_batch_size=128 \\
        --set model.max_passage_length=128 --set eval.every=0 --set data.dev_size=0
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    from synthgen.corpus import ChunkConfig, ingest
    from synthgen.records import Query, dumps

    if len(sys.argv) != 3:
        sys.exit("usage: title_queries.py CORPUS OUT_DIR")
    corpus, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    passages, _ = ingest(corpus, ChunkConfig())
    documents: set[str] = set()
    with open(out / "passages.jsonl", "w", encoding="utf-8") as p_out, open(out / "queries.jsonl", "w", encoding="utf-8") as q_out:
        for passage in passages:
            p_out.write(dumps(passage) + "\n")
            document = passage.id.split("#")[0]
            if passage.title and document not in documents:
                documents.add(document)
                q_out.write(dumps(Query(id=f"{passage.id}@t", passage_id=passage.id, form="title", query=passage.title,
                                        task="Given a title, retrieve the abstract")) + "\n")
    print(f"{len(passages)} passages, {len(documents)} title queries in {out}")


if __name__ == "__main__":
    main()
