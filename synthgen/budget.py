"""`--time-budget`: as many LLM passages as let the whole pipeline end within the minutes given.

Minutes are what a user knows; how many passages fit in them depends on the CPU: the default 1,280 passages took
48 minutes on one 2-core machine and about 2 h 50 on another (bench/results/scifact-default1280.json,
scifact-avx2-stages.json), and the stages do not scale alike: judging is bound by compute, writing by memory. So
every stage's speed is measured on this machine before choosing (synthgen.stages.budget): the first passages of
the sample are generated and relabeled (real work: a larger --max-passages extends the same sample and relabel
reuses judgments by key), a few training steps run on their records, and --eval's encoder reads a sample of its
corpus. This module is the arithmetic: from those rates, the seconds each stage takes for n passages, and the
largest n that fits.

It is a projection: the rates of a prefix stand for the whole run, so the report shows it beside the minutes each
stage took. The chosen number is recorded (manifest section "budget") and reused when the run resumes;
`--max-passages N` with that number (and the queries per passage the whole sample decided, on a corpus smaller
than it: the report names both) repeats the run on any machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

# Passages generated and relabeled before choosing: four batches of 16 prompts, whose mean was within 3% of the
# whole run's on SciFact (2.15 against 2.21 LLM seconds a prompt; batches vary by about 16%).
CALIBRATION_PASSAGES = 64
# Training steps of the probe: the first includes what the first step allocates, so more than one or two.
PROBE_STEPS = 4
# Generate's wall time over its LLM time: filtering, writing and the keyphrase queries (draw 12: 65.1 LLM minutes
# of about 66 outside the corpus embedding).
GENERATE_OVERHEAD = 1.05
# What an LLM judge's reading of a passage costs, in pairs: it reads a passage once for all the pairs of a batch
# (bench/bench_judging.py: 0.141 s a read and 0.0181 s a pair on an AVX512-BF16 CPU, 0.29 and 0.037 on an AVX2
# one). Relabel's cost follows passages read more than pairs: a 64-passage prefix reads a passage for 1.17 pairs,
# the next 477 passages' queries read one for 1.65 (SciFact), so a rate per query taken on the prefix projected
# relabel 27% long there, and this model 1.3% long (2.3% short at 299 passages).
READ_PAIRS = 7.8
# Times training encodes the dev set's passages when the pipeline gives it one (--dev-passages, eval.every 0): the
# base before the first step, the last step's weights, the saved (WiSE-FT) model.
DEV_EVALUATIONS = 3


@dataclass(frozen=True)
class Shape:
    """What the run's options make of one LLM passage: how many queries, judged how, trained how often."""

    queries_per_passage: int  # prompts per LLM passage
    keyphrase_queries: int  # LLM-free queries per LLM passage, one per further passage of the sample
    passages: int  # with a keyphrase query (long enough): the keyphrase queries cannot outnumber them
    judge_keyphrases: bool  # whether the LLM judges read the keyphrase queries' candidates too
    llm_judges: bool  # whether any LLM judge runs in relabel
    epochs: int
    max_examples: int = 0  # train.max_steps times the batch size, when the recipe stops early (0: no cap)
    eval_passages: int = 0  # passages --eval encodes (the trained model's, and the base model's not cached), and
    # the dev set's pool times its evaluations (DEV_EVALUATIONS)
    choose: bool = False  # --choose-keyphrases: a second training on the LLM's records, evaluated as the first


@dataclass(frozen=True)
class Rates:
    """This machine's speeds, measured on the calibration prefix."""

    prompt_seconds: float  # the LLM's seconds per generate prompt
    queries_per_prompt: float  # LLM queries kept per prompt (some answers are malformed or filtered)
    pair_seconds: float = 0.0  # relabel's LLM seconds per pair judged, a passage read counting READ_PAIRS pairs
    pairs_per_query: float = 0.0  # LLM pairs per judged query: its seed and the candidates above the judge depth
    relabel_seconds: float = 0.0  # relabel's seconds besides judging: loading, indexing, retrieval
    example_seconds: float = 0.0  # training's seconds per example
    train_seconds: float = 0.0  # training's seconds besides its steps: loading, tokenizing, saving
    encode_seconds: float = 0.0  # the student's seconds per passage encoded for --eval or the dev set


def _work(passages: int, shape: Shape, rates: Rates) -> tuple[float, float, float, float]:
    """Generate prompts, LLM-judged queries, their distinct seed passages and the training examples for `passages`
    LLM passages. The keyphrase queries take the sample's first passages, the LLM's among them."""
    prompts = passages * shape.queries_per_passage
    llm_queries = prompts * rates.queries_per_prompt
    keyphrases = min(passages * shape.keyphrase_queries, shape.passages)
    judged = (llm_queries + (keyphrases if shape.judge_keyphrases else 0)) if shape.llm_judges else 0
    seeds = max(passages, keyphrases if shape.judge_keyphrases else 0) if shape.llm_judges else 0
    examples = (llm_queries + keyphrases) * shape.epochs
    if shape.max_examples:
        examples = min(examples, shape.max_examples)
    return prompts, judged, seeds, examples


