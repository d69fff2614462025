"""Domain adaptation end to end: BM25, the zero-shot student and the adapted student on one BEIR collection.

Runs `synthgen pipeline` as a user would (a subprocess, timed) on the collection's corpus.jsonl ONLY: its
queries and qrels are used for the evaluation at the end, never for generating or training. Prints one table
with nDCG@10 and Recall@100 of BM25 (bm25s, the relabeler's own settings), of the base student (zero-shot) and
of the adapted student, and the time and counts of each stage, from the run's manifest.

    .venv/bin/python bench/bench_pipeline.py --data ../shared/data/adi --max-passages 82
    .venv/bin/python bench/bench_pipeline.py --data ../shared/data/scifact --max-passages 128 \
        --set train.epochs=3 --set data.dev_size=24
    # add any `synthgen pipeline` option after --, e.g. -- --judges dense,bm25

A run folder is kept in --work/<collection>, so a second run with the same options skips every stage and only
reprints the table; with other options the pipeline redoes what they change. The figures go to
bench/results/<collection>.json (the tables of README.md and docs/ are copied from there); `minutes` adds up the
time each stage took when it last ran, so a rerun that only retrains still reports what a whole run costs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def bm25_metrics(data: Path) -> dict[str, float]:
    from distill.evaluate import load_beir
    from distill.metrics import mean_metrics
    from synthgen.records import Passage
    from synthgen.retrieve import BM25Retriever

    beir = load_beir(data, "test")
    # load_beir joins title and text already; BM25Retriever joins them again, so give it the joined text alone
    retriever = BM25Retriever([Passage(id=i, text=t) for i, t in zip(beir.passage_ids, beir.passages)])
    hits = retriever.search(beir.queries, 100)
    runs = {q: [beir.passage_ids[h.index] for h in row] for q, row in zip(beir.query_ids, hits)}
    return mean_metrics(runs, beir.qrels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_pipeline"))
    parser.add_argument("--max-passages", type=int, default=None)
    parser.add_argument("--name", help="results file bench/results/NAME.json (default: the collection's name)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="recipe KEY=VALUE (repeatable)")
    parser.add_argument("extra", nargs="*", help="more `synthgen pipeline` options (after --)")
    args = parser.parse_args()

    data = args.data.resolve()
    run_dir = args.work / (args.name or data.name)
    command = [sys.executable, "-c", "from synthgen.cli import main; main()", "pipeline",
               "--corpus", str(data / "corpus.jsonl"), "--out", str(run_dir), "--eval", str(data), "--quiet"]
    if args.max_passages:
        command += ["--max-passages", str(args.max_passages)]
    for item in args.overrides:
        command += ["--set", item]
    command += args.extra
    print("$ " + " ".join(command[3:]), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"pipeline failed with exit code {done.returncode}")

    manifest = json.loads((run_dir / "manifest.json").read_text())
    section = manifest["pipeline"]
    table = section["eval"]
    dim = str(max(int(d) for d in table["dims"]))
    metrics = table["dims"][dim]
    bm25 = bm25_metrics(data)

    print(f"\n{data.name}: {table['queries']} test queries; generated and trained from corpus.jsonl only")
    print(f"{'retriever':<34} {'nDCG@10':>8} {'Recall@100':>11}")
    print(f"{'BM25 (bm25s)':<34} {bm25['ndcg@10']:>8.4f} {bm25['recall@100']:>11.4f}")
    print(f"{'student zero-shot (base)':<34} {metrics['ndcg@10']['base']:>8.4f} {metrics['recall@100']['base']:>11.4f}")
    print(f"{'student adapted':<34} {metrics['ndcg@10']['trained']:>8.4f} {metrics['recall@100']['trained']:>11.4f}")
    gain = metrics["ndcg@10"]["trained"] - metrics["ndcg@10"]["base"]
    print(f"adapted - zero-shot nDCG@10: {gain * 100:+.2f} points")
    print(f"\n{'stage':<10} {'status':<8} {'seconds':>8}  counts")
    for name, stage in section["stages"].items():
        counts = ", ".join(f"{k}={v}" for k, v in stage["counts"].items())
        print(f"{name:<10} {stage['status']:<8} {stage['seconds']:>8.1f}  {counts}")
    print(f"{'total':<10} {'':<8} {wall:>8.1f}  (this invocation, wall seconds)")
    generate = manifest.get("generate", {})
    if generate.get("throughput"):
        t = generate["throughput"]
        print(f"generate over all its runs: {t['llm_seconds']} LLM seconds, {t['queries_per_s']} queries/s")
    for warning in section.get("warnings", []):
        print(f"warning: {warning}")

    stage_seconds = last_run_seconds(run_dir, section)
    # corpus encoding: relabel's dense retrieval (cache misses) and the final evaluation of base and trained model
    encode_seconds = (manifest["relabel"].get("throughput", {}).get("encode_seconds") or 0.0) + (table.get("encode_seconds") or 0.0)
    print(f"encoding the corpus: {encode_seconds:.0f} s of {sum(stage_seconds.values()):.0f} s "
          f"({encode_seconds / max(sum(stage_seconds.values()), 1e-9):.0%})")
    dims = {d: {m: values[m] for m in ("ndcg@10", "recall@100")} for d, values in table["dims"].items()}
    dev = section.get("dev") or {}
    record = {
        "collection": data.name,
        "bm25_ndcg10": round(bm25["ndcg@10"], 4),
        "zero_shot_ndcg10": round(metrics["ndcg@10"]["base"], 4),
        "adapted_ndcg10": round(metrics["ndcg@10"]["trained"], 4),
        "gain_points": round(gain * 100, 2),
        "bm25_recall100": round(bm25["recall@100"], 4),
        "zero_shot_recall100": round(metrics["recall@100"]["base"], 4),
        "adapted_recall100": round(metrics["recall@100"]["trained"], 4),
        "minutes": round(sum(stage_seconds.values()) / 60, 1),
        "wall_minutes": round(wall / 60, 1),  # this invocation, from the command's start to its end
        "stage_minutes": {k: round(v / 60, 1) for k, v in stage_seconds.items()},
        "encode_minutes": round(encode_seconds / 60, 1),
        "queries": manifest["generate"]["counts"]["written"],  # the LLM's and the keyphrase queries
        "keyphrase_queries": manifest["generate"]["counts"].get("keyphrases", 0),
        "training_examples": manifest["relabel"]["counts"]["written"],
        "dev": {"metric": dev.get("metric"), "base": (dev.get("base") or {}).get(dev.get("metric")),
                "trained": (dev.get("trained") or {}).get(dev.get("metric")), "beats_base": dev.get("beats_base"),
                "interval": dev.get("interval"), "source": dev.get("source"), "test_says_better": gain > 0},
        "dims": dims,
        "warnings": section.get("warnings", []),
        "time_budget": section.get("time_budget"),  # --time-budget's choice and projection, when given
        "command": "bench/bench_pipeline.py " + " ".join(sys.argv[1:]),
    }
    out = REPO / "bench" / "results" / f"{args.name or data.name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


def last_run_seconds(run_dir: Path, section: dict) -> dict[str, float]:
    """Seconds of each stage when it last ran: this invocation's for a stage that ran, else the time recorded by
    the run that made its outputs (relabel's wall time, generate's LLM seconds summed over all its batches)."""
    seconds, manifests = {}, {}
    for label, stage in section["stages"].items():
        folder, name = (run_dir / "dev", label[4:]) if label.startswith("dev ") else (run_dir, label)  # --dev-passages
        if folder not in manifests:
            manifests[folder] = json.loads((folder / "manifest.json").read_text())
        manifest = manifests[folder]
        if name == "generate" and "budget" in section["stages"] and stage["status"] == "ran" and folder == run_dir:
            seconds[label] = stage["seconds"]  # its wall_seconds count from the run's start: the budget stage's too
        elif name == "generate":  # a resumed generate's wall time covers its last part only; its batches, all
            generated = manifest["generate"]
            seconds[label] = max(stage["seconds"] if stage["status"] == "ran" else 0.0, generated.get("wall_seconds", 0.0),
                                generated.get("throughput", {}).get("llm_seconds") or 0.0)
        elif stage["status"] == "ran":
            seconds[label] = stage["seconds"]
        elif name == "relabel":
            seconds[label] = manifest["relabel"].get("throughput", {}).get("wall_seconds", 0.0)
        elif name == "train":
            seconds[label] = manifest["train"].get("wall_seconds", 0.0)
        else:
            seconds[label] = stage["seconds"]
    return seconds


if __name__ == "__main__":
    main()
