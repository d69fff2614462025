"""Documents on disk -> passages with stable ids: reading each format, chunking, and removing duplicates.

Ids are what every later stage (queries, candidates, training pairs) refers to, so they must not move when a
run is repeated: files are read in sorted order, and a passage is named `relative/path#n` (n counts from 0).
A JSONL corpus (BEIR's `_id`/`title`/`text`, or `id`/`text`) already names its documents: a document that fits
in one passage keeps its own id, so the corpus' qrels apply unchanged; a longer one is named `_id`, `_id#1`,
`_id#2`, ... (the first passage keeps the bare id for the same reason).

Chunking is synthgen.chunking's.

Bad files never stop a run: empty, binary, undecodable and unreadable files are skipped, counted, and named in
the report (the command prints them). Only a malformed JSONL line is an error, since it means the corpus
file itself is broken and silently losing documents from it would go unnoticed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from synthgen.chunking import ChunkConfig, length_function, split_passages
from synthgen.errors import UserError
from synthgen.html import html_text
from synthgen.records import Passage, iter_corpus_lines
from synthgen.text import normalize

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".html", ".htm"}
SUFFIXES = TEXT_SUFFIXES | {".pdf", ".jsonl"}


@dataclass
class IngestReport:
    files: int = 0  # files read successfully
    documents: int = 0
    passages: int = 0
    duplicates: int = 0  # passages dropped because an earlier one had the same text
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> relative paths

    def skip(self, reason: str, path: str) -> None:
        self.skipped.setdefault(reason, []).append(path)

    def counts(self) -> dict[str, int]:
        skipped = {f"skipped_{reason}": len(paths) for reason, paths in sorted(self.skipped.items())}
        return {"files": self.files, "documents": self.documents, "passages": self.passages,
                "duplicates": self.duplicates, **skipped}


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str
    source: str
    own_id: bool  # the id is the corpus' own (JSONL): its first passage keeps it bare
    line: int = 0  # JSONL line it came from, for messages

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


def ingest(path: Path, config: ChunkConfig = ChunkConfig()) -> tuple[list[Passage], IngestReport]:
    """Every passage of a file or folder, in a stable order, without exact duplicates."""
    from tqdm import tqdm

    path = Path(path)
    if not path.exists():
        raise UserError(f"corpus not found: {path}")
    report = IngestReport()
    if path.is_file():
        if path.suffix.lower() not in SUFFIXES:
            raise UserError(f"unsupported corpus file type '{path.suffix}': expected one of {', '.join(sorted(SUFFIXES))}")
        files, root = [path], path.parent
    else:
        files, root = list_files(path, report), path
    length = length_function(config.tokenizer)
    passages: list[Passage] = []
    seen_ids: dict[str, str] = {}
    seen_texts: set[str] = set()
    for file in tqdm(files, desc="reading corpus", unit="file", disable=len(files) < 50):
        rel = file.relative_to(root).as_posix()
        documents = read_documents(file, rel, report)
        if documents is None:
            continue
        report.files += 1
        for doc in documents:
            report.documents += 1
            for n, text in enumerate(split_passages(doc.text, config, length)):
                key = normalize(text)
                if key in seen_texts:
                    report.duplicates += 1
                    continue
                seen_texts.add(key)
                pid = doc.id if (doc.own_id and n == 0) else f"{doc.id}#{n}"
                if pid in seen_ids:
                    raise UserError(f"{root / doc.where}: passage id '{pid}' is also used in {root / seen_ids[pid]}; ids must be "
                                    "unique (point --corpus at the corpus file if the folder holds other JSONL files)")
                seen_ids[pid] = doc.where
                passages.append(Passage(id=pid, text=text, title=doc.title, source=doc.source))
    report.passages = len(passages)
    if not passages:
        summary = ", ".join(f"{len(v)} {k} ({', '.join(v[:3])}{', ...' * (len(v) > 3)})"
                            for k, v in sorted(report.skipped.items())) or "no files"
        raise UserError(f"no usable text in {path} ({summary}); supported: {', '.join(sorted(SUFFIXES))}")
    return passages, report


def list_files(root: Path, report: IngestReport) -> list[Path]:
    """Supported files under `root`, sorted by relative path; hidden files and folders are left out."""
    files = []
    for file in sorted(root.rglob("*")):
        rel = file.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or file.is_dir():
            continue
        if not file.is_file():  # a broken link, a FIFO (reading it would wait forever), a socket
            report.skip("unreadable", f"{rel.as_posix()} (not a regular file)")
            continue
        if file.suffix.lower() in SUFFIXES:
            files.append(file)
        else:
            report.skip("unsupported", rel.as_posix())
    return files


# ---- reading -------------------------------------------------------------------------------------------


def read_documents(file: Path, rel: str, report: IngestReport) -> list[Document] | None:
    """The documents in one file, or None (after recording why) when the file is skipped."""
    suffix = file.suffix.lower()
    try:
        data = file.read_bytes()
    except OSError as exc:
        report.skip("unreadable", f"{rel} ({exc.strerror or exc})")
        return None
    if not data.strip():
        report.skip("empty", rel)
        return None
    if suffix == ".pdf":
        return read_pdf(file, rel, report)
    if b"\0" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        report.skip("binary", rel)
        return None
    text = decode(data)
    if text is None:
        report.skip("undecodable", f"{rel} (not UTF-8, UTF-16 or UTF-32 text)")
        return None
    if "\0" in text:  # NUL characters past the first 8 KB, or in decoded UTF-16/32: not a text document
        report.skip("binary", rel)
        return None
    if suffix == ".jsonl":
        docs = read_jsonl(file, rel)
    else:
        if file.name.lower().endswith(".rst.txt"):  # Sphinx ships its sources so (_sources/*.rst.txt)
            suffix = ".rst"
        title, body = {".md": markdown_text, ".markdown": markdown_text, ".rst": rst_text,
                       ".html": html_text, ".htm": html_text}.get(suffix, plain_text)(text)
        docs = [Document(rel, title or stem_title(file), body, rel, own_id=False)] if body.strip() else []
    if not docs:
        report.skip("empty", rel)
        return None
    return docs


def decode(data: bytes) -> str | None:
    for bom, encoding in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
                          (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            break
    else:
        encoding = "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return None


def stem_title(file: Path) -> str:
    stem = file.name[: -len(".rst.txt")] if file.name.lower().endswith(".rst.txt") else file.stem
    return re.sub(r"[-_]+", " ", stem).strip()


def plain_text(text: str) -> tuple[str, str]:
    """Title from a short first line standing alone (followed by a blank line), as in most notes and READMEs."""
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    alone = len(lines) > 1 and not lines[1].strip()
    if alone and len(first.split()) <= 15 and not first.endswith((".", ",", ";")):
        return first, text
    return "", text


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_FENCE = re.compile(r"^\s*(```|~~~)")
_MD_LINK = re.compile(r"!\[[^\]]*\]\([^)]*\)|\[([^\]]*)\]\([^)]*\)")
_MD_MARKS = re.compile(r"(\*\*|__|`)")


def markdown_text(text: str) -> tuple[str, str]:
    """Title from the first heading; markup that is not words (link targets, images, emphasis) removed."""
    title, lines = "", []
    for line in text.splitlines():
        if _MD_FENCE.match(line):
            continue
        heading = _MD_HEADING.match(line)
        if heading:
            if not title:
                title = clean_markdown(heading.group(2))
            lines.extend(["", clean_markdown(heading.group(2)), ""])  # a heading is a paragraph of its own
        else:
            lines.append(clean_markdown(line))
    return title, "\n".join(lines)


def clean_markdown(line: str) -> str:
    line = _MD_LINK.sub(lambda m: m.group(1) or "", line)
    return _MD_MARKS.sub("", line)


_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.:_])\1{2,}\s*$")


_RST_ROLE = re.compile(r":[\w.+-]+(?::[\w.+-]+)*:`([^`]*)`")  # :func:`asyncio.run`, :ref:`text <target>`
_RST_OPTION = re.compile(r"^\s+:[\w -]+:(\s.*)?$")  # a directive's options (   :maxdepth: 2)


def _role_text(match: re.Match) -> str:
    inner = match.group(1)
    inner = re.sub(r"\s*<[^>]*>$", "", inner) or inner  # `text <target>`: the text
    return inner.lstrip("~!")  # `~a.b` shows b in Sphinx; the whole name is kept, it carries the words


def rst_text(text: str) -> tuple[str, str]:
    """Title from the first underlined section title; underlines, directive lines and their options removed,
    roles (:func:`name`) reduced to their text."""
    title, lines = "", []
    raw = text.splitlines()
    for i, line in enumerate(raw):
        if _RST_UNDERLINE.match(line):
            if not title and i > 0 and raw[i - 1].strip() and not _RST_UNDERLINE.match(raw[i - 1]):
                title = _RST_ROLE.sub(_role_text, raw[i - 1].strip()).replace("``", "")
            lines.append("")
        elif line.lstrip().startswith(".. ") or _RST_OPTION.match(line):
            lines.append("")
        else:
            lines.append(_RST_ROLE.sub(_role_text, line).replace("``", "").replace("**", ""))
    return title, "\n".join(lines)


def read_pdf(file: Path, rel: str, report: IngestReport) -> list[Document] | None:
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about odd but readable files are noise here
    try:
        reader = PdfReader(file)
        if reader.is_encrypted:
            reader.decrypt("")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except (PyPdfError, OSError, ValueError, KeyError, TypeError) as exc:
        report.skip("unreadable", f"{rel} (PDF: {exc})")
        return None
    text = "\n\n".join(pages)
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", text)  # words hyphenated across lines
    if not text.strip():
        report.skip("empty", f"{rel} (PDF without a text layer)")
        return None
    return [Document(rel, str(meta_title).strip() or stem_title(file), text, rel, own_id=False)]


def read_jsonl(file: Path, rel: str) -> list[Document]:
    """BEIR corpus lines (`_id`, `title`, `text`) or `{id, text}`; a line with neither text nor title is skipped.

    A line with a title and no text is a document of its title: half of CACM's records are titles alone, and
    evaluation, which reads title and text, retrieves them; skipped here they would get no query and be no
    retriever's candidate."""
    return [Document(doc_id, "", title.strip(), rel, own_id=True, line=number) if not text.strip()
            else Document(doc_id, title.strip(), text, rel, own_id=True, line=number)
            for number, doc_id, title, text in iter_corpus_lines(file) if text.strip() or title.strip()]
