"""`synthgen pipeline`: generate, relabel and train in one run folder, each stage redone only when its inputs change.

Each stage records in manifest.json an identity: what decides its output (its options and a fingerprint of its
input files). A stage is skipped when its section says it is complete, its identity is the current one and its
outputs are on disk; otherwise it runs, and since its output files then change, so do the identities of the stages
after it. The stages are the `synthgen generate`, `synthgen relabel` and `distill train` code itself, so a killed
pipeline started again resumes inside the stage it was in, as those commands do. The pipeline owns its run folder:
queries or a model made under other settings are replaced, not refused as the single commands refuse them.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from synthgen.cli import RelabelOptions
from synthgen.errors import UserError
from synthgen.generate import GenerateConfig

if TYPE_CHECKING:
    from distill.recipe import Recipe
    from distill.train import TrainResult

REPORT = "report.md"
PLOT = "plot.png"
BEIR_METRICS = ("ndcg@10", "recall@100", "mrr@10")
# Recipe keys the pipeline sets itself: the training data is always the run's own train.jsonl.
OWNED_KEYS = ("data.train", "eval.beir", "eval.dims")


@dataclass
class PipelineOptions:
    corpus: Path
    out: Path
    recipe: Optional[Path] = None  # None: the bundled recipes/cpu.yaml
    eval: Optional[Path] = None  # a BEIR folder: base vs trained at the end of training
    dims: str = ""  # Matryoshka sizes to evaluate, "384,128" (empty: the recipe's)
    llm: Optional[str] = None  # writes the queries and judges them
    max_passages: Optional[int] = None
    queries_per_passage: int = GenerateConfig.queries_per_passage
    max_tokens: int = GenerateConfig.max_tokens  # most tokens per generated answer
    seed: int = GenerateConfig.seed  # of generate and relabel; training has the recipe's train.seed
    prompt: Optional[Path] = None
    judges: str = RelabelOptions.judges
    overrides: list[str] = field(default_factory=list)  # recipe KEY=VALUE
    cache_dir: Optional[Path] = None
    quiet: bool = False


@dataclass
class StageReport:
    status: str  # ran | skipped
    seconds: float  # in this invocation (a skipped stage costs only its check)
    counts: dict[str, Any]


def bundled_recipe() -> Path:
    """recipes/cpu.yaml, found as synthgen.prompts finds templates: inside the package in a wheel, beside it in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "recipes_data" / "cpu.yaml", here.parent / "recipes" / "cpu.yaml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"recipes/cpu.yaml not found beside {here}: the installation is incomplete")


def build_recipe(options: PipelineOptions, run_dir: Path) -> Recipe:
    """The recipe the train stage will run, checked now (files too, but train.jsonl, which relabel writes)."""
    from distill.recipe import check_paths, load_recipe

    for item in options.overrides:
        key = item.partition("=")[0].strip()
        if key in OWNED_KEYS:
            raise UserError(f"--set {key}: the pipeline sets it (train.jsonl of the run, --eval, --dims)")
    overrides = [*options.overrides, f"data.train={(run_dir / 'train.jsonl').resolve()}"]
    if options.eval is not None:
        overrides.append(f"eval.beir={options.eval.resolve()}")
    if options.dims.strip():
        overrides.append(f"eval.dims=[{options.dims}]")
    if not any(item.partition("=")[0].strip() == "output" for item in options.overrides):
        overrides.append(f"output={(run_dir / 'model').resolve()}")
    path = options.recipe or bundled_recipe()
    recipe = load_recipe(path, overrides, check_files=False)
    check_paths(dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, train="")), str(path))
    return recipe


