"""Quality of generated queries on a sample of a BEIR corpus (default: ../shared/data/scifact).

Runs the product's own generation (template, parsing, retries, filters) and prints, for one configuration:
share of answers that parse, share of queries kept, what the filters removed, how varied the kept queries
are (share of the most common opening three words, distinct openings, share of "what is the ..."), how
often a query takes its requested form, how specific the queries are (BM25 over the whole corpus ranks the
passage a query was written from first, or in its top 10: a generic query finds other passages), throughput,
and a sample of queries.

    .venv/bin/python bench/bench_generate_quality.py --passages 60 --temperature 0.7
    .venv/bin/python bench/bench_generate_quality.py --prompt my.j2 --llm hf:/path/to/model
    # arms in one run, one loaded model, same passages and seeds: the former whole-object answer vs the bundled one
    .venv/bin/python bench/bench_generate_quality.py --passages 64 --batch-size 32 \
        --prompt bench/templates/generate_whole_object.j2,generate.j2
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from synthgen.corpus import ingest  # noqa: E402
from synthgen.generate import GenerateConfig, QueryGenerator, plan  # noqa: E402
from synthgen.prompts import load_template  # noqa: E402
from synthgen.text import words  # noqa: E402


def takes_form(form: str, query: str) -> bool:
    """A rough reading of whether a query has the form it was asked for."""
    query, n = query.strip(), len(query.split())
    return {
        "question": query.endswith("?"),
        "claim": not query.endswith("?") and n >= 4,
        "keywords": n <= 8 and not query.endswith((".", "?")),
        "title": n <= 14 and not query.endswith("?"),
    }.get(form, True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    parser.add_argument("--passages", type=int, default=60)
    parser.add_argument("--llm", default=None, help="spec for load_llm (default: bundled SmolLM2)")
    parser.add_argument("--prompt", default="generate.j2", help="a template, or several comma-separated (arms)")
    parser.add_argument("--temperature", type=float, default=GenerateConfig.temperature)
    parser.add_argument("--passage-words", type=int, default=GenerateConfig.passage_words)
    parser.add_argument("--forms", default=",".join(GenerateConfig.forms))
    parser.add_argument("--max-attempts", type=int, default=GenerateConfig.max_attempts)
    parser.add_argument("--min-overlap", type=float, default=GenerateConfig.min_overlap)
    parser.add_argument("--batch-size", type=int, default=GenerateConfig.batch_size)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=80, help="per answer, every arm (80: the former default)")
    parser.add_argument("--show", type=int, default=16, help="queries to print")
    args = parser.parse_args()

    if not (args.data / "corpus.jsonl").exists():
        sys.exit(f"no corpus at {args.data} (../shared/data is beside the checkout)")
    from synthgen.llm import load_llm

    passages, _ = ingest(args.data / "corpus.jsonl")
    config = GenerateConfig(max_passages=args.passages, seed=args.seed, temperature=args.temperature,
                            passage_words=args.passage_words, forms=tuple(args.forms.split(",")),
                            max_attempts=args.max_attempts, min_overlap=args.min_overlap, batch_size=args.batch_size,
                            max_tokens=args.max_tokens)
    items = plan(passages, config)
    from synthgen.retrieve import BM25Retriever

    bm25 = BM25Retriever(passages)
    ids = [p.id for p in passages]
    llm = load_llm(args.llm)
    rates = {}
    for name in args.prompt.split(","):
        rates[name] = run_arm(llm, load_template(name), config, items, args.show, lambda qs: seed_ranks(qs, bm25, ids))
    llm.close()
    if len(rates) > 1:
        first = next(iter(rates))
        for name, rate in rates.items():
            print(f"kept queries per LLM-second: {name} {rate:.3f}  (x{rate / rates[first]:.2f} of {first})")


def seed_ranks(queries, bm25, ids: list[str]) -> list[int]:
    """1-based BM25 rank of each query's own passage over the whole corpus (11 when below the top 10)."""
    hits = bm25.search([q.query for q in queries], 10)
    return [next((r for r, h in enumerate(row, 1) if ids[h.index] == q.passage_id), 11) for q, row in zip(queries, hits)]


def run_arm(llm, template, config, items, show: int, ranks) -> float:
    """One template over the items; prints its figures and returns kept queries per second."""
    generator = QueryGenerator(llm, template, config)
    started = time.perf_counter()
    queries, counts, tokens = [], collections.Counter(), 0
    for start in range(0, len(items), config.batch_size):
        result = generator.run(items[start : start + config.batch_size])
        queries += result.queries
        counts.update(result.log.counts)
        tokens += result.log.prompt_tokens + result.log.completion_tokens
        print(f"  {start + len(result.log.items)}/{len(items)} items, {len(queries)} kept", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started

    openings = collections.Counter(" ".join(words(q.query)[:3]) for q in queries)
    top, top_n = openings.most_common(1)[0] if openings else ("", 0)
    n = max(len(queries), 1)
    filtered = {k.removeprefix("filtered_"): v for k, v in sorted(counts.items()) if k.startswith("filtered_")}
    print(f"model {llm.name}  template {template.name} ({template.sha256[:12]})  temperature {config.temperature}  "
          f"passage words {config.passage_words}  attempts {config.max_attempts}")
    print(f"items {len(items)}  answers {counts['answers']}  malformed {counts['malformed'] / counts['answers']:.3f}  "
          f"kept {len(queries) / len(items):.2f}  dropped {counts['dropped']}  filtered {filtered}")
    print(f"diversity: top opening {top_n / n:.2f} ({top!r})  distinct openings {len(openings) / n:.2f}  "
          f"'what is the' {sum(q.query.lower().startswith('what is the') for q in queries) / n:.2f}  "
          f"form taken {sum(takes_form(q.form, q.query) for q in queries) / n:.2f}  "
          f"mean words {sum(len(q.query.split()) for q in queries) / n:.1f}")
    found = ranks(queries)
    print(f"specificity: own passage first by BM25 {sum(r == 1 for r in found) / n:.2f}  "
          f"in the top 10 {sum(r <= 10 for r in found) / n:.2f}")
    print(f"throughput: {len(items) / seconds:.2f} passages/s  {tokens / seconds:.0f} tokens/s  "
          f"{len(queries) / seconds:.3f} kept queries/s  {seconds:.0f} s")
    for q in random.Random(0).sample(queries, min(show, len(queries))):
        print(f"  [{q.form}] {q.query}   (task: {q.task})")
    return len(queries) / seconds


if __name__ == "__main__":
    main()
