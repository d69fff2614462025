"""fp32 against bf16 autocast for every stage's compute on this CPU, arms taking turns in one process.

`synthgen.machine.cpu_prefers_bf16` decides each stage's precision from a ~0.2 s probe of one linear layer. This
bench checks that the probe's verdict is the stages' verdict: the LLM writing queries (hf backend, batch 16), the
LLM judging (query likelihood, the relabel scorer), the student encoding passages and the student's training
step (forward and backward of 32 queries and 64 passages under the contrastive loss). Each part alternates its
two arms `--rounds` times and keeps each arm's best round, so a neighbour's load falls on both alike.

    .venv/bin/python bench/bench_precision.py --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="JSON result (default: bench/results/precision.json)")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F
    from sentence_transformers import SentenceTransformer

    from synthgen import machine
    from synthgen.llm import load_llm
    from synthgen.llm.base import SamplingParams, ScoreRequest
    from synthgen.machine import best_rounds
    from synthgen.retrieve import default_embedder_path

    threads = machine.use_threads(args.threads)
    docs = [json.loads(line) for line, _ in zip(open(args.data / "corpus.jsonl"), range(160))]
    texts = [f"{d.get('title', '')} {d['text']}" for d in docs]
    probe = machine.probe_bf16_speedup()

    def autocast(arm: str):
        return torch.autocast("cpu", dtype=torch.bfloat16) if arm == "bf16" else contextlib.nullcontext()

    rows = {}
    llms = {arm: load_llm(None, dtype={"fp32": "float32", "bf16": "bfloat16"}[arm], batch_size=16)
            for arm in ("fp32", "bf16")}
    prompts = [[{"role": "user", "content": "Write a search query for this passage.\n" + " ".join(t.split()[:180])}]
               for t in texts[:16]]
    params = SamplingParams(max_tokens=32)
    rows["LLM generate (16 prompts, 32 tokens)"] = best_rounds(
        args.rounds, {arm: (lambda llm=llm: llm.generate(prompts, params, list(range(16)))) for arm, llm in llms.items()})
    requests = [ScoreRequest(context="Passage: " + " ".join(texts[i].split()[:80]) +
                             "\nA search query that this passage answers:", continuation=" " + docs[(i + 7) % 160]["title"])
                for i in range(96)]
    rows["LLM judge (96 query-likelihood pairs)"] = best_rounds(
        args.rounds, {arm: (lambda llm=llm: llm.score(requests)) for arm, llm in llms.items()})
    del llms

    student = SentenceTransformer(str(default_embedder_path()), device="cpu")
    student.max_seq_length = 256

    def encode(arm: str) -> None:
        with torch.no_grad(), autocast(arm):
            student.encode(texts[:128], batch_size=64, convert_to_tensor=True)

    rows["student encode (128 passages, 256 tokens)"] = best_rounds(args.rounds, {a: (lambda a=a: encode(a)) for a in ("fp32", "bf16")})
    optimizer = torch.optim.SGD(student.parameters(), lr=0.0)  # a step's compute, weights unchanged

    def step(arm: str) -> None:
        with autocast(arm):
            queries = student(student.preprocess([t[:120] for t in texts[:32]]))["sentence_embedding"].float()
            passages = student(student.preprocess(texts[32:96]))["sentence_embedding"].float()
        loss = F.cross_entropy(F.normalize(queries) @ F.normalize(passages).T / 0.05, torch.arange(32))
        loss.backward()
        optimizer.zero_grad()

    rows["student training step (32 queries, 64 passages)"] = best_rounds(args.rounds, {a: (lambda a=a: step(a)) for a in ("fp32", "bf16")})

    print(f"{machine.bf16_probe_key()}; probe: fp32 time / bf16 time = {probe:.2f} "
          f"(bf16 chosen at >= {machine.BF16_MIN_SPEEDUP}: {'bf16' if probe >= machine.BF16_MIN_SPEEDUP else 'fp32'})")
    print(f"{'part':52} {'fp32 s':>8} {'bf16 s':>8} {'fp32/bf16':>10}")
    for part, best in rows.items():
        print(f"{part:52} {best['fp32']:8.2f} {best['bf16']:8.2f} {best['fp32'] / best['bf16']:10.2f}")
    out = args.out or REPO / "bench" / "results" / "precision.json"
    result = {"cpu": machine.bf16_probe_key(), "threads": threads, "probe_fp32_over_bf16": round(probe, 3),
              "parts": {part: {k: round(v, 3) for k, v in best.items()} for part, best in rows.items()},
              "command": " ".join(["bench/bench_precision.py", *sys.argv[1:]])}
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
