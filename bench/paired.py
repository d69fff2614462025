"""Which differences between models on a test set are more than the test set's own noise.

Each model's per-query nDCG@10 on a BEIR split (passage embeddings from the evaluation cache, so models that
`distill eval` or a pipeline already measured cost only their queries), then each model against the first: the
mean difference and its 95% interval from a paired bootstrap over the queries (seeded: the same numbers every
run). With SciFact's 300 test queries the interval is about +-1 nDCG@10 point wide, so a lever that moves the
mean by less than that has not been shown to do anything.

    .venv/bin/python bench/paired.py --data ../shared/data/scifact BASE MODEL [MODEL ...] --out results.json [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def per_query_ndcg(model: Path, data: Path, cache_dir: Path | None = None) -> tuple[list[str], list[float]]:
    from distill.evaluate import evaluate, search
    from distill.metrics import query_metrics

    keep: dict = {}
    evaluate(model, data, progress=False, keep=keep, cache_dir=cache_dir)
    beir = keep["beir"]
    ranked = search(keep["queries"], keep["passages"])
    scores = [query_metrics([beir.passage_ids[i] for i in row], beir.qrels[q])["ndcg@10"]
              for q, row in zip(beir.query_ids, ranked)]
    return beir.query_ids, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a BEIR folder (test split)")
    parser.add_argument("models", type=Path, nargs="+", help="model folders; the first is the reference")
    parser.add_argument("--out", type=Path, help="also write the table as JSON")
    parser.add_argument("--cache-dir", type=Path,
                        help="keep each model's passage embeddings here, so comparing it again costs only its queries")
    args = parser.parse_args()

    from distill.logs import quiet_libraries
    from distill.metrics import RESAMPLES, paired_interval

    quiet_libraries()
    reference_ids, reference = per_query_ndcg(args.models[0], args.data, args.cache_dir)
    rows = [{"model": str(args.models[0]), "ndcg10": round(sum(reference) / len(reference), 4)}]
    print(f"{'model':60} {'nDCG@10':>8} {'diff':>7} {'95% interval':>17} {'better':>6} {'worse':>6}")
    print(f"{str(args.models[0])[-60:]:60} {rows[0]['ndcg10']:8.4f}")
    for model in args.models[1:]:
        ids, scores = per_query_ndcg(model, args.data, args.cache_dir)
        assert ids == reference_ids
        differences = [s - r for s, r in zip(scores, reference)]
        low, high = paired_interval(differences)
        row = {"model": str(model), "ndcg10": round(sum(scores) / len(scores), 4),
               "diff_points": round(100 * sum(differences) / len(differences), 2),
               "interval_points": [round(100 * low, 2), round(100 * high, 2)],
               "better": sum(d > 1e-9 for d in differences), "worse": sum(d < -1e-9 for d in differences)}
        rows.append(row)
        print(f"{str(model)[-60:]:60} {row['ndcg10']:8.4f} {row['diff_points']:+7.2f} "
              f"[{row['interval_points'][0]:+6.2f}, {row['interval_points'][1]:+6.2f}] {row['better']:6d} {row['worse']:6d}")
    if args.out:
        args.out.write_text(json.dumps({"data": str(args.data), "queries": len(reference), "resamples": RESAMPLES,
                                        "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
