"""The train stage: train.jsonl in, a model folder out; `distill train` itself, resumed from its checkpoints.

The stage's identity is the recipe's hash, train.jsonl's hash and the output folder. A model folder of another
identity is deleted before training: the pipeline owns its run folder (`distill train` alone refuses instead).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from synthgen.errors import UserError
from synthgen.lock import hold
from synthgen.records import count_records
from synthgen.rundir import file_fingerprint, read_manifest, write_manifest_section
from synthgen.stages import is_current as _is_current

if TYPE_CHECKING:
    from distill.recipe import Recipe
    from distill.result import TrainResult

# Recipe keys the pipeline sets itself: the training data is always the run's own train.jsonl.
OWNED_KEYS = ("data.train", "eval.beir", "eval.dims")
DEV_KEYS = ("data.dev", "data.dev_size", "eval.every")  # set by --dev-passages


def bundled_recipe() -> Path:
    """recipes/cpu.yaml, found as synthgen.prompts finds templates: inside the package in a wheel, beside it in a checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "recipes_data" / "cpu.yaml", here.parent / "recipes" / "cpu.yaml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"recipes/cpu.yaml not found beside {here}: the installation is incomplete")


def build_recipe(path: Optional[Path], overrides: list[str], run_dir: Path, beir: Optional[Path], dims: str,
                 dev: Optional[Path] = None, model_folder: str = "model") -> Recipe:
    """The recipe the train stage will run, checked now (files too, but train.jsonl, which relabel writes, and the
    `dev` records, which the pipeline's dev sample writes). With `dev` the dev set only judges the model it saves:
    no checkpoint is chosen by it (eval.every 0), as the guard checks (docs/guard.md) found no dev signal fit to choose.
    A `model_folder` other than model/ (--choose-keyphrases) refuses --set output: model/ is then the kept copy."""
    from distill.recipe import check_paths, load_recipe

    owned = OWNED_KEYS + (DEV_KEYS if dev is not None else ())
    keys = [item.partition("=")[0].strip() for item in overrides]
    for key in keys:
        if key in owned:
            raise UserError(f"--set {key}: the pipeline sets it (train.jsonl of the run, --eval, --dims, --dev-passages)")
    if "output" in keys and model_folder != "model":
        raise UserError("--set output: with --choose-keyphrases the kept model is copied to the run folder's model/")
    overrides = [*overrides, f"data.train={(run_dir / 'train.jsonl').resolve()}"]
    if dev is not None:
        overrides += [f"data.dev={dev.resolve()}", "data.dev_size=0", "eval.every=0"]
    if beir is not None:
        overrides.append(f"eval.beir={beir.resolve()}")
    if dims.strip():
        overrides.append(f"eval.dims=[{dims}]")
    if "output" not in keys:
        overrides.append(f"output={(run_dir / model_folder).resolve()}")
    path = path or bundled_recipe()
    recipe = load_recipe(path, overrides, check_files=False)
    check_paths(dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, train="", dev="" if dev else recipe.data.dev)),
                str(path))
    return recipe


def check_model_folder(recipe: Recipe, run_dir: Path) -> None:
    """An explicit --set output=DIR holding something the pipeline did not make is refused before any stage runs."""
    out = Path(recipe.output)
    owned = out == (run_dir / "model").resolve() or read_manifest(run_dir).get("train", {}).get("identity", {}).get("output") == str(out)
    if not owned and out.exists() and any(out.iterdir()):
        raise UserError(f"output folder {out} exists and is not empty; choose a new folder")


def check_dims(recipe: Recipe) -> None:
    """Sizes beyond the student's embedding size would stop train at its start, after the LLM stages: refuse them now."""
    if not recipe.eval.dims:
        return
    from distill.encoder import load_encoder
    from distill.logs import quiet_libraries

    quiet_libraries()
    size = load_encoder(recipe.model, "cpu").get_embedding_dimension()
    too_big = [d for d in recipe.eval.dims if d > size]
    if too_big:
        raise UserError(f"--dims {too_big[0]} is larger than the embedding size of {recipe.model.base} ({size})")


def fit_dev_size(recipe: Recipe) -> Recipe:
    """A small corpus gives few training records; the held-out dev slice then shrinks to a quarter of them
    rather than failing the run after generate and relabel (distill train alone refuses, as it should)."""
    if recipe.data.dev or not recipe.data.dev_size:
        return recipe
    records = count_records(Path(recipe.data.train))
    if recipe.data.dev_size * 2 <= records:
        return recipe
    size = records // 4
    print(f"train: data.dev_size lowered from {recipe.data.dev_size} to {size} ({records} training records)")
    return dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, dev_size=size))


class TrainStage:
    """The train stage of a pipeline; `result` is the trained (or recorded) model's TrainResult once it is done."""

    name = "train"

    def __init__(self, recipe: Recipe, run_dir: Path, quiet: bool = False):
        self.recipe, self.run_dir, self.quiet = recipe, run_dir, quiet
        self.result: TrainResult | None = None

    def prepare(self) -> None:
        from distill.recipe import check_recipe

        self.recipe = fit_dev_size(self.recipe)
        check_recipe(self.recipe)

    def identity(self) -> dict[str, Any]:
        from distill.result import recipe_fingerprint

        identity = {"recipe_sha256": recipe_fingerprint(self.recipe),
                    "train_sha256": file_fingerprint(Path(self.recipe.data.train)), "output": str(Path(self.recipe.output))}
        if self.recipe.data.dev:  # only then, so the runs without a dev file keep their identity
            identity["dev_sha256"] = file_fingerprint(Path(self.recipe.data.dev))
        return identity

    def is_current(self, section: dict[str, Any]) -> bool:
        from distill.result import SUMMARY, finished_result, recipe_fingerprint

        out = Path(self.recipe.output)
        if not _is_current({"complete": False, **section}, self.identity(), [out / SUMMARY]):
            return False
        # a finished folder: its recorded result, nothing trained
        self.result = finished_result(out.expanduser(), recipe_fingerprint(self.recipe))
        return True

    def run(self) -> dict[str, Any]:
        from distill.train import train

        identity, out = self.identity(), Path(self.recipe.output)
        with hold(out, "model folder"):  # another process may be training into it (`distill train`)
            if read_manifest(self.run_dir).get(self.name, {}).get("identity") != identity and out.exists():
                shutil.rmtree(out)  # a model (or a half-trained one) of other data or another recipe
            write_manifest_section(self.run_dir, self.name, {"identity": identity, "complete": False})
            started = time.perf_counter()
            self.result = train(self.recipe, progress=not self.quiet)
        # training and the evaluation after it: what the stage costs, kept for a later run that skips it
        section = {"identity": identity, "complete": True, **dataclasses.asdict(self.result),
                   "wall_seconds": round(time.perf_counter() - started, 2)}
        write_manifest_section(self.run_dir, self.name, section)
        return section

    def counts(self, section: dict[str, Any]) -> dict[str, Any]:
        result = self.result
        return {"training_examples": result.data.get("train_examples"), "dev_examples": result.data.get("dev_examples"),
                "steps": result.steps, "best_step": result.best_step}

    def summary(self, section: dict[str, Any]) -> None:
        return None
