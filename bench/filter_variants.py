"""InPars' filter changed in one way, for one-change ablations of `synthgen relabel --drop-unlikely`.

`--drop-unlikely` ranks the LLM's queries by the query-likelihood judge's mean log-probability of the query given
its seed passage and drops the lowest share; the keyphrase queries all stay. That score is also high for a query any
passage would make likely ("What is the main function of the human brain?") and low for a short, rare-worded one
("cervical specimens tested for carcinogenic HPV genotypes"). Subtracting the same judge's score with an empty
passage (its context template with no title or text) gives the pointwise mutual information between query and
passage, which ranks generic queries lowest (`pmi`; `union` drops both sets). `keyphrases` keeps the default filter
and also drops the same share of the keyphrase queries, ranked among themselves by the same likelihood.

    # each LLM query's score with an empty passage (one short LLM pass per query), for pmi and union
    .venv/bin/python bench/filter_variants.py prior --run RUN --out prior.json --threads 2
    # relabel a copy of RUN (its judgments reused; its manifest without the relabel section) with the variant
    .venv/bin/python bench/filter_variants.py relabel --mode pmi --prior prior.json -- --run COPY --seed S --threads 2
    .venv/bin/python bench/filter_variants.py relabel --mode keyphrases -- --run COPY --seed S --threads 2

Each screened on two SciFact draws and a loss (README, Ablations), so this is a bench script, not relabel options.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def prior(run: Path, out: Path, threads: int) -> None:
    from synthgen.judges import LLMJudges
    from synthgen.llm import load_llm
    from synthgen.machine import use_threads
    from synthgen.records import Passage, Query, read_records
    from synthgen.relabel import is_keyphrase_id

    use_threads(threads)
    queries = [q for q in read_records(run / "queries.jsonl", Query) if not is_keyphrase_id(q.id)]
    judges = LLMJudges(load_llm(None), ["ql"], words=80)
    empty = Passage(id="", text="", title="")
    rows = []
    for start in range(0, len(queries), 64):
        chunk = queries[start:start + 64]
        rows += [{"id": q.id, "query": q.query, "prior": s["ql"]} for q, s in zip(chunk, judges.score([(q, empty) for q in chunk]))]
    out.write_text(json.dumps(rows), encoding="utf-8")
    print(f"{len(rows)} queries scored with an empty passage: {out}")


def relabel(mode: str, prior_path: Path | None, relabel_args: list[str]) -> None:
    from dataclasses import replace

    import synthgen.stages.relabel as stage
    from synthgen.cli import app
    from synthgen.relabel import is_keyphrase_id

    empty = {r["id"]: r["prior"] for r in json.loads(prior_path.read_text(encoding="utf-8"))} if prior_path else {}
    by_likelihood = stage.drop_unlikely

    def variant(candidates, selections, fraction):
        if mode == "keyphrases":
            # the library's filter skips keyphrase queries; under other ids (the same scores) it ranks them alone
            kept = by_likelihood(candidates, selections, fraction)
            renamed = [replace(c, query=replace(c.query, id=c.query.id + "~")) if is_keyphrase_id(c.query.id)
                       else replace(c, scores={}) for c in candidates]
            return by_likelihood(renamed, kept, fraction)
        # the library's filter on scores moved by each query's empty-passage score: the same ranks as PMI
        shifted = [replace(c, scores={**c.scores, "ql": [None if s is None else s - empty[c.query.id] for s in c.scores["ql"]]})
                   if c.query.id in empty and "ql" in c.scores else c for c in candidates]
        dropped = by_likelihood(shifted, selections, fraction)
        if mode == "pmi":
            return dropped
        return [d if d.example is None else s for d, s in zip(dropped, by_likelihood(candidates, selections, fraction))]

    stage.drop_unlikely = variant  # the stage calls it by this module-level name once every query is selected
    app(["relabel", *relabel_args])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prior")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=0)
    r = sub.add_parser("relabel")
    r.add_argument("--mode", choices=["pmi", "union", "keyphrases"], required=True)
    r.add_argument("--prior", type=Path, help="from `prior`: needed by pmi and union")
    r.add_argument("relabel_args", nargs=argparse.REMAINDER, help="after --: synthgen relabel's options")
    args = parser.parse_args()
    if args.command == "prior":
        prior(args.run, args.out, args.threads)
    elif args.mode != "keyphrases" and args.prior is None:
        parser.error("--mode pmi and union need --prior")
    else:
        relabel(args.mode, args.prior, [a for a in args.relabel_args if a != "--"])


if __name__ == "__main__":
    main()
