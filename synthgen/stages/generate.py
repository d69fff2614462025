"""The generate stage: a corpus in, passages.jsonl and queries.jsonl out, resumable batch by batch.

passages.jsonl is rewritten from the corpus on every run (ingestion is quick, and a changed corpus must be
noticed); queries.jsonl and the per-batch progress file are appended and resumed. The identity is what decides
the LLM's queries (LLM, template, options, passages); how much of the seeded sample is done (--max-passages) is
not part of it, since a larger sample extends a smaller one and a smaller one is a prefix of it.

The keyphrase queries (synthgen.keyphrases) come last, as one batch of their own: they take seconds, so they are
written again whenever the LLM's part changes or another --keyphrase-queries asks for another number, and the
file is always the LLM's queries in sample order followed by the keyphrase queries, however the run got there.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from synthgen.corpus import ChunkConfig, ingest
from synthgen.errors import UserError
from synthgen.machine import torch_threads
from synthgen.executors import ExecutorConfig
from synthgen.generate import BatchLog, GenerateConfig, Item, QueryGenerator, RepeatFilter, check_template, plan
from synthgen.keyphrases import default_count, is_keyphrase_id, long_share
from synthgen.llm import first_dtype, public_spec
from synthgen.lock import hold
from synthgen.prompts import load_template
from synthgen.records import Query, count_records
from synthgen.sampling import passage_clusters, sample_order
from synthgen.rundir import (Appender, fingerprint, prepare_dir, read_manifest, resume_lines, write_jsonl,
                             write_manifest_section)
from synthgen.stages import is_current as _is_current

if TYPE_CHECKING:
    from synthgen.corpus import IngestReport
    from synthgen.prompts import Template
    from synthgen.records import Passage

PROGRESS = "generate.progress.jsonl"
OUTPUTS = ("passages.jsonl", "queries.jsonl")


@dataclasses.dataclass
class GenerateRun:
    """A generate run read and checked before any LLM loads: `synthgen pipeline` compares its identity with the
    manifest's to decide whether earlier queries still hold."""

    corpus: Path
    run_dir: Path
    llm: Optional[str]
    chunking: ChunkConfig
    config: GenerateConfig
    prompt: Optional[Path]
    template: Template
    passages: list[Passage]
    report: IngestReport
    identity: dict  # what decides the queries written; another identity makes earlier queries stale
    started: float
    cache_dir: Optional[Path] = None  # passage embeddings, for the cluster sample
    executor: ExecutorConfig = ExecutorConfig()  # where the LLM work runs; never part of the identity
    long_passages: Optional[float] = None  # keyphrases.long_share, where it decided the number of keyphrase queries
    _clusters: Optional[list[int]] = dataclasses.field(default=None, repr=False)

    def items(self) -> list[Item]:
        """The LLM's work items of the run, in order."""
        return plan(self.passages, self.config, self.clusters())

    def keyphrases(self) -> list[Query]:
        """The keyphrase queries: --keyphrase-queries per LLM passage, for the first passages of the sample."""
        from synthgen.keyphrases import idf, keyphrase_queries

        if not self.config.keyphrase_queries:
            return []
        llm_passages = min(self.config.max_passages or len(self.passages), len(self.passages))
        ordered = sample_order(self.passages, self.config.sample, self.config.seed, self.clusters())
        return keyphrase_queries(ordered, self.config.keyphrase_queries * llm_passages, idf(self.passages))

    def clusters(self) -> Optional[list[int]]:
        """The cluster sample embeds and clusters the corpus once; the random sample needs no clusters."""
        if self.config.sample == "cluster" and self._clusters is None:
            self._clusters = passage_clusters(self.passages, self.config.seed, self.cache_dir)
        return self._clusters


