"""How good is the relabeler? Precision@1 of the chosen positive on REAL queries, false negatives, pairs/s.

SciFact's training queries (qrels/train.tsv, 809 queries) are run through the relabeler's retrieval and judges
over the whole corpus (5,183 passages). They only measure the relabeler here; nothing trains on them.
Prints, in one run:
- precision@1 of each retriever's own top-1 (dense, BM25, hybrid);
- precision@1 of each judge alone and of fusions of judges, re-ranking the hybrid top-k (LLM judges see the
  first --depth candidates), per LLM, with the oracle (a relevant passage among those candidates);
- the rate at which chosen hard negatives are in fact relevant, per strategy and margin;
- pairs judged per second for each LLM on the same pairs.
Judgments are cached in --work (keyed by model, templates and texts), so a second run only re-computes tables.

    .venv/bin/python bench/bench_relabel.py                            # 250 random queries (fixed seed), defaults
    .venv/bin/python bench/bench_relabel.py --queries all              # all 809
    .venv/bin/python bench/bench_relabel.py --queries 100 --depth 5 --llm-judges ql,yesno   # with the yes/no judge
    .venv/bin/python bench/bench_relabel.py --llm hf:/path/to/model    # other models (repeat --llm)
    .venv/bin/python bench/bench_relabel.py --split test --queries all  # the teacher's nDCG@10 on the test queries
    .venv/bin/python bench/bench_relabel.py --split test --queries all --llm smollm2-135m --llm gemma-3-270m  # + both fused
    .venv/bin/python bench/bench_relabel.py --judge-prompt bench/templates/judge_passage_upr.j2   # another judge context
The subsets are nested (the first 100 of 250 are the 100), so cached judgments carry over between sizes.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "scifact"


def load(split: str):
    from synthgen.records import Passage, Query

    passages = [Passage(id=o["_id"], text=o["text"], title=o.get("title", ""))
                for o in map(json.loads, open(DATA / "corpus.jsonl", encoding="utf-8"))]
    texts = {o["_id"]: o["text"] for o in map(json.loads, open(DATA / "queries.jsonl", encoding="utf-8"))}
    qrels: dict[str, set[str]] = {}
    with open(DATA / "qrels" / f"{split}.tsv", encoding="utf-8") as handle:
        for row in list(csv.reader(handle, delimiter="\t"))[1:]:
            if int(row[2]) > 0:
                qrels.setdefault(row[0], set()).add(row[1])
    # no seed: these queries were not written from a passage (passage_id names none in the corpus)
    queries = [Query(id=q, passage_id="", task="", query=texts[q], form="") for q in sorted(qrels, key=int)]
    return passages, queries, qrels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", default="250", help="how many random train queries (fixed seed), or 'all'")
    parser.add_argument("--split", default="train", choices=("train", "test"),
                        help="test: the fused judges as a re-ranker of the test queries (the teacher's own nDCG@10)")
    parser.add_argument("--llm", action="append", help="LLM spec (repeatable); default: the bundled SmolLM2 via hf")
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--depth", type=int, default=3, help="candidates the LLM judges score per query")
    parser.add_argument("--words", type=int, default=80, help="passage words the LLM judges see")
    parser.add_argument("--llm-judges", default="ql", help="comma-separated: ql, yesno")
    parser.add_argument("--judge-prompt", type=Path, help="the judges' passage context (default: prompts/judge_passage.j2)")
    parser.add_argument("--throughput-pairs", type=int, default=200)
    parser.add_argument("--throughput-only", action="store_true", help="measure pairs/s, judge nothing else")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_relabel"))
    parser.add_argument("--json", type=Path, help="also write every number here")
    parser.add_argument("--embedder", type=Path, help="the dense retriever and judge (default: the bundled base model)")
    args = parser.parse_args()
    if not (DATA / "corpus.jsonl").exists():
        sys.exit(f"skipped: {DATA} is not present (benchmark data lives beside the checkout)")

    from synthgen.judges import Judgment, LLMJudges
    from synthgen.llm import load_llm
    from synthgen.relabel import (Retrievers, SelectionConfig, llm_judge, llm_pairs, retrieve_candidates,
                                  score_retrieval_judges, select, fused_order)
    from synthgen.rundir import Appender, resume_records

    passages, queries, qrels = load(args.split)
    if args.queries != "all":
        queries = sorted(random.Random(0).sample(queries, int(args.queries)), key=lambda q: int(q.id))
    ids = [p.id for p in passages]
    relevant = lambda q, i: ids[i] in qrels[q.id]  # noqa: E731
    report: dict = {"queries": len(queries), "top_k": args.top_k, "depth": args.depth, "words": args.words}
    print(f"SciFact {args.split}: {len(queries)} queries, {len(passages)} passages; top-k {args.top_k}, "
          f"LLM depth {args.depth}, {args.words} passage words")

    from synthgen.retrieve import Embedder

    index = Retrievers(passages, Embedder(args.embedder) if args.embedder else None)
    p_at_1: dict[str, float] = {}
    for method in ("dense", "bm25", "hybrid"):
        cands = retrieve_candidates(queries, index, method, args.top_k)
        p_at_1[f"retriever {method}"] = sum(relevant(c.query, c.passages[0]) for c in cands) / len(cands)
    candidates = retrieve_candidates(queries, index, "hybrid", args.top_k)
    score_retrieval_judges(candidates, index, ("dense", "bm25"))
    report["oracle_top_k"] = sum(any(relevant(c.query, i) for i in c.passages) for c in candidates) / len(candidates)
    report["oracle_depth"] = sum(any(relevant(c.query, i) for i in c.passages[: args.depth])
                                 for c in candidates) / len(candidates)

    def top1_rate(judges) -> float:
        ndcg["+".join(judges)] = ndcg_at_10(judges)
        return sum(relevant(c.query, c.passages[fused_order(c, judges)[0]]) for c in candidates) / len(candidates)

    def ndcg_at_10(judges) -> float:
        """nDCG@10 of the judges' fused ranking of the hybrid top-k (what a teacher re-ranking them would score)."""
        from distill.metrics import mean_metrics

        runs = {c.query.id: [ids[c.passages[i]] for i in fused_order(c, judges)] for c in candidates}
        return mean_metrics(runs, {q: {i: 1 for i in found} for q, found in qrels.items() if q in runs})["ndcg@10"]

    ndcg: dict[str, float] = {}

    for judges in (("dense",), ("bm25",), ("dense", "bm25")):
        p_at_1["+".join(judges)] = top1_rate(judges)

    args.work.mkdir(parents=True, exist_ok=True)
    store = args.work / "judgments.jsonl"
    known = {j.key: j.score for j in resume_records(store, Judgment)}
    throughput: dict[str, dict] = {}
    fn_rows = []
    labels = []
    for spec in args.llm or [None]:
        llm = load_llm(spec)
        label = (spec or "hf:smollm2-default").split("/")[-1]
        labels.append(label)
        judges = LLMJudges(llm, args.llm_judges.split(","), words=args.words, context_template=args.judge_prompt)
        # throughput on the same fixed pairs for every model, always judged afresh
        sample = llm_pairs(candidates, args.depth)[: args.throughput_pairs]
        pairs = [(candidates[n].query, passages[i]) for n, i in sample]
        for names in dict.fromkeys((("ql",), tuple(judges.judges))) if pairs else ():
            t0 = time.perf_counter()
            judges.score(pairs, names)
            throughput[f"{label} {'+'.join(names)}"] = {"pairs_per_s": round(len(pairs) / (time.perf_counter() - t0), 2),
                                                       "passages": len({i for _, i in sample})}
        if args.throughput_only:
            llm.close()
            continue
        t0, fresh = time.perf_counter(), 0
        with Appender(store) as out:
            for made in llm_judge(candidates, passages, judges, args.depth, known):
                out.write(made)
                fresh += len(made)
        if fresh:
            report.setdefault("judging_s", {})[label] = round(time.perf_counter() - t0, 1)
        for j in judges.judges:
            for c in candidates:
                c.scores[f"{label}:{j}"] = c.scores.pop(j)
        ql, yn = f"{label}:ql", f"{label}:yesno"
        arms = [(ql,), (yn,), (ql, yn), (ql, "dense"), (ql, "bm25"), (ql, "dense", "bm25"), (yn, "dense", "bm25"),
                (ql, yn, "dense", "bm25")]
        for judges_set in arms:
            if all(j in candidates[0].scores for j in judges_set):
                p_at_1["+".join(judges_set)] = top1_rate(judges_set)
        default = (ql, "dense", "bm25")
        for strategy in ("random", "top", "lowest"):
            for margin in (1.0, 0.95, 0.9, 0.8):
                config = SelectionConfig(strategy=strategy, margin=margin)
                negs = hits = 0
                for c in candidates:
                    s = select(c, passages, default, config)
                    negs += len(s.example.neg_ids)
                    hits += sum(i in qrels[c.query.id] for i in s.example.neg_ids)
                fn_rows.append({"judges": "+".join(default), "strategy": strategy, "margin": margin,
                                "negatives_per_query": round(negs / len(candidates), 2),
                                "false_negative_rate": round(hits / max(negs, 1), 4)})
        llm.close()

    lls = [f"{label}:ql" for label in labels]
    if len(lls) > 1 and all(j in candidates[0].scores for j in lls):
        # every LLM's query-likelihood judge fused with the others': an ensemble of LLM judges
        for judges_set in (tuple(lls), (*lls, "dense", "bm25")):
            p_at_1["+".join(judges_set)] = top1_rate(judges_set)
    report["p_at_1"] = {k: round(v, 4) for k, v in p_at_1.items()}
    report["ndcg_at_10"] = {k: round(v, 4) for k, v in ndcg.items()}
    report["throughput"] = throughput
    report["false_negatives"] = fn_rows
    print(f"\nrelevant passage among the hybrid top-{args.top_k}: {report['oracle_top_k']:.3f}, "
          f"among the first {args.depth}: {report['oracle_depth']:.3f}")
    print("\n| arm | precision@1 | nDCG@10 (re-ranking the hybrid top-k) |\n|---|---|---|")
    for arm, value in report["p_at_1"].items():
        print(f"| {arm} | {value:.3f} | {report['ndcg_at_10'].get(arm, float('nan')):.4f} |")
    print("\n| judges | negative strategy | margin | negatives/query | false negatives |\n|---|---|---|---|---|")
    for row in fn_rows:
        print(f"| {row['judges']} | {row['strategy']} {SelectionConfig().ranks[0]}-{SelectionConfig().ranks[1]} "
              f"| {row['margin']} | {row['negatives_per_query']} | {row['false_negative_rate']:.3f} |")
    print("\n| LLM and judges | pairs/s | distinct passages |\n|---|---|---|")
    for name, row in throughput.items():
        print(f"| {name} | {row['pairs_per_s']} | {row['passages']} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
