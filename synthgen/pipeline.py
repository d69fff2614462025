"""`synthgen pipeline`: generate, relabel and train in one run folder, each stage redone only when it is stale.

The pipeline is a loop over the stages (synthgen.stages): a stage whose manifest section is current is skipped,
any other runs, or resumes inside itself when an earlier run was killed. Everything that can be checked without
an LLM (options, the recipe, the corpus, the template) is checked before the first stage, so a mistake costs
seconds. The pipeline owns its run folder: queries or a model made under other settings are replaced, not
refused as the single commands refuse them.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from synthgen.errors import UserError
from synthgen.executors import ExecutorConfig
from synthgen.generate import GenerateConfig
from synthgen.stages.relabel import RelabelOptions

# Passages sampled for LLM queries when the user names no number. 1,280 with 6 keyphrase queries per passage
# (GenerateConfig.keyphrase_queries) gives every SciFact passage a query: over five draws of the sample it beat 640
# by +0.65 nDCG@10 on average (3 of 5 draws up) and narrowed the spread between draws (1.07 points against 1.90;
# bench/results/scifact-cov1280*.json against scifact-nodrop*.json), for about twice the generation and training
# time, which still fits 90 minutes on a 2-core CPU (48 from nothing on two threads: scifact-default1280.json).
# A smaller corpus takes all of its passages.
DEFAULT_MAX_PASSAGES = 1280
# Minutes the default run keeps to, evaluation included: as many of those 1,280 passages as fit, measured on this
# CPU first (synthgen.stages.budget). On a 2-core AVX512-BF16 CPU all of them fit (30 to 48 minutes); on an
# AVX2-only one the same 1,280 took about 2 h 50 (README, Limits), and a 90-minute budget chose 541 and 451 passages
# there for 80.2 and 83.4 minutes (bench/results/scifact-budget90-*avx2.json). A user who names --max-passages gets
# exactly that sample, however long it takes, unless a --time-budget is named too.
DEFAULT_TIME_BUDGET = 90.0
# Which passages get them: across k-means clusters of the corpus (DUQGen), i.e. a stratified sample, so no topic
# is left out by chance. On SciFact it ties with random (mean nDCG@10 over three training seeds at 640 passages
# 0.6564 against 0.6554; docs/ablations.md) and costs nothing extra: relabel encodes the corpus anyway.
DEFAULT_SAMPLE = "cluster"
# --dev-passages: a second sample of the corpus, drawn with the run's seed plus this, whose LLM queries (no keyphrase
# queries), relabeled as the training queries are, become training's dev set in DEV_DIR. A sample of its own, not a
# slice of the training records, is what the guard checks (docs/guard.md) four to nine measured.
DEV_SEED_OFFSET = 1
DEV_DIR = "dev"


@dataclass
class PipelineOptions:
    corpus: Path
    out: Path
    recipe: Optional[Path] = None  # None: the bundled recipes/cpu.yaml
    eval: Optional[Path] = None  # a BEIR folder: base vs trained at the end of training
    dims: str = ""  # Matryoshka sizes to evaluate, "384,128" (empty: the recipe's)
    llm: Optional[str] = None  # writes the queries and judges them
    max_passages: Optional[int] = DEFAULT_MAX_PASSAGES  # None: every passage
    time_budget: Optional[float] = DEFAULT_TIME_BUDGET  # minutes: fewer passages than max_passages where they would
    # not fit (None: the whole sample, however long; sample_limits gives the CLI's pair)
    dev_passages: int = 0  # passages of a separate sample whose LLM queries judge the trained model (0: no dev set)
    choose_keyphrases: bool = False  # also train on the LLM's records alone; the dev set keeps one (stages.choose)
    queries_per_passage: Optional[int] = GenerateConfig.queries_per_passage  # None: the corpus's size decides
    sample: str = DEFAULT_SAMPLE  # which passages get queries: random | cluster
    keyphrase_queries: Optional[int] = GenerateConfig.keyphrase_queries  # LLM-free queries per LLM passage (None: the
    # corpus decides, keyphrases.default_count)
    max_tokens: int = GenerateConfig.max_tokens  # most tokens per generated answer
    forms: tuple[str, ...] = GenerateConfig.forms  # query forms generate rotates through
    seed: int = GenerateConfig.seed  # RNG seed of generate and relabel; training has the recipe's train.seed
    prompt: Optional[Path] = None
    judges: str = RelabelOptions.judges
    judge_keyphrases: bool = RelabelOptions.judge_keyphrases
    overrides: list[str] = field(default_factory=list)  # recipe KEY=VALUE
    cache_dir: Optional[Path] = None
    executor: ExecutorConfig = ExecutorConfig()  # where generate's and relabel's LLM work runs
    quiet: bool = False


def sample_limits(max_passages: Optional[int], time_budget: Optional[float]) -> tuple[int, Optional[float]]:
    """--max-passages and --time-budget as the user gave them (None: not given) -> the run's: neither given, the
    default sample within the default budget; --max-passages alone, exactly that sample."""
    if max_passages is None:
        return DEFAULT_MAX_PASSAGES, DEFAULT_TIME_BUDGET if time_budget is None else time_budget
    return max_passages, time_budget


def run_pipeline(options: PipelineOptions) -> dict[str, Any]:
    """Run the stages that are out of date, then write report.md and plot.png; returns the pipeline section."""
    from synthgen.llm import parse_spec
    from synthgen.lock import hold
    from synthgen.rundir import prepare_dir

    started = time.perf_counter()
    if not options.corpus.exists():
        raise UserError(f"corpus not found: {options.corpus}")
    if options.llm is not None:
        parse_spec(options.llm)
    if options.time_budget is not None and not options.time_budget > 0:
        raise UserError(f"--time-budget must be more than 0 minutes, not {options.time_budget:g}")
    if options.dev_passages < 0:
        raise UserError(f"--dev-passages must be 0 or more, not {options.dev_passages}")
    if options.choose_keyphrases and not options.dev_passages:
        raise UserError("--choose-keyphrases needs --dev-passages N: the dev set is what chooses")
    if options.choose_keyphrases and options.keyphrase_queries == 0:
        raise UserError("--choose-keyphrases with --keyphrase-queries 0: "
                        "there are no keyphrase records to choose against")
    run_dir = prepare_dir(options.out)
    with hold(run_dir):  # the whole pipeline: its stages, the model folder it may replace, the report
        return _run_locked(options, run_dir, started)


def _run_locked(options: PipelineOptions, run_dir: Path, started: float) -> dict[str, Any]:
    from distill.logs import quiet_libraries
    from distill.logbook import LOG
    from synthgen.corpus import ChunkConfig
    from synthgen.report import PLOT, REPORT, eval_table, format_report, plot
    from synthgen.rundir import read_manifest, write_manifest_section, write_text
    from synthgen.stages import generate, train
    from synthgen.stages.budget import BudgetStage, busy_warning
    from synthgen.stages.choose import MIXED_MODEL, ChooseStage, choose, keep
    from synthgen.stages.relabel import RelabelStage

    dev_dir = run_dir / DEV_DIR if options.dev_passages else None
    recipe = train.build_recipe(options.recipe, options.overrides, run_dir, options.eval, options.dims,
                                dev_dir / "train.jsonl" if dev_dir else None,
                                MIXED_MODEL if options.choose_keyphrases else "model")
    train.check_model_folder(recipe, run_dir)
    train.check_dims(recipe)
    relabel_options = RelabelOptions(llm=options.llm, judges=options.judges, judge_keyphrases=options.judge_keyphrases,
                                     seed=options.seed, cache_dir=options.cache_dir, executor=options.executor)
    relabel_options.resolve()
    config = GenerateConfig(queries_per_passage=options.queries_per_passage, max_passages=options.max_passages,
                            seed=options.seed, sample=options.sample, keyphrase_queries=options.keyphrase_queries,
                            max_tokens=options.max_tokens, forms=options.forms)
    prepared = generate.prepare(options.corpus, run_dir, options.llm, ChunkConfig(), config, options.prompt,
                                options.cache_dir, options.executor)
    if options.choose_keyphrases and not prepared.config.keyphrase_queries:
        raise UserError("--choose-keyphrases: the corpus's passages are too short for keyphrase queries by default "
                        "(name --keyphrase-queries N to write them anyway)")

    quiet_libraries()  # distill's warnings as `warning: ...` lines, without the libraries' loading chatter
    reports, notes = {}, []
    if dev_dir is not None:  # first: with --time-budget its minutes are spent before the budget chooses
        if not run_dev_set(dev_dir, prepared, dataclasses.replace(config, max_passages=options.dev_passages),
                           relabel_options, options.quiet, reports):
            # a small corpus whose LLM queries were all filtered out: the run goes on as with --dev-passages 0
            notes.append(f"the dev set ({DEV_DIR}/) has no records (its LLM queries were all filtered out), so the run "
                         "goes on without one: no choice of keyphrase records and no comparison with the base")
            print(f"warning: {notes[-1]}", file=sys.stderr)
            dev_dir, options = None, dataclasses.replace(options, choose_keyphrases=False)
            recipe = train.build_recipe(options.recipe, options.overrides, run_dir, options.eval, options.dims)
        prepared = dataclasses.replace(prepared, started=time.perf_counter())  # generate's wall time: its own
    train_stage = train.TrainStage(recipe, run_dir, options.quiet)
    generate_stage = generate.GenerateStage(prepared, options.quiet, budgeted=options.time_budget is not None)
    stages = [generate_stage, RelabelStage(run_dir, relabel_options, options.quiet), train_stage]
    choose_stage = ChooseStage(recipe, run_dir, options.quiet) if options.choose_keyphrases else None
    if choose_stage is not None:
        stages.append(choose_stage)
    if options.time_budget is not None:  # first: it chooses how many passages generate takes
        stages.insert(0, BudgetStage(options.time_budget, prepared, recipe, relabel_options, started, options.quiet,
                                     choose=options.choose_keyphrases))
    reports.update(run_stages(run_dir, stages))
    budget = read_manifest(run_dir)["budget"] if options.time_budget is not None else None
    if budget is not None and (busy := busy_warning(budget)):
        notes.append(busy)  # in the report too: its choice of passages is the first thing it changes
    result, choice = train_stage.result, None
    if choose_stage is not None:
        choice, result = choose(result, choose_stage.result, choose_stage.skipped())
        keep(Path(choice.chosen), run_dir / "model")
        print(f"choose: {choice.line()}")
    section = {
        "stages": {name: dataclasses.asdict(report) for name, report in reports.items()},
        "model": str((run_dir / "model").resolve()) if choice is not None else result.output_dir,
        "eval": eval_table(result),
        "dev": {"metric": result.metric, "base": result.base_dev, "trained": result.best_dev,
                "beats_base": result.beats_base, "interval": result.dev_interval,
                "source": (f"{result.data.get('dev_examples')} LLM queries of a separate sample of "
                           f"{reports['dev generate'].counts['passages_prompted']} passages, {DEV_DIR}/"
                           if dev_dir else "held out of the training records")},
        "warnings": [*notes, *result.warnings],
        "max_passages": generate_stage.prepared.config.max_passages,
        "time_budget": budget["choice"] if budget is not None else None,
        "sample": config.sample,
        "queries_per_passage": generate_stage.prepared.config.queries_per_passage,
        "queries_per_passage_decided": options.queries_per_passage is None,  # by sampling.queries_per_passage
        "keyphrase_queries": generate_stage.prepared.config.keyphrase_queries,
        # the share of long passages that decided it, where the user named no number
        "long_passages": None if prepared.long_passages is None else round(prepared.long_passages, 4),
        "judge_keyphrases": relabel_options.judge_keyphrases,
        "choice": dataclasses.asdict(choice) if choice is not None else None,
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    write_manifest_section(run_dir, "pipeline", section)
    report = format_report(section)
    write_text(run_dir / REPORT, report)
    plot(run_dir / PLOT, Path(result.output_dir) / LOG, result)
    print(report, end="")
    print(f"report: {run_dir / REPORT}, plot: {run_dir / PLOT}")
    return section


def run_dev_set(dev_dir: Path, prepared, config: GenerateConfig, relabel_options: RelabelOptions, quiet: bool,
                reports: dict[str, Any]) -> bool:
    """The dev set's generate and relabel, on a sample of its own (the run's seed + DEV_SEED_OFFSET, LLM queries
    only), their reports added to `reports`; whether it holds a record."""
    from synthgen.records import count_records
    from synthgen.stages import generate
    from synthgen.stages.relabel import RelabelStage

    seed = config.seed + DEV_SEED_OFFSET
    sample = generate.resample(prepared, dev_dir, dataclasses.replace(config, seed=seed, keyphrase_queries=0))
    reports.update(run_stages(dev_dir, [generate.GenerateStage(sample, quiet)], label="dev "))
    if not count_records(dev_dir / "queries.jsonl"):
        return False
    reports.update(run_stages(dev_dir, [RelabelStage(dev_dir, dataclasses.replace(relabel_options, seed=seed), quiet)],
                              label="dev "))
    return count_records(dev_dir / "train.jsonl") > 0


def run_stages(run_dir: Path, stages: list, label: str = "") -> dict[str, Any]:
    """Each stage in turn: skipped when current, else run; returns a StageReport per stage, named `label` + its name."""
    from synthgen.rundir import read_manifest
    from synthgen.stages import StageReport

    reports = {}
    for stage in stages:
        t0 = time.perf_counter()
        stage.prepare()
        previous = read_manifest(run_dir).get(stage.name, {})
        if stage.is_current(previous):
            print(f"{label}{stage.name}: up to date, skipped")
            section, status = previous, "skipped"
        else:
            section, status = stage.run(), "ran"
            line = stage.summary(section)
            if line:
                print(line)
        reports[label + stage.name] = StageReport(status, round(time.perf_counter() - t0, 2), stage.counts(section))
    return reports
