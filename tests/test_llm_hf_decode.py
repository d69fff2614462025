"""The hand-written decode loop and top-p sampler against plain references: `model.generate`, and exact sums.

The loop is checked in float32 on a tiny random Llama, where a batch's rounding cannot flip a greedy choice.
"""

from __future__ import annotations

import pytest

from synthgen.llm import SamplingParams, load_llm
from synthgen.llm.hf import sample

PROMPTS = [
    "The weather today",
    [{"role": "user", "content": "Write a search query about volcanoes."}],
    [{"role": "user", "content": "Write a search query about glaciers and how they move."}],
    [{"role": "user", "content": "Write a search query about deltas."}, {"role": "assistant", "content": '{"q": "'}],
    "A longer plain prompt about rivers, sediment, floods and the sea, " * 3,
]


@pytest.fixture(scope="module")
def llm32(tiny_llm_path):
    return load_llm(f"hf:{tiny_llm_path}", dtype="float32", batch_size=4)


def reference_greedy(llm, prompt, max_tokens: int) -> list[int]:
    """`model.generate` on the prompt alone (no padding, transformers' own loop and cache)."""
    import torch

    from synthgen.llm.tokens import prompt_ids

    ids = torch.tensor([prompt_ids(llm.tokenizer, prompt)])
    out = llm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=max_tokens, pad_token_id=llm.pad_id)
    return out[0, ids.shape[1] :].tolist()


def test_greedy_batches_equal_model_generate_prompt_by_prompt(llm32):
    params = SamplingParams(max_tokens=10, temperature=0.0)
    got = llm32.generate(PROMPTS, params, [0] * len(PROMPTS))  # batches of 4 and 1, left padding, shared prefix
    for prompt, completion in zip(PROMPTS, got):
        want = reference_greedy(llm32, prompt, params.max_tokens)
        assert completion.text == llm32.tokenizer.decode(want, skip_special_tokens=True)
        assert completion.completion_tokens == len(want)


def test_rows_that_stop_early_leave_the_others_unchanged(llm32):
    free = SamplingParams(max_tokens=16, temperature=0.0)
    texts = [c.text for c in llm32.generate(PROMPTS, free, [0] * len(PROMPTS))]
    # a stop string from early in two rows' output ends those rows after a few steps; the batch is then halved
    stops = (texts[0][2:5], texts[2][3:6])
    params = SamplingParams(max_tokens=16, temperature=0.0, stop=stops)
    together = llm32.generate(PROMPTS, params, [0] * len(PROMPTS))
    for prompt, text, completion in zip(PROMPTS, texts, together):
        cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
        assert completion.text == text[:cut]
        assert completion == llm32.generate([prompt], params, [0])[0]
    assert together[0].completion_tokens < free.max_tokens and together[2].completion_tokens < free.max_tokens


def test_the_kept_prefix_cache_gives_the_same_output_as_a_fresh_backend(llm32, tiny_llm_path):
    rules = "Read the passage, name its topic, and write one short search query a reader would type. " * 3
    chats = [[{"role": "user", "content": f"{rules}Write a search query about topic number {n}."}] for n in range(6)]
    params = SamplingParams(max_tokens=8, temperature=0.0)
    first = llm32.generate(chats[:3], params, [0, 0, 0])
    assert llm32._prefix[0], "a batch sharing a long opening keeps its cache"
    again = llm32.generate(chats[3:], params, [0, 0, 0])  # reuses the kept prefix
    fresh = load_llm(f"hf:{tiny_llm_path}", dtype="float32", batch_size=4)
    assert fresh.generate(chats[3:], params, [0, 0, 0]) == again
    assert fresh.generate(chats[:3], params, [0, 0, 0]) == first


def _logits(probs):
    import torch

    return torch.log(torch.tensor([probs], dtype=torch.float64)).float()


def test_top_p_draws_only_from_the_nucleus_in_proportion():
    import torch

    # preceding mass: 0, 0.5, 0.8, 0.95: with top_p 0.7 the nucleus is the first two tokens
    logits = _logits([0.5, 0.3, 0.15, 0.05])
    params = SamplingParams(temperature=1.0, top_p=0.7)
    draws = [int(sample(logits, params, [torch.Generator().manual_seed(s)])) for s in range(2000)]
    assert set(draws) == {0, 1}
    assert draws.count(0) / len(draws) == pytest.approx(0.5 / 0.8, abs=0.04)
    # the first token is kept even when it alone holds more than top_p
    assert {int(sample(_logits([0.9, 0.1]), SamplingParams(temperature=1.0, top_p=0.5),
                       [torch.Generator().manual_seed(s)])) for s in range(50)} == {0}


def test_top_p_ranks_a_few_tokens_or_the_whole_vocabulary_with_the_same_draws():
    import torch

    torch.manual_seed(0)
    # from peaked to flat: the 64 most probable tokens hold from all of the mass to 2% of it, so some rows'
    # nucleus lies among them and some rows' does not
    logits = torch.randn(8, 5000) * torch.tensor([6, 4, 3, 2.5, 2, 1.5, 1, 0.1]).unsqueeze(1)
    params = SamplingParams(temperature=0.8, top_p=0.9)
    for seed in range(5):
        make = lambda: [torch.Generator().manual_seed(seed * 100 + b) for b in range(len(logits))]  # noqa: E731
        assert sample(logits, params, make()).tolist() == sample(logits, params, make(), top_k_first=5000).tolist()


def test_top_p_draws_follow_each_rows_seed():
    import torch

    logits = torch.zeros(1, 1000)  # uniform: every seed may draw another token
    params = SamplingParams(temperature=1.0, top_p=0.95)
    draw = lambda s: int(sample(logits, params, [torch.Generator().manual_seed(s)]))  # noqa: E731
    assert draw(3) == draw(3)
    assert len({draw(s) for s in range(20)}) > 10


def test_a_sliding_window_model_generates_past_its_window_as_model_generate_does(tmp_path, tiny_llm_path):
    """Gemma-3 has sliding-window layers whose own caches hold only the window: prompts several windows long,
    batched with a shared prefix, give what `model.generate` gives prompt by prompt (the window still applies)."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_path)
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=24,
                              layer_types=["sliding_attention", "full_attention"], max_position_embeddings=256,
                              bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    Gemma3ForCausalLM(config).save_pretrained(tmp_path / "gemma", safe_serialization=True)
    tokenizer.save_pretrained(tmp_path / "gemma")
    llm = load_llm(f"hf:{tmp_path / 'gemma'}", dtype="float32", batch_size=4)
    shared = " ".join(f"w{i}" for i in range(30))  # the shared prefix alone is longer than the window
    prompts = [f"{shared} then {tail}" for tail in ("a", "b c d", "e f g h i j k l m n o p", "q")]
    params = SamplingParams(max_tokens=12, temperature=0.0)
    got = llm.generate(prompts, params, [0] * len(prompts))
    for prompt, completion in zip(prompts, got):
        assert len(llm.tokenizer(prompt).input_ids) > config.sliding_window
        want = reference_greedy(llm, prompt, params.max_tokens)
        assert completion.text == llm.tokenizer.decode(want, skip_special_tokens=True)
