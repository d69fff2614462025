"""`distill` commands: train an encoder from a recipe, evaluate one on BEIR-format data.

Torch, transformers and sentence-transformers are imported inside the commands, so `--help` answers at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from distill.logs import quiet_libraries
from synthgen.errors import UserError, run_cli
from synthgen.machine import use_threads
from synthgen.options import THREADS_OPTION
from synthgen.rundir import write_json

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])


@app.command()
def train(
    recipe: Path = typer.Argument(..., help="The recipe YAML (see recipes/)."),
    set_: List[str] = typer.Option([], "--set", help="Override a recipe field, e.g. --set train.lr=1e-5 (repeatable)."),
    threads: int = THREADS_OPTION,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Train a student encoder as the recipe says; the output folder loads with SentenceTransformer(path).

    Run the same command again after an interruption to resume from the last checkpoint. Under torchrun
    (`torchrun --nproc_per_node N -m distill train recipe.yaml`) each process trains its share of every batch.
    """
    from distill.recipe import load_recipe

    r = load_recipe(recipe, set_)
    quiet_libraries()
    use_threads(threads)
    from distill.train import train as run

    result = run(r, progress=not quiet)
    if result is None:  # a rank other than 0 under torchrun: rank 0 reports
        return
    print(f"model: {result.output_dir} ({result.steps} steps, {result.examples_per_s:.1f} examples/s)")
    if result.base_dev and result.best_dev:
        m = result.metric
        interval = (f", difference {100 * result.dev_interval[0]:+.2f} to {100 * result.dev_interval[1]:+.2f} points"
                    if result.dev_interval else "")
        print(f"dev {m}: base {result.base_dev[m]:.4f} -> trained {result.best_dev[m]:.4f} (step {result.best_step}{interval})")
    if result.beir:
        for dim, trained in result.beir["trained"]["dims"].items():
            base = result.beir["base"]["dims"].get(dim)
            if base:
                print(f"{result.beir['trained']['data']} dim {dim} ndcg@10: base {base['ndcg@10']:.4f} -> trained {trained['ndcg@10']:.4f}")


@app.command("eval")
def eval_(
    model: Path = typer.Argument(..., help="A model folder (SentenceTransformer format)."),
    data: Path = typer.Option(..., "--data", help="A BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."),
    split: str = typer.Option("test", "--split", help="The qrels split to evaluate."),
    dims: str = typer.Option("", "--dims", help="Matryoshka sizes, e.g. 384,256,128,64 (default: the full size)."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="Another model folder, shown side by side."),
    out: Path = typer.Option(Path("metrics.json"), "--out", help="Where to write the metrics as JSON."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Texts per forward pass."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where passage embeddings are cached (default: ~/.cache/synthgen/embeddings); a model evaluated again on the same corpus encodes nothing."),
    threads: int = THREADS_OPTION,
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw queries and passages in 2-D (t-SNE), colored by topic cluster, to this PNG: the baseline (before) beside the model (after)."),
    plot_passages: int = typer.Option(1500, "--plot-passages", min=10, help="Passages in the picture: the relevant ones plus a seeded sample."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """nDCG@10, Recall@10/@100, MRR@10 and MAP@100 with exact cosine search; a table, and metrics.json."""
    sizes = _parse_dims(dims)
    for folder in (model, baseline):
        if folder is not None and not folder.is_dir():
            raise UserError(f"{folder}: no such model folder")
    quiet_libraries()
    use_threads(threads)
    from distill.evaluate import difference, evaluate, format_table

    if plot is not None and not plot.parent.is_dir():
        raise UserError(f"--plot: no such folder {plot.parent}")
    kept: dict = {}
    result = evaluate(model, data, split, sizes, batch_size, progress=not quiet, keep=kept, cache_dir=cache_dir)
    if baseline is None:
        report = result
        print(format_table(result))
    else:
        before: dict = {}
        other = evaluate(baseline, data, split, sizes or [int(d) for d in result["dims"]], batch_size, progress=not quiet,
                         keep=before, cache_dir=cache_dir)
        report = {"model": result, "baseline": other, "difference": difference(result, other)}
        print(format_table(result, other))
    if plot is not None:
        from distill.plot import draw

        draw([(f"before: {_short(baseline)}", before)] if baseline is not None else [], (f"after: {_short(model)}", kept),
             plot, plot_passages)
        print(f"wrote {plot}")
    try:
        write_json(out, report)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote {out}")


def _short(folder: Path) -> str:
    """A model folder's last two path parts: enough to tell the panels apart."""
    return "/".join(Path(folder).resolve().parts[-2:])


def _parse_dims(text: str) -> list[int]:
    if not text.strip():
        return []
    try:
        dims = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--dims expects sizes like 384,256,128, got '{text}'") from None
    if any(d <= 0 for d in dims):
        raise UserError(f"--dims sizes must be positive, got '{text}'")
    return dims


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
