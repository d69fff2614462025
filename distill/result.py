"""What a training run returns and records in its folder (training.json), apart from the training itself.

The model card and the pipeline read it without importing the training code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthgen.errors import UserError
from synthgen.rundir import fingerprint, remove_tree

if TYPE_CHECKING:
    from distill.recipe import Recipe

STATE_DIR = "train_state"  # the last checkpoint and the best weights while training runs
SUMMARY = "training.json"  # the TrainResult of a finished folder


@dataclass
class TrainResult:
    output_dir: str  # the saved model folder
    steps: int
    metric: str  # the dev metric that picked the checkpoint
    best_step: int | None  # the saved checkpoint's step (None without a dev set: the last step is saved)
    base_dev: dict[str, float] | None  # dev metrics of the base model (step 0)
    best_dev: dict[str, float] | None  # dev metrics of the saved model
    beats_base: bool | None  # saved model better than the base on `metric` (None without a dev set)
    beir: dict[str, Any] | None  # {"base": ..., "trained": ...} `evaluate` results when eval.beir is set
    data: dict[str, Any]  # data statistics
    train_seconds: float = 0.0
    examples_per_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    fingerprint: str = ""  # of the recipe (output excluded): a rerun with another recipe is refused
    dev_interval: list[float] | None = None  # 95% paired interval of saved minus base `metric` over the dev queries


def recipe_fingerprint(recipe: Recipe) -> str:
    """The recipe's hash without its output folder, so a moved folder still resumes."""
    settings = recipe.to_dict()
    settings.pop("output")
    return fingerprint(settings)


def finished_result(out: Path, digest: str) -> TrainResult | None:
    """The recorded result of a finished folder of this recipe, None for a new or unfinished one; another recipe's folder is refused."""
    summary, state = out / SUMMARY, out / STATE_DIR
    if summary.exists():
        try:
            recorded = json.loads(summary.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise UserError(f"{summary}: malformed JSON; delete {out} to train again") from None
        if recorded.get("fingerprint") != digest:
            raise UserError(f"{out} holds a model trained from another recipe; choose another output folder or delete it")
        remove_tree(state)
        return TrainResult(**recorded)
    if state.exists():
        recorded = (state / "fingerprint").read_text() if (state / "fingerprint").exists() else ""
        if recorded != digest:
            raise UserError(f"{out} holds an unfinished run of another recipe; delete {state} to start over")
    elif out.exists() and any(out.iterdir()):
        raise UserError(f"output folder {out} exists and is not empty; choose a new folder")
    return None