def run_pipeline(options: PipelineOptions) -> dict[str, Any]:
    """Run the stages that are out of date; returns the manifest's pipeline section."""
    from distill.train import LOG
    from synthgen.cli import prepare_generate
    from synthgen.corpus import ChunkConfig
    from synthgen.llm import parse_spec
    from synthgen.rundir import prepare_dir, write_manifest_section

    started = time.perf_counter()
    if not options.corpus.exists():
        raise UserError(f"corpus not found: {options.corpus}")
    if options.llm is not None:
        parse_spec(options.llm)
    run_dir = prepare_dir(options.out)
    recipe = build_recipe(options, run_dir)
    _check_model_folder(recipe, run_dir)
    _check_dims(recipe)
    relabel_options = RelabelOptions(llm=options.llm, judges=options.judges, seed=options.seed,
                                     cache_dir=options.cache_dir)
    relabel_options.resolve()
    config = GenerateConfig(queries_per_passage=options.queries_per_passage, max_passages=options.max_passages,
                            seed=options.seed, max_tokens=options.max_tokens)
    generate_run = prepare_generate(options.corpus, run_dir, options.llm, ChunkConfig(), config, options.prompt)

    from distill.cli import quiet_libraries

    quiet_libraries()  # distill's warnings as `warning: ...` lines, without the libraries' loading chatter
    stages = {
        "generate": _generate_stage(generate_run, options.quiet),
        "relabel": _relabel_stage(run_dir, relabel_options, options.quiet),
    }
    stages["train"], result = _train_stage(recipe, run_dir, options.quiet)
    section = {
        "stages": {name: dataclasses.asdict(stage) for name, stage in stages.items()},
        "model": result.output_dir,
        "eval": _eval_table(result),
        "dev": {"metric": result.metric, "base": result.base_dev, "trained": result.best_dev,
                "beats_base": result.beats_base},
        "warnings": result.warnings,
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    write_manifest_section(run_dir, "pipeline", section)
    report = format_report(section)
    (run_dir / REPORT).write_text(report, encoding="utf-8")
    plot(run_dir / PLOT, Path(result.output_dir) / LOG, result)
    print(report, end="")
    print(f"report: {run_dir / REPORT}, plot: {run_dir / PLOT}")
    return section


def _check_model_folder(recipe: Recipe, run_dir: Path) -> None:
    """An explicit --set output=DIR holding something the pipeline did not make is refused before any stage runs."""
    from synthgen.rundir import read_manifest

    out = Path(recipe.output)
    owned = out == (run_dir / "model").resolve() or read_manifest(run_dir).get("train", {}).get("identity", {}).get("output") == str(out)
    if not owned and out.exists() and any(out.iterdir()):
        raise UserError(f"output folder {out} exists and is not empty; choose a new folder")


def _check_dims(recipe: Recipe) -> None:
    """Sizes beyond the student's embedding size would stop train at its start, after the LLM stages: refuse them now."""
    if not recipe.eval.dims:
        return
    from distill.cli import quiet_libraries
    from distill.encoder import load_encoder

    quiet_libraries()
    size = load_encoder(recipe.model, "cpu").get_embedding_dimension()
    too_big = [d for d in recipe.eval.dims if d > size]
    if too_big:
        raise UserError(f"--dims {too_big[0]} is larger than the embedding size of {recipe.model.base} ({size})")


def _generate_stage(run, quiet: bool) -> StageReport:
    from synthgen.cli import keep_queries, run_generate
    from synthgen.generate import plan
    from synthgen.rundir import read_manifest

    t0 = time.perf_counter()
    previous = read_manifest(run.run_dir).get("generate", {})
    before = previous.get("config", {}).get("max_passages")
    wanted = run.config.max_passages
    same = previous.get("identity") == run.identity
    outputs = all((run.run_dir / name).is_file() for name in ("passages.jsonl", "queries.jsonl"))
    if same and previous.get("complete") and before == wanted and outputs:
        print("generate: up to date, skipped")
        return StageReport("skipped", round(time.perf_counter() - t0, 2), _generate_counts(previous))
    if same and not (wanted is None or (before is not None and wanted >= before)):
        keep_queries(run.run_dir, {item.id for item in plan(run.passages, run.config)})  # a smaller sample
    section = run_generate(run, overwrite=True, quiet=quiet)
    return StageReport("ran", round(time.perf_counter() - t0, 2), _generate_counts(section))


def _generate_counts(section: dict) -> dict[str, Any]:
    counts = section.get("counts", {})
    return {"passages": counts.get("passages_read"), "passages_prompted": counts.get("passages_prompted"),
            "queries_written": counts.get("written")}


def _relabel_stage(run_dir: Path, options, quiet: bool) -> StageReport:
    from synthgen.cli import run_relabel
    from synthgen.rundir import read_manifest

    t0 = time.perf_counter()
    previous = read_manifest(run_dir).get("relabel", {})
    files = all((run_dir / name).is_file() for name in ("passages.jsonl", "queries.jsonl", "train.jsonl"))
    if files and previous.get("identity") == options.identity(run_dir):
        print("relabel: up to date, skipped")
        section, status = previous, "skipped"
    else:
        section, status = run_relabel(run_dir, options, quiet=quiet), "ran"
    counts = section["counts"]
    return StageReport(status, round(time.perf_counter() - t0, 2),
                       {"queries": counts["queries"], "training_examples": counts["written"],
                        "positive_is_seed_rate": counts["positive_is_seed_rate"]})


def _fit_dev_size(recipe: Recipe) -> Recipe:
    """A small corpus gives few training records; the held-out dev slice then shrinks to a quarter of them
    rather than failing the run after generate and relabel (distill train alone refuses, as it should)."""
    if recipe.data.dev or not recipe.data.dev_size:
        return recipe
    with open(recipe.data.train, encoding="utf-8") as handle:
        records = sum(1 for line in handle if line.strip())
    if recipe.data.dev_size * 2 <= records:
        return recipe
    size = records // 4
    print(f"train: data.dev_size lowered from {recipe.data.dev_size} to {size} ({records} training records)")
    return dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, dev_size=size))