def prepare(corpus: Path, out: Path, llm: Optional[str], chunking: ChunkConfig, config: GenerateConfig,
            prompt: Optional[Path], cache_dir: Optional[Path] = None,
            executor: ExecutorConfig = ExecutorConfig()) -> GenerateRun:
    """Read the corpus and the template and check them: every mistake here costs seconds, not an LLM run."""
    started = time.perf_counter()
    executor.check()
    executor.llm_options(llm)
    run_dir = prepare_dir(out)
    template = load_template(prompt or "generate.j2")
    check_template(template, config)

    passages, report = ingest(corpus, chunking)
    for reason in ("undecodable", "unreadable"):
        for path in report.skipped.get(reason, []):
            print(f"warning: skipped {path}", file=sys.stderr)
    quiet_skips = {k: len(v) for k, v in report.skipped.items() if k not in ("undecodable", "unreadable")}
    if quiet_skips:
        print("skipped " + ", ".join(f"{n} {k} file{'s' * (n > 1)}" for k, n in sorted(quiet_skips.items())), file=sys.stderr)
    share = long_share(passages) if config.keyphrase_queries is None else None  # None: the user named a number
    config = decide(config, len(passages), share)
    passages_sha = fingerprint([[p.id, p.title, p.text] for p in passages])
    identity = json.loads(json.dumps({"llm": public_spec(llm) or "default", "template_sha256": template.sha256,
                                      "options": config.output_options(), "passages_sha256": passages_sha}))
    return GenerateRun(corpus, run_dir, llm, chunking, config, prompt, template, passages, report, identity, started,
                       cache_dir, executor=executor, long_passages=share)


def decide(config: GenerateConfig, passages: int, share: Optional[float]) -> GenerateConfig:
    """The numbers the user left to the corpus (None): keyphrase queries by its share of long passages, then LLM
    queries per passage by its size against the sample's (one where it gets keyphrase queries)."""
    if share is not None:
        config = dataclasses.replace(config, keyphrase_queries=default_count(share))
    return dataclasses.replace(config, queries_per_passage=config.per_passage(passages))


def resample(run: GenerateRun, out: Path, config: GenerateConfig) -> GenerateRun:
    """The same corpus and template, read once, for another sample of it in another folder (the pipeline's dev set)."""
    config = decide(config, len(run.passages), None)
    identity = {**run.identity, "options": json.loads(json.dumps(config.output_options()))}
    return dataclasses.replace(run, run_dir=prepare_dir(out), config=config, identity=identity, _clusters=None)


def summary(section: dict, run_dir: Path) -> str:
    """The line a command prints when the stage has run."""
    counts = section["counts"]
    filtered = ", ".join(f"{n} {k}" for k, n in counts["filtered"].items()) or "none"
    keyphrases = counts.get("keyphrases", 0)
    return (f"{counts['written'] - keyphrases} queries for {counts['passages_prompted']} of {counts['passages_read']} "
            f"passages{f' and {keyphrases} keyphrase queries' if keyphrases else ''} in {run_dir / 'queries.jsonl'} "
            f"(answers filtered: {filtered}; malformed: {counts['malformed']}; dropped: {counts['dropped']})")


def rerun(run: GenerateRun, quiet: bool = False) -> dict:
    """Run the stage inside a pipeline, which owns its folder: queries of another identity are replaced, and
    a smaller sample keeps the queries it still plans."""
    with hold(run.run_dir):
        return _rerun(run, quiet)


def _rerun(run: GenerateRun, quiet: bool) -> dict:
    previous = read_manifest(run.run_dir).get("generate", {})
    before, wanted = previous.get("config", {}).get("max_passages"), run.config.max_passages
    if previous.get("identity") == run.identity and not (wanted is None or (before is not None and wanted >= before)):
        keep_queries(run.run_dir, {item.id for item in run.items()})
    return run_stage(run, overwrite=True, quiet=quiet)


def passages_done(run: GenerateRun) -> int:
    """LLM passages of the run's sample already in finished batches of its folder (0 if made under another identity),
    read from the progress file: a killed run's manifest still holds the counts of its start."""
    if read_manifest(run.run_dir).get("generate", {}).get("identity") != run.identity:
        return 0
    logs, _ = recover(run.run_dir)
    return len(_prompted(logs))


