"""The budget stage (--time-budget): measures every stage's speed on a prefix of the sample, then chooses how many
passages the LLM takes (the arithmetic: synthgen.budget); the generate stage reads the choice from the manifest.

The measuring is mostly real work: the prefix's queries and judgments stay (a larger sample extends a smaller one,
and relabel reuses judgments by key). Only the training probe's few steps and the --eval encoder's sample are
thrown away. The stage's identity is the generate identity, the budget and the most passages allowed, so a
resumed run keeps its choice, and the prefix is at least what the folder already holds, so no finished work is cut.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthgen import budget, cpu_share
from synthgen.judges import LLM_JUDGES
from synthgen.keyphrases import has_keyphrase_query
from synthgen.lock import lock_path
from synthgen.relabel import parse_judges
from synthgen.rundir import read_manifest, remove_tree, write_manifest_section
from synthgen.stages import generate
from synthgen.stages.relabel import RelabelOptions, RelabelStage

if TYPE_CHECKING:
    from distill.recipe import Recipe
    from synthgen.stages.generate import GenerateRun

PROBE = ".budget-probe"  # the training probe's model folder, inside the run folder while it runs
PROBE_PASSAGES = 128  # --eval passages the encoder is timed on: two batches of 64, a few seconds on a slow CPU


class BudgetStage:
    name = "budget"

    def __init__(self, minutes: float, prepared: GenerateRun, recipe: Recipe, relabel_options: RelabelOptions,
                 started: float, quiet: bool = False, choose: bool = False):
        self.minutes, self.prepared, self.recipe, self.relabel_options = minutes, prepared, recipe, relabel_options
        self.started, self.quiet, self.choose = started, quiet, choose
        config = prepared.config
        self.limit = min(config.max_passages or len(prepared.passages), len(prepared.passages))
        self.identity = {"generate": prepared.identity, "minutes": minutes, "limit": self.limit}
        if choose:  # only then, so the runs without a second training keep their choice
            self.identity["choose"] = True

    def prepare(self) -> None:
        pass

    def is_current(self, section: dict) -> bool:
        return section.get("identity") == self.identity and budget.Choice.current(section.get("choice", {}))

    def run(self) -> dict:
        prepared, config = self.prepared, self.prepared.config
        run_dir = prepared.run_dir
        cpu_before = cpu_share.snapshot()  # the rates below are this machine's speed with whatever else runs on it
        prefix = min(self.limit, max(budget.CALIBRATION_PASSAGES, generate.passages_done(prepared)))
        prepared.clusters()  # once, before the copy: the cluster sample embeds the corpus
        made = generate.rerun(dataclasses.replace(prepared, config=dataclasses.replace(config, max_passages=prefix)),
                              self.quiet)
        before = read_manifest(run_dir).get(RelabelStage.name)  # a killed budget stage's prefix was judged then
        judged = RelabelStage(run_dir, self.relabel_options, self.quiet).run()
        example_seconds, train_seconds = probe_training(self.recipe, run_dir, self.quiet)
        eval_passages, encode_seconds = measure_eval(self.recipe, config.seed) if self.recipe.eval.beir else (0, 0.0)
        if self.recipe.data.dev:  # --dev-passages: its records exist, the dev stages ran before this one
            eval_passages += budget.DEV_EVALUATIONS * dev_pool_passages(Path(self.recipe.data.dev))
            encode_seconds = encode_seconds or seconds_per_passage(
                self.recipe, [p.text for p in prepared.passages], config.seed)

        counts, prompts = made["counts"], max(made["counts"]["queries_prompted"], 1)
        relabel = judged["throughput"]
        llm_judges = [j for j in parse_judges(self.relabel_options.judges) if j in LLM_JUDGES]
        rates = budget.Rates(
            prompt_seconds=made["throughput"]["llm_seconds"] / prompts,
            queries_per_prompt=(counts["written"] - counts["keyphrases"]) / prompts,
            **judging_rates(judged, before),
            relabel_seconds=relabel["wall_seconds"] - relabel["judging_seconds"],
            example_seconds=example_seconds, train_seconds=train_seconds, encode_seconds=encode_seconds)
        shape = budget.Shape(
            queries_per_passage=config.queries_per_passage, keyphrase_queries=config.keyphrase_queries,
            passages=sum(map(has_keyphrase_query, prepared.passages)),
            judge_keyphrases=self.relabel_options.judge_keyphrases, llm_judges=bool(llm_judges),
            epochs=self.recipe.train.epochs, max_examples=self.recipe.train.max_steps * self.recipe.train.batch_size,
            eval_passages=eval_passages, choose=self.choose)
        # spent: everything so far, the prefix's generation and judging and the probes included
        choice = budget.decide(self.minutes, time.perf_counter() - self.started, prefix, self.limit, shape, rates)
        section = {"identity": self.identity, "choice": choice.to_dict(),
                   "others_cpu_share": cpu_share.others_share(cpu_before, cpu_share.snapshot())}
        write_manifest_section(run_dir, self.name, section)
        if warning := busy_warning(section):
            print(f"warning: {warning}", file=sys.stderr)
        return section

    def counts(self, section: dict) -> dict[str, Any]:
        choice = section["choice"]
        return {"passages": choice["passages"], "measured_on": choice["calibration_passages"]}

    def summary(self, section: dict) -> str:
        return budget.Choice(**section["choice"]).line()


def busy_warning(section: dict) -> str:
    """The line printed and repeated in report.md where other processes took cpu_share.BUSY_SHARE or more of the
    CPUs while the budget measured, else '' (also for a section written before the share was kept)."""
    share = section.get("others_cpu_share")
    if share is None or share < cpu_share.BUSY_SHARE:
        return ""
    return (f"other processes took {share:.0%} of the CPU time while the time budget measured this machine's speed: "
            "its choice fits a machine that busy; run the pipeline alone, or name --max-passages N to fix the sample")


def judging_rates(relabeled: dict[str, Any], before: dict[str, Any] | None) -> dict[str, float]:
    """Seconds per judged pair (a passage read counting budget.READ_PAIRS pairs) and LLM pairs per judged query,
    from what relabel judged now; when it judged nothing (the prefix's judgments all reused, e.g. a budget stage
    resumed after a kill), the pair's seconds from the relabel section that judged them."""
    counts = relabeled["counts"]
    queries = counts["llm_judged_queries"]
    if not queries:
        return {"pair_seconds": 0.0, "pairs_per_query": 0.0}
    pairs = counts["llm_pairs_judged"] + counts["llm_pairs_reused"]
    measured = pair_seconds(relabeled) or (pair_seconds(before) if before and "throughput" in before else 0.0)
    return {"pair_seconds": measured, "pairs_per_query": pairs / queries}