def project(passages: int, shape: Shape, rates: Rates, done: int = 0) -> dict[str, float]:
    """Seconds each stage still takes for `passages` LLM passages when the first `done` are generated and relabeled
    already (the budget's prefix): their queries are kept and relabel reuses their judgments by key, so only
    generation and judging of the rest remain. Training and evaluation start over.

    Judging reads each new seed passage, and each candidate that is not one: the candidates are counted as if none
    were shared among the new queries, which errs long (SciFact: passages read 1.5% over at 299 passages, 7.6% at
    541), never past the corpus."""
    prompts, judged, seeds, examples = _work(passages, shape, rates)
    prompts_done, judged_done, seeds_done, _ = _work(done, shape, rates)
    second = 0.0
    if shape.choose:  # the second student trains on the LLM's examples alone, and is evaluated as the first
        llm_examples = prompts * rates.queries_per_prompt * shape.epochs
        llm_examples = min(llm_examples, shape.max_examples) if shape.max_examples else llm_examples
        second = rates.train_seconds + llm_examples * rates.example_seconds
    new_queries, new_seeds = judged - judged_done, seeds - seeds_done
    candidates = new_queries * max(rates.pairs_per_query - 1, 0.0)
    reads = min(new_seeds + candidates * (1 - new_seeds / max(shape.passages, 1)), shape.passages)
    return {"generate": (prompts - prompts_done) * rates.prompt_seconds * GENERATE_OVERHEAD,
            "relabel": rates.relabel_seconds
            + (READ_PAIRS * reads + new_queries * rates.pairs_per_query) * rates.pair_seconds,
            "train": rates.train_seconds + examples * rates.example_seconds + second,
            "eval": (1 + shape.choose) * shape.eval_passages * rates.encode_seconds}


def choose(budget_seconds: float, spent_seconds: float, done: int, limit: int, shape: Shape, rates: Rates) -> int:
    """The most passages, from `done` (already generated and relabeled) to `limit`, whose remaining work fits what
    is left.

    `spent_seconds` is what the run took so far, the `done` passages' generation and judging included. Never fewer
    than `done`: that work is kept, and a budget it already exceeds leaves nothing more to choose."""
    def fits(n: int) -> bool:
        return spent_seconds + sum(project(n, shape, rates, done).values()) <= budget_seconds

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
    spent_minutes: float  # before choosing: reading the corpus, the cluster sample, the prefix and the probes
    rates: dict[str, float]
    projected_minutes: dict[str, float]  # per stage, what the chosen passages still cost after the budget stage
    projected_total_minutes: float  # of the whole run: what was spent, and what the chosen passages still cost

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def current(cls, record: dict[str, Any]) -> bool:
        """Whether a recorded choice was made by this projection. One made by another (its rates named otherwise,
        such as judge_seconds before pair_seconds) is made again, reusing its prefix's work, rather than shown wrong."""
        return (set(record) == {f.name for f in fields(cls)}
                and set(record.get("rates", {})) == {f.name for f in fields(Rates)})

    @property
    def over_budget(self) -> bool:
        return self.projected_total_minutes > self.minutes

    def projected(self) -> str:
        """The stages left to run, in minutes as recorded (to a tenth); a corpus of a few dozen passages leaves none
        that long, which the report says rather than printing an empty list."""
        return ", ".join(f"{k} {v:.1f}" for k, v in self.projected_minutes.items() if v) or "under 0.1 each"

    def measured(self) -> str:
        rates = self.rates
        return (f"{rates['prompt_seconds']:.2f} s a prompt, {rates['pair_seconds']:.3f} s a judged pair (reading a "
                f"passage: {READ_PAIRS:g} pairs), {rates['example_seconds']:.3f} s a training example")

    def line(self) -> str:
        projected = self.projected()
        over = f"; over the budget already: the {self.passages} passages measured on are kept" if self.over_budget else ""
        return (f"time budget {self.minutes:g} min: {self.passages} of up to {self.limit} passages for the LLM "
                f"(measured on {self.calibration_passages}: {self.measured()}; "
                f"{self.spent_minutes:.1f} min spent; projected minutes {projected}, "
                f"{self.projected_total_minutes:.1f} in all{over})")


def decide(minutes: float, spent_seconds: float, done: int, limit: int, shape: Shape, rates: Rates) -> Choice:
    passages = choose(minutes * 60, spent_seconds, done, limit, shape, rates)
    projected = project(passages, shape, rates, done)
    return Choice(minutes=minutes, limit=limit, passages=passages, calibration_passages=done,
                  spent_minutes=round(spent_seconds / 60, 1),
                  rates={k: float(f"{v:.4g}") for k, v in asdict(rates).items()},
                  projected_minutes={k: round(v / 60, 1) for k, v in projected.items()},
                  projected_total_minutes=round((spent_seconds + sum(projected.values())) / 60, 1))
