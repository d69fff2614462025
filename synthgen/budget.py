"""`--time-budget`: as many LLM passages as let the whole pipeline end within the minutes given.

Minutes are what a user knows; how many passages fit in them depends on the CPU: the default 1,280 passages took
48 minutes on one 2-core machine and about 2 h 50 on another (bench/results/scifact-default1280.json,
scifact-avx2-stages.json). The LLM's passages come in a fixed sample order and a larger --max-passages extends a
smaller one (synthgen.stages.generate), so the pipeline first generates a short prefix of the sample, measures
this machine's LLM seconds per prompt (and, with --eval, the student's seconds per passage), projects every later
stage from them, and extends the sample to the largest number of passages whose projection fits. Nothing
generated for the measurement is thrown away.

The choice is a projection: relabel and training are not measured on this machine before they run but scaled
from the LLM's speed with ratios measured on two machines (below), so the report shows the projection beside the
minutes each stage took. The chosen number is recorded (manifest section "budget") and reused when the run
resumes; `--max-passages N` with that number repeats the run on any machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distill.recipe import Recipe

# Prompts generated before choosing: four batches of 16, enough for a steady rate (the first batch is no slower
# than the rest); about 3 minutes on the slowest CPU measured (3.05 LLM seconds a prompt).
CALIBRATION_PASSAGES = 64
# Generate's wall time over its LLM time: filtering, writing and the keyphrase queries (draw 12: 65.1 LLM minutes
# of about 66 outside the corpus embedding).
GENERATE_OVERHEAD = 1.05
# Relabel's seconds per query the LLM judges, as a multiple of generate's LLM seconds per prompt, at the default
# judge depth (2) and passage length: 0.132 on an AVX512-BF16 CPU in bf16 (draw 10: 17.1 minutes, 6,495 queries,
# 1.195 s a prompt), 0.129 on an AVX2 CPU in fp32 (draw 12: 42.5 minutes, 6,473 queries, 3.05 s a prompt).
RELABEL_PER_QUERY = 0.131
# The same for a query no LLM judges (--judges without ql or yesno, or --no-judge-keyphrases): retrieval and
# fusion only, a guess no run has measured apart; it is a small share of relabel either way.
RELABEL_PER_QUERY_NO_LLM = 0.005
# Training's seconds per example with one hard negative, in multiples of the same: 0.158 (draw 10: 203 steps of
# 32 in about 20.4 minutes) and 0.119 (draw 12: 2.76 examples/s). The higher one: an overrun costs the user more
# than a few unused minutes.
TRAIN_PER_EXAMPLE = 0.158


@dataclass(frozen=True)
class Shape:
    """What the run's options make of one LLM passage: how many queries, judged how, trained how often."""

    queries_per_passage: int  # prompts per LLM passage
    keyphrase_queries: int  # LLM-free queries per LLM passage, one per further passage of the sample
    passages: int  # in the corpus: the keyphrase queries cannot outnumber them
    judge_keyphrases: bool  # whether the LLM judges read the keyphrase queries' candidates too
    llm_judges: bool  # whether any LLM judge runs in relabel
    epochs: int
    hard_negatives: int  # per training example: each is one more passage through the student
    eval_passages: int = 0  # passages --eval encodes (the trained model's, and the base model's not cached)


@dataclass(frozen=True)
class Rates:
    """This machine's speeds, measured on the calibration prefix."""

    prompt_seconds: float  # the LLM's seconds per generate prompt
    queries_per_prompt: float  # LLM queries kept per prompt (some answers are malformed or filtered)
    encode_seconds: float = 0.0  # the student's seconds per --eval passage


def project(passages: int, shape: Shape, rates: Rates) -> dict[str, float]:
    """Seconds each stage takes for `passages` LLM passages (generate from nothing)."""
    prompts = passages * shape.queries_per_passage
    llm_queries = prompts * rates.queries_per_prompt
    keyphrases = min(passages * shape.keyphrase_queries, shape.passages)
    queries = llm_queries + keyphrases
    judged = (llm_queries + (keyphrases if shape.judge_keyphrases else 0)) if shape.llm_judges else 0
    relabel = (judged * RELABEL_PER_QUERY + (queries - judged) * RELABEL_PER_QUERY_NO_LLM) * rates.prompt_seconds
    examples = queries * shape.epochs
    train = examples * TRAIN_PER_EXAMPLE * rates.prompt_seconds * (1 + shape.hard_negatives) / 2
    return {"generate": prompts * rates.prompt_seconds * GENERATE_OVERHEAD, "relabel": relabel, "train": train,
            "eval": shape.eval_passages * rates.encode_seconds}


