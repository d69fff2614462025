"""Whether the dev-set warning of `synthgen pipeline --dev-passages` agrees with real test queries.

For a dev run folder (what `--dev-passages N` writes into run/dev/: LLM queries of a separate sample, relabeled) and
model folders that never trained on it, each model is paired against the base on the dev queries exactly as
`distill train` pairs its saved model (`distill.evaluate.rank_dev` over the dev records' passages, the relabeled
positive relevant, nDCG@10 per query, `distill.metrics.paired_interval`), and, with --test, on the collection's
real test queries (`bench/paired.py`'s figures). The warning fires when the dev interval lies wholly below 0; it is right when it
fires on every model the test puts decidedly below the base and on none the test puts decidedly above it.
With --reference each model is paired against another model instead of the base: whether the dev set orders two
ways of training (e.g. with and without the keyphrase records) as the test does. One JSON line per model goes to --out.

    .venv/bin/python bench/bench_guard.py --dev RUN/dev --test paired.json [--test more.json] MODEL [MODEL ...] --out rows.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=Path, required=True, help="a run folder whose train.jsonl is the dev set")
    parser.add_argument("--test", type=Path, action="append", default=[],
                        help="bench/paired.py output whose reference is the same as here (repeatable)")
    parser.add_argument("models", type=Path, nargs="+", help="model folders")
    parser.add_argument("--reference", type=Path,
                        help="the model each is paired against (default: the base model, as distill train pairs)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    from distill import encoder as enc
    from distill.data import build_dataset, dev_pool, read_examples
    from distill.evaluate import rank_dev
    from distill.logs import quiet_libraries
    from distill.metrics import paired_interval
    from distill.recipe import Recipe, resolve_base_model
    from synthgen.machine import resolve_precision

    quiet_libraries()
    limits = Recipe().model  # the lengths distill train tokenizes the dev set with
    dataset = build_dataset([], read_examples(args.dev / "train.jsonl"))
    query_rows, passage_rows, relevant = dev_pool(dataset.dev)

    def per_query(folder: Path) -> list[float]:
        model = SentenceTransformer(str(folder), device="cpu")
        model.eval()
        embed = enc.embedder(model, "cpu", resolve_precision("auto", "cpu"))
        q = enc.embed_rows(embed, enc.tokenize(model, [dataset.queries[i] for i in query_rows], limits.max_query_length), 64)
        p = enc.embed_rows(embed, enc.tokenize(model, [dataset.passages[i] for i in passage_rows], limits.max_passage_length), 64)
        return [m["ndcg@10"] for m in rank_dev(q, p, query_rows, passage_rows, relevant).values()]

    tests = {}
    for path in args.test:
        for row in json.loads(path.read_text())["rows"][1:]:
            tests[str(Path(row["model"]).resolve())] = row
    reference = per_query(args.reference or resolve_base_model("all-MiniLM-L6-v2"))
    print(f"dev: {len(query_rows)} queries, {len(passage_rows)} passages; reference nDCG@10 {sum(reference) / len(reference):.4f}")
    for folder in args.models:
        scores = per_query(folder)
        differences = [s - r for s, r in zip(scores, reference)]
        low, high = paired_interval(differences)
        test = tests.get(str(folder.resolve()), {})
        row = {"model": str(folder), "reference": str(args.reference or "base"), "dev_queries": len(differences),
               "dev_diff_points": round(100 * sum(differences) / len(differences), 2),
               "dev_interval_points": [round(100 * low, 2), round(100 * high, 2)], "warns": high < 0,
               "test_diff_points": test.get("diff_points"), "test_interval_points": test.get("interval_points")}
        print(json.dumps(row), flush=True)
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
