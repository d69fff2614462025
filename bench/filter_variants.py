"""InPars' filter changed in one way, for one-change ablations of `synthgen relabel --drop-unlikely`.

`--drop-unlikely` ranks the LLM's queries by the query-likelihood judge's mean log-probability of the query given
its seed passage and drops the lowest share; the keyphrase queries all stay. That score is also high for a query any
passage would make likely ("What is the main function of the human brain?") and low for a short, rare-worded one
("cervical specimens tested for carcinogenic HPV genotypes"). Subtracting the same judge's score with an empty
passage (its context template with no title or text) gives the pointwise mutual information between query and
passage, which ranks generic queries lowest (`pmi`; `union` drops both sets). `keyphrases` keeps the default filter
and also drops the same share of the keyphrase queries, ranked among themselves by the same likelihood. `best-of`
chooses among several LLM queries per passage (`second` writes another for each, in the same form): only the one
most likely given its passage stays, then the default filter drops its share of those, so the run keeps about as
many of the LLM's records as the default, each the better of two (`worst-of`: the other one, the harder query).

    # each LLM query's score with an empty passage (one short LLM pass per query), for pmi and union
    .venv/bin/python bench/filter_variants.py prior --run RUN --out prior.json --threads 2
    # relabel a copy of RUN (its judgments reused; its manifest without the relabel section) with the variant
    .venv/bin/python bench/filter_variants.py relabel --mode pmi --prior prior.json -- --run COPY --seed S --threads 2
    .venv/bin/python bench/filter_variants.py relabel --mode keyphrases -- --run COPY --seed S --threads 2
    # a second LLM query for every passage the LLM wrote one for (written into COPY's queries.jsonl), then best-of
    .venv/bin/python bench/filter_variants.py second --run COPY --threads 2
    .venv/bin/python bench/filter_variants.py relabel --mode best-of -- --run COPY --seed S --threads 2
    # the same copy with both queries kept is plain `synthgen relabel --run COPY --seed S`

Each screened on two SciFact draws, none a gain (docs/ablations.md), so this is a bench script, not relabel options.
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


def second(run: Path, threads: int) -> None:
    """Item P@1 for each LLM query P@0, in P@0's form, by the run's own generate options and the library's
    generator (another sampling seed per item); repeats of any earlier query are dropped as generate drops them.
    queries.jsonl is rewritten in sample order: each passage's LLM queries together, then the keyphrase queries."""
    from tqdm import tqdm

    from synthgen.generate import GenerateConfig, Item, RepeatFilter
    from synthgen.llm import dtype_option
    from synthgen.machine import use_threads
    from synthgen.prompts import load_template
    from synthgen.records import Passage, Query, read_records
    from synthgen.relabel import is_keyphrase_id
    from synthgen.rundir import read_manifest, write_jsonl
    from synthgen.work import GenerateWork

    use_threads(threads)
    section = read_manifest(run)["generate"]
    config = GenerateConfig(**{**section["config"], "forms": tuple(section["config"]["forms"])})
    passages = {p.id: p for p in read_records(run / "passages.jsonl", Passage)}
    queries = list(read_records(run / "queries.jsonl", Query))
    if any(q.id.endswith("@1") for q in queries):
        raise SystemExit(f"{run} already holds second queries")
    items = [Item(passages[q.passage_id], 1, q.form) for q in queries if not is_keyphrase_id(q.id)]
    work = GenerateWork(None, load_template(section["template"]["path"]), config, dtype_option(None, section.get("dtype")))
    engine = work.load()
    repeats = RepeatFilter(config, [q for q in queries if not is_keyphrase_id(q.id)])
    written = {}
    for start in tqdm(range(0, len(items), config.batch_size), desc="second queries", unit="batch"):
        for q in repeats(work.run(engine, items[start:start + config.batch_size])).queries:
            written[q.passage_id] = q
    ordered = []
    for q in queries:
        ordered.append(q)
        if q.passage_id in written and not is_keyphrase_id(q.id):
            ordered.append(written.pop(q.passage_id))
    write_jsonl(run / "queries.jsonl", ordered)
    print(f"{len(ordered) - len(queries)} second queries for {len(items)} LLM passages written into {run / 'queries.jsonl'}")


def relabel(mode: str, prior_path: Path | None, relabel_args: list[str]) -> None:
    from dataclasses import replace

    import synthgen.stages.relabel as stage
    from synthgen.cli import app
    from synthgen.relabel import Selection, is_keyphrase_id, seed_likelihoods

    empty = {r["id"]: r["prior"] for r in json.loads(prior_path.read_text(encoding="utf-8"))} if prior_path else {}
    by_likelihood = stage.drop_unlikely

    def variant(candidates, selections, fraction):
        if mode in ("best-of", "worst-of"):
            # per seed passage, the LLM query its passage makes most (worst-of: least) likely keeps its example
            sign = 1 if mode == "best-of" else -1
            scored = seed_likelihoods(candidates, selections)
            best: dict[str, int] = {}
            for i, score in scored.items():
                passage = candidates[i].query.passage_id
                if passage not in best or sign * score > sign * scored[best[passage]]:
                    best[passage] = i
            lose = set(scored) - set(best.values())
            chosen = [Selection(None, "unlikely", top1=s.top1, fused_top=s.fused_top) if i in lose else s
                      for i, s in enumerate(selections)]
            return by_likelihood(candidates, chosen, fraction)
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
    w = sub.add_parser("second")
    w.add_argument("--run", type=Path, required=True)
    w.add_argument("--threads", type=int, default=0)
    r = sub.add_parser("relabel")
    r.add_argument("--mode", choices=["pmi", "union", "keyphrases", "best-of", "worst-of"], required=True)
    r.add_argument("--prior", type=Path, help="from `prior`: needed by pmi and union")
    r.add_argument("relabel_args", nargs=argparse.REMAINDER, help="after --: synthgen relabel's options")
    args = parser.parse_args()
    if args.command == "prior":
        prior(args.run, args.out, args.threads)
    elif args.command == "second":
        second(args.run, args.threads)
    elif args.mode in ("pmi", "union") and args.prior is None:
        parser.error("--mode pmi and union need --prior")
    else:
        relabel(args.mode, args.prior, [a for a in args.relabel_args if a != "--"])


if __name__ == "__main__":
    main()
