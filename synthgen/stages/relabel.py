"""The relabel stage: passages.jsonl and queries.jsonl in, judgments.jsonl and train.jsonl out.

Retrieval is recomputed on every run (cached embeddings make it seconds); LLM judgments, the slow part, are
appended to judgments.jsonl as they finish and reused by key, so a killed run resumes and a changed option
re-judges only what it changes; train.jsonl is rewritten whole from the judgments at the end.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from synthgen.errors import UserError
from synthgen.machine import torch_threads
from synthgen.executors import ExecutorConfig
from synthgen.judges import CONTEXT_TEMPLATE, LLM_JUDGES, TEMPLATES, Judgment, LLMJudges
from synthgen.keyphrases import is_keyphrase_id
from synthgen.llm import first_dtype, public_spec
from synthgen.lock import hold
from synthgen.prompts import load_template
from synthgen.records import Passage, Query, from_dict, iter_json_lines
from synthgen.relabel import (Retrievers, SelectionConfig, drop_unlikely, judgment_keys, llm_judge, parse_judges,
                              retrieve_candidates, score_retrieval_judges, select, summarize)
from synthgen.retrieve import Embedder
from synthgen.rundir import Appender, file_fingerprint, prepare_dir, resume_lines, write_jsonl, write_manifest_section
from synthgen.stages import is_current as _is_current

JUDGMENTS = "judgments.jsonl"
# A quarter of the LLM's queries, the least likely given their own passage, dropped: +0.64 and +1.19 nDCG@10 on
# two SciFact draws, +0.22 over five ADI draws (docs/ablations.md). It drops mostly fragments ("RNA cleavage").
DROP_UNLIKELY = 0.25
OUTPUTS = ("passages.jsonl", "queries.jsonl", "train.jsonl")


@dataclass(frozen=True)
class RelabelOptions:
    """The relabel command's options but the run folder; the selection's defaults are SelectionConfig's."""

    llm: Optional[str] = None
    judges: str = "ql,dense,bm25"
    retrieval: str = "hybrid"
    top_k: int = 20
    # 2, not 3: a third fewer LLM pairs for -0.13 nDCG@10 over two SciFact draws and +0.25 over five ADI draws, ties
    # both (docs/ablations.md); 5 deep tied for 64% more pairs. It saves less time than pairs (14% of judging, 2.7 of
    # relabel's ~18 minutes on SciFact; bench/bench_judging.py): every passage is judged either way, and reading a
    # passage once for all its queries costs about eight pairs.
    judge_depth: int = 2
    judge_words: int = 80
    judge_prompt: Optional[Path] = None
    embedder: Optional[Path] = None
    second_embedder: Optional[Path] = None
    index: str = "flat"
    positive: str = SelectionConfig.positive
    negatives: int = SelectionConfig.negatives
    negative_strategy: str = SelectionConfig.strategy
    negative_ranks: str = "-".join(map(str, SelectionConfig.ranks))
    margin: float = SelectionConfig.margin
    duplicate_overlap: float = SelectionConfig.duplicate_overlap
    round_trip: bool = SelectionConfig.round_trip
    min_agreement: int = SelectionConfig.min_agreement
    seed: int = SelectionConfig.seed  # of the random choice of negatives
    positives: int = SelectionConfig.positives
    # InPars' filter: None is DROP_UNLIKELY with the ql judge on (it ranks by ql's scores), 0 without it
    drop_unlikely: Optional[float] = None
    judge_keyphrases: bool = True  # whether the LLM judges also rank the keyphrase queries' candidates
    cache_dir: Optional[Path] = None
    batch_pairs: int = 128
    executor: ExecutorConfig = ExecutorConfig()  # where the LLM judges run; never part of the identity

    def resolve(self) -> tuple[tuple[str, ...], SelectionConfig]:
        """The judge names and the selection the options describe, checked before any file or model is read."""
        names = parse_judges(self.judges)
        lo, sep, hi = self.negative_ranks.partition("-")
        if not sep or not lo.strip().isdigit() or not hi.strip().isdigit():
            raise UserError(f"bad --negative-ranks '{self.negative_ranks}': expected FIRST-LAST, e.g. 3-20")
        selection = SelectionConfig(positive=self.positive, negatives=self.negatives, strategy=self.negative_strategy,
                                    ranks=(int(lo), int(hi)), margin=self.margin,
                                    duplicate_overlap=self.duplicate_overlap, round_trip=self.round_trip, seed=self.seed,
                                    positives=self.positives, min_agreement=self.min_agreement,
                                    drop_unlikely=self.drop_unlikely if self.drop_unlikely is not None
                                    else DROP_UNLIKELY if "ql" in names else 0.0)
        selection.check()
        if self.drop_unlikely and "ql" not in names:
            raise UserError("--drop-unlikely ranks queries by the ql judge's scores: add ql to --judges")
        if self.min_agreement > len(names):
            raise UserError(f"--min-agreement {self.min_agreement} is more than the {len(names)} judges in --judges")
        retrievers = [j for j in names if j not in LLM_JUDGES]
        if not self.judge_keyphrases and retrievers and self.min_agreement > len(retrievers):
            raise UserError(f"--min-agreement {self.min_agreement} is more than the {len(retrievers)} retriever judges "
                            "that rank keyphrase queries without --judge-keyphrases")
        if self.judge_depth < 1 or self.judge_words < 1 or self.batch_pairs < 1:
            raise UserError("--judge-depth, --judge-words and --batch-pairs must be at least 1")
        if "dense2" in names and self.second_embedder is None:
            raise UserError("the dense2 judge needs --second-embedder PATH")
        self.executor.check()
        self.executor.llm_options(self.llm)
        if self.judge_prompt is not None and not self.judge_prompt.is_file():
            raise UserError(f"judge prompt not found: {self.judge_prompt}")
        return names, selection

    def identity(self, run: Path) -> dict:
        """What decides train.jsonl: the options that change it and the content of the stage's input files.

        The LLM and its prompts count only when an LLM judge is on; batch sizes and the cache never count.
        """
        names, selection = self.resolve()
        config = {"judges": list(names), "retrieval": self.retrieval, "top_k": self.top_k,
                  "judge_depth": self.judge_depth, "judge_words": self.judge_words, "index": self.index,
                  **asdict(selection)}
        config["judge_keyphrases"] = self.judge_keyphrases
        for key, before in (("positives", 1), ("min_agreement", 0), ("judge_keyphrases", True), ("drop_unlikely", 0.0)):
            if config[key] == before:  # the old value leaves the identity of runs made before the option as it was
                del config[key]
        llm_names = [j for j in config["judges"] if j in LLM_JUDGES]
        prompts = [self.judge_prompt or CONTEXT_TEMPLATE, *(TEMPLATES[j] for j in llm_names)] if llm_names else []
        identity = {
            "config": config,
            "llm": (public_spec(self.llm) or "default") if llm_names else None,
            "prompts_sha256": [load_template(name).sha256 for name in prompts],
            "embedder": str(self.embedder or "default"),
            "second_embedder": str(self.second_embedder) if "dense2" in config["judges"] else None,
            "passages_sha256": file_fingerprint(run / "passages.jsonl"),
            "queries_sha256": file_fingerprint(run / "queries.jsonl"),
        }
        return json.loads(json.dumps(identity))


