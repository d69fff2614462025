"""Query-generation throughput: hf batched vs hf one prompt at a time vs vLLM, same prompts, one run.

    /work/venv-vllm/bin/python bench/bench_generate.py            # all three arms (vLLM needs its venv)
    .venv/bin/python bench/bench_generate.py --no-vllm            # hf arms only

Prompts are built by synthgen.generate (plan + render) from ../shared/data/scifact passages, with the bundled
`generate.j2` when it exists, else a provisional template kept here (printed as such). Sampling is the stage's
own (`GenerateConfig().sampling()`), seeds per prompt. The one-at-a-time arm runs the first `--single` prompts
only (it is the slow one); every rate is per second of that arm's own wall time, so ratios compare like for like.
Goal (issue 2): batched hf >= 5x one-at-a-time; vLLM >= batched hf.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact"

# Used only while prompts/generate.j2 does not exist: same [[role]] format and prefill as the stage expects.
PROVISIONAL_TEMPLATE = """[[system]]
You write search queries. Answer with one JSON object {"task": ..., "query": ...} and nothing else.
[[user]]
Passage: Aspirin irreversibly inhibits cyclooxygenase, reducing thromboxane A2 synthesis in platelets and
lowering the risk of arterial thrombosis.
Invent a retrieval task for which this passage is relevant, and a {{ "question" }} for that task.
[[assistant]]
{"task": "Given a medical question, find passages that explain drug mechanisms", "query": "how does aspirin prevent blood clots"}
[[user]]
Passage: {{ passage }}
Invent a retrieval task for which this passage is relevant, and a {{ form }} for that task.
[[assistant]]
{"task": \""""


def load_passages(n: int):
    from synthgen.records import Passage

    rows = []
    with open(SCIFACT / "corpus.jsonl") as f:
        for line in f:
            d = json.loads(line)
            rows.append(Passage(id=d["_id"], text=d["text"], title=d.get("title", "")))
            if len(rows) == n:
                break
    return rows


def build_prompts(n: int):
    from synthgen.generate import GenerateConfig, derive_seed, plan, render
    from synthgen.prompts import load_template, template_dir

    config = GenerateConfig(seed=0)
    if (template_dir() / "generate.j2").exists():
        template, source = load_template("generate.j2"), "prompts/generate.j2"
    else:
        path = Path(tempfile.mkdtemp()) / "provisional_generate.j2"
        path.write_text(PROVISIONAL_TEMPLATE)
        template, source = load_template(path), "PROVISIONAL template in bench/bench_generate.py"
    items = plan(load_passages(n), config)
    chats = [render(template, item, config) for item in items]
    seeds = [derive_seed(config.seed, item.passage.id, item.index, 0) for item in items]
    return chats, seeds, config.sampling(), source


def run_arm(name, llm, chats, seeds, params, per_call: int):
    from synthgen.generate import read_answer

    started = time.perf_counter()
    completions = []
    for start in range(0, len(chats), per_call):
        batch = chats[start : start + per_call]
        completions += llm.generate([c.prompt() for c in batch], params, seeds[start : start + per_call])
    seconds = time.perf_counter() - started
    parsed = sum(read_answer(c.prefill, out.text) is not None for c, out in zip(chats, completions))
    result = {
        "prompts": len(chats),
        "seconds": seconds,
        "gen_tok_s": sum(c.completion_tokens for c in completions) / seconds,
        "prompt_tok_s": sum(c.prompt_tokens for c in completions) / seconds,
        "prompts_s": len(chats) / seconds,
        "queries_s": parsed / seconds,
        "parsed": parsed,
        "example": completions[0].text,
    }
    print(f"{name}: {len(chats)} prompts in {seconds:.1f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=200)
    parser.add_argument("--single", type=int, default=20, help="prompts for the one-at-a-time arm")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-vllm", action="store_true")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for the hf arms (0: torch's default); 1 is steadier on a busy machine")
    args = parser.parse_args()
    if not (SCIFACT / "corpus.jsonl").exists():
        sys.exit(f"{SCIFACT} not found: the benchmark reads ../shared/data/scifact")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from synthgen.llm import load_llm
    from synthgen.llm.models import default_model_path

    path = default_model_path()
    chats, seeds, params, source = build_prompts(args.passages)
    print(f"prompts: {len(chats)} from {source}; sampling {params}; torch threads {torch.get_num_threads()}")
    results = {}
    hf = load_llm(f"hf:{path}", batch_size=args.batch_size)
    print(f"hf dtype {hf.dtype}")
    results["hf batched"] = run_arm("hf batched", hf, chats, seeds, params, per_call=args.batch_size)
    results["hf one-at-a-time"] = run_arm("hf one-at-a-time", hf, chats[: args.single], seeds[: args.single], params,
                                          per_call=1)
    hf.close()
    if not args.no_vllm:
        try:
            import vllm  # noqa: F401
        except ImportError:
            print("vllm arm skipped: vllm is not importable in this Python")
        else:
            started = time.perf_counter()
            engine = load_llm(f"vllm:{path}")
            print(f"vllm engine start {time.perf_counter() - started:.1f} s (not counted below)")
            results["vllm"] = run_arm("vllm", engine, chats, seeds, params, per_call=len(chats))
            engine.close()

    print(f"\n{'arm':18} {'prompts':>7} {'seconds':>8} {'gen tok/s':>9} {'prompt tok/s':>12} {'queries/s':>9} parsed")
    for name, r in results.items():
        print(f"{name:18} {r['prompts']:7d} {r['seconds']:8.1f} {r['gen_tok_s']:9.1f} {r['prompt_tok_s']:12.1f} "
              f"{r['queries_s']:9.3f} {r['parsed']}/{r['prompts']}")
    base = results["hf one-at-a-time"]
    batched = results["hf batched"]
    print(f"\nhf batched / one-at-a-time: gen tok/s x{batched['gen_tok_s'] / base['gen_tok_s']:.2f}, "
          f"prompts/s x{batched['prompts_s'] / base['prompts_s']:.2f} (goal >= 5)")
    if "vllm" in results:
        v = results["vllm"]
        print(f"vllm / hf batched: gen tok/s x{v['gen_tok_s'] / batched['gen_tok_s']:.2f}, "
              f"prompts/s x{v['prompts_s'] / batched['prompts_s']:.2f} (goal >= 1)")
    for name, r in results.items():
        print(f"example ({name}): {r['example'][:160]!r}")


if __name__ == "__main__":  # the vLLM engine starts a worker process
    main()