def _prompted(logs: list[BatchLog]) -> set[str]:
    """The ids of the passages the LLM was prompted with in `logs` (keyphrase queries are not the LLM's)."""
    return {item.rsplit("@", 1)[0] for log in logs for item in log.items if not is_keyphrase_id(item)}


def discard_queries(run_dir: Path) -> None:
    """Forget the queries of a run (and its progress), so the next generate starts from nothing."""
    (run_dir / "queries.jsonl").unlink(missing_ok=True)
    (run_dir / PROGRESS).unlink(missing_ok=True)


def keep_queries(run_dir: Path, item_ids: set[str]) -> None:
    """Keep the finished batches whose items all remain planned, and their queries.

    A smaller --max-passages plans a prefix of the same seeded sample, so that work stays valid; a batch that
    straddles the new end is dropped and redone (same seeds, same queries)."""
    logs, queries = recover(run_dir)
    logs = [log for log in logs if set(log.items) <= item_ids]
    done = {item for log in logs for item in log.items}
    queries = [q for q in queries if q.id in done]
    write_jsonl(run_dir / PROGRESS, logs)
    write_jsonl(run_dir / "queries.jsonl", queries)


def run_stage(run: GenerateRun, overwrite: bool = False, quiet: bool = False) -> dict:
    """Write passages.jsonl and the queries still missing; returns the manifest's generate section.

    Queries made under another identity are refused, or with `overwrite` discarded."""
    with hold(run.run_dir):
        return _run_stage(run, overwrite, quiet)


def _run_stage(run: GenerateRun, overwrite: bool, quiet: bool) -> dict:
    run_dir, config, passages, identity, report = run.run_dir, run.config, run.passages, run.identity, run.report
    queries_path, progress_path = run_dir / "queries.jsonl", run_dir / PROGRESS
    previous = read_manifest(run_dir).get("generate", {}).get("identity")
    started_before = any(p.exists() and p.stat().st_size for p in (queries_path, progress_path))
    if started_before and previous != identity:
        if not overwrite:
            raise UserError(f"{run_dir} holds queries made with {_differences(previous, identity)}; pass --overwrite to "
                            "replace them, or use another --out")
        discard_queries(run_dir)
    write_jsonl(run_dir / "passages.jsonl", passages)

    logs, existing = recover(run_dir)
    items = run.items()
    keyphrases = run.keyphrases()
    done = {item for log in logs for item in log.items}
    todo = [item for item in items if item.id not in done]
    keyphrases_done = {i for i in done if is_keyphrase_id(i)}
    if keyphrases_done and (todo or keyphrases_done != {q.id for q in keyphrases}):
        logs, existing = _drop_keyphrases(run_dir, logs, existing)  # written again last, after the LLM's part
        done = {item for log in logs for item in log.items}
    keyphrases_todo = [q for q in keyphrases if q.id not in done]
    present = {q.id for q in existing}
    section = {
        "identity": identity,
        "corpus": {"path": str(run.corpus), "chunking": dataclasses.asdict(run.chunking), "counts": report.counts()},
        "config": dataclasses.asdict(config),
        "sampling": dataclasses.asdict(QueryGenerator.sampling_for(run.template, config)),
        "template": {"path": str(run.prompt) if run.prompt else "generate.j2", "sha256": run.template.sha256},
        "complete": not todo and not keyphrases_todo,
    }
    write_manifest_section(run_dir, "generate", {**section, **_generate_totals(logs, len(passages), queries_path)})

    if todo:
        from tqdm import tqdm

        from synthgen.executors import run_units
        from synthgen.llm import dtype_option, llm_name
        from synthgen.work import GenerateWork

        section["model"] = llm_name(run.llm)
        options = {**run.executor.llm_options(run.llm), **dtype_option(run.llm, first_dtype(logs))}
        work = GenerateWork(run.llm, run.template, config, options)
        batches = [todo[start : start + config.batch_size] for start in range(0, len(todo), config.batch_size)]
        repeats = RepeatFilter(config, [q for q in existing if q.id in done])
        session_start, session_tokens, session_passages = time.perf_counter(), 0, set()
        with Appender(queries_path) as queries_out, Appender(progress_path) as progress_out, \
                tqdm(total=len(items), initial=len(items) - len(todo), unit="query", desc="generating",
                     disable=quiet, dynamic_ncols=True) as bar:
            for batch, result in zip(batches, run_units(run.executor, work, batches)):
                result = repeats(result)
                queries_out.write([q for q in result.queries if q.id not in present])
                progress_out.write([result.log])
                logs.append(result.log)
                session_tokens += result.log.prompt_tokens + result.log.completion_tokens
                session_passages.update(item.passage.id for item in batch)
                elapsed = time.perf_counter() - session_start
                bar.set_postfix_str(f"{len(session_passages) / elapsed:.2f} passages/s, "
                                    f"{session_tokens / elapsed:.0f} tok/s", refresh=False)
                bar.update(len(batch))
    if keyphrases_todo:
        log = BatchLog([q.id for q in keyphrases_todo], {"keyphrases": len(keyphrases_todo), "written": len(keyphrases_todo)})
        with Appender(queries_path) as queries_out, Appender(progress_path) as progress_out:
            queries_out.write(keyphrases_todo)
            progress_out.write([log])
        logs.append(log)
    section["complete"] = True
    section["dtype"] = first_dtype(logs)
    totals = _generate_totals(logs, len(passages), queries_path)
    totals["wall_seconds"] = round(time.perf_counter() - run.started, 2)
    section = {**section, **totals}
    write_manifest_section(run_dir, "generate", section)
    return section


