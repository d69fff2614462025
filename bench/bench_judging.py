"""What relabel's LLM judging costs at other settings, without judging everything: sampled real batches, one process.

    .venv/bin/python bench/bench_judging.py --run RUN --cache-dir CACHE [--depths 2,3] [--batches 10]
        [--out bench/results/scifact-judging.json]

RUN is a generated run folder (passages.jsonl, queries.jsonl; e.g. a SciFact pipeline run). Retrieval is the relabel
stage's own (cached embeddings); each arm (a judge depth, with the keyphrase queries judged by the LLM or left to
the retriever judges as `--no-judge-keyphrases` leaves them) forms the batches the stage would send, and a sample of
`--batches` of them per arm is scored by the bundled LLM through the stage's own judging code, the arms alternated
batch by batch so that a drift of the machine falls on all of them. Judging time is not proportional to the pairs:
a batch reads each of its passages once for all that passage's queries, so the estimate is the sampled seconds per
pair times the arm's pairs, and a least-squares split of the sampled seconds into seconds per passage read and per
pair is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--depths", default="2,3")
    parser.add_argument("--batches", type=int, default=10, help="sampled batches per arm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import numpy as np

    from synthgen.judges import LLM_JUDGES, LLMJudges, judge_batch
    from synthgen.llm import load_llm
    from synthgen.machine import torch_threads
    from synthgen.relabel import Retrievers, judge_batches, llm_pairs, parse_judges, retrieve_candidates
    from synthgen.retrieve import Embedder
    from synthgen.stages.relabel import RelabelOptions, left_to_retrievers, read_inputs

    options = RelabelOptions(cache_dir=args.cache_dir)
    passages, queries = read_inputs(args.run)
    retrievers = Retrievers(passages, Embedder(options.embedder, options.cache_dir), index=options.index)
    candidates = retrieve_candidates(queries, retrievers, options.retrieval, options.top_k)
    llm = load_llm(options.llm)
    names = parse_judges(options.judges)
    judges = LLMJudges(llm, [j for j in names if j in LLM_JUDGES], words=options.judge_words)
    retriever_names = tuple(j for j in names if j not in LLM_JUDGES)

    def reads(batch) -> int:
        return len({p.id for _, p, _ in batch})

    arms = {}
    for depth in (int(d) for d in args.depths.split(",")):
        for keyphrases in (True, False):
            unjudged = left_to_retrievers(candidates, retriever_names, keyphrases)
            judged = [c for c in candidates if c.query.id not in unjudged]
            pairs = llm_pairs(judged, depth)
            batches = judge_batches(judged, passages, judges, pairs, {}, options.batch_pairs)
            arms[f"depth {depth}, keyphrases {'judged' if keyphrases else 'left to retrievers'}"] = {
                "depth": depth, "judge_keyphrases": keyphrases, "batches": batches,
                "pairs": len(pairs), "passages": len({i for _, i in pairs}),
                "reads": sum(map(reads, batches))}
    rng = random.Random(args.seed)
    for arm in arms.values():
        arm["sample"] = rng.sample(range(len(arm["batches"])), min(args.batches, len(arm["batches"])))
        arm["timed"] = []  # (passages read, pairs, seconds) per sampled batch

    labels = list(arms)
    judge_batch(judges, arms[labels[0]]["batches"][0])  # warm-up: first-call allocations are no arm's cost
    for r in range(args.batches):
        for name in labels[r % len(labels):] + labels[: r % len(labels)]:  # each arm first in turn
            arm = arms[name]
            if r >= len(arm["sample"]):
                continue
            batch = arm["batches"][arm["sample"][r]]
            t0 = time.perf_counter()
            judge_batch(judges, batch)
            arm["timed"].append((reads(batch), len(batch), time.perf_counter() - t0))
        print(f"round {r + 1}/{args.batches} done", file=sys.stderr)

    rows = np.array([t for arm in arms.values() for t in arm["timed"]], dtype=float)
    per_read, per_pair = np.linalg.lstsq(rows[:, :2], rows[:, 2], rcond=None)[0]
    report = {"run": str(args.run), "llm": llm.name, "threads": torch_threads(), "batch_pairs": options.batch_pairs,
              "judge_words": options.judge_words, "sampled_batches_per_arm": args.batches, "seed": args.seed,
              "seconds_per_passage_read": round(float(per_read), 4), "seconds_per_pair": round(float(per_pair), 4),
              "arms": []}
    print(f"{'arm':<42} {'pairs':>7} {'passages':>8} {'reads':>6} {'min (sampled)':>13} {'min (split)':>11} "
          f"{'vs first':>8}")
    for arm in arms.values():
        arm["timed"] = np.array(arm["timed"], dtype=float)
        arm["minutes"] = arm["pairs"] * arm["timed"][:, 2].sum() / arm["timed"][:, 1].sum() / 60
    for name, arm in arms.items():
        timed, sampled = arm["timed"], arm["minutes"]
        split = (per_read * arm["reads"] + per_pair * arm["pairs"]) / 60
        ratio = sampled / arms[labels[0]]["minutes"]
        print(f"{name:<42} {arm['pairs']:>7} {arm['passages']:>8} {arm['reads']:>6} {sampled:>13.1f} {split:>11.1f} "
              f"{ratio:>8.2f}")
        report["arms"].append({"arm": name, "depth": arm["depth"], "judge_keyphrases": arm["judge_keyphrases"],
                               "pairs": arm["pairs"], "passages": arm["passages"], "passage_reads": arm["reads"],
                               "minutes_sampled": round(sampled, 2), "minutes_split": round(float(split), 2),
                               "sampled_pairs_per_s": round(timed[:, 1].sum() / timed[:, 2].sum(), 2)})
    print(f"least squares: {per_read:.4f} s per passage read, {per_pair:.4f} s per pair")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
