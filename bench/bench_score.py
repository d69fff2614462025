"""Scoring throughput (the relabel judges' hot path): context reuse vs a plain forward pass per pair, one run.

    .venv/bin/python bench/bench_score.py [--contexts 20 --per-context 10 --naive-contexts 5] [--ref ba13d19] [--int8]

Contexts are SciFact passages (cut to ~110 words, ~150 tokens) in a query-likelihood prompt; continuations are
SciFact claims (~20 tokens); every context is scored against `--per-context` claims, as the relabeler scores
one passage against many queries. Arms, on the bundled SmolLM2 through the hf backend:
  naive          one forward pass per pair over context + continuation (what the reference probe did)
  naive batched  the same pairs, right-padded batches of 16
  reuse          HFLLM.score: each context once, its continuations packed beside it in the same row
  reuse at REV   HFLLM.score as it was at commit REV (`--ref`; ba13d19: contexts first, then a gathered copy of
                 their KV cache per continuation)
  reuse int8     HFLLM.score with every Linear layer quantized to int8 (torch's dynamic quantization, `--int8`): a
                 speed lever for CPUs without bf16, judged by how far its judgments move from the float ones
The naive arms run the first `--naive-contexts` contexts only (they are slow); rates are pairs per second.
Also checks that reuse gives the naive log-probs (max abs difference printed, in the model's dtype: bf16 on a CPU
with AVX512-BF16, where batch shapes alone move a log-prob by ~1e-2), and prints the fraction of the machine's
measured matmul peak each arm reaches.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact"


def requests_from_scifact(contexts: int, per_context: int):
    from synthgen.llm import ScoreRequest

    passages, claims = [], []
    with open(SCIFACT / "corpus.jsonl") as f:
        for line in f:
            passages.append(" ".join(json.loads(line)["text"].split()[:110]))
            if len(passages) == contexts:
                break
    with open(SCIFACT / "queries.jsonl") as f:
        for line in f:
            claims.append(json.loads(line)["text"])
            if len(claims) == per_context:
                break
    return [ScoreRequest(f"Passage: {p}\nA search query that this passage answers:", " " + c, (" yes", " no"))
            for p in passages for c in claims]


def naive(llm, requests, batch: int) -> list[list[float]]:
    import torch

    tok, out = llm.tokenizer, []
    for start in range(0, len(requests), batch):
        chunk = requests[start : start + batch]
        pairs = [(tok(r.context).input_ids, tok(r.continuation, add_special_tokens=False).input_ids) for r in chunk]
        width = max(len(c) + len(q) for c, q in pairs)
        ids = torch.full((len(pairs), width), llm.pad_id)
        mask = torch.zeros((len(pairs), width), dtype=torch.long)
        for b, (c, q) in enumerate(pairs):
            ids[b, : len(c) + len(q)] = torch.tensor(c + q)
            mask[b, : len(c) + len(q)] = 1
        with torch.inference_mode():
            logprobs = torch.log_softmax(llm.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        for b, (c, q) in enumerate(pairs):
            out.append([float(logprobs[b, len(c) - 1 + j, t]) for j, t in enumerate(q)])
    return out


def quantized_arm(llm, requests, scores, contexts: int, per_context: int, rows: list) -> str:
    """Time the int8 model on the same requests; how much its query likelihoods moved, and how often each claim's
    most likely passage (the judge's choice) stays the same."""
    import copy

    import torch

    model, decoder = llm.model, llm.decoder
    llm.model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    llm.decoder, llm._prefix = llm.model.get_decoder(), ([], [])
    started = time.perf_counter()
    quantized = llm.score(requests)
    rows.append(("reuse int8", len(requests), time.perf_counter() - started))
    llm.model, llm.decoder, llm._prefix = model, decoder, ([], [])
    before = [sum(s.token_logprobs) for s in scores]
    after = [sum(s.token_logprobs) for s in quantized]
    moved = sum(abs(a - b) for a, b in zip(before, after)) / len(before)
    best = [max(range(contexts), key=lambda c: values[c * per_context + q]) for values in (before, after)
            for q in range(per_context)]
    same = sum(a == b for a, b in zip(best[:per_context], best[per_context:])) / per_context
    return (f"query log-likelihood moved by {moved:.2f} nats per pair on average (mean {sum(before) / len(before):.1f}); "
            f"each claim's best passage the same for {same:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, default=20)
    parser.add_argument("--per-context", type=int, default=10)
    parser.add_argument("--naive-contexts", type=int, default=5)
    parser.add_argument("--ref", default="", help="also time HFLLM.score as it was at this commit")
    parser.add_argument("--int8", action="store_true", help="also time the model with int8 dynamic quantization")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for the hf arms (0: torch's default); 1 is steadier on a busy machine")
    args = parser.parse_args()

    import torch

    from synthgen.llm import load_llm

    if args.threads:
        torch.set_num_threads(args.threads)

    requests = requests_from_scifact(args.contexts, args.per_context)
    subset = requests[: args.naive_contexts * args.per_context]
    llm = load_llm(None)
    tok = llm.tokenizer
    ctx_len = sum(len(tok(r.context).input_ids) for r in requests[:: args.per_context]) / args.contexts
    cont_len = sum(len(tok(r.continuation).input_ids) for r in requests) / len(requests)
    print(f"{llm.name} dtype {llm.dtype}, torch threads {torch.get_num_threads()}; {args.contexts} contexts of "
          f"~{ctx_len:.0f} tokens x {args.per_context} continuations of ~{cont_len:.0f} tokens (+ yes/no choices)")

    rows = []
    started = time.perf_counter()
    reference = naive(llm, subset, batch=1)
    rows.append(("naive", len(subset), time.perf_counter() - started))
    started = time.perf_counter()
    naive(llm, subset, batch=16)
    rows.append(("naive batched", len(subset), time.perf_counter() - started))
    started = time.perf_counter()
    scores = llm.score(requests)
    rows.append(("reuse", len(requests), time.perf_counter() - started))
    if args.ref:
        from bench_decode import backend_at

        ref = backend_at(args.ref)(llm.name.removeprefix("hf:"))
        ref.score(requests[:5])  # warm-up, as the reuse arm's own first call is not the first forward
        started = time.perf_counter()
        ref_scores = ref.score(requests)
        rows.append((f"reuse at {args.ref}", len(requests), time.perf_counter() - started))
        ref_diff = max(abs(a - b) for s, r in zip(scores, ref_scores) for a, b in zip(s.token_logprobs, r.token_logprobs))

    diff = max(abs(a - b) for s, ref in zip(scores, reference) for a, b in zip(s.token_logprobs, ref))
    if args.int8:
        int8_agreement = quantized_arm(llm, requests, scores, args.contexts, args.per_context, rows)
    from peak import decoder_flops, matmul_gflops, peak_line

    dtype = str(llm.dtype).removeprefix("torch.")
    peak = matmul_gflops(dtype)
    per_pair = (decoder_flops(llm.model.config, ctx_len, ctx_len / 2, 0) / args.per_context
                + decoder_flops(llm.model.config, cont_len, ctx_len + cont_len / 2, cont_len + 1))
    print(f"\n{'arm':18} {'pairs':>6} {'seconds':>8} {'pairs/s':>8}  fraction of peak (each context once)")
    for name, pairs, seconds in rows:
        print(f"{name:18} {pairs:6d} {seconds:8.1f} {pairs / seconds:8.2f}  {peak_line(per_pair * pairs, seconds, peak, dtype)}")
    rate = {name: pairs / seconds for name, pairs, seconds in rows}
    print(f"\nreuse / naive x{rate['reuse'] / rate['naive']:.2f}; reuse / naive batched "
          f"x{rate['reuse'] / rate['naive batched']:.2f}; max |reuse - naive| log-prob {diff:.2e}")
    if args.int8:
        print(f"reuse int8 / reuse x{rate['reuse int8'] / rate['reuse']:.2f}; {int8_agreement}")
    if args.ref:
        print(f"reuse / reuse at {args.ref} x{rate['reuse'] / rate[f'reuse at {args.ref}']:.2f}; "
              f"max |reuse - reuse at {args.ref}| log-prob {ref_diff:.2e}")


if __name__ == "__main__":
    main()
