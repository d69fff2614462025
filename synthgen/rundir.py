"""The run folder: resumable JSONL outputs, the manifest beside them, and the one atomic file writer.

Every stage appends finished records to its output file and flushes them to disk as it goes, so a run
killed at any point (even with SIGKILL) keeps every record it finished. Starting again, the stage reads
what is there, cuts off a torn last line, and skips the work already done. `manifest.json` holds one
section per stage (its configuration, models, template hashes, counts and timings); a stage's section
is rewritten atomically, so a kill never leaves half a manifest. Every file written whole (here, in the
model folder, in the embedding cache) goes through `atomic_file`: a reader sees the old file or the new one,
never a torn one, even after a power loss (the data is fsynced before the rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, TypeVar

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


def resume_lines(path: Path, cls: type[R]) -> list[R | None]:
    """One entry per line of an output file from an earlier run: its record, or None where the line is corrupt
    (not JSON, or not a record); a torn last line is cut off the file. Bytes that are not UTF-8 are an error
    naming file and line: they mean a damaged disk or a foreign file, which no stage should guess about."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        try:
            with open(path, "r+b") as handle:
                handle.truncate(end)
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
        data = data[:end]
    entries: list[R | None] = []
    for number, raw in enumerate(data.split(b"\n")[:-1], start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{path}:{number}: bytes that are not UTF-8 in an earlier output; delete the file "
                            "to start over") from None
        if not line.strip():
            continue
        try:
            entries.append(from_dict(cls, json.loads(line), f"{path}:{number}"))
        except (json.JSONDecodeError, UserError):
            entries.append(None)
    return entries


def resume_records(path: Path, cls: type[R]) -> list[R]:
    """The sound records of an earlier output file (see `resume_lines`); corrupt lines are left out."""
    return [record for record in resume_lines(path, cls) if record is not None]


class Appender:
    """Appends records as JSON lines and forces each batch to disk, so finished work survives a kill.

    Unbuffered: a write that fails (a full disk) leaves nothing pending that a later close would try again, and
    what reached the file is at worst a torn last line, which resuming cuts off."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None

    def write(self, records: Iterable[Any]) -> None:
        data = memoryview("".join(dumps(record) + "\n" for record in records).encode("utf-8"))
        try:
            while data:
                data = data[os.write(self._fd, data):]
            os.fsync(self._fd)
        except OSError as exc:
            raise UserError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        os.close(self._fd)

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
    """Replace one stage's section of manifest.json, atomically."""
    manifest = read_manifest(run_dir)
    manifest[stage] = section
    write_json(run_dir / MANIFEST, manifest)


@contextmanager
def atomic_file(path: Path, binary: bool = False) -> Iterator[IO]:
    """A handle on a temporary file beside `path` that replaces `path` only once written and synced."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a file too large: the old file stays, the temporary one goes
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: Path, records: Iterable[Any]) -> None:
    """Replace a JSONL file with `records` (dataclasses or dicts), atomically."""
    with atomic_file(path) as handle:
        handle.writelines(dumps(record) + "\n" for record in records)


def write_json(path: Path, value: Any) -> None:
    """Replace a JSON file (indented, UTF-8), atomically."""
    write_text(path, json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    with atomic_file(path) as handle:
        handle.write(text)


def remove_tree(path: Path) -> None:
    """Delete a folder if it is there; a failure is an error naming it (a half-deleted checkpoint must not pass)."""
    import shutil

    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise UserError(f"cannot remove {exc.filename or path}: {exc.strerror or exc}") from None


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
