"""Ablations on one finished run: one change per arm (a relabel option, recipe overrides, or both), same queries.

Each arm gets its own folder. An arm with relabel options copies the run's passages, queries and LLM judgments
(judgments are reused by key, so only a changed judge set costs LLM time) and runs `synthgen relabel`; an arm
without uses the run's own train.jsonl. Then `distill train` with the recipe plus the arm's overrides and
`distill eval` on the BEIR folder at each --dims size. One JSON line per arm goes to --out (appended, so a
long run keeps what it finished), with the share of false negatives among the hard negatives the arm trained
on: a negative counts as false when the collection's --fn-qrels make it relevant to a real query that the
example's positive (or seed passage) is relevant to. Only examples whose positive or seed is judged there
can be checked, so the share is over those. In-batch and queued negatives are not counted.

The recipe is the run's own when the run was made by `synthgen pipeline` (the resolved recipe.yaml saved with
its model), else --recipe.

    .venv/bin/python bench/bench_ablation.py --run /tmp/sf/scifact --data ../shared/data/scifact \\
        --arms seed-positive,no-hard-negatives,lora
    .venv/bin/python bench/bench_ablation.py --run /work/exp/sf --data ../shared/data/scifact --dims 384,64 \\
        --arms base,infonce,multi-positive,debiased,queue,simcse,remine --out bench/results/scifact-ablation.jsonl
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# name -> (relabel options, recipe overrides): one lever each, everything else as in the run
ARMS: dict[str, tuple[list[str], list[str]]] = {
    "as-run": ([], []),
    "seed-positive": (["--positive", "seed"], []),
    "no-hard-negatives": ([], ["data.hard_negatives=0"]),
    "lowest-negatives": (["--negative-strategy", "lowest"], []),
    "round-trip": (["--round-trip"], []),
    "agreement": (["--min-agreement", "2"], []),
    "judges-dense-bm25": (["--judges", "dense,bm25"], []),
    "lora": ([], ["lora.enabled=true", "train.lr=3e-4"]),
    "no-matryoshka": ([], ["loss.matryoshka_dims=[]"]),
    "lr-1e-4": ([], ["train.lr=1e-4"]),
    # the contrastive toolbox (docs/ablations.md, "Ablations of the contrastive toolbox")
    "infonce": ([], []),
    "multi-positive": (["--positives", "3"], ["data.positives=3"]),
    "debiased": ([], ["loss.tau_plus=0.1"]),
    "queue": ([], ["loss.queue_size=256"]),
    "queue-momentum": ([], ["loss.queue_size=256", "loss.queue_momentum=0.99"]),
    "simcse": ([], ["data.simcse=true", "data.hard_negatives=0"]),
    "remine": ([], ["remine.every=6", "remine.pool=1500"]),
    "remine-curriculum": ([], ["remine.every=6", "remine.pool=1500", "remine.curriculum=true"]),
    "two-towers": ([], ["model.towers=separate"]),
    # the three levers that measured above their reference once, together (issue 9)
    "stacked": (["--round-trip", "--positives", "3"], ["data.positives=3", "remine.every=6", "remine.pool=1500"]),
    "triplet": ([], ["loss.contrastive=triplet"]),
    "cosent": ([], ["loss.contrastive=cosent"]),
    "circle": ([], ["loss.contrastive=circle"]),
    "symmetric": ([], ["loss.symmetric=true"]),
    "hardest-negatives": (["--negative-strategy", "top"], []),
    "frozen-embeddings": ([], ["train.freeze_embeddings=true"]),
    "layer-decay": ([], ["train.layer_decay=0.8"]),
    "topic-batches": ([], ["data.topic_batches=true"]),
    "false-negative-margin": ([], ["loss.false_negative_margin=0.1"]),
}


def run(tool: str, *args: str) -> None:
    module = "synthgen.cli" if tool == "synthgen" else "distill.cli"
    subprocess.run([sys.executable, "-c", f"from {module} import main; main()", *args], check=True, cwd=REPO)


def co_relevant(qrels: Path) -> dict[str, set[str]]:
    """Passage id -> the other passages relevant to a query it is relevant to."""
    by_query: dict[str, set[str]] = {}
    with open(qrels, encoding="utf-8") as handle:
        for row in list(csv.reader(handle, delimiter="\t"))[1:]:
            if int(float(row[2])) > 0:
                by_query.setdefault(row[0], set()).add(row[1])
    out: dict[str, set[str]] = {}
    for docs in by_query.values():
        for d in docs:
            out.setdefault(d, set()).update(docs - {d})
    return out


def false_negatives(folder: Path, co: dict[str, set[str]]) -> dict:
    """False negatives among the record negatives and, with re-mining, every re-mined list."""
    doc = lambda pid: pid.split("#")[0]  # a chunk's id is its document's id + "#n"
    records = [json.loads(line) for line in open(folder / "train.jsonl", encoding="utf-8")]
    guard = {r["query"]: set().union(*(co.get(doc(p), set()) for p in (*r["pos_ids"], r["seed_id"]))) for r in records}
    lists = [(r["query"], r["neg_ids"]) for r in records]
    remined = folder / "model" / "remined.jsonl"
    if remined.exists():
        lists += [(x["query"], x["neg_ids"]) for x in map(json.loads, open(remined, encoding="utf-8"))]
    checked = [(doc(n) in guard.get(q, set())) for q, negs in lists if guard.get(q) for n in negs]
    return {"negatives_checked": len(checked), "false_negatives": sum(checked),
            "false_negative_share": round(sum(checked) / len(checked), 4) if checked else None,
            "remined_lists": sum(1 for _ in open(remined)) if remined.exists() else 0}


def evaluate(model: str, data: Path, dims: str, out: Path) -> dict:
    run("distill", "eval", model, "--data", str(data), "--dims", dims, "--out", str(out), "--quiet")
    return {d: {m: round(v, 4) for m, v in values.items() if m in ("ndcg@10", "recall@100")}
            for d, values in json.loads(out.read_text())["dims"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder (generate + relabel)")
    parser.add_argument("--data", type=Path, required=True, help="BEIR folder to evaluate on")
    parser.add_argument("--arms", default="seed-positive,no-hard-negatives,lora",
                        help=f"comma-separated: base (the untrained model), {', '.join(ARMS)}")
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "cpu.yaml", help="for runs not made by the pipeline")
    parser.add_argument("--set", dest="common", action="append", default=None,
                        help="overrides for every arm (default: train.interpolation=1, the arm's whole effect)")
    parser.add_argument("--dims", default="384,64")
    parser.add_argument("--fn-qrels", type=Path, default=None, help="qrels for the false-negative share (default: DATA/qrels/train.tsv)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_ablation"))
    parser.add_argument("--out", type=Path, default=None, help="append one JSON line per arm")
    args = parser.parse_args()

    names = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in names if a not in ARMS and a != "base"]
    if unknown:
        sys.exit(f"unknown arm {unknown[0]}: choose from base, {', '.join(ARMS)}")
    manifest = json.loads((args.run / "manifest.json").read_text())
    relabel_config = manifest["relabel"]["config"]
    recipe = Path(manifest["pipeline"]["model"]) / "recipe.yaml" if "pipeline" in manifest else args.recipe
    common = args.common if args.common is not None else ["train.interpolation=1"]
    fn_qrels = args.fn_qrels or args.data / "qrels" / "train.tsv"
    co = co_relevant(fn_qrels) if fn_qrels.exists() else {}
    rows = []
    for name in names:
        folder = args.work / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        started = time.perf_counter()
        try:
            row = measure(name, folder, args, relabel_config, recipe, common, co)
        except subprocess.CalledProcessError as exc:  # one broken arm must not lose the others
            row = {"arm": name, "error": f"{exc.cmd[3:5]} exited {exc.returncode}"}
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")

    dims = args.dims.split(",")
    print(f"\n{'arm':<20} {'examples':>8} " + " ".join(f"{'nDCG@10/' + d:>12}" for d in dims) + f" {'FN share':>9} {'seconds':>8}")
    for row in rows:
        if "error" in row:
            print(f"{row['arm']:<20} failed: {row['error']}")
            continue
        fn = row.get("false_negative_share")
        print(f"{row['arm']:<20} {row.get('examples', ''):>8} " + " ".join(f"{row['dims'][d]['ndcg@10']:>12.4f}" for d in dims)
              + f" {fn if fn is not None else '':>9} {row['seconds']:>8.0f}")


def measure(name: str, folder: Path, args: argparse.Namespace, relabel_config: dict, recipe: Path, common: list[str],
            co: dict[str, set[str]]) -> dict:
    """One arm: relabel if it asks, train, evaluate; the base arm only evaluates the untrained model."""
    if name == "base":
        from distill.recipe import resolve_base_model

        row = {"arm": "base", "dims": evaluate(str(resolve_base_model("all-MiniLM-L6-v2")), args.data, args.dims, folder / "metrics.json")}
    else:
        relabel_options, overrides = ARMS[name]
        if relabel_options:
            for file in ("passages.jsonl", "queries.jsonl", "judgments.jsonl"):
                shutil.copy(args.run / file, folder / file)
            base_options = ["--judges", ",".join(relabel_config["judges"]), "--judge-depth", str(relabel_config["judge_depth"])]
            run("synthgen", "relabel", "--run", str(folder), "--quiet", *base_options, *relabel_options)
        else:
            shutil.copy(args.run / "train.jsonl", folder / "train.jsonl")
        sets = [f"data.train={folder / 'train.jsonl'}", f"output={folder / 'model'}", "eval.beir=", *common, *overrides]
        run("distill", "train", str(recipe), "--quiet", *[x for s in sets for x in ("--set", s)])
        summary = json.loads((folder / "model" / "training.json").read_text())
        row = {"arm": name, "relabel": relabel_options, "overrides": overrides, "common": common,
               "examples": summary["data"]["train_examples"], "mean_positives": summary["data"]["mean_positives"],
               "steps": summary["steps"], "train_seconds": summary["train_seconds"],
               "dims": evaluate(str(folder / "model"), args.data, args.dims, folder / "metrics.json"),
               **(false_negatives(folder, co) if co else {})}
    return row


if __name__ == "__main__":
    main()