def pair_seconds(relabeled: dict[str, Any]) -> float:
    counts = relabeled["counts"]
    cost = budget.READ_PAIRS * counts.get("llm_passages_read", 0) + counts["llm_pairs_judged"]
    return relabeled["throughput"]["judging_seconds"] / cost if counts["llm_pairs_judged"] else 0.0


def probe_training(recipe: Recipe, run_dir: Path, quiet: bool) -> tuple[float, float]:
    """Seconds per training example and the training run's other seconds, from a few steps of the recipe on the
    prefix's train.jsonl (the run's own data path) into a folder deleted afterwards."""
    from distill.train import train

    folder = run_dir / PROBE
    remove_tree(folder)
    probe = dataclasses.replace(
        recipe, output=str(folder.resolve()),
        train=dataclasses.replace(recipe.train, max_steps=budget.PROBE_STEPS, checkpoint_every=budget.PROBE_STEPS),
        data=dataclasses.replace(recipe.data, dev="", dev_size=0),
        eval=dataclasses.replace(recipe.eval, beir="", every=0))
    started = time.perf_counter()
    result = train(probe, progress=not quiet)
    wall = time.perf_counter() - started
    remove_tree(folder)
    lock_path(folder).unlink(missing_ok=True)  # the folder was the probe's alone, inside the run folder's lock
    if not result.examples_per_s:
        return 0.0, wall
    return 1 / result.examples_per_s, max(wall - result.train_seconds, 0.0)


def measure_eval(recipe: Recipe, seed: int) -> tuple[int, float]:
    """What --eval will encode (the trained model's passages, and the base model's the cache lacks) and the base
    model's seconds per passage, measured on a seeded sample of them in the evaluation's batches."""
    from distill.evaluate import load_beir
    from distill.recipe import resolve_base_model
    from synthgen.records import Passage
    from synthgen.retrieve import Embedder

    beir = load_beir(Path(recipe.eval.beir), recipe.eval.beir_split)
    embedder = Embedder(resolve_base_model(recipe.model.base), None, recipe.eval.batch_size)
    uncached = embedder.missing([Passage(id=i, text=t) for i, t in zip(beir.passage_ids, beir.passages)])
    return len(beir.passages) + uncached, seconds_per_passage(recipe, beir.passages, seed, embedder)


def seconds_per_passage(recipe: Recipe, texts: list[str], seed: int, embedder=None) -> float:
    """The base model's seconds per passage, on a seeded sample of `texts` in the evaluation's batches."""
    import random

    from distill.recipe import resolve_base_model
    from synthgen.retrieve import Embedder

    sample = random.Random(seed).sample(texts, min(PROBE_PASSAGES, len(texts)))
    if not sample:
        return 0.0
    embedder = embedder or Embedder(resolve_base_model(recipe.model.base), None, recipe.eval.batch_size)
    return embedder.seconds_per_passage(sample)


def dev_pool_passages(records: Path) -> int:
    """How many passages each dev evaluation encodes: those of the dev records (distill.data.dev_pool)."""
    from distill.data import build_dataset, dev_pool, read_examples

    return len(dev_pool(build_dataset([], read_examples(records)).dev)[1])