def outputs(run_dir: Path) -> list[Path]:
    return [run_dir / name for name in OUTPUTS]


def is_current(section: dict, options: RelabelOptions, run_dir: Path) -> bool:
    outs = outputs(run_dir)
    # the identity fingerprints the input files, so it is computed only when they are there
    return all(path.is_file() for path in outs) and _is_current(section, options.identity(run_dir), outs)


def summary(section: dict, run_dir: Path) -> str:
    """The line a command prints when the stage has run."""
    counts = section["counts"]
    dropped = ", ".join(f"{n} {k}" for k, n in counts["dropped"].items()) or "none"
    rate = counts["positive_is_seed_rate"]
    return (f"{counts['written']} training examples in {run_dir / 'train.jsonl'} (positive is the seed for "
            f"{rate if rate is None else f'{rate:.0%}'}; dropped: {dropped})")


def counts(section: dict) -> dict[str, Any]:
    """The counts the pipeline reports."""
    found = section["counts"]
    return {"queries": found["queries"], "training_examples": found["written"],
            "positive_is_seed_rate": found["positive_is_seed_rate"]}


def run_stage(run: Path, options: RelabelOptions, quiet: bool = False) -> dict:
    """Write train.jsonl from a run's passages and queries; returns the manifest's relabel section."""
    with hold(run):
        return _run_stage(run, options, quiet)


