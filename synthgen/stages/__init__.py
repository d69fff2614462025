"""The stages of a run (budget, generate, relabel, train, choose): the only code that reads and writes a run folder.

Each stage records in manifest.json an identity: what decides its output (its options and a fingerprint of its
input files). `is_current` is the one rule that says whether a stage's recorded output still holds: the section
records the current identity, says the stage completed, and the output files are on disk. A stage that is not
current runs, and since its outputs then change, so do the identities of the stages after it. Inside a stage,
finished records are kept on disk as they are made, so a killed stage started again resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol


@dataclass
class StageReport:
    status: str  # ran | skipped
    seconds: float  # in this invocation (a skipped stage costs only its check)
    counts: dict[str, Any]


def is_current(section: dict[str, Any], identity: dict[str, Any], outputs: Iterable[Path]) -> bool:
    """Whether a stage's manifest section still describes its outputs (see the module docstring).

    A section without "complete" is written only when its stage has finished (relabel's), so it counts as complete.
    """
    return (section.get("identity") == identity and bool(section.get("complete", True))
            and all(path.is_file() for path in outputs))


class Stage(Protocol):
    """What the pipeline needs of a stage: its name, a check, a run, and what to report."""

    name: str

    def prepare(self) -> None:
        """Work done when the stage's turn comes, after the stages before it wrote their outputs."""

    def is_current(self, section: dict[str, Any]) -> bool: ...

    def run(self) -> dict[str, Any]:
        """Run (or resume) the stage; returns its manifest section."""

    def counts(self, section: dict[str, Any]) -> dict[str, Any]: ...

    def summary(self, section: dict[str, Any]) -> str | None:
        """The line printed after the stage ran (None: nothing)."""
