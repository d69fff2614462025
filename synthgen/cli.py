"""`synthgen` commands: parse options, build configurations, call the library, own the files.

Stages are functions over records (synthgen.generate, synthgen.relabel); this module is the edge where
files are read and written, runs are resumed and manifests are kept. Heavy imports happen inside the
command that needs them, so `--help` answers at once.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from synthgen.corpus import ChunkConfig
from synthgen.errors import UserError, run_cli
from synthgen.generate import GenerateConfig

if TYPE_CHECKING:
    from synthgen.corpus import IngestReport
    from synthgen.prompts import Template
    from synthgen.records import Passage
    from synthgen.relabel import SelectionConfig

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])


@app.callback()
def _commands() -> None:
    # A callback keeps `synthgen` a group of subcommands even while only one is registered
    # (typer turns an app with a single command into that bare command).
    pass


def main() -> None:
    run_cli(app)


# ---- generate ------------------------------------------------------------------------------------------
# passages.jsonl is rewritten from the corpus on every run (ingestion is quick, and a changed corpus must be
# noticed); queries.jsonl and the per-batch progress file are appended and resumed.

GENERATE_PROGRESS = "generate.progress.jsonl"


@app.command()
def generate(
    corpus: Path = typer.Option(..., "--corpus", help="A folder (read recursively) or one file: .txt .md .rst .html .pdf, or .jsonl with _id/title/text."),
    out: Path = typer.Option(..., "--out", help="Run folder for passages.jsonl, queries.jsonl and manifest.json."),
    llm: Optional[str] = typer.Option(None, "--llm", help="hf:PATH, vllm:PATH or openai:MODEL@URL. Default: the bundled SmolLM2-135M-Instruct."),
    max_passages: Optional[int] = typer.Option(None, "--max-passages", help="Sample this many passages (default: all). A larger value later extends the same sample."),
    queries_per_passage: int = typer.Option(GenerateConfig.queries_per_passage, "--queries-per-passage", help="Queries per sampled passage, each in another form."),
    seed: int = typer.Option(GenerateConfig.seed, "--seed", help="Decides the sample, the forms and every sampled token."),
    batch_size: int = typer.Option(GenerateConfig.batch_size, "--batch-size", help="Prompts per LLM call; finished batches are saved."),
    temperature: float = typer.Option(GenerateConfig.temperature, "--temperature", help="Sampling temperature (0: greedy)."),
    top_p: float = typer.Option(GenerateConfig.top_p, "--top-p", help="Nucleus sampling mass."),
    max_tokens: int = typer.Option(GenerateConfig.max_tokens, "--max-tokens", help="Most tokens per answer."),
    max_attempts: int = typer.Option(GenerateConfig.max_attempts, "--max-attempts", help="Answers asked per query (new seed each) before it is dropped."),
    forms: str = typer.Option(",".join(GenerateConfig.forms), "--forms", help="Query forms to rotate through, comma-separated; the template describes each."),
    prompt: Optional[Path] = typer.Option(None, "--prompt", help="A custom Jinja2 template (default: the bundled prompts/generate.j2)."),
    prompt_words: int = typer.Option(GenerateConfig.passage_words, "--prompt-words", help="Words of each passage shown to the LLM."),
    min_query_words: int = typer.Option(GenerateConfig.min_query_words, "--min-query-words", help="Shorter queries are dropped."),
    max_query_words: int = typer.Option(GenerateConfig.max_query_words, "--max-query-words", help="Longer queries are dropped."),
    max_copied_words: int = typer.Option(GenerateConfig.max_copied_words, "--max-copied-words", help="A query repeating this many consecutive words of its passage is dropped."),
    min_overlap: float = typer.Option(GenerateConfig.min_overlap, "--min-overlap", help="A query sharing a smaller share of its topic words with its passage is dropped as off topic (0: keep all)."),
    near_duplicate: float = typer.Option(GenerateConfig.near_duplicate, "--near-duplicate", help="Word-overlap (Jaccard) at which a query repeats an earlier one and is dropped."),
    passage_size: int = typer.Option(ChunkConfig.size, "--passage-size", help="Target passage length in words (or tokens, with --passage-tokenizer)."),
    passage_overlap: int = typer.Option(ChunkConfig.overlap, "--passage-overlap", help="Words (or tokens) repeated between consecutive passages."),
    passage_tokenizer: Optional[Path] = typer.Option(None, "--passage-tokenizer", help="A tokenizer folder (e.g. the student's): passage sizes count its tokens."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard queries from an earlier run with other settings."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Split a corpus into passages and have an LLM write a search query (and its task) for sampled passages.

    Run the same command again after an interruption to resume where it stopped.
    """
    chunking = ChunkConfig(size=passage_size, overlap=passage_overlap,
                           tokenizer=str(passage_tokenizer) if passage_tokenizer else None)
    config = GenerateConfig(
        queries_per_passage=queries_per_passage, max_passages=max_passages, seed=seed, batch_size=batch_size,
        max_attempts=max_attempts, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
        passage_words=prompt_words, forms=tuple(f.strip() for f in forms.split(",") if f.strip()),
        min_query_words=min_query_words, max_query_words=max_query_words, max_copied_words=max_copied_words,
        min_overlap=min_overlap, near_duplicate=near_duplicate,
    )
    run_generate(prepare_generate(corpus, out, llm, chunking, config, prompt), overwrite=overwrite, quiet=quiet)


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


