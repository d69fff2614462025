"""Prompt and score-request tokenization shared by the in-process backends (hf, vllm).

Both backends tokenize here and hand token ids to the model, so the same request means the same tokens in
either one, and scores can be compared across backends. The rules:
- a chat is rendered with the tokenizer's own chat template (with the generation prompt, or, when it ends
  with an assistant message, continuing that message: a prefill) and its text tokenized without adding
  special tokens again; a plain prompt is tokenized as the tokenizer does by default;
- a score request is `context` tokenized like a plain prompt, followed by `continuation` tokenized on its own
  (no special tokens), so the continuation's log-probabilities are read from exactly its own tokens;
- each of `choices` must be one token on its own.
"""

from __future__ import annotations

from typing import Sequence

from synthgen.errors import UserError
from synthgen.llm.base import Prompt, ScoreRequest


def prompt_ids(tokenizer, prompt: Prompt) -> list[int]:
    if isinstance(prompt, str):
        ids = tokenizer(prompt).input_ids
    elif tokenizer.chat_template is None:
        raise UserError("this model's tokenizer has no chat template: pass plain-text prompts")
    else:
        prefill = prompt[-1]["role"] == "assistant"  # the model continues that answer
        text = tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=not prefill,
                                             continue_final_message=prefill)
        ids = tokenizer(text, add_special_tokens=False).input_ids
    if not ids:
        raise UserError("an empty prompt cannot be completed")
    return ids


def score_ids(tokenizer, request: ScoreRequest) -> tuple[list[int], list[int], list[int]]:
    """(context ids, continuation ids, one id per choice)."""
    context = tokenizer(request.context).input_ids
    if not context:
        raise UserError("a score request needs a non-empty context")
    continuation = tokenizer(request.continuation, add_special_tokens=False).input_ids if request.continuation else []
    return context, continuation, choice_ids(tokenizer, request.choices)


def choice_ids(tokenizer, choices: Sequence[str]) -> list[int]:
    ids = []
    for choice in choices:
        tokens = tokenizer(choice, add_special_tokens=False).input_ids
        if len(tokens) != 1:
            raise UserError(f"score choice {choice!r} is {len(tokens)} tokens for this model; choices must be one token")
        ids.append(tokens[0])
    return ids


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Text up to (not including) the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