def _train_stage(recipe: Recipe, run_dir: Path, quiet: bool) -> tuple[StageReport, TrainResult]:
    from distill.recipe import check_recipe
    from distill.train import SUMMARY, recipe_fingerprint, train
    from synthgen.rundir import file_fingerprint, read_manifest, write_manifest_section

    t0 = time.perf_counter()
    recipe = _fit_dev_size(recipe)
    check_recipe(recipe)
    out = Path(recipe.output)
    identity = {"recipe_sha256": recipe_fingerprint(recipe), "train_sha256": file_fingerprint(Path(recipe.data.train)),
                "output": str(out)}
    previous = read_manifest(run_dir).get("train", {})
    if previous.get("identity") == identity and previous.get("complete") and (out / SUMMARY).is_file():
        print("train: up to date, skipped")
        status = "skipped"
        result = train(recipe, progress=False)  # a finished folder: its recorded result, nothing trained
    else:
        if previous.get("identity") != identity and out.exists():
            shutil.rmtree(out)  # a model (or a half-trained one) of other data or another recipe
        write_manifest_section(run_dir, "train", {"identity": identity, "complete": False})
        status = "ran"
        result = train(recipe, progress=not quiet)
        write_manifest_section(run_dir, "train", {"identity": identity, "complete": True,
                                                  **dataclasses.asdict(result)})
    counts = {"training_examples": result.data.get("train_examples"), "dev_examples": result.data.get("dev_examples"),
              "steps": result.steps, "best_step": result.best_step}
    return StageReport(status, round(time.perf_counter() - t0, 2), counts), result


def _eval_table(result: TrainResult) -> Optional[dict[str, Any]]:
    """{dim: {metric: {"base", "trained"}}} from the train stage's BEIR evaluation, when --eval was given."""
    if not result.beir:
        return None
    base, trained = result.beir["base"], result.beir["trained"]
    return {
        "data": trained["data"], "split": trained["split"], "queries": trained["queries"],
        "dims": {dim: {m: {"base": base["dims"][dim][m], "trained": values[m]} for m in BEIR_METRICS}
                 for dim, values in trained["dims"].items() if dim in base["dims"]},
    }


def format_report(section: dict[str, Any]) -> str:
    lines = ["# Pipeline report", "", "| stage | status | seconds | counts |", "|---|---|---|---|"]
    for name, stage in section["stages"].items():
        counts = ", ".join(f"{k.replace('_', ' ')} {_shown(v)}" for k, v in stage["counts"].items())
        lines.append(f"| {name} | {stage['status']} | {stage['seconds']:.1f} | {counts} |")
    lines += ["", f"Model: `{section['model']}`. Wall time: {section['wall_seconds']:.1f} s.", ""]
    dev = section["dev"]
    if dev["base"] and dev["trained"]:
        m = dev["metric"]
        lines += [f"Dev set (held-out synthetic data) {m}: base {dev['base'][m]:.4f}, trained {dev['trained'][m]:.4f}.", ""]
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
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    records = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    train_points = [(r["step"], r["loss"]) for r in records if r.get("event") == "train"]
    dev_points = [(r["step"], r[result.metric]) for r in records if r.get("event") == "dev"]

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    lines = []
    if train_points:
        lines += left.plot(*zip(*train_points), color="tab:blue", label="training loss")
    left.set_xlabel("step")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_ylabel("training loss", color="tab:blue")
    left.set_title(f"Training loss and dev {result.metric} (step 0: base model)")
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
