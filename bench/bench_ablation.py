"""Ablations of the levers after generation, on a finished pipeline run: one change per arm, same queries.

Each arm copies the run's passages, queries and LLM judgments into its own folder (judgments are reused by key,
so only a changed judge set costs LLM time), runs `synthgen relabel` with the arm's options and `distill train`
with the arm's recipe overrides, then `distill eval` on the BEIR folder; one table of nDCG@10 and Recall@100 at
the end, next to the zero-shot base. The recipe is the run's own (the resolved recipe.yaml saved with its model).

    .venv/bin/python bench/bench_ablation.py --run /tmp/sf/scifact --data ../shared/data/scifact \\
        --arms seed-positive,no-hard-negatives,lora
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name -> (relabel options, recipe overrides): one lever each, everything else as in the run
ARMS: dict[str, tuple[list[str], list[str]]] = {
    "as-run": ([], []),
    "seed-positive": (["--positive", "seed"], []),
    "no-hard-negatives": ([], ["data.hard_negatives=0"]),
    "lowest-negatives": (["--negative-strategy", "lowest"], []),
    "round-trip": (["--round-trip"], []),
    "judges-dense-bm25": (["--judges", "dense,bm25"], []),
    "lora": ([], ["lora.enabled=true", "train.lr=3e-4"]),
    "no-matryoshka": ([], ["loss.matryoshka_dims=[]"]),
    "lr-1e-4": ([], ["train.lr=1e-4"]),
}


def run(tool: str, *args: str) -> None:
    module = "synthgen.cli" if tool == "synthgen" else "distill.cli"
    subprocess.run([sys.executable, "-c", f"from {module} import main; main()", *args], check=True, cwd=REPO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished `synthgen pipeline` run folder")
    parser.add_argument("--data", type=Path, required=True, help="BEIR folder to evaluate on")
    parser.add_argument("--arms", default="seed-positive,no-hard-negatives,lora", help=f"comma-separated: {', '.join(ARMS)}")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_ablation"))
    args = parser.parse_args()

    names = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in names if a not in ARMS]
    if unknown:
        sys.exit(f"unknown arm {unknown[0]}: choose from {', '.join(ARMS)}")
    manifest = json.loads((args.run / "manifest.json").read_text())
    relabel_config = manifest["relabel"]["config"]
    recipe = Path(manifest["pipeline"]["model"]) / "recipe.yaml"  # the resolved recipe the run trained with
    table = manifest["pipeline"]["eval"]
    dim = str(max(int(d) for d in table["dims"]))
    base = {m: table["dims"][dim][m]["base"] for m in ("ndcg@10", "recall@100")}
    rows = []
    for name in names:
        relabel_options, overrides = ARMS[name]
        folder = args.work / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for file in ("passages.jsonl", "queries.jsonl", "judgments.jsonl"):
            shutil.copy(args.run / file, folder / file)
        started = time.perf_counter()
        base_options = ["--judges", ",".join(relabel_config["judges"]), "--judge-depth", str(relabel_config["judge_depth"])]
        run("synthgen", "relabel", "--run", str(folder), "--quiet", *base_options, *relabel_options)
        sets = [f"data.train={folder / 'train.jsonl'}", f"output={folder / 'model'}", "eval.beir=", *overrides]
        run("distill", "train", str(recipe), "--quiet", *[x for s in sets for x in ("--set", s)])
        run("distill", "eval", str(folder / "model"), "--data", str(args.data), "--out", str(folder / "metrics.json"), "--quiet")
        metrics = json.loads((folder / "metrics.json").read_text())["dims"]
        got = metrics[max(metrics, key=int)]
        examples = sum(1 for _ in open(folder / "train.jsonl"))
        rows.append((name, examples, got["ndcg@10"], got["recall@100"], time.perf_counter() - started))
        print(f"{name}: nDCG@10 {got['ndcg@10']:.4f}", flush=True)

    print(f"\n{'arm':<20} {'examples':>8} {'nDCG@10':>8} {'vs base':>8} {'Recall@100':>11} {'seconds':>8}")
    print(f"{'zero-shot base':<20} {'':>8} {base['ndcg@10']:>8.4f} {'':>8} {base['recall@100']:>11.4f}")
    for name, examples, ndcg, recall, seconds in rows:
        print(f"{name:<20} {examples:>8} {ndcg:>8.4f} {(ndcg - base['ndcg@10']) * 100:>+8.2f} {recall:>11.4f} {seconds:>8.0f}")


if __name__ == "__main__":
    main()
