"""log.jsonl of a training run: one JSON line per logged step or dev evaluation, read by resume and by the report.

A line that does not parse (a torn last line from a kill, a damaged disk) is skipped and counted, never a reason
to drop the lines after it: a resumed run keeps every sound line up to its checkpoint, and the plot draws them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from synthgen.rundir import write_text

LOG = "log.jsonl"


def read_log(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The sound records of a log (objects with a numeric "step"), and how many lines were not."""
    records, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
        else:
            bad += 1
    return records, bad


class Logbook:
    """Appends records to log.jsonl; on resume, records after the checkpoint's step and unreadable lines go."""

    def __init__(self, path: Path, resume_step: int | None):
        kept: list[dict[str, Any]] = []
        if resume_step is not None and path.exists():
            records, bad = read_log(path)
            kept = [r for r in records if r["step"] <= resume_step]
            if bad > 1:  # one is the torn last line a kill leaves; more is damage worth saying
                print(f"warning: {path}: {bad} unreadable lines skipped", file=sys.stderr)
        write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
        self.handle = open(path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()
