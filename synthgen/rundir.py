"""The run folder: resumable JSONL outputs and the manifest beside them.

Every stage appends finished records to its output file and flushes them to disk as it goes, so a run
killed at any point (even with SIGKILL) keeps every record it finished. Starting again, the stage reads
what is there, cuts off a torn last line, and skips the work already done. `manifest.json` holds one
section per stage (its configuration, models, template hashes, counts and timings); a stage's section
is rewritten atomically, so a kill never leaves half a manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, TypeVar

from synthgen.errors import UserError
from synthgen.records import dumps, from_dict

MANIFEST = "manifest.json"
R = TypeVar("R")


def prepare_dir(path: Path) -> Path:
    """Create an output folder and prove it is writable, before any slow work starts."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"cannot write to {path}: {exc.strerror or exc}") from None
    return path


def resume_records(path: Path, cls: type[R]) -> list[R]:
    """Records already in an output file from an earlier run; a torn last line is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(end)
        data = data[:end]
    records = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: malformed JSON in an earlier output ({exc.msg}); delete the file to start over") from None
        records.append(from_dict(cls, obj, f"{path}:{number}"))
    return records


class Appender:
    """Appends records as JSON lines and forces each batch to disk, so finished work survives a kill."""

    def __init__(self, path: Path):
        try:
            self._handle = open(path, "a", encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None

    def write(self, records: Iterable[Any]) -> None:
        lines = "".join(dumps(record) + "\n" for record in records)
        if lines:
            self._handle.write(lines)
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "Appender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: malformed JSON ({exc.msg})") from None


def write_manifest_section(run_dir: Path, stage: str, section: dict[str, Any]) -> None:
    """Replace one stage's section of manifest.json, atomically (write a temporary file, then rename)."""
    manifest = read_manifest(run_dir)
    manifest[stage] = section
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".manifest-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, ensure_ascii=False, default=str)
        handle.write("\n")
    os.replace(tmp, run_dir / MANIFEST)


def fingerprint(value: Any) -> str:
    """A short, stable hash of any JSON-able value (configurations, template texts)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def file_fingerprint(path: Path) -> str:
    """A short hash of a file's bytes: a later stage compares it to know whether its input changed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
