"""Passages -> synthetic queries (Gecko step 1): prompt, parse, retry, filter. Pure over records; no file I/O.

For each sampled passage the LLM writes a query in a requested form (question, claim, keywords, title...), for
a retrieval task that the bundled template fixes by the form (a template may let the model invent the task too). Forms rotate across the queries of a run
because a small model left to itself writes the same kind of query every time (a naive SmolLM2 run gave 70%
"what is the function of ..."), and a student trained on one kind of query learns one kind of query.

Why the prompt is a chat rendered from one Jinja2 file: the few-shot examples are turns of that chat, so the
template holds the whole prompt a user may want to change, and the manifest's template hash covers all of
it. Lines `[[system]]`, `[[user]]`, `[[assistant]]` start messages. A final assistant message is a prefill:
the answer's opening that the model continues. The bundled one ends by opening the query's string
(`{"task": "...", "query": "`), so the model writes one value and stops at its closing quote: the answer is
well-formed by construction (asked for the whole object, SmolLM2-135M broke 35% of them).
The examples come first and the passage last, so every prompt of a run shares one long prefix that
a backend with prefix caching computes once. A base model (no chat template: Gemma-3-270M, InPars-style
few-shot prompting) gets a plain template instead: text with no role lines and one `[[answer]]` line, after
which comes the answer's opening; the model continues the text, and the answer is read the same way.

Why everything random is keyed by ids: the sample of passages is an order of the passages keyed by
(seed, passage id) (synthgen.sampling), so a larger --max-passages extends a smaller run rather than drawing a
new sample; each
query's form and sampling seed come from (seed, passage id, query index[, attempt]), never from its position
in a batch. A resumed run therefore writes exactly what an uninterrupted one would.

Answers are parsed strictly: the first JSON object in the text, through `json`, never eval. A malformed or
filtered answer is asked again with a new seed, up to `max_attempts`; then the query is dropped and counted.

Why a batch is settled on its own: so that any number of workers can write batches at once (synthgen.executors)
and still give the records one process gives. Inside a batch a query repeating another is asked again, like any
filtered answer; a query repeating one kept by an earlier batch is dropped afterwards (`RepeatFilter`, in batch
order), since asking again would make a batch wait for every batch before it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from synthgen.errors import UserError
from synthgen.llm import engine_dtype
from synthgen.llm.base import LLM, Prompt, SamplingParams
from synthgen.prompts import Template
from synthgen.records import Passage, Query
from synthgen.sampling import SAMPLES, derive_seed, queries_per_passage, sample_order
from synthgen.text import NearDuplicateIndex, content_overlap, longest_common_run, words

FORMS = ("question", "claim", "keywords", "title")
_MARKER = re.compile(r"^\[\[(system|user|assistant)\]\][ \t]*$", re.MULTILINE)
_ANSWER = re.compile(r"^\[\[answer\]\][ \t]*\n?", re.MULTILINE)


@dataclass(frozen=True)
class GenerateConfig:
    queries_per_passage: int | None = None  # None: the sample decides (sampling.queries_per_passage)
    max_passages: int | None = None  # None: every passage, in sampled order
    seed: int = 0
    sample: str = "random"  # random | cluster: which passages get queries (synthgen.sampling)
    batch_size: int = 16  # prompts per LLM call; also how often finished work is saved
    max_attempts: int = 3  # answers asked per query before it is dropped
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 64  # the query alone: a runaway answer costs every row of its batch a decode step
    passage_words: int = 150  # the passage is cut to this many words in the prompt: prompt length is time
    forms: tuple[str, ...] = FORMS  # query forms, rotated across queries; the template describes each
    min_query_words: int = 2
    max_query_words: int = 40
    max_copied_words: int = 10  # a query repeating this many consecutive passage words is dropped
    min_overlap: float = 0.2  # a query sharing a smaller share of its topic words with the passage is off topic
    near_duplicate: float = 0.8  # word-set Jaccard at which a query repeats an earlier one
    # LLM-free keyphrase queries (synthgen.keyphrases) per passage given to the LLM, for the first passages of the
    # same sample order; 0: none; None: the corpus decides (keyphrases.default_count: 6, the best of 0, 3 and 6 end
    # to end on SciFact, where most passages are long, else 0), and the generate stage writes down the number
    keyphrase_queries: int | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.queries_per_passage is None or self.queries_per_passage >= 1, "--queries-per-passage must be at least 1"),
            (self.max_passages is None or self.max_passages >= 1, "--max-passages must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.max_attempts >= 1, "--max-attempts must be at least 1"),
            (self.sample in SAMPLES, f"--sample must be one of {', '.join(SAMPLES)}"),
            (self.temperature >= 0, "--temperature must be 0 or more"),
            (0 < self.top_p <= 1, "--top-p must be in (0, 1]"),
            (self.max_tokens >= 8, "--max-tokens must be at least 8"),
            (self.passage_words >= 10, "--passage-words must be at least 10"),
            (bool(self.forms) and len(set(self.forms)) == len(self.forms), "--forms must name distinct forms"),
            (1 <= self.min_query_words <= self.max_query_words, "query length bounds must satisfy 1 <= min <= max"),
            (self.max_copied_words >= 2, "--max-copied-words must be at least 2"),
            (0 <= self.min_overlap <= 1, "--min-overlap must be in [0, 1]"),
            (0 < self.near_duplicate <= 1, "--near-duplicate must be in (0, 1]"),
            (self.keyphrase_queries is None or self.keyphrase_queries >= 0, "--keyphrase-queries must be 0 or more"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    def per_passage(self, passages: int) -> int:
        """LLM queries per sampled passage: the number named, else the one a corpus of `passages` decides."""
        return self.queries_per_passage or queries_per_passage(passages, self.max_passages, self.keyphrase_queries)

    def sampling(self, open_query: bool = True) -> SamplingParams:
        """With `open_query` (the prefill opens the query's string) the model writes that one value, which its
        closing quote or a line break ends; otherwise "}" closes the one flat object asked for."""
        stop = ('"', "\n") if open_query else ("}",)
        return SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p, stop=stop)

    def output_options(self) -> dict:
        """The options that decide what the LLM writes (not how fast, nor how much of the sample is done: that
        includes how many keyphrase queries, which are rewritten in seconds and never cost the LLM's work)."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in ("batch_size", "max_passages", "keyphrase_queries")}


@dataclass(frozen=True)
class Item:
    """One query to write: the n-th query of a passage, in a given form."""

    passage: Passage
    index: int
    form: str

    @property
    def id(self) -> str:
        return f"{self.passage.id}@{self.index}"


@dataclass
class BatchLog:
    """What one batch did; one line per batch in the run's progress file, so a resumed run knows which
    items are finished (including those that produced no query) and keeps exact counts."""

    items: list[str]  # ids of the items finished in this batch
    counts: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    dtype: str | None = None  # what the LLM computed in (llm.engine_dtype): a resumed run keeps to it


def plan(passages: Sequence[Passage], config: GenerateConfig, clusters: Sequence[int] | None = None) -> list[Item]:
    """The run's LLM work items in processing order: sampled passages, each with its queries' forms.

    `clusters` (a cluster per passage) is needed, and used, only by the cluster sample."""
    ranked = sample_order(passages, config.sample, config.seed, clusters)
    if config.max_passages is not None:
        ranked = ranked[: config.max_passages]
    forms = config.forms
    per_passage = config.per_passage(len(passages))
    items = []
    for passage in ranked:
        offset = derive_seed(config.seed, "form", passage.id)
        items.extend(Item(passage, n, forms[(offset + n) % len(forms)]) for n in range(per_passage))
    return items


# ---- prompts -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatPrompt:
    messages: list[dict[str, str]] | str  # a chat without the prefill, or a base model's plain text
    prefill: str  # opening of the answer the model continues ("" for none)

    def prompt(self) -> Prompt:
        if isinstance(self.messages, str):
            return self.messages + self.prefill
        if self.prefill:
            return self.messages + [{"role": "assistant", "content": self.prefill}]
        return self.messages


def parse_chat(rendered: str, where: str) -> ChatPrompt:
    """Split a rendered template at its role lines (a chat) or at its `[[answer]]` line (plain text for a base
    model); text before the first role line is not allowed."""
    parts = _MARKER.split(rendered)
    if len(parts) == 1:
        plain = _ANSWER.split(rendered)
        if len(plain) == 2 and plain[0].strip():
            return ChatPrompt(plain[0].rstrip("\n") + "\n", plain[1])
        raise UserError(f"template {where}: no [[user]] line and no [[answer]] line; a generation template is a chat "
                        "(see prompts/generate.j2) or, for a base model, text with one [[answer]] line "
                        "(prompts/generate_base.j2)")
    if parts[0].strip():
        raise UserError(f"template {where}: text before the first [[role]] line")
    messages = [{"role": role, "content": content.strip("\n")} for role, content in zip(parts[1::2], parts[2::2])]
    prefill = ""
    if messages[-1]["role"] == "assistant":
        prefill = messages.pop()["content"]
    if not messages or messages[-1]["role"] != "user":
        raise UserError(f"template {where}: the last message before the answer must be a [[user]] message")
    return ChatPrompt(messages, prefill)


def passage_excerpt(passage: Passage, max_words: int) -> str:
    tokens = passage.text.split()
    return " ".join(tokens[:max_words]) + (" ..." if len(tokens) > max_words else "")


def render(template: Template, item: Item, config: GenerateConfig) -> ChatPrompt:
    text = template.render(passage=passage_excerpt(item.passage, config.passage_words),
                           title=" ".join(item.passage.title.split()), form=item.form)
    return parse_chat(text, template.name)


_CHECK_ITEM = Item(Passage(id="check", text="A passage.", title="A title"), 0, FORMS[0])


def check_template(template: Template, config: GenerateConfig) -> list[str]:
    """Render the template once per form (so a bad template fails before a model loads); return the queries
    of its few-shot answers, since a query repeating one of them is the model parroting an example."""
    found: list[str] = []
    for form in config.forms:
        try:
            prompt = render(template, dataclasses.replace(_CHECK_ITEM, form=form), config)
        except UserError as exc:
            raise UserError(f"query form '{form}' does not render: {exc}") from None
        if isinstance(prompt.messages, str):  # a plain template's examples: one answer per line
            examples = prompt.messages.splitlines()
        else:
            examples = [m["content"] for m in prompt.messages if m["role"] == "assistant"]
        for example in examples:
            answer = parse_answer(example)
            if answer and answer[1] not in found:
                found.append(answer[1])
    return found


# ---- answers -------------------------------------------------------------------------------------------


def parse_answer(text: str) -> tuple[str, str] | None:
    """(task, query) from the first JSON object in `text`, or None when there is no well-formed one."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    task, query = obj.get("task"), obj.get("query")
    if not isinstance(task, str) or not isinstance(query, str):
        return None
    task, query = " ".join(task.split()), " ".join(query.split())
    return (task, query) if task and query else None


_OPEN_QUERY = re.compile(r'"query"\s*:\s*"$')


def opens_query(prefill: str) -> bool:
    """Whether a prefill ends by opening the query's string (`{"task": "...", "query": "`): the model then writes
    only that value, so its answer cannot be malformed JSON (a 135M model broke a fifth to a third of whole
    objects)."""
    return bool(_OPEN_QUERY.search(prefill))


def read_answer(prefill: str, completion: str) -> tuple[str, str] | None:
    """(task, query) from the prefill, what the model wrote, and what the stop string cut off: the closing
    quote and brace of an open value, or the "}" of a whole object.

    A backend that cannot continue a prefilled message answers from scratch instead, so the completion is
    also read on its own.
    """
    if opens_query(prefill):
        value = json.dumps(completion.strip().strip('"'))[1:-1]
        return parse_answer(prefill + value + '"}') or parse_answer(completion)
    text = completion.rstrip()
    if not text.endswith("}"):
        # a small model often leaves a comma or full stop after the last value ("...?",}), which strict JSON
        # rejects; dropping it after a closed string changes no value
        stripped = text.rstrip(",. \n")
        text = (stripped if stripped.endswith('"') else text) + "}"
    return parse_answer(prefill + text) or (parse_answer(text) if prefill else None)


class QueryFilter:
    """Length bounds, copying (from the passage or the few-shot examples), off-topic queries, repeats in the run."""

    def __init__(self, config: GenerateConfig, examples: Iterable[str] = ()):
        self.config = config
        self.seen = NearDuplicateIndex(config.near_duplicate)
        self.examples = NearDuplicateIndex(config.near_duplicate)
        for query in examples:
            self.examples.add(query)

    def reason(self, query: str, passage: Passage) -> str | None:
        """Why the query is rejected, or None when it is kept."""
        tokens = words(query)
        if not self.config.min_query_words <= len(tokens) <= self.config.max_query_words:
            return "length"
        if self.examples.find(query) is not None:
            return "copies_example"
        text = passage.title + " " + passage.text
        if longest_common_run(tokens, words(text)) >= self.config.max_copied_words:
            return "copies_passage"
        if content_overlap(query, text) < self.config.min_overlap:
            return "off_topic"
        if self.seen.find(query) is not None:
            return "duplicate"
        return None

    def keep(self, query: str) -> None:
        self.seen.add(query)


@dataclass
class BatchResult:
    queries: list[Query]
    log: BatchLog


class QueryGenerator:
    """Runs batches of items through the LLM, each batch on its own (see the module docstring)."""

    def __init__(self, llm: LLM, template: Template, config: GenerateConfig):
        self.llm = llm
        self.template = template
        self.config = config
        self.params = self.sampling_for(template, config)
        self.examples = check_template(template, config)

    @staticmethod
    def sampling_for(template: Template, config: GenerateConfig) -> SamplingParams:
        """The sampling settings for a template: its prefill decides what ends an answer."""
        first = dataclasses.replace(_CHECK_ITEM, form=config.forms[0])
        return config.sampling(open_query=opens_query(render(template, first, config).prefill))

    def run(self, items: Sequence[Item]) -> BatchResult:
        """Queries for a batch of items; items are settled in their order, so results do not depend on timing."""
        started = time.perf_counter()
        query_filter = QueryFilter(self.config, self.examples)
        counts: Counter[str] = Counter(prompted=len(items))
        log = BatchLog(items=[item.id for item in items], dtype=engine_dtype(self.llm))
        prompts = {item.id: render(self.template, item, self.config) for item in items}
        accepted: dict[str, Query] = {}
        pending = list(items)
        for attempt in range(self.config.max_attempts):
            if not pending:
                break
            completions = self.llm.generate(
                [prompts[item.id].prompt() for item in pending],
                self.params,
                [derive_seed(self.config.seed, item.passage.id, item.index, attempt) for item in pending],
            )
            retry = []
            for item, completion in zip(pending, completions):
                counts["answers"] += 1
                log.prompt_tokens += completion.prompt_tokens
                log.completion_tokens += completion.completion_tokens
                answer = read_answer(prompts[item.id].prefill, completion.text)
                if answer is None:
                    counts["malformed"] += 1
                    retry.append(item)
                    continue
                task, query = answer
                reason = query_filter.reason(query, item.passage)
                if reason:
                    counts[f"filtered_{reason}"] += 1
                    retry.append(item)
                    continue
                query_filter.keep(query)
                accepted[item.id] = Query(id=item.id, passage_id=item.passage.id, task=task, query=query, form=item.form)
            pending = retry
        counts["dropped"] += len(pending)
        counts["written"] += len(accepted)
        log.counts = dict(counts)
        log.seconds = time.perf_counter() - started
        return BatchResult([accepted[item.id] for item in items if item.id in accepted], log)


class RepeatFilter:
    """Drops, in batch order, the queries that repeat one kept by an earlier batch or an earlier run."""

    def __init__(self, config: GenerateConfig, earlier: Iterable[Query] = ()):
        self.seen = NearDuplicateIndex(config.near_duplicate)
        for query in earlier:
            self.seen.add(query.query)

    def __call__(self, result: BatchResult) -> BatchResult:
        kept = []
        for query in result.queries:
            if self.seen.find(query.query) is None:
                self.seen.add(query.query)
                kept.append(query)
        repeats = len(result.queries) - len(kept)
        if repeats:
            counts = Counter(result.log.counts)
            counts.update(filtered_duplicate=repeats, dropped=repeats)
            counts["written"] -= repeats
            result = BatchResult(kept, dataclasses.replace(result.log, counts=dict(counts)))
        return result
