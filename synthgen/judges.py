"""The LLM judges of a (query, passage) pair, built on the backend's `score()`; higher always means more relevant.

- `ql`, query likelihood (UPR, Sachan et al. 2022; one of Gecko's two judges): the mean log-probability of the
  query's tokens given the passage. It asks the model to *write* the query, which even a 135M model does far
  better than it answers questions about relevance.
- `yesno`, relevance classification (Gecko's other judge): after a few-shot prompt, log P(yes) - log P(no) read
  from the next-token distribution through `ScoreRequest.choices`; both casings count, and free text is never
  parsed, so a model that would ramble still gives a number.

Why the prompts are passage-first and cut short: judging costs LLM tokens, and on a CPU tokens are the budget.
The passage (the long part) goes in the request's `context`, which every request for that passage shares, so a
backend computes it once however many queries and judges ask about it (the hf backend reuses its KV cache; vLLM
its prefix cache); the instructions and few-shot examples at the start of the context are shared by all passages.
Pairs are sent passage-major in one call so those shares are found. Passages are cut to `words` words: the
opening of a passage carries most of what a query asks about, and the cost of a pair is mostly the passage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from synthgen.llm import engine_dtype
from synthgen.llm.base import LLM, ScoreRequest
from synthgen.prompts import Template, load_template
from synthgen.records import Passage, Query
from synthgen.rundir import fingerprint

LLM_JUDGES = ("ql", "yesno")
YES = (" yes", " Yes")
NO = (" no", " No")
CONTEXT_TEMPLATE = "judge_passage.j2"
TEMPLATES = {"ql": "judge_query_likelihood.j2", "yesno": "judge_relevance.j2"}
JudgeBatch = list[tuple[Query, Passage, tuple[str, ...]]]  # pairs, each with the judges it still lacks


@dataclass(frozen=True)
class Judgment:
    """One LLM judge's score of one pair, as kept in judgments.jsonl so a resumed run never judges it again."""

    query_id: str
    passage_id: str
    judge: str
    score: float
    key: str  # hash of the judge's model, templates, cut and both texts: a stale judgment is never reused
    dtype: str | None = None  # what the LLM computed in (llm.engine_dtype): a resumed run keeps to it


def cut_words(text: str, words: int) -> str:
    parts = text.split()
    return " ".join(parts[:words])


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


class LLMJudges:
    """The LLM judges of one run; they share the passage context of their prompts."""

    def __init__(self, llm: LLM | None, judges: Sequence[str], words: int = 100,
                 context_template: str | Path | None = None, llm_name: str | None = None):
        """`llm` None (with `llm_name`): judgment keys only, for a driver whose judging runs elsewhere."""
        unknown = [j for j in judges if j not in LLM_JUDGES]
        if unknown:
            raise ValueError(f"not LLM judges: {unknown}")
        self.llm = llm
        self.judges = tuple(judges)
        self.words = words
        self.context: Template = load_template(context_template or CONTEXT_TEMPLATE)
        self.templates: dict[str, Template] = {j: load_template(TEMPLATES[j]) for j in self.judges}
        # what a judge's scores depend on, besides the texts: judgments made under other settings are not reused
        name = llm_name or llm.name
        self.settings = {j: fingerprint([name, words, self.context.sha256, t.sha256]) for j, t in self.templates.items()}

    def prompt_hashes(self) -> dict[str, str]:
        return {self.context.name: self.context.sha256, **{t.name: t.sha256 for t in self.templates.values()}}

    def key(self, judge: str, query: Query, passage: Passage) -> str:
        return fingerprint([self.settings[judge], judge, query.query, query.task, passage.title, passage.text])

    def _request(self, judge: str, query: Query, context: str) -> ScoreRequest:
        continuation = self.templates[judge].render(query=query.query, task=query.task)
        return ScoreRequest(context, continuation, YES + NO if judge == "yesno" else ())

    def score(self, pairs: Sequence[tuple[Query, Passage]], judges: Sequence[str] | None = None) -> list[dict[str, float]]:
        """Scores of each pair by each judge (default: all of this object's judges), in one backend call."""
        judges = tuple(judges or self.judges)
        contexts: dict[tuple[str, str], str] = {}
        order = sorted(range(len(pairs)), key=lambda i: pairs[i][1].id)  # passage-major: shared contexts adjacent
        requests, where = [], []
        for i in order:
            query, passage = pairs[i]
            context = contexts.get((passage.title, passage.text))
            if context is None:
                context = self.context.render(title=passage.title, text=cut_words(passage.text, self.words))
                contexts[(passage.title, passage.text)] = context
            for judge in judges:
                requests.append(self._request(judge, query, context))
                where.append((i, judge))
        results: list[dict[str, float]] = [{} for _ in pairs]
        for (i, judge), scores in zip(where, self.llm.score(requests)):
            if judge == "ql":
                results[i][judge] = scores.mean_logprob
            else:
                lp = scores.choice_logprobs
                results[i][judge] = _logsumexp([lp[c] for c in YES]) - _logsumexp([lp[c] for c in NO])
        return results


def judge_batch(judges: LLMJudges, batch: JudgeBatch) -> list[Judgment]:
    """The judgments of a batch of pairs, each with the judges it still lacks, in one backend call per set of judges
    (usually one set: all of them)."""
    made, dtype = [], engine_dtype(judges.llm)
    for missing in dict.fromkeys(m for _, _, m in batch):
        part = [(query, passage) for query, passage, m in batch if m == missing]
        for (query, passage), by_judge in zip(part, judges.score(part, missing)):
            made.extend(Judgment(query.id, passage.id, j, score, judges.key(j, query, passage), dtype)
                        for j, score in by_judge.items())
    return made
