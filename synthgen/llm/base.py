"""The one interface every LLM backend implements, and the values that cross it.

Two operations are all the stages need:
- `generate`: batch text generation from plain prompts or chats (a chat is a list of
  {"role", "content"} messages; the backend applies the model's own chat template). A chat that ends with
  an assistant message is a prefill: the model continues that message rather than starting a new one.
  Stop strings end a completion and are not part of its text.
- `score`: log-probabilities of given text, from one forward pass, with no sampling. The relabel judges are
  built on it: query likelihood reads the continuation's token log-probabilities; the yes/no relevance judge
  reads `choices`, the next-token log-probabilities of single-token answers after context + continuation.

`ScoreRequest.context` is split from the continuation on purpose: requests that share a context (the same
passage judged against many queries) let a backend compute the context once (vLLM's prefix cache, a reused
KV cache in transformers), which is what makes judging a whole corpus affordable on a CPU.

Sampling is seeded per prompt, not per batch, so a prompt's output depends on its own seed and not on which
other prompts share its batch: a resumed run reproduces the records of an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, Union, runtime_checkable

Chat = list[dict[str, str]]
Prompt = Union[str, Chat]


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 128
    temperature: float = 0.7  # 0 means greedy
    top_p: float = 0.95
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int  # for throughput reports
    completion_tokens: int


@dataclass(frozen=True)
class ScoreRequest:
    context: str  # conditioning text; requests sharing it may share its computation
    continuation: str  # text whose per-token log-probabilities are returned
    choices: tuple[str, ...] = ()  # single-token answers read from the distribution after the continuation


@dataclass(frozen=True)
class Scores:
    token_logprobs: tuple[float, ...]  # one per continuation token
    choice_logprobs: dict[str, float] = field(default_factory=dict)

    @property
    def mean_logprob(self) -> float:
        return sum(self.token_logprobs) / max(len(self.token_logprobs), 1)


@runtime_checkable
class LLM(Protocol):
    name: str  # what manifests record: backend and model

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams, seeds: Sequence[int]
    ) -> list[Completion]: ...

    def score(self, requests: Sequence[ScoreRequest]) -> list[Scores]: ...

    def close(self) -> None: ...
