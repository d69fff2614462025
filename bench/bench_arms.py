"""Training arms on one finished run, and whether a synthetic dev set could have told them apart.

For a run folder (its train.jsonl and passages.jsonl) and the collection's BEIR folder, each arm trains the student
with recipes/cpu.yaml plus the arm's overrides (WiSE-FT off, no dev-driven checkpoint choice, a fixed dev split
held out of the training records), then every arm's model is measured at each WiSE-FT mixing weight on:
- the real test queries (nDCG@10 over the whole corpus): the truth;
- three signals the pipeline could compute without labels, on the held-out synthetic queries:
  `dev_slice` (rank the dev records' passages, relevant = the relabeled positive: what distill train uses),
  `dev_allpool` (rank every record's passages: a larger, harder pool), and `dev_seed` (rank the dev records'
  passages and seeds, relevant = the passage the query was written from: independent of the judges).
A signal is worth acting on only if it moves with the test. One JSON line per measurement goes to --out.

    .venv/bin/python bench/bench_arms.py --run /tmp/sf/scifact --data ../shared/data/scifact \\
        --arm hn1= --arm "hn3=data.hard_negatives=3" --alphas 1,0.5 --out bench/results/scifact-arms.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a run folder with train.jsonl and passages.jsonl")
    parser.add_argument("--data", type=Path, required=True, help="the collection's BEIR folder (test queries)")
    parser.add_argument("--arm", action="append", default=[], help="NAME=KEY=VALUE;KEY=VALUE (repeatable)")
    parser.add_argument("--alphas", default="1,0.5", help="WiSE-FT mixing weights to measure each arm at")
    parser.add_argument("--dev-size", type=int, default=100, help="records held out as the synthetic dev set")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_arms"))
    parser.add_argument("--no-base", action="store_true", help="skip measuring the base model (already in --out)")
    parser.add_argument("--trained", action="append", default=[],
                        help="NAME=FOLDER: measure a model an earlier run of this script trained (same --run and split)")
    parser.add_argument("--dev-only", action="store_true", help="only the dev signals (the test is in --out already)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from distill import encoder as enc
    from distill.data import build_dataset, dev_pool, read_examples, split_dev
    from distill.evaluate import load_beir, search
    from distill.metrics import mean_metrics
    from distill.recipe import load_recipe, resolve_base_model
    from synthgen.machine import resolve_precision
    from distill.train import train

    beir = load_beir(args.data, "test")
    records = read_examples(args.run / "train.jsonl")
    seeds = {o["id"]: o["text"] for o in map(json.loads, open(args.run / "passages.jsonl", encoding="utf-8"))}
    train_records, dev_records = split_dev(records, args.dev_size, 42)
    dataset = build_dataset(train_records, dev_records)
    ql_lists = judge_lists(args.run, dev_records, seeds)

    def embed(model, texts, length):
        model.eval()
        return enc.embed_rows(enc.embedder(model, "cpu", resolve_precision("auto", "cpu")),
                              enc.tokenize(model, texts, length), 64)

    def ndcg(queries, passages, relevant) -> float:
        ranked = search(queries, passages)
        runs = {str(q): [str(p) for p in row] for q, row in enumerate(ranked)}
        return mean_metrics(runs, {str(q): {str(p): 1 for p in rel} for q, rel in enumerate(relevant)})["ndcg@10"]

    def measure(model) -> dict[str, float]:
        figures = {}
        if not args.dev_only:
            ranked = search(embed(model, beir.queries, 64), embed(model, beir.passages, 256))
            runs = {q: [beir.passage_ids[i] for i in row] for q, row in zip(beir.query_ids, ranked)}
            figures["test_ndcg10"] = mean_metrics(runs, beir.qrels)["ndcg@10"]
        query_rows, slice_rows, relevant = dev_pool(dataset.dev)
        all_rows = dev_pool(dataset.dev, dataset.train)[1]
        q = embed(model, [dataset.queries[i] for i in query_rows], 64)
        for name, rows in (("dev_slice", slice_rows), ("dev_allpool", all_rows)):
            p = embed(model, [dataset.passages[i] for i in rows], 256)
            figures[name] = ndcg(q, p, [{rows.index(r) for r in relevant[i]} for i in query_rows])
        pool = sorted({t for r in dev_records for t in (*r.pos, *r.neg)} | {seeds[r.seed_id] for r in dev_records})
        texts = sorted({r.query for r in dev_records})
        wanted = [{pool.index(seeds[r.seed_id]) for r in dev_records if r.query == t} for t in texts]
        figures["dev_seed"] = ndcg(embed(model, texts, 64), embed(model, pool, 256), wanted)
        if ql_lists:
            figures["dev_ql"] = ql_order(model, ql_lists)
        return {k: round(v, 4) for k, v in figures.items()}

    def ql_order(model, lists) -> float:
        """Share of candidate pairs the student orders as the LLM judge alone does: the base model's own dense
        score is not in these labels, unlike the fused positive the other dev signals use."""
        q = embed(model, [query for query, _, _ in lists], 64)
        p = embed(model, [t for _, texts, _ in lists for t in texts], 256)
        agree = total = start = 0
        for row, (_, texts, scores) in enumerate(lists):
            sims = (p[start:start + len(texts)] @ q[row]).tolist()
            start += len(texts)
            for i in range(len(texts)):
                for j in range(i + 1, len(texts)):
                    if scores[i] != scores[j]:
                        total += 1
                        agree += (sims[i] - sims[j]) * (scores[i] - scores[j]) > 0
        return agree / max(total, 1)

    def write(row: dict) -> None:
        print(json.dumps(row), flush=True)
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    base_folder = str(resolve_base_model("all-MiniLM-L6-v2"))
    base = SentenceTransformer(base_folder, device="cpu")
    if not args.no_base:
        write({"arm": "base", **measure(base)})
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    for spec in args.trained:
        name, _, folder = spec.partition("=")
        with torch.no_grad():
            write({"arm": name, "trained": folder, "alpha": 1.0, **measure(SentenceTransformer(folder, device="cpu"))})
    (args.work).mkdir(parents=True, exist_ok=True)
    (args.work / "train.jsonl").write_text("".join(json.dumps(r.__dict__) + "\n" for r in train_records))
    (args.work / "dev.jsonl").write_text("".join(json.dumps(r.__dict__) + "\n" for r in dev_records))
    for spec in args.arm:
        name, _, settings = spec.partition("=")
        folder = args.work / name
        overrides = [f"data.train={args.work / 'train.jsonl'}", f"data.dev={args.work / 'dev.jsonl'}", "eval.every=0",
                     "train.interpolation=1", f"output={folder}", *[s for s in settings.split(";") if s]]
        started = time.perf_counter()
        result = train(load_recipe(REPO / "recipes" / "cpu.yaml", overrides), progress=False)
        seconds = round(time.perf_counter() - started, 1)
        model = SentenceTransformer(str(folder), device="cpu")
        trained = {k: v.clone() for k, v in model.state_dict().items()}
        for alpha in (float(a) for a in args.alphas.split(",")):
            model.load_state_dict({k: base_state[k] + alpha * (v - base_state[k]) if v.is_floating_point() else v
                                   for k, v in trained.items()})
            with torch.no_grad():
                write({"arm": name, "overrides": settings, "alpha": alpha, "steps": result.steps,
                       "train_seconds": seconds, **measure(model)})


def judge_lists(run: Path, dev_records, seeds: dict[str, str]) -> list[tuple[str, list[str], list[float]]]:
    """Each dev query with the passages the LLM's query-likelihood judge scored for it, and those scores."""
    path = run / "judgments.jsonl"
    if not path.exists():
        return []
    scored: dict[str, dict[str, float]] = {}
    for line in open(path, encoding="utf-8"):
        row = json.loads(line)
        if row.get("judge") == "ql":
            scored.setdefault(row["query_id"], {})[row["passage_id"]] = row["score"]
    lists = []
    for record in dev_records:
        judged = scored.get(record.query_id, {})
        if len(judged) >= 2 and all(pid in seeds for pid in judged):
            lists.append((record.query, [seeds[pid] for pid in judged], list(judged.values())))
    return lists


if __name__ == "__main__":
    main()
