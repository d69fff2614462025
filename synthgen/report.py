"""report.md and plot.png of a pipeline run: the stages, the dev set and the BEIR evaluation, base vs trained.

Kept apart from the pipeline so the tables and the figure can change without touching how stages run;
matplotlib is imported only when the plot is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from synthgen.keyphrases import LONG_SHARE, LONG_WORDS, PER_PASSAGE

if TYPE_CHECKING:
    from distill.result import TrainResult

REPORT = "report.md"
PLOT = "plot.png"
BEIR_METRICS = ("ndcg@10", "recall@100", "mrr@10")


def eval_table(result: TrainResult) -> Optional[dict[str, Any]]:
    """{dim: {metric: {"base", "trained"}}} from the train stage's BEIR evaluation, when --eval was given."""
    if not result.beir:
        return None
    base, trained = result.beir["base"], result.beir["trained"]
    return {
        "data": trained["data"], "split": trained["split"], "queries": trained["queries"],
        "encode_seconds": base.get("encode_seconds", 0.0) + trained.get("encode_seconds", 0.0),
        "dims": {dim: {m: {"base": base["dims"][dim][m], "trained": values[m]} for m in BEIR_METRICS}
                 for dim, values in trained["dims"].items() if dim in base["dims"]},
    }


def format_report(section: dict[str, Any]) -> str:
    lines = ["# Pipeline report", "", "| stage | status | seconds | counts |", "|---|---|---|---|"]
    for name, stage in section["stages"].items():
        counts = ", ".join(f"{k.replace('_', ' ')} {_shown(v)}" for k, v in stage["counts"].items())
        lines.append(f"| {name} | {stage['status']} | {stage['seconds']:.1f} | {counts} |")
    lines += ["", f"Model: `{section['model']}`. Wall time: {section['wall_seconds']:.1f} s.", ""]
    if section.get("max_passages"):
        lines += [f"Queries were written for a sample of up to {section['max_passages']} passages (--max-passages; "
                  f"--sample {section.get('sample', 'random')}): more passages cost generation and judging time; "
                  "on SciFact 1,280 with a keyphrase query for every passage beat 640 by 0.65 nDCG@10 on average "
                  "over five samples, 2,560 was no better over two, and the sample itself moved a result by about a "
                  "point (docs/results.md).", ""]
    several = section.get("queries_per_passage_decided") and (section.get("queries_per_passage") or 1) > 1
    if several:  # decided by the corpus against the whole sample, so a smaller named sample would decide another
        lines += [f"LLM queries: {section['queries_per_passage']} per passage, each in another form: the corpus has "
                  "fewer passages than the sample, which it fills with several queries for each, up to 8 "
                  "(--queries-per-passage N names a number; on ADI's 82 passages 8 each gained 1.14 nDCG@10 points "
                  "over one each, on average over eight samples: docs/results.md).", ""]
    if section.get("time_budget"):
        from synthgen.budget import Choice

        budget = Choice(**section["time_budget"])
        repeat = f"--max-passages {budget.passages}" + (f" --queries-per-passage {section['queries_per_passage']}"
                                                        if several else "")
        lines += [f"Time budget (--time-budget): {budget.minutes:g} minutes. Measured on the first "
                  f"{budget.calibration_passages} passages, generated and relabeled, and a few training steps on "
                  f"their records ({budget.measured()}; {budget.spent_minutes:.1f} minutes "
                  "spent by then), the projection fitted "
                  f"{budget.passages} of up to {budget.limit} passages; its minutes per stage: {budget.projected()}, "
                  f"{budget.projected_total_minutes:.1f} in all (the table above has what they took)"
                  + (", over the budget already: the passages measured on are kept" if budget.over_budget else "")
                  + f". `{repeat}` repeats this sample without a budget.", ""]
    long = section.get("long_passages")
    decided = ("" if long is None else f"; the corpus decided: {long:.0%} of its passages have {LONG_WORDS} distinct "
               f"content words, and keyphrase queries are written where at least {LONG_SHARE:.0%} do")
    if section.get("keyphrase_queries"):
        lines += [f"Keyphrase queries (no LLM): {section['keyphrase_queries']} per passage given to the LLM "
                  f"(--keyphrase-queries; 0 turns them off{decided}), "
                  + ("judged like the LLM's." if section.get("judge_keyphrases", True) else
                     "judged by the retrievers alone (--no-judge-keyphrases: on SciFact 0.71 nDCG@10 lower than with "
                     "the LLM judging them too; docs/ablations.md)."), ""]
    elif long is not None:
        lines += [f"Keyphrase queries (no LLM): none{decided}. In a corpus of short passages they choose words by "
                  "rarity alone, and on NPL they cost 3.9 nDCG@10 points against the LLM's queries alone "
                  f"(docs/results.md, \"What NPL's loss comes from\"); `--keyphrase-queries {PER_PASSAGE}` writes them "
                  "anyway.", ""]
    if section.get("choice"):
        from synthgen.stages.choose import Choice

        choice = Choice(**section["choice"])
        lines += [f"Keyphrase records (--choose-keyphrases): {choice.line()}."
                  + (" The dev set's choice can be wrong: it matched the test on most draws where the test decided, "
                     "but one wrong choice on SciFact cost 1.64 nDCG@10 points (docs/results.md, \"What NPL's loss "
                     "comes from\")." if choice.llm is not None else ""), ""]
    dev = section["dev"]
    if dev["base"] and dev["trained"]:
        m = dev["metric"]
        interval = dev.get("interval")
        noise = ""
        if interval:
            from distill.verdict import side_of_zero

            verdict = {-1: "below the base beyond the dev queries' noise",
                       1: "above the base beyond the dev queries' noise; real test queries have not always confirmed "
                          "such a gain",
                       0: "within the dev queries' noise"}[side_of_zero(interval)]
            noise = (f" (difference {100 * interval[0]:+.2f} to {100 * interval[1]:+.2f} points, "
                     f"95% interval: {verdict})")
        lines += [f"Dev set ({dev.get('source', 'held-out synthetic data')}) {m}: base {dev['base'][m]:.4f}, "
                  f"trained {dev['trained'][m]:.4f}{noise}.", ""]
    table = section["eval"]
    if table:
        lines += [f"Evaluation on `{table['data']}` ({table['split']}, {table['queries']} queries):", "",
                  "| dim | " + " | ".join(f"{m} base | {m} trained" for m in BEIR_METRICS) + " |",
                  "|---" * (1 + 2 * len(BEIR_METRICS)) + "|"]
        for dim, metrics in table["dims"].items():
            cells = " | ".join(f"{metrics[m]['base']:.4f} | {metrics[m]['trained']:.4f}" for m in BEIR_METRICS)
            lines.append(f"| {dim} | {cells} |")
        lines.append("")
    lines += [f"**Warning:** {w}" for w in section["warnings"]]
    return "\n".join(lines).rstrip() + "\n"


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def plot(path: Path, log_path: Path, result: TrainResult) -> None:
    """Loss and dev metric over steps; nDCG@10 per Matryoshka size, base vs trained (the dev metric without --eval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from distill.logbook import read_log

    records, _ = read_log(log_path)
    train_points = [(r["step"], r["loss"]) for r in records if r.get("event") == "train"]
    dev_points = [(r["step"], r[result.metric]) for r in records if r.get("event") == "dev"]

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    lines = []
    if train_points:
        # markers on short runs: a one-step run is a single point, which a bare line does not draw
        lines += left.plot(*zip(*train_points), color="tab:blue", label="training loss",
                           marker="o" if len(train_points) <= 30 else None)
    left.set_xlabel("step")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_ylabel("training loss", color="tab:blue")
    left.set_title(f"Training loss and dev {result.metric} (step 0: base model)" if dev_points else "Training loss")
    if dev_points:
        twin = left.twinx()
        lines += twin.plot(*zip(*dev_points), color="tab:orange", marker="o", label=f"dev {result.metric}")
        twin.set_ylabel(f"dev {result.metric}", color="tab:orange")
    if lines:
        left.legend(lines, [line.get_label() for line in lines], loc="best")
    if result.beir:
        base, trained = result.beir["base"]["dims"], result.beir["trained"]["dims"]
        dims = sorted((int(d) for d in trained if d in base))
        right.plot(dims, [base[str(d)]["ndcg@10"] for d in dims], marker="o", label="base")
        right.plot(dims, [trained[str(d)]["ndcg@10"] for d in dims], marker="o", label="trained")
        right.set_xscale("log", base=2)
        right.set_xticks(dims, [str(d) for d in dims])
        right.set_xlabel("embedding size (Matryoshka dimension)")
        right.set_ylabel("nDCG@10")
        right.set_title(f"{Path(result.beir['trained']['data']).name} ({result.beir['trained']['split']})")
        right.legend()
    elif result.base_dev and result.best_dev:
        values = [result.base_dev[result.metric], result.best_dev[result.metric]]
        right.bar(["base", "trained"], values, color=["tab:gray", "tab:green"])
        right.set_ylabel(f"dev {result.metric}")
        right.set_title("Dev set (no --eval given)")
    else:
        right.text(0.5, 0.5, "no dev set and no --eval", ha="center", va="center", transform=right.transAxes)
        right.set_axis_off()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