def prepare_generate(corpus: Path, out: Path, llm: Optional[str], chunking: ChunkConfig, config: GenerateConfig,
                     prompt: Optional[Path]) -> GenerateRun:
    """Read the corpus and the template and check them: every mistake here costs seconds, not an LLM run."""
    import json
    import sys
    import time

    from synthgen.corpus import ingest
    from synthgen.generate import check_template
    from synthgen.prompts import load_template
    from synthgen.rundir import fingerprint, prepare_dir

    started = time.perf_counter()
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
    passages_sha = fingerprint([[p.id, p.title, p.text] for p in passages])
    identity = json.loads(json.dumps({"llm": llm or "default", "template_sha256": template.sha256,
                                      "options": config.output_options(), "passages_sha256": passages_sha}))
    return GenerateRun(corpus, run_dir, llm, chunking, config, prompt, template, passages, report, identity, started)


def discard_queries(run_dir: Path) -> None:
    """Forget the queries of a run (and its progress), so the next generate starts from nothing."""
    (run_dir / "queries.jsonl").unlink(missing_ok=True)
    (run_dir / GENERATE_PROGRESS).unlink(missing_ok=True)


def keep_queries(run_dir: Path, item_ids: set[str]) -> None:
    """Keep the finished batches whose items all remain planned, and their queries.

    A smaller --max-passages plans a prefix of the same seeded sample, so that work stays valid; a batch that
    straddles the new end is dropped and redone (same seeds, same queries)."""
    from synthgen.generate import BatchLog
    from synthgen.records import Query
    from synthgen.rundir import resume_records

    logs = [log for log in resume_records(run_dir / GENERATE_PROGRESS, BatchLog) if set(log.items) <= item_ids]
    done = {item for log in logs for item in log.items}
    queries = [q for q in resume_records(run_dir / "queries.jsonl", Query) if q.id in done]
    _write_jsonl_atomic(run_dir / GENERATE_PROGRESS, logs)
    _write_jsonl_atomic(run_dir / "queries.jsonl", queries)


