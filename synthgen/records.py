"""Typed records that flow between stages, and their JSONL form.

Each stage reads and writes these, one JSON object per line, so that any stage can be run, inspected or
replaced on its own. Unknown fields in input lines are ignored (files from other tools carry extras);
a missing or mistyped required field is a `UserError` naming the file and line.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, TypeVar

from synthgen.errors import UserError


@dataclass(frozen=True)
class Passage:
    id: str  # stable: "relative/path#n", or the corpus' own _id
    text: str
    title: str = ""
    source: str = ""  # relative path of the file it came from


@dataclass(frozen=True)
class Query:
    id: str  # stable: f"{passage_id}@{n}" for the n-th query of a passage
    passage_id: str  # the seed passage the query was written for
    task: str  # the retrieval task description the LLM invented (Gecko)
    query: str
    form: str  # requested query form: question, keywords, claim, ...


@dataclass
class TrainingExample:
    """FlagEmbedding's exchange shape, plus provenance; what `relabel` writes and `distill` reads."""

    query: str
    pos: list[str]
    neg: list[str] = field(default_factory=list)
    pos_ids: list[str] = field(default_factory=list)
    neg_ids: list[str] = field(default_factory=list)
    pos_scores: list[float] = field(default_factory=list)
    neg_scores: list[float] = field(default_factory=list)
    task: str = ""
    query_id: str = ""
    seed_id: str = ""


R = TypeVar("R")


def to_dict(record: Any) -> dict[str, Any]:
    return dataclasses.asdict(record)


def _check_type(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_check_type(value, h) for h in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_check_type(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return isinstance(value, hint)


def from_dict(cls: type[R], data: Any, where: str) -> R:
    """Build a record from a parsed JSON object; `where` ("file:line") prefixes every error."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise UserError(f"{where}: missing field '{f.name}'")
            continue
        value = data[f.name]
        if not _check_type(value, hints[f.name]):
            raise UserError(f"{where}: field '{f.name}' has the wrong type ({type(value).__name__})")
        kwargs[f.name] = value
    return cls(**kwargs)


def iter_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed object) for each non-blank line; malformed JSON names file and line."""
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path}:{number}: malformed JSON ({exc.msg})") from None
        except UnicodeDecodeError:
            raise UserError(f"{path}: not UTF-8 text") from None


def iter_corpus_lines(path: Path) -> Iterator[tuple[int, str, str, str]]:
    """(line number, id, title, text) of a BEIR corpus.jsonl (`_id`, `title`, `text`; `id` also taken).

    Ingestion and evaluation read corpora through this one reader, so a file one accepts the other accepts."""
    for number, obj in iter_json_lines(path):
        where = f"{path}:{number}"
        if not isinstance(obj, dict):
            raise UserError(f"{where}: expected a JSON object with '_id' (or 'id') and 'text'")
        doc_id = obj.get("_id", obj.get("id"))
        text = obj.get("text")
        if doc_id is None or isinstance(doc_id, (dict, list, bool)) or str(doc_id) == "":
            raise UserError(f"{where}: missing '_id' (or 'id')")
        if not isinstance(text, str):
            raise UserError(f"{where}: missing 'text' (a string)")
        title = obj.get("title") or ""
        if not isinstance(title, str):
            raise UserError(f"{where}: 'title' must be a string")
        yield number, str(doc_id), title, text


def count_records(path: Path) -> int:
    """Records in a JSONL file (its non-blank lines, unparsed: a count, not a check); 0 when it does not exist."""
    if not path.is_file():
        return 0
    with open(path, encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def read_records(path: Path, cls: type[R]) -> Iterator[R]:
    for number, obj in iter_json_lines(path):
        yield from_dict(cls, obj, f"{path}:{number}")


def dumps(record: Any) -> str:
    return json.dumps(to_dict(record) if dataclasses.is_dataclass(record) else record, ensure_ascii=False)