def _run_stage(run: Path, options: RelabelOptions, quiet: bool) -> dict:
    started = time.perf_counter()
    names, selection = options.resolve()
    passages, queries = read_inputs(run)
    run_dir = prepare_dir(run)
    identity = options.identity(run_dir)

    first = Embedder(options.embedder, options.cache_dir)
    second = Embedder(options.second_embedder, options.cache_dir) if "dense2" in names else None
    retrievers = Retrievers(passages, first, index=options.index, second=second, progress=not quiet)
    candidates = retrieve_candidates(queries, retrievers, options.retrieval, options.top_k)
    score_retrieval_judges(candidates, retrievers, names)

    section: dict = {
        "identity": identity,
        "config": identity["config"],
        "models": {"embedder": first.name, **({"second_embedder": second.name} if second else {})},
    }
    llm_names = [j for j in names if j in LLM_JUDGES]
    retriever_names = tuple(j for j in names if j not in LLM_JUDGES)
    unjudged = left_to_retrievers(candidates, retriever_names, options.judge_keyphrases)
    llm_judged = [c for c in candidates if c.query.id not in unjudged]
    corrupt = pairs = 0
    fresh_pairs: set[tuple[str, str]] = set()  # a pair one judge had scored before a kill is judged afresh
    read: set[str] = set()  # passages the fresh judgments read: each once, its pairs are never split among batches
    judging_seconds = 0.0
    if llm_names:
        store = run_dir / JUDGMENTS
        earlier, corrupt = _earlier_judgments(store)
        known = {j.key: j.score for j in earlier}
        section["models"]["llm"], judges = _judges(options, llm_names)
        needed = judgment_keys(llm_judged, passages, judges, options.judge_depth)
        dtype = first_dtype(j for j in earlier if j.key in needed)
        run_batches = _judge_runner(options, judges, dtype)
        section["prompts"] = judges.prompt_hashes()
        t0 = time.perf_counter()
        with Appender(store) as out:
            for made in llm_judge(llm_judged, passages, judges, options.judge_depth, known, options.batch_pairs,
                                  not quiet, run_batches):
                out.write(made)
                fresh_pairs.update((j.query_id, j.passage_id) for j in made)
                read.update(j.passage_id for j in made)
                dtype = dtype or first_dtype(made)
        section["dtype"] = dtype
        judging_seconds = time.perf_counter() - t0
        # pairs, as llm_pairs_judged counts them, so that their sum is every pair the LLM judges scored
        pairs = sum(1 for c in llm_judged for s in c.scores[llm_names[0]] if s is not None)

    selections = [select(c, passages, retriever_names if c.query.id in unjudged else names, selection)
                  for c in candidates]
    if selection.drop_unlikely:
        selections = drop_unlikely(candidates, selections, selection.drop_unlikely)
    write_jsonl(run_dir / "train.jsonl", [s.example for s in selections if s.example is not None])
    summary = summarize(selections, names)
    section["counts"] = {"passages": len(passages), "queries": len(queries),
                         "seed_in_retrieved_top_k": sum(c.seed_rank is not None for c in candidates),
                         "llm_judged_queries": len(llm_judged) if llm_names else 0,
                         "llm_pairs_judged": len(fresh_pairs), "llm_passages_read": len(read),
                         "llm_pairs_reused": pairs - len(fresh_pairs),
                         "corrupt_judgments_skipped": corrupt, **summary}
    section["throughput"] = {
        "pairs_per_s": round(len(fresh_pairs) / judging_seconds, 3) if fresh_pairs else None,
        "judging_seconds": round(judging_seconds, 2),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "passages_encoded": first.encoded,
        "encode_seconds": round(first.encode_seconds, 2),
        "threads": torch_threads(),
    }
    write_manifest_section(run_dir, "relabel", section)
    return section


