"""The model card (README.md of the model folder): how to use the model, how good it is, what made it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from distill.metrics import NAMES
from synthgen.rundir import write_text

if TYPE_CHECKING:
    from distill.recipe import Recipe
    from distill.result import TrainResult


def write_card(path: Path, recipe: "Recipe", result: "TrainResult") -> None:
    import yaml

    lines = [
        f"# {Path(result.output_dir).name}",
        "",
        f"A sentence-embedding model trained with `distill train` from `{recipe.model.base}`"
        f"{' (LoRA, ' + recipe.lora.save + ')' if recipe.lora.enabled else ''}.",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        f'model = SentenceTransformer("{result.output_dir}")',
        "queries = model.encode_query([...])      # adds the query prompt the model was trained with",
        "passages = model.encode_document([...])  # adds the passage prompt",
        "scores = model.similarity(queries, passages)",
        "```",
        "",
        "## Evaluation",
        "",
    ]
    for message in result.warnings:
        lines += [f"**Warning:** {message}", ""]
    if result.base_dev is not None and result.best_dev is not None:
        n = result.data.get("dev_examples", 0)
        lines += [
            f"Dev set: {n} {f'records of {Path(recipe.data.dev).name}' if recipe.data.dev else 'held-out training records'}; "
            "each dev query ranks every passage of the dev records. "
            f"The saved checkpoint is step {result.best_step} of {result.steps}, chosen by {result.metric}.",
            "",
            _table("dev", result.base_dev, result.best_dev),
            "",
        ]
        if result.dev_interval:
            low, high = result.dev_interval
            lines += [f"Saved minus base {result.metric} on the dev queries: {100 * low:+.2f} to {100 * high:+.2f} "
                      "points (95% paired bootstrap interval; one that holds 0 is within the dev set's noise).", ""]
    else:
        lines += ["No dev set: the last step is saved.", ""]
    if result.beir:
        base, trained = result.beir["base"], result.beir["trained"]
        lines += [f"BEIR `{trained['data']}` ({trained['split']}: {trained['queries']} queries, {trained['passages']} passages):", ""]
        for dim in trained["dims"]:
            if dim in base["dims"]:
                lines += [_table(f"dim {dim}", base["dims"][dim], trained["dims"][dim]), ""]
    lines += ["## Training data", "", "| statistic | value |", "|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in result.data.items()]
    lines += [
        "",
        f"Trained {result.steps} steps in {result.train_seconds:.0f} s ({result.examples_per_s:.1f} examples/s).",
        "",
        "## Recipe",
        "",
        "```yaml",
        yaml.safe_dump(recipe.to_dict(), sort_keys=False, allow_unicode=True).rstrip(),
        "```",
        "",
    ]
    write_text(path, "\n".join(lines))


def _table(label: str, base: dict[str, float], trained: dict[str, float]) -> str:
    rows = [f"| {label} | base | trained | difference |", "|---|---|---|---|"]
    rows += [f"| {m} | {base[m]:.4f} | {trained[m]:.4f} | {trained[m] - base[m]:+.4f} |" for m in NAMES]
    return "\n".join(rows)
