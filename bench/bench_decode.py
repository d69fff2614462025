"""The hf decode loop now against the loop at an earlier commit: same prompts, seeds and model, one run.

    .venv/bin/python bench/bench_decode.py --ref ba13d19 --passages 64 --rounds 2

Prompts are the generate stage's own (bundled generate.j2, SciFact passages, per-prompt seeds), sent in calls
of `--batch-size` as the stage sends them. The arms alternate round by round so that a busy machine slows both
alike; each arm keeps one backend object across its calls, as a stage run does. Prints tokens/s per arm, the
ratio, whether both arms wrote the same texts, and the fraction of the machine's measured matmul peak.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def backend_at(rev: str):
    """synthgen.llm.hf's HFLLM class as it was at `rev`."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:synthgen/llm/hf.py"], check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "hf_ref.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("hf_ref", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.HFLLM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="ba13d19", help="the commit whose decode loop is the reference arm")
    parser.add_argument("--passages", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    import torch

    from bench_generate import build_prompts
    from peak import decoder_flops, matmul_gflops, peak_line
    from synthgen.llm.hf import HFLLM
    from synthgen.llm.models import default_model_path

    if args.threads:
        torch.set_num_threads(args.threads)
    chats, seeds, params, source = build_prompts(args.passages)
    prompts = [c.prompt() for c in chats]
    path = default_model_path()
    arms = {f"loop at {args.ref}": backend_at(args.ref)(path, batch_size=args.batch_size),
            "loop now": HFLLM(path, batch_size=args.batch_size)}
    dtype = str(next(iter(arms.values())).dtype).removeprefix("torch.")
    print(f"{len(prompts)} prompts from {source}; {params}; dtype {dtype}; torch threads {torch.get_num_threads()}")
    seconds = dict.fromkeys(arms, 0.0)
    outputs: dict[str, list] = {}
    for _ in range(args.rounds):
        for name, llm in arms.items():
            started = time.perf_counter()
            out = []
            for start in range(0, len(prompts), args.batch_size):
                out += llm.generate(prompts[start : start + args.batch_size], params,
                                    seeds[start : start + args.batch_size])
            seconds[name] += time.perf_counter() - started
            outputs[name] = out
    peak = matmul_gflops(dtype)
    config = next(iter(arms.values())).model.config
    print(f"\n{'arm':22} {'seconds':>8} {'prompts/s':>9} {'gen tok/s':>9}  fraction of peak (prompt + generated tokens)")
    for name, out in outputs.items():
        s = seconds[name] / args.rounds
        prompt_tokens, gen_tokens = sum(c.prompt_tokens for c in out), sum(c.completion_tokens for c in out)
        mean_len = prompt_tokens / len(out)
        flops = (decoder_flops(config, prompt_tokens, mean_len / 2, len(out))
                 + decoder_flops(config, gen_tokens, mean_len, gen_tokens))
        print(f"{name:22} {s:8.1f} {len(out) / s:9.2f} {gen_tokens / s:9.1f}  {peak_line(flops, s, peak, dtype)}")
    (ref_name, ref), (now_name, now) = outputs.items()
    same = sum(a.text == b.text for a, b in zip(ref, now))
    print(f"\n{now_name} / {ref_name}: x{seconds[ref_name] / seconds[now_name]:.2f} prompts/s; same text for "
          f"{same}/{len(now)} prompts")


if __name__ == "__main__":
    main()