def left_to_retrievers(candidates: list, retriever_names: tuple[str, ...], judge_keyphrases: bool) -> set[str]:
    """The ids of the queries the LLM judges skip: the keyphrase queries, unless asked to judge them or no retriever
    judge is there to rank them. On SciFact's defaults they are four fifths of the LLM's pairs and the judges move
    only 5% of them off their seed passage, yet leaving them to the retrievers cost 0.71 nDCG@10, through the negatives
    (docs/ablations.md): so the LLM judges them unless told not to."""
    if judge_keyphrases or not retriever_names:
        return set()
    return {c.query.id for c in candidates if is_keyphrase_id(c.query.id)}


def _earlier_judgments(store: Path) -> tuple[list[Judgment], int]:
    """The judgments of earlier runs, and how many lines were corrupt. judgments.jsonl is a cache: a corrupt line
    is dropped from the file, counted and judged again, instead of ending the run."""
    lines = resume_lines(store, Judgment)
    earlier = [j for j in lines if j is not None]
    corrupt = len(lines) - len(earlier)
    if corrupt:
        write_jsonl(store, earlier)
        print(f"warning: {store}: {corrupt} corrupt line{'s' * (corrupt > 1)} skipped; those pairs are judged again",
              file=sys.stderr)
    return earlier, corrupt


def read_inputs(run: Path) -> tuple[list[Passage], list[Query]]:
    """passages.jsonl and queries.jsonl of a run, checked against each other: one-line errors, never a traceback."""
    if not run.is_dir():
        raise UserError(f"run folder not found: {run}")
    files = {name: run / name for name in ("passages.jsonl", "queries.jsonl")}
    for name, path in files.items():
        if not path.is_file():
            raise UserError(f"{path} not found: run `synthgen generate --out {run}` first")
    passages = _read_unique(files["passages.jsonl"], Passage, ("passage", "passages"))
    seen = {p.id for p in passages}

    def known_passage(query: Query, where: str) -> None:
        if query.passage_id not in seen:
            raise UserError(f"{where}: query '{query.id}' names passage '{query.passage_id}', which passages.jsonl "
                            "lacks (files from different runs?)")

    return passages, _read_unique(files["queries.jsonl"], Query, ("query", "queries"), known_passage)


def _read_unique(path: Path, cls, nouns: tuple[str, str], check=None) -> list:
    """The records of a stage input, with distinct ids; `check(record, where)` adds a rule of the caller's."""
    records, ids = [], set()
    for number, obj in iter_json_lines(path):
        where = f"{path}:{number}"
        record = from_dict(cls, obj, where)
        if check is not None:
            check(record, where)
        if record.id in ids:
            raise UserError(f"{where}: duplicate {nouns[0]} id '{record.id}'")
        ids.add(record.id)
        records.append(record)
    if not records:
        raise UserError(f"{path} has no {nouns[1]}")
    return records


class RelabelStage:
    """The relabel stage of a pipeline; its identity is computed when its turn comes, over generate's outputs."""

    name = "relabel"

    def __init__(self, run_dir: Path, options: RelabelOptions, quiet: bool = False):
        self.run_dir, self.options, self.quiet = run_dir, options, quiet

    def prepare(self) -> None:
        pass

    def is_current(self, section: dict) -> bool:
        return is_current(section, self.options, self.run_dir)

    def run(self) -> dict:
        return run_stage(self.run_dir, self.options, self.quiet)

    def counts(self, section: dict) -> dict[str, Any]:
        return counts(section)

    def summary(self, section: dict) -> str:
        return summary(section, self.run_dir)


def _judges(options: RelabelOptions, names: list[str]) -> tuple[str, LLMJudges]:
    """The LLM's name, and judges that make the judgment keys without a model."""
    from synthgen.llm import llm_name

    name = llm_name(options.llm)
    return name, LLMJudges(None, names, words=options.judge_words, context_template=options.judge_prompt,
                           llm_name=name)


def _judge_runner(options: RelabelOptions, judges: LLMJudges, dtype: Optional[str]) -> Callable:
    """What judges batches: the executor, which loads the model where the judging runs (here, or on Ray workers)
    only if there is any, in the dtype of the earlier judgments this run reuses if there are any."""
    from synthgen.executors import run_units
    from synthgen.llm import dtype_option
    from synthgen.work import JudgeWork

    work = JudgeWork(options.llm, tuple(judges.judges), options.judge_words, options.judge_prompt, judges.settings,
                     {**options.executor.llm_options(options.llm), **dtype_option(options.llm, dtype)})
    return lambda batches: run_units(options.executor, work, batches)