def run_generate(run: GenerateRun, overwrite: bool = False, quiet: bool = False) -> dict:
    """Write passages.jsonl and the queries still missing; returns the manifest's generate section."""
    import time

    from synthgen.generate import BatchLog, QueryGenerator, plan
    from synthgen.records import Query
    from synthgen.rundir import Appender, read_manifest, resume_records, write_manifest_section

    run_dir, config, passages, identity, report = run.run_dir, run.config, run.passages, run.identity, run.report
    queries_path, progress_path = run_dir / "queries.jsonl", run_dir / GENERATE_PROGRESS
    previous = read_manifest(run_dir).get("generate", {}).get("identity")
    started_before = any(p.exists() and p.stat().st_size for p in (queries_path, progress_path))
    if started_before and previous != identity:
        if not overwrite:
            raise UserError(f"{run_dir} holds queries made with {_differences(previous, identity)}; pass --overwrite to "
                            "replace them, or use another --out")
        discard_queries(run_dir)
    _write_jsonl_atomic(run_dir / "passages.jsonl", passages)

    logs = resume_records(progress_path, BatchLog)
    done = {item for log in logs for item in log.items}
    existing = resume_records(queries_path, Query)
    present = {q.id for q in existing}
    items = plan(passages, config)
    todo = [item for item in items if item.id not in done]
    section = {
        "identity": identity,
        "corpus": {"path": str(run.corpus), "chunking": dataclasses.asdict(run.chunking), "counts": report.counts()},
        "config": dataclasses.asdict(config),
        "sampling": dataclasses.asdict(config.sampling()),
        "template": {"path": str(run.prompt) if run.prompt else "generate.j2", "sha256": run.template.sha256},
        "complete": not todo,
    }
    write_manifest_section(run_dir, "generate", {**section, **_generate_totals(logs, len(passages), queries_path)})

    if todo:
        from tqdm import tqdm

        from synthgen.llm import load_llm

        model = load_llm(run.llm)
        section["model"] = model.name
        try:
            generator = QueryGenerator(model, run.template, config, earlier=[q for q in existing if q.id in done])
            session_start, session_tokens, session_passages = time.perf_counter(), 0, set()
            with Appender(queries_path) as queries_out, Appender(progress_path) as progress_out, \
                    tqdm(total=len(items), initial=len(items) - len(todo), unit="query", desc="generating",
                         disable=quiet, dynamic_ncols=True) as bar:
                for start in range(0, len(todo), config.batch_size):
                    batch = todo[start : start + config.batch_size]
                    result = generator.run(batch)
                    queries_out.write([q for q in result.queries if q.id not in present])
                    progress_out.write([result.log])
                    logs.append(result.log)
                    session_tokens += result.log.prompt_tokens + result.log.completion_tokens
                    session_passages.update(item.passage.id for item in batch)
                    elapsed = time.perf_counter() - session_start
                    bar.set_postfix_str(f"{len(session_passages) / elapsed:.2f} passages/s, "
                                        f"{session_tokens / elapsed:.0f} tok/s", refresh=False)
                    bar.update(len(batch))
        finally:
            model.close()
    section["complete"] = True
    totals = _generate_totals(logs, len(passages), queries_path)
    totals["wall_seconds"] = round(time.perf_counter() - run.started, 2)
    section = {**section, **totals}
    write_manifest_section(run_dir, "generate", section)
    counts = totals["counts"]
    filtered = ", ".join(f"{n} {k}" for k, n in counts["filtered"].items()) or "none"
    print(f"{counts['written']} queries for {counts['passages_prompted']} of {counts['passages_read']} passages in "
          f"{queries_path} (answers filtered: {filtered}; malformed: {counts['malformed']}; dropped: {counts['dropped']})")
    return section


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
    prompted = {item.rsplit("@", 1)[0] for log in logs for item in log.items}
    written = sum(1 for line in open(queries_path, encoding="utf-8") if line.strip()) if queries_path.exists() else 0
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
            "written": written,
        },
        "throughput": {
            "passages_per_s": rate(len(prompted)),
            "queries_per_s": rate(written),
            "tokens_per_s": rate(prompt_tokens + completion_tokens),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "llm_seconds": round(seconds, 2),
        },
    }


def _write_jsonl_atomic(path: Path, records) -> None:
    import os
    import tempfile

    from synthgen.records import dumps

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.writelines(dumps(record) + "\n" for record in records)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


