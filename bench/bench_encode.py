"""Encoding for retrieval and evaluation: passages/s and nDCG@10 of the student per precision, in one run.

`distill eval` and the pipeline's final evaluation encode a whole corpus twice (base and trained model). On a
CPU that computes bf16 natively (AVX512-BF16, AMX) autocast to bf16 is the default for that encoding, which this
bench checks: faster, and nDCG@10 within 0.002 of fp32. On a CPU without it bf16 is emulated and the bf16 arm is
skipped.

    .venv/bin/python bench/bench_encode.py --data ../shared/data/scifact
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from distill.evaluate import evaluate
    from distill.recipe import resolve_base_model
    from synthgen.machine import cpu_has_native_bf16

    if args.threads:
        torch.set_num_threads(args.threads)
    model = SentenceTransformer(str(resolve_base_model(args.model)), device="cpu")
    arms = ["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"]
    results = {}
    for arm in arms:
        started = time.perf_counter()
        result = evaluate(model, args.data, progress=False, precision=arm, name=args.model)
        seconds = time.perf_counter() - started
        results[arm] = (result["dims"][next(iter(result["dims"]))]["ndcg@10"], (result["passages"] + result["queries"]) / seconds)
        print(f"{arm}: nDCG@10 {results[arm][0]:.4f}  {results[arm][1]:.1f} texts/s  ({seconds:.0f} s, "
              f"{result['passages']} passages + {result['queries']} queries, {torch.get_num_threads()} threads)", flush=True)
    if "bf16" in results:
        (fp32, fp32_rate), (bf16, bf16_rate) = results["fp32"], results["bf16"]
        print(f"bf16 vs fp32: x{bf16_rate / fp32_rate:.2f} texts/s, nDCG@10 {bf16 - fp32:+.4f}")
    else:
        print("this CPU has no native bf16: fp32 only")


if __name__ == "__main__":
    main()