def recover(run_dir: Path) -> tuple[list[BatchLog], list[Query]]:
    """The finished batches of an earlier run and their queries, with at most one batch lost per corrupt line.

    Queries are appended a batch at a time before the batch's progress line, so the file is the finished batches'
    queries in order, then perhaps those of a batch cut short (dropped here and redone: the same seeds give the
    same queries in the same place). A corrupt query line costs the batch it sits in: a neighbouring batch short
    of the queries its log counts. A corrupt progress line costs its own batch. The files are rewritten when
    anything was dropped, so what is on disk is what the run goes on from."""
    queries_path, progress_path = run_dir / "queries.jsonl", run_dir / PROGRESS
    log_lines, query_lines = resume_lines(progress_path, BatchLog), resume_lines(queries_path, Query)
    logs = [log for log in log_lines if log is not None]
    batch_of = {item: k for k, log in enumerate(logs) for item in log.items}
    where = [None if q is None else batch_of.get(q.id, -1) for q in query_lines]  # -1: no finished batch
    found = Counter(k for k in where if k is not None)
    short = {k for k, log in enumerate(logs)
             if found[k] < log.counts.get("written", len(log.items) - log.counts.get("dropped", 0))}
    lost: set[int] = set()
    for i, k in enumerate(where):
        if k is None:  # the batch of a corrupt line: the nearest sound neighbours that lack a query
            before = next((b for b in reversed(where[:i]) if b is not None), -1)
            after = next((b for b in where[i + 1:] if b is not None), -1)
            lost |= {before, after} & short
    kept = [log for k, log in enumerate(logs) if k not in lost]
    queries = [q for q, k in zip(query_lines, where) if k is not None and k >= 0 and k not in lost]
    dropped_lines = len(query_lines) - len(queries) + len(log_lines) - len(kept)
    if dropped_lines:
        write_jsonl(queries_path, queries)
        write_jsonl(progress_path, kept)
    corrupt = sum(x is None for x in log_lines) + where.count(None)
    if corrupt:
        print(f"warning: {run_dir}: {corrupt} corrupt line{'s' * (corrupt > 1)} in queries.jsonl or {PROGRESS}; "
              f"{len(logs) - len(kept) + sum(x is None for x in log_lines)} batch(es) are generated again",
              file=sys.stderr)
    return kept, queries