# ---- relabel -------------------------------------------------------------------------------------------
# Retrieval is recomputed on every run (cached embeddings make it seconds); LLM judgments, the slow part, are
# appended to judgments.jsonl as they finish and reused by key, so a killed run resumes and a changed option
# re-judges only what it changes; train.jsonl is rewritten whole from the judgments at the end.

RELABEL_JUDGMENTS = "judgments.jsonl"


@dataclasses.dataclass(frozen=True)
class RelabelOptions:
    """The relabel command's options but the run folder: one place for their defaults, shared with `synthgen pipeline`."""

    llm: Optional[str] = None
    judges: str = "ql,dense,bm25"
    retrieval: str = "hybrid"
    top_k: int = 20
    judge_depth: int = 3
    judge_words: int = 80
    judge_prompt: Optional[Path] = None
    embedder: Optional[Path] = None
    second_embedder: Optional[Path] = None
    index: str = "flat"
    positive: str = "fused"
    negatives: int = 7
    negative_strategy: str = "random"
    negative_ranks: str = "3-20"
    margin: float = 0.95
    duplicate_overlap: float = 0.6
    round_trip: bool = False
    seed: int = 0
    cache_dir: Optional[Path] = None
    batch_pairs: int = 128

    def resolve(self) -> tuple[tuple[str, ...], SelectionConfig]:
        """The judge names and the selection the options describe, checked before any file or model is read."""
        from synthgen.relabel import SelectionConfig, parse_judges

        names = parse_judges(self.judges)
        lo, sep, hi = self.negative_ranks.partition("-")
        if not sep or not lo.strip().isdigit() or not hi.strip().isdigit():
            raise UserError(f"bad --negative-ranks '{self.negative_ranks}': expected FIRST-LAST, e.g. 3-20")
        selection = SelectionConfig(positive=self.positive, negatives=self.negatives, strategy=self.negative_strategy,
                                    ranks=(int(lo), int(hi)), margin=self.margin,
                                    duplicate_overlap=self.duplicate_overlap, round_trip=self.round_trip, seed=self.seed)
        selection.check()
        if self.judge_depth < 1 or self.judge_words < 1 or self.batch_pairs < 1:
            raise UserError("--judge-depth, --judge-words and --batch-pairs must be at least 1")
        if "dense2" in names and self.second_embedder is None:
            raise UserError("the dense2 judge needs --second-embedder PATH")
        if self.judge_prompt is not None and not self.judge_prompt.is_file():
            raise UserError(f"judge prompt not found: {self.judge_prompt}")
        return names, selection

    def identity(self, run: Path) -> dict:
        """What decides train.jsonl: the options that change it and the content of the stage's input files.

        The LLM and its prompts count only when an LLM judge is on; batch sizes and the cache never count.
        """
        import json

        from synthgen.judges import CONTEXT_TEMPLATE, LLM_JUDGES, TEMPLATES
        from synthgen.prompts import load_template
        from synthgen.rundir import file_fingerprint

        names, selection = self.resolve()
        config = {"judges": list(names), "retrieval": self.retrieval, "top_k": self.top_k,
                  "judge_depth": self.judge_depth, "judge_words": self.judge_words, "index": self.index,
                  **dataclasses.asdict(selection)}
        llm_names = [j for j in config["judges"] if j in LLM_JUDGES]
        prompts = [self.judge_prompt or CONTEXT_TEMPLATE, *(TEMPLATES[j] for j in llm_names)] if llm_names else []
        identity = {
            "config": config,
            "llm": (self.llm or "default") if llm_names else None,
            "prompts_sha256": [load_template(name).sha256 for name in prompts],
            "embedder": str(self.embedder or "default"),
            "second_embedder": str(self.second_embedder) if "dense2" in config["judges"] else None,
            "passages_sha256": file_fingerprint(run / "passages.jsonl"),
            "queries_sha256": file_fingerprint(run / "queries.jsonl"),
        }
        return json.loads(json.dumps(identity))