def choose(budget_seconds: float, spent_seconds: float, done: int, limit: int, shape: Shape, rates: Rates) -> int:
    """The most passages, from `done` (already generated) to `limit`, whose remaining work fits what is left.

    `spent_seconds` is what the run took so far, the `done` passages' generation included. Never fewer than
    `done`: that work is kept, and a budget it already exceeds leaves nothing more to choose."""
    def fits(n: int) -> bool:
        remaining = project(n, shape, rates)
        remaining["generate"] -= project(done, shape, rates)["generate"]
        return spent_seconds + sum(remaining.values()) <= budget_seconds

    lo, hi = done, max(done, limit)
    if fits(hi):
        return hi
    while hi - lo > 1:  # the projection grows with n: the largest n that fits, by bisection
        middle = (lo + hi) // 2
        lo, hi = (middle, hi) if fits(middle) else (lo, middle)
    return lo


@dataclass(frozen=True)
class Choice:
    """What the budget decided, as recorded in the manifest and shown in report.md."""

    minutes: float
    limit: int  # --max-passages (or the corpus size): the budget never takes more
    passages: int  # chosen
    calibration_passages: int
    spent_minutes: float  # before choosing: reading the corpus, the cluster sample, the calibration prefix
    rates: dict[str, float]
    projected_minutes: dict[str, float]  # per stage, for the chosen passages (generate: the whole stage)
    projected_total_minutes: float  # of the whole run: what was spent, and what the chosen passages still cost
    fresh: bool = field(default=True, compare=False)  # chosen in this invocation (not read back from the manifest)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "fresh"}

    def line(self) -> str:
        projected = ", ".join(f"{k} {v:.1f}" for k, v in self.projected_minutes.items() if v)
        over = (f"; over the budget already: the {self.passages} passages measured on are kept"
                if self.projected_total_minutes > self.minutes else "")
        return (f"time budget {self.minutes:g} min: {self.passages} of up to {self.limit} passages for the LLM "
                f"(measured on {self.calibration_passages}: {self.rates['prompt_seconds']:.2f} s a prompt; "
                f"{self.spent_minutes:.1f} min spent; projected minutes {projected}, "
                f"{self.projected_total_minutes:.1f} in all{over})")


def decide(minutes: float, spent_seconds: float, done: int, limit: int, shape: Shape, rates: Rates) -> Choice:
    passages = choose(minutes * 60, spent_seconds, done, limit, shape, rates)
    projected = project(passages, shape, rates)
    still = sum(projected.values()) - project(done, shape, rates)["generate"]
    return Choice(minutes=minutes, limit=limit, passages=passages, calibration_passages=done,
                  spent_minutes=round(spent_seconds / 60, 1),
                  rates={k: float(f"{v:.4g}") for k, v in asdict(rates).items()},
                  projected_minutes={k: round(v / 60, 1) for k, v in projected.items()},
                  projected_total_minutes=round((spent_seconds + still) / 60, 1))


PROBE_PASSAGES = 128  # two batches of --eval's 64: a second or two of a slow CPU per 15 passages


def measure_eval(recipe: Recipe, seed: int) -> tuple[int, float]:
    """What --eval will encode (the trained model's passages, and the base model's the cache lacks) and the base
    model's seconds per passage, measured on a seeded sample of them in the evaluation's batches."""
    import random

    from distill.evaluate import load_beir
    from distill.recipe import resolve_base_model
    from synthgen.records import Passage
    from synthgen.retrieve import Embedder

    beir = load_beir(Path(recipe.eval.beir), recipe.eval.beir_split)
    embedder = Embedder(resolve_base_model(recipe.model.base), None, recipe.eval.batch_size)
    uncached = embedder.missing([Passage(id=i, text=t) for i, t in zip(beir.passage_ids, beir.passages)])
    sample = random.Random(seed).sample(beir.passages, min(PROBE_PASSAGES, len(beir.passages)))
    return len(beir.passages) + uncached, embedder.seconds_per_passage(sample) if sample else 0.0