def _drop_keyphrases(run_dir: Path, logs: list[BatchLog], queries: list[Query]) -> tuple[list[BatchLog], list[Query]]:
    logs = [log for log in logs if not any(map(is_keyphrase_id, log.items))]
    queries = [q for q in queries if not is_keyphrase_id(q.id)]
    write_jsonl(run_dir / PROGRESS, logs)
    write_jsonl(run_dir / "queries.jsonl", queries)
    return logs, queries


def _differences(previous: dict | None, current: dict) -> str:
    """Which settings differ from the earlier run's, in words, for the refusal message."""
    if not previous:
        return "unknown settings (no manifest)"
    names = {"llm": "another --llm", "template_sha256": "another prompt template", "passages_sha256": "another corpus or passage size"}
    changed = [names[k] for k in names if previous.get(k) != current.get(k)]
    old, new = previous.get("options", {}), current["options"]
    changed += [f"another {k.replace('_', '-')}" for k in sorted(new) if old.get(k) != new[k]]
    return ", ".join(changed) or "other settings"


def _generate_totals(logs, passages_read: int, queries_path: Path) -> dict:
    counts: dict[str, int] = {}
    for log in logs:
        for key, n in log.counts.items():
            counts[key] = counts.get(key, 0) + n
    seconds = sum(log.seconds for log in logs)
    prompt_tokens = sum(log.prompt_tokens for log in logs)
    completion_tokens = sum(log.completion_tokens for log in logs)
    prompted = _prompted(logs)
    written = count_records(queries_path)
    keyphrases = counts.get("keyphrases", 0)
    rate = (lambda n: round(n / seconds, 3) if seconds else None)
    return {
        "counts": {
            "passages_read": passages_read,
            "passages_prompted": len(prompted),
            "queries_prompted": counts.get("prompted", 0),
            "answers": counts.get("answers", 0),
            "malformed": counts.get("malformed", 0),
            "parsed": counts.get("answers", 0) - counts.get("malformed", 0),
            "filtered": {k.removeprefix("filtered_"): n for k, n in sorted(counts.items()) if k.startswith("filtered_")},
            "dropped": counts.get("dropped", 0),
            "written": written,  # the LLM's queries and the keyphrase queries
            "keyphrases": keyphrases,
        },
        "throughput": {
            "passages_per_s": rate(len(prompted)),
            "queries_per_s": rate(written - keyphrases),  # the LLM's
            "tokens_per_s": rate(prompt_tokens + completion_tokens),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "llm_seconds": round(seconds, 2),
            "threads": torch_threads(),
        },
    }


class GenerateStage:
    """The generate stage of a pipeline, which owns its folder (see `rerun`)."""

    name = "generate"

    def __init__(self, run: GenerateRun, quiet: bool = False, budgeted: bool = False):
        self.prepared, self.quiet, self.budgeted = run, quiet, budgeted

    def prepare(self) -> None:
        """With --time-budget, the budget stage before this one chose how many passages the LLM takes."""
        if self.budgeted:  # recorded in its manifest section (synthgen.stages.budget)
            chosen = read_manifest(self.prepared.run_dir)["budget"]["choice"]["passages"]
            config = dataclasses.replace(self.prepared.config, max_passages=chosen)
            self.prepared = dataclasses.replace(self.prepared, config=config)

    def is_current(self, section: dict) -> bool:
        """Current also means the same sample size and number of keyphrase queries: another --max-passages extends
        or cuts the queries, another --keyphrase-queries rewrites the keyphrase queries."""
        run, config = self.prepared, section.get("config", {})
        return (_is_current(section, run.identity, [run.run_dir / name for name in OUTPUTS])
                and config.get("max_passages") == run.config.max_passages
                and config.get("keyphrase_queries") == run.config.keyphrase_queries)

    def run(self) -> dict:
        return rerun(self.prepared, self.quiet)

    def counts(self, section: dict) -> dict[str, Any]:
        found = section.get("counts", {})
        return {"passages": found.get("passages_read"), "passages_prompted": found.get("passages_prompted"),
                "queries_written": found.get("written"), "keyphrase_queries": found.get("keyphrases", 0)}

    def summary(self, section: dict) -> str:
        return summary(section, self.prepared.run_dir)
