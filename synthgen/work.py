"""The stages' LLM work as picklable recipes an executor can run anywhere (synthgen.executors).

Each holds what an engine needs and nothing of the run folder: the LLM spec and the engine options, the
template, the settings. `load` builds the engine where the work runs (a Ray actor on another machine, or this
process), `run` does one unit on it exactly as the local path always has, so the records do not depend on where
they were made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from synthgen.errors import UserError
from synthgen.generate import BatchResult, GenerateConfig, Item, QueryGenerator
from synthgen.judges import JudgeBatch, Judgment, LLMJudges, judge_batch
from synthgen.prompts import Template


@dataclass(frozen=True)
class GenerateWork:
    """Units: batches of generation items; results: each batch's queries and log (generate.QueryGenerator)."""

    llm: Optional[str]
    template: Template
    config: GenerateConfig
    llm_options: dict[str, Any] = field(default_factory=dict)

    def load(self) -> QueryGenerator:
        from synthgen.llm import load_llm

        return QueryGenerator(load_llm(self.llm, **self.llm_options), self.template, self.config)

    def run(self, engine: QueryGenerator, unit: Sequence[Item]) -> BatchResult:
        return engine.run(unit)

    def close(self, engine: QueryGenerator) -> None:
        engine.llm.close()


@dataclass(frozen=True)
class JudgeWork:
    """Units: batches of (query, passage, judges) pairs; results: their judgments (judges.judge_batch)."""

    llm: Optional[str]
    judges: tuple[str, ...]
    words: int
    context_template: Optional[Path]
    settings: dict[str, str]  # the driver's judgment keys' settings: an engine with others would make other keys
    llm_options: dict[str, Any] = field(default_factory=dict)

    def load(self) -> LLMJudges:
        from synthgen.llm import load_llm

        judges = LLMJudges(load_llm(self.llm, **self.llm_options), self.judges, self.words, self.context_template)
        if judges.settings != self.settings:
            judges.llm.close()
            raise UserError(f"the judges loaded here ({judges.llm.name}) differ from those the driver keyed its "
                            "judgments with: are the model and --judge-prompt at the same paths on every machine?")
        return judges

    def run(self, engine: LLMJudges, unit: JudgeBatch) -> list[Judgment]:
        return judge_batch(engine, unit)

    def close(self, engine: LLMJudges) -> None:
        engine.llm.close()
