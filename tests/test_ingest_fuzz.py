"""Hostile files: a few hundred generated ones (random bytes under text extensions, huge single lines, deeply nested
HTML, empty and truncated PDFs, JSONL with wrong types) go through ingestion without a traceback: every file is read
or skipped with a counted reason, and a broken JSONL line is a one-line error naming file and line.

The draw is random on every run; its seed is in the failure message and FUZZ_SEED replays it.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from synthgen.corpus import ingest
from synthgen.errors import UserError
from test_corpus import write_pdf

REASONS = {"empty", "binary", "undecodable", "unreadable", "unsupported"}
TEXT = [".txt", ".md", ".rst", ".html", ".htm", ".rst.txt"]
WORDS = "bees honey wax comb nectar dough flour crumb Dr. e.g. U.S. Fig. 2 ( ) [ ] < > & ; : , . ! ? \" ' ` * _ # = -".split()


def fuzz_seed() -> int:
    return int(os.environ.get("FUZZ_SEED", random.SystemRandom().randrange(2**32)))


def valid_pdf(tmp_path: Path) -> bytes:
    path = tmp_path / "valid.pdf"
    write_pdf(path, ["A page of text about bees and honey."] * 3, title="Bees")
    return path.read_bytes()


def make_files(folder: Path, rng: random.Random, pdf: bytes) -> int:
    folder.mkdir()
    count = 0

    def put(name: str, data: bytes) -> None:
        nonlocal count
        (folder / name).write_bytes(data)
        count += 1

    for i in range(120):  # random bytes under every text extension
        put(f"bytes{i}{rng.choice(TEXT)}", rng.randbytes(rng.choice([1, 10, 500, 5000])))
    for i in range(60):  # random words and markup characters, valid UTF-8
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3000)))
        put(f"words{i}{rng.choice(TEXT)}", text.encode("utf-8"))
    for i in range(20):  # text in other encodings and with odd code points
        text = "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0x80, 0x2FFF), 0xFEFF, 0x200B]))
                       for _ in range(rng.randint(1, 2000)))
        put(f"unicode{i}{rng.choice(TEXT)}", text.encode(rng.choice(["utf-8", "utf-16", "utf-8-sig", "utf-32"]), "replace"))
    for i in range(3):  # huge single lines, no paragraph or sentence end
        put(f"oneline{i}{rng.choice(TEXT)}", (" ".join(rng.choice(WORDS[:8]) for _ in range(150_000))).encode())
    depth = rng.choice([1_000, 20_000, 100_000])
    put("nested.html", ("<div>" * depth + "deep text" + "</div>" * rng.randint(0, depth)).encode())
    put("nested-inline.htm", ("<b><i>" * 5000 + "bold" + "</span>" * 10).encode())
    put("unclosed.html", b"<html><head><title>x<script>if (a < b) {</script><p>text <!-- never closed")
    for i in range(15):  # truncated PDFs, empty PDFs, garbage PDFs
        put(f"cut{i}.pdf", pdf[: rng.randint(0, len(pdf) - 1)])
    put("empty.pdf", b"")
    put("garbage.pdf", b"%PDF-1.7\n" + rng.randbytes(3000))
    for name, data in (("empty.txt", b""), ("blank.md", b" \n\t\n"), ("nul.txt", b"text\0more"), ("bom.md", b"\xef\xbb\xbf")):
        put(name, data)
    return count


def test_hostile_files_are_read_or_skipped_with_a_reason(tmp_path):
    seed = fuzz_seed()
    rng = random.Random(seed)
    folder = tmp_path / "corpus"
    total = make_files(folder, rng, valid_pdf(tmp_path))
    assert total >= 200
    passages, report = ingest(folder)
    skipped = {reason: len(paths) for reason, paths in report.skipped.items()}
    assert set(skipped) <= REASONS, (seed, skipped)
    assert report.files + sum(skipped.values()) == total, (seed, report.counts())
    assert report.files > 0 and all(p.text.strip() and "\0" not in p.text for p in passages), seed
    assert len({p.id for p in passages}) == len(passages)


@pytest.mark.parametrize("line", [
    '{"_id": 1, "text": 5}', '{"_id": null, "text": "x"}', '{"_id": "a", "text": ["x"]}', '["_id", "text"]',
    '{"_id": "a", "text": "t", "title": {"x": 1}}', '"just a string"', '{"_id": {"x": 1}, "text": "t"}',
    '{"_id": "a", "text": "x"', '{"_id": "a", "text": "\\ud800"}', "nan", '{"_id": true, "text": "t"}',
])
def test_jsonl_with_wrong_types_is_one_line_naming_file_and_line(tmp_path, line):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "ok", "text": "A fine first line."}) + "\n" + line + "\n")
    try:
        passages, _ = ingest(corpus)
    except UserError as exc:
        message = str(exc)
        assert message.startswith(f"{corpus}:2: ") and "\n" not in message, message
    else:  # a line read as a document must be a real one
        assert all(isinstance(p.text, str) and p.text.strip() for p in passages)


def test_random_jsonl_lines_never_raise_anything_but_a_user_error(tmp_path):
    seed = fuzz_seed()
    rng = random.Random(seed)
    values = [None, True, 0, -1.5, "", "text", [], ["x"], {}, {"a": 1}, "x" * 10_000]
    for i in range(80):
        rows = []
        for _ in range(rng.randint(1, 5)):
            row = {key: rng.choice(values) for key in rng.sample(["_id", "id", "title", "text", "extra"], rng.randint(0, 5))}
            rows.append(json.dumps(row) if rng.random() < 0.9 else json.dumps(row)[: rng.randint(0, 20)])
        path = tmp_path / f"f{i}.jsonl"
        path.write_text("\n".join(rows) + "\n")
        try:
            ingest(path)
        except UserError as exc:
            assert str(exc).startswith(str(path)) or "no usable text" in str(exc), (seed, str(exc))


def test_an_unreadable_file_is_skipped_not_fatal(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "good.txt").write_text("Bees make honey.")
    (folder / "loop.md").symlink_to(folder / "loop.md")  # a link to itself: reading it fails
    os.mkfifo(folder / "pipe.txt")  # reading a FIFO would wait forever
    passages, report = ingest(folder)
    assert [p.id for p in passages] == ["good.txt#0"]
    assert sorted(report.skipped["unreadable"]) == ["loop.md (not a regular file)", "pipe.txt (not a regular file)"]
