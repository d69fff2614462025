"""The choose stage (--choose-keyphrases): a second student trained on the LLM's records alone, and the dev set's
choice between it and the model of every record.

How many keyphrase records help differs by collection: on SciFact and Cranfield they add 0.9 to 2.7 points, on NPL
(abstracts of about 40 words) they cost 3.9 points, its LLM records alone gaining 2.0 over the base (docs/results.md,
"What NPL's loss comes from"). A dev set of LLM queries from a separate sample ordered the two models as the test
did on four of the five draws where the test decided between them; on the fifth (SciFact, pipeline seed 26) it
preferred the LLM's records by more than it did on NPL and cost 1.64 points, so the choice is an option, not a
default. The second training is the cheap one: the LLM's records are a tenth to two fifths of the keyphrase mix.

Its input is train.jsonl less the keyphrase records (written as train-llm.jsonl), its output the model-llm/ folder;
staleness and resume are the train stage's, under its own manifest section. The train stage writes
model-keyphrases/ then, and model/ becomes a copy of the kept one, so a user loads the run's model where it always is.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from synthgen.keyphrases import is_keyphrase_id
from synthgen.records import count_records
from synthgen.rundir import atomic_file, remove_tree, write_manifest_section
from synthgen.stages.train import TrainStage

if TYPE_CHECKING:
    from distill.recipe import Recipe
    from distill.result import TrainResult

# Fewer dev records than this and the mix is kept without a second training: the rule was checked with 59 to 73 dev
# queries, and on a handful two models often tie or differ by one query (a judgement, not a measurement).
MIN_DEV_RECORDS = 30
LLM_RECORDS = "train-llm.jsonl"
LLM_MODEL = "model-llm"
MIXED_MODEL = "model-keyphrases"  # the train stage's folder under --choose-keyphrases: model/ is the kept one's copy


def write_llm_records(train: Path, out: Path) -> tuple[int, int]:
    """The records of `train` whose query the LLM wrote, in their order, into `out` (rewritten only when they differ,
    so its fingerprint, and the stage's identity, stay put); returns (LLM records, keyphrase records)."""
    kept, keyphrases = [], 0
    with open(train, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            if is_keyphrase_id(json.loads(line).get("query_id", "")):
                keyphrases += 1
            else:
                kept.append(line if line.endswith("\n") else line + "\n")
    text = "".join(kept)
    if not out.is_file() or out.read_text(encoding="utf-8") != text:
        with atomic_file(out) as handle:
            handle.write(text)
    return len(kept), keyphrases


class ChooseStage(TrainStage):
    """Trains model-llm/ on the LLM's records with the run's recipe; `result` is its TrainResult, None when there is
    nothing to choose between (`skipped` says why)."""

    name = "choose"

    def __init__(self, recipe: Recipe, run_dir: Path, quiet: bool = False):
        alternative = dataclasses.replace(
            recipe, data=dataclasses.replace(recipe.data, train=str((run_dir / LLM_RECORDS).resolve())),
            output=str((run_dir / LLM_MODEL).resolve()))
        super().__init__(alternative, run_dir, quiet)
        self.records, self.dev_records = (0, 0), 0

    def prepare(self) -> None:
        self.records = write_llm_records(self.run_dir / "train.jsonl", self.run_dir / LLM_RECORDS)
        self.dev_records = count_records(Path(self.recipe.data.dev)) if self.recipe.data.dev else 0
        super().prepare()

    def skipped(self) -> str:
        """Why there is nothing to choose between ("" when there is)."""
        llm, keyphrases = self.records
        if not keyphrases or not llm:
            return f"no {'keyphrase' if not keyphrases else 'LLM'} records in train.jsonl"
        if self.dev_records < MIN_DEV_RECORDS:
            return f"{self.dev_records} dev records, fewer than the {MIN_DEV_RECORDS} a choice needs"
        return ""

    def has_choice(self) -> bool:
        return not self.skipped()

    def is_current(self, section: dict[str, Any]) -> bool:
        if not self.has_choice():
            return section.get("identity") == self.identity() and section.get("skipped") is True
        return super().is_current(section)

    def run(self) -> dict[str, Any]:
        if not self.has_choice():
            section = {"identity": self.identity(), "complete": True, "skipped": True}
            write_manifest_section(self.run_dir, self.name, section)
            return section
        return super().run()

    def counts(self, section: dict[str, Any]) -> dict[str, Any]:
        llm, keyphrases = self.records
        return {"llm_records": llm, "keyphrase_records": keyphrases,
                **(super().counts(section) if self.result is not None else {})}


def keep(chosen: Path, model: Path) -> None:
    """`model` becomes a copy of `chosen`, so the run's model is where it always is; copied only when it is not one
    already (the same training.json), and swapped in whole, so a kill leaves the old copy or the new one."""
    from distill.result import STATE_DIR, SUMMARY

    summary = model / SUMMARY
    if summary.is_file() and summary.read_bytes() == (chosen / SUMMARY).read_bytes():
        return
    staging, old = model.with_name(model.name + ".new"), model.with_name(model.name + ".old")
    for folder in (staging, old):
        remove_tree(folder)
    shutil.copytree(chosen, staging, ignore=shutil.ignore_patterns(STATE_DIR))
    if model.exists():
        model.rename(old)
    staging.rename(model)
    remove_tree(old)


@dataclass(frozen=True)
class Choice:
    """The dev set's scores of the two models, and which is kept (the keyphrase mix on a tie)."""

    metric: str
    keyphrases: float  # the model of every record (model-keyphrases/)
    llm: Optional[float]  # the model of the LLM's records alone (None: nothing to choose between)
    chosen: str  # the kept model's folder
    skipped: str = ""  # why there is nothing to choose between

    def line(self) -> str:
        if self.llm is None:
            return f"{self.skipped or 'no second model'}: nothing to choose between, every record's model is kept"
        kept = "the LLM's records alone" if Path(self.chosen).name == LLM_MODEL else "every record"
        return (f"dev {self.metric} {self.keyphrases:.4f} with the keyphrase records, {self.llm:.4f} with the "
                f"LLM's records alone: the model of {kept} is kept (model/ is a copy of {Path(self.chosen).name}/)")


def choose(mixed: TrainResult, alternative: Optional[TrainResult], skipped: str = "") -> tuple[Choice, TrainResult]:
    """The model the dev set scores higher, the keyphrase mix unless the LLM's records alone beat it."""
    metric = mixed.metric
    mixed_score = mixed.best_dev[metric]
    if alternative is None:
        return Choice(metric, mixed_score, None, mixed.output_dir, skipped), mixed
    llm_score = alternative.best_dev[metric]
    kept = alternative if llm_score > mixed_score else mixed
    return Choice(metric, mixed_score, llm_score, kept.output_dir), kept