@app.command()
def relabel(
    run: Path = typer.Option(..., "--run", help="Run folder with passages.jsonl and queries.jsonl (from `synthgen generate`)."),
    llm: Optional[str] = typer.Option(None, "--llm", help="LLM of the judges: hf:PATH, vllm:PATH or openai:MODEL@URL. Default: the bundled SmolLM2-135M-Instruct."),
    judges: str = typer.Option(RelabelOptions.judges, "--judges", help="Judges fused by reciprocal rank: ql (query likelihood), yesno (relevance; near chance with the bundled 135M model), dense, bm25, dense2 (--second-embedder). The default is the best measured by bench/bench_relabel.py."),
    retrieval: str = typer.Option(RelabelOptions.retrieval, "--retrieval", help="Candidate retrieval: dense, bm25 or hybrid (their reciprocal-rank fusion)."),
    top_k: int = typer.Option(RelabelOptions.top_k, "--top-k", help="Candidates per query (the seed passage is always one of them)."),
    judge_depth: int = typer.Option(RelabelOptions.judge_depth, "--judge-depth", help="Candidates per query the LLM judges score, in retrieval order (plus the seed)."),
    judge_words: int = typer.Option(RelabelOptions.judge_words, "--judge-words", help="Words of each passage the LLM judges read."),
    judge_prompt: Optional[Path] = typer.Option(None, "--judge-prompt", help="A custom Jinja2 template for the judges' passage context (default: prompts/judge_passage.j2)."),
    embedder: Optional[Path] = typer.Option(None, "--embedder", help="Sentence-transformers folder for dense retrieval (default: the bundled all-MiniLM-L6-v2)."),
    second_embedder: Optional[Path] = typer.Option(None, "--second-embedder", help="Another sentence-transformers folder, for the dense2 judge."),
    index: str = typer.Option(RelabelOptions.index, "--index", help="faiss index: flat (exact), hnsw or ivf (approximate, for large corpora)."),
    positive: str = typer.Option(RelabelOptions.positive, "--positive", help="fused: the top of the fused ranking; seed: the passage the query was written from."),
    negatives: int = typer.Option(RelabelOptions.negatives, "--negatives", help="Hard negatives per query (fewer when fewer are safe)."),
    negative_strategy: str = typer.Option(RelabelOptions.negative_strategy, "--negative-strategy", help="Within --negative-ranks: random (seeded), top (hardest first) or lowest (Gecko)."),
    negative_ranks: str = typer.Option(RelabelOptions.negative_ranks, "--negative-ranks", help="Fused ranks negatives come from, FIRST-LAST (1-based, inclusive)."),
    margin: float = typer.Option(RelabelOptions.margin, "--margin", help="A candidate scoring at least this share of the positive's normalized score is never a negative."),
    duplicate_overlap: float = typer.Option(RelabelOptions.duplicate_overlap, "--duplicate-overlap", help="Share of word 5-grams shared with the positive that marks a near-duplicate (never a negative)."),
    round_trip: bool = typer.Option(RelabelOptions.round_trip, "--round-trip/--no-round-trip", help="Drop queries whose seed passage is not in the retriever's own top-k."),
    seed: int = typer.Option(RelabelOptions.seed, "--seed", help="Decides the random choice of negatives."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where passage embeddings are cached (default: ~/.cache/synthgen/embeddings)."),
    batch_pairs: int = typer.Option(RelabelOptions.batch_pairs, "--batch-pairs", help="Pairs per LLM call; finished batches are saved."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Judge candidates from the whole corpus for every query and choose its positive and hard negatives.

    Writes train.jsonl and the relabel section of manifest.json; run it again after an interruption to resume.
    """
    options = RelabelOptions(
        llm=llm, judges=judges, retrieval=retrieval, top_k=top_k, judge_depth=judge_depth, judge_words=judge_words,
        judge_prompt=judge_prompt, embedder=embedder, second_embedder=second_embedder, index=index, positive=positive,
        negatives=negatives, negative_strategy=negative_strategy, negative_ranks=negative_ranks, margin=margin,
        duplicate_overlap=duplicate_overlap, round_trip=round_trip, seed=seed, cache_dir=cache_dir,
        batch_pairs=batch_pairs,
    )
    run_relabel(run, options, quiet=quiet)


def run_relabel(run: Path, options: RelabelOptions, quiet: bool = False) -> dict:
    """Write train.jsonl from a run's passages and queries; returns the manifest's relabel section."""
    import time

    from synthgen.judges import LLM_JUDGES
    from synthgen.rundir import prepare_dir

    started = time.perf_counter()
    names, selection = options.resolve()
    passages, queries = _relabel_inputs(run)
    run_dir = prepare_dir(run)
    identity = options.identity(run_dir)

    from synthgen.judges import Judgment, LLMJudges
    from synthgen.relabel import PassageIndex, llm_judge, retrieve_candidates, score_retrieval_judges, select, summarize
    from synthgen.retrieve import Embedder
    from synthgen.rundir import Appender, resume_records, write_manifest_section

    first = Embedder(options.embedder, options.cache_dir)
    second = Embedder(options.second_embedder, options.cache_dir) if "dense2" in names else None
    passage_index = PassageIndex(passages, first, index=options.index, second=second, progress=not quiet)
    candidates = retrieve_candidates(queries, passage_index, options.retrieval, options.top_k)
    score_retrieval_judges(candidates, passage_index, names)

    section: dict = {
        "identity": identity,
        "config": identity["config"],
        "models": {"embedder": first.name, **({"second_embedder": second.name} if second else {})},
    }
    llm_names = [j for j in names if j in LLM_JUDGES]
    fresh = reused = 0
    judging_seconds = 0.0
    if llm_names:
        from synthgen.llm import load_llm

        store = run_dir / RELABEL_JUDGMENTS
        known = {j.key: j.score for j in resume_records(store, Judgment)}
        model = load_llm(options.llm)
        try:
            llm_judges = LLMJudges(model, llm_names, words=options.judge_words, context_template=options.judge_prompt)
            section["models"]["llm"] = model.name
            section["prompts"] = llm_judges.prompt_hashes()
            t0 = time.perf_counter()
            with Appender(store) as out:
                for made in llm_judge(candidates, passages, llm_judges, options.judge_depth, known,
                                      options.batch_pairs, not quiet):
                    out.write(made)
                    fresh += len(made)
            judging_seconds = time.perf_counter() - t0
            reused = sum(1 for c in candidates for j in llm_names for s in c.scores[j] if s is not None) - fresh
        finally:
            model.close()

    selections = [select(c, passages, names, selection) for c in candidates]
    _write_jsonl_atomic(run_dir / "train.jsonl", [s.example for s in selections if s.example is not None])
    summary = summarize(selections, names)
    fresh_pairs = fresh // max(len(llm_names), 1)
    section["counts"] = {"passages": len(passages), "queries": len(queries),
                         "seed_in_retrieved_top_k": sum(c.seed_rank is not None for c in candidates),
                         "llm_pairs_judged": fresh_pairs, "llm_judgments_reused": reused, **summary}
    section["throughput"] = {
        "pairs_per_s": round(fresh_pairs / judging_seconds, 3) if fresh_pairs else None,
        "judging_seconds": round(judging_seconds, 2),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "passages_encoded": first.encoded,
    }
    write_manifest_section(run_dir, "relabel", section)
    dropped = ", ".join(f"{n} {k}" for k, n in summary["dropped"].items()) or "none"
    rate = summary["positive_is_seed_rate"]
    print(f"{summary['written']} training examples in {run_dir / 'train.jsonl'} (positive is the seed for "
          f"{rate if rate is None else f'{rate:.0%}'}; dropped: {dropped})")
    return section


def _relabel_inputs(run: Path):
    """passages.jsonl and queries.jsonl of a run, checked against each other: one-line errors, never a traceback."""
    from synthgen.records import Passage, Query, from_dict, iter_json_lines

    if not run.is_dir():
        raise UserError(f"run folder not found: {run}")
    files = {name: run / name for name in ("passages.jsonl", "queries.jsonl")}
    for name, path in files.items():
        if not path.is_file():
            raise UserError(f"{path} not found: run `synthgen generate --out {run}` first")
    passages: list[Passage] = []
    seen: set[str] = set()
    for number, obj in iter_json_lines(files["passages.jsonl"]):
        passage = from_dict(Passage, obj, f"{files['passages.jsonl']}:{number}")
        if passage.id in seen:
            raise UserError(f"{files['passages.jsonl']}:{number}: duplicate passage id '{passage.id}'")
        seen.add(passage.id)
        passages.append(passage)
    if not passages:
        raise UserError(f"{files['passages.jsonl']} has no passages")
    queries: list[Query] = []
    query_ids: set[str] = set()
    for number, obj in iter_json_lines(files["queries.jsonl"]):
        where = f"{files['queries.jsonl']}:{number}"
        query = from_dict(Query, obj, where)
        if query.passage_id not in seen:
            raise UserError(f"{where}: query '{query.id}' names passage '{query.passage_id}', which passages.jsonl "
                            "lacks (files from different runs?)")
        if query.id in query_ids:
            raise UserError(f"{where}: duplicate query id '{query.id}'")
        query_ids.add(query.id)
        queries.append(query)
    if not queries:
        raise UserError(f"{files['queries.jsonl']} has no queries")
    return passages, queries


# ---- pipeline ------------------------------------------------------------------------------------------


@app.command()
def pipeline(
    corpus: Path = typer.Option(..., "--corpus", help="The documents: a folder or one file, as for `synthgen generate`."),
    out: Path = typer.Option(..., "--out", help="Run folder for every stage's files, the model (model/), report.md and plot.png."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="Training recipe YAML (default: the bundled recipes/cpu.yaml). Its data.train and output are the run's."),
    eval_: Optional[Path] = typer.Option(None, "--eval", help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv): base vs trained model at the end."),
    dims: str = typer.Option("", "--dims", help="Embedding sizes evaluated on --eval, e.g. 384,128 (default: the recipe's loss.matryoshka_dims, or the full size)."),
    llm: Optional[str] = typer.Option(None, "--llm", help="LLM that writes and judges the queries: hf:PATH, vllm:PATH or openai:MODEL@URL. Default: the bundled SmolLM2-135M-Instruct."),
    max_passages: Optional[int] = typer.Option(None, "--max-passages", help="Sample this many passages to write queries for (default: all)."),
    queries_per_passage: int = typer.Option(GenerateConfig.queries_per_passage, "--queries-per-passage", help="Queries per sampled passage, each in another form."),
    max_tokens: int = typer.Option(GenerateConfig.max_tokens, "--max-tokens", help="Most tokens per generated answer."),
    seed: int = typer.Option(GenerateConfig.seed, "--seed", help="Seed of generate and relabel (training uses the recipe's train.seed)."),
    prompt: Optional[Path] = typer.Option(None, "--prompt", help="A custom Jinja2 template for query generation (default: prompts/generate.j2)."),
    judges: str = typer.Option(RelabelOptions.judges, "--judges", help="Relabel judges, fused by reciprocal rank: ql, yesno, dense, bm25."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe field, e.g. --set train.lr=1e-5 (repeatable); --set output=DIR puts the model elsewhere."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where passage embeddings are cached (default: ~/.cache/synthgen/embeddings)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Generate, relabel and train in one run folder, then report (report.md) and plot (plot.png).

    Run it again to redo only what changed: a stage whose options and inputs are those recorded in manifest.json
    is skipped, and a killed run resumes inside the stage it was in.
    """
    from synthgen.pipeline import PipelineOptions, run_pipeline

    run_pipeline(PipelineOptions(
        corpus=corpus, out=out, recipe=recipe, eval=eval_, dims=dims, llm=llm, max_passages=max_passages,
        queries_per_passage=queries_per_passage, max_tokens=max_tokens, seed=seed, prompt=prompt, judges=judges, overrides=list(set_),
        cache_dir=cache_dir, quiet=quiet,
    ))
