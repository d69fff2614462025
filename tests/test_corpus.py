"""Corpus ingestion: every format, chunking and ids, duplicates, and every bad input through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from synthgen.corpus import ChunkConfig, ingest, split_passages
from synthgen.errors import UserError
from synthgen.records import Passage, read_records

REPO = Path(__file__).resolve().parents[1]


def write_pdf(path: Path, paragraphs: list[str], title: str | None = None) -> None:
    """A real text PDF (Helvetica, one text line per row) written with pypdf, so tests need no PDF files."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    lines: list[str] = []
    for paragraph in paragraphs:
        lines += textwrap.wrap(" ".join(paragraph.split()), 88) + [""]
    writer = PdfWriter()
    font = writer._add_object(DictionaryObject({NameObject("/Type"): NameObject("/Font"),
                                                NameObject("/Subtype"): NameObject("/Type1"),
                                                NameObject("/BaseFont"): NameObject("/Helvetica")}))
    page = writer.add_blank_page(612, 792)
    body = " ".join("(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj T*" for line in lines)
    stream = DecodedStreamObject()
    stream.set_data(f"BT /F1 11 Tf 14 TL 72 740 Td {body} ET".encode("latin-1"))
    page[NameObject("/Contents")] = writer._add_object(stream)
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
    if title:
        writer.add_metadata({"/Title": title})
    with open(path, "wb") as handle:
        writer.write(handle)


def sentences(n: int, tag: str = "s") -> str:
    return " ".join(f"Sentence {tag}{i} tells one more small fact about the topic." for i in range(n))


def run_generate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real console entry point, as a user runs it (no model is needed for corpus errors)."""
    return subprocess.run([sys.executable, "-c", "from synthgen.cli import main; main()", "generate", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# ---- formats, titles, ids ------------------------------------------------------------------------------


def test_every_format_with_titles_and_stable_ids(tmp_path):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("# Markdown Title\n\nSome **bold** text with a [link](http://x.org).\n\n## Part\n\nMore.\n")
    (docs / "b.txt").write_text("Plain Title\n\nThe body of a plain text note.\n")
    (docs / "c.rst").write_text("RST Title\n=========\n\n.. note::\n\nBody of the rst file with ``code``.\n")
    (docs / "sub" / "d.html").write_text(
        "<html><head><title>HTML Title</title><style>p {color: red}</style></head><body><nav>Home | About</nav>"
        "<h1>Heading</h1><p>Visible paragraph.</p><script>var hidden = 1;</script><p>Second &amp; last.</p></body></html>")
    (docs / "sub" / "e.htm").write_text("<p>No title element here.</p>")
    write_pdf(docs / "f.pdf", ["PDF body text about diffusion in liquids."], title="PDF Meta Title")
    write_pdf(docs / "g-notes.pdf", ["A PDF without a title in its metadata."])
    (docs / "h.jsonl").write_text(json.dumps({"_id": "doc1", "title": "Beir Title", "text": "A BEIR document."}) + "\n"
                                  + json.dumps({"id": 7, "text": "An id/text document."}) + "\n")
    passages, report = ingest(docs)
    by_id = {p.id: p for p in passages}
    assert set(by_id) == {"a.md#0", "b.txt#0", "c.rst#0", "sub/d.html#0", "sub/e.htm#0", "f.pdf#0", "g-notes.pdf#0",
                          "doc1", "7"}
    assert [p.id for p in passages] == [p.id for p in ingest(docs)[0]]  # same order every time
    assert by_id["a.md#0"].title == "Markdown Title"
    assert "bold" in by_id["a.md#0"].text and "**" not in by_id["a.md#0"].text and "http" not in by_id["a.md#0"].text
    assert by_id["b.txt#0"].title == "Plain Title"
    assert by_id["c.rst#0"].title == "RST Title" and "====" not in by_id["c.rst#0"].text and "note::" not in by_id["c.rst#0"].text
    html = by_id["sub/d.html#0"]
    assert html.title == "HTML Title" and html.source == "sub/d.html"
    assert "Visible paragraph." in html.text and "Second & last." in html.text
    assert "hidden" not in html.text and "color" not in html.text and "Home" not in html.text
    assert by_id["sub/e.htm#0"].title == "e"
    assert by_id["f.pdf#0"].title == "PDF Meta Title" and "diffusion in liquids" in by_id["f.pdf#0"].text
    assert by_id["g-notes.pdf#0"].title == "g notes"
    assert by_id["doc1"].title == "Beir Title" and by_id["doc1"].source == "h.jsonl"
    assert by_id["7"].text == "An id/text document."
    assert report.files == 8 and report.documents == 9 and report.passages == 9


def test_single_file_and_the_example_corpus():
    passages, _ = ingest(REPO / "examples" / "corpus" / "sourdough" / "starter.md")
    assert [p.id for p in passages] == ["starter.md#0"] and passages[0].title == "Keeping a sourdough starter alive"
    passages, report = ingest(REPO / "examples" / "corpus")
    suffixes = {Path(p.source).suffix for p in passages}
    assert {".md", ".txt", ".html", ".pdf", ".rst"} <= suffixes
    assert 15 <= report.documents <= 30 and not report.skipped


# ---- chunking ------------------------------------------------------------------------------------------


def test_short_document_stays_whole_and_long_one_is_cut_on_sentences_with_overlap():
    config = ChunkConfig(size=100, overlap=20)
    assert split_passages(sentences(12), config) == [sentences(12)]  # 120 words: closest to one passage
    text = "\n\n".join(sentences(8, f"p{k}-") for k in range(10))  # 10 paragraphs of 80 words
    passages = split_passages(text, config)
    assert len(passages) == 8  # 800 words / 100 -> 8 passages
    for passage in passages:
        assert passage.startswith("Sentence") and passage.endswith("topic.")  # whole sentences only
        assert 50 <= len(passage.split()) <= 150 + config.overlap
    for before, after in zip(passages, passages[1:]):
        last_sentence = before.rsplit("Sentence", 1)[1]
        assert last_sentence in after  # the overlap repeats the previous passage's last sentence
    covered = " ".join(passages)
    for k in range(10):
        for i in range(8):
            assert f"p{k}-{i} " in covered  # nothing lost


def test_cuts_prefer_paragraph_ends():
    text = "\n\n".join(sentences(10, f"p{k}-") for k in range(4))  # 4 paragraphs of 100 words
    passages = split_passages(text, ChunkConfig(size=180, overlap=0))
    assert len(passages) == 2
    assert passages[0].endswith("Sentence p1-9 tells one more small fact about the topic.")
    assert passages[1].startswith("Sentence p2-0")


def test_a_sentence_without_ends_is_cut_into_windows():
    passages = split_passages("word " * 1000, ChunkConfig(size=100, overlap=10))
    assert len(passages) == 10 and all(len(p.split()) <= 150 for p in passages)


def test_token_sizes_count_the_given_tokenizer(minilm_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    text = "\n\n".join(sentences(8, f"p{k}-") for k in range(6))
    config = ChunkConfig(size=128, overlap=0, tokenizer=str(minilm_path))
    from synthgen.corpus import length_function

    passages = split_passages(text, config, length_function(config.tokenizer))
    counts = [len(tokenizer(p, add_special_tokens=False).input_ids) for p in passages]
    total = len(tokenizer(text, add_special_tokens=False).input_ids)
    assert len(passages) == round(total / 128)
    assert all(64 <= c <= 192 for c in counts), counts


def test_long_beir_document_keeps_its_id_first(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "42", "title": "T", "text": sentences(60)}) + "\n"
                      + json.dumps({"_id": "43", "title": "T", "text": sentences(5)}) + "\n")
    passages, _ = ingest(corpus, ChunkConfig(size=200, overlap=20))
    assert [p.id for p in passages] == ["42", "42#1", "42#2", "43"]  # 600 words -> 3 passages


def test_beir_title_without_text_is_a_passage_of_its_title(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(doc) + "\n" for doc in [
        {"_id": "1", "title": "Sorting records on magnetic tape", "text": ""},
        {"_id": "2", "title": "", "text": "   "},
        {"_id": "3", "title": "T", "text": "An abstract."}]))
    passages, _ = ingest(corpus)
    assert [(p.id, p.title, p.text) for p in passages] == [
        ("1", "", "Sorting records on magnetic tape"), ("3", "T", "An abstract.")]


def test_scifact_abstracts_stay_whole_with_the_default_size():
    from conftest import shared_dataset

    passages, report = ingest(shared_dataset("scifact") / "corpus.jsonl")
    whole = sum(1 for p in passages if "#" not in p.id)
    assert whole == report.documents == 5183
    assert len(passages) - whole < 0.02 * whole  # only the few abstracts over 450 words are cut


def test_bad_chunk_settings_are_user_errors():
    with pytest.raises(UserError):
        ChunkConfig(size=5)
    with pytest.raises(UserError):
        ChunkConfig(size=100, overlap=60)


# ---- duplicates and skipped files ----------------------------------------------------------------------


def test_exact_duplicates_removed_and_bad_files_skipped_and_counted(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "one.txt").write_text("The same text.\n")
    (docs / "two.txt").write_text("  the SAME   text.\n")  # equal up to case and spaces
    (docs / "three.txt").write_text("Different text.")
    (docs / "empty.md").write_text("  \n\n")
    (docs / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (docs / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me".encode("latin-1"))
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (docs / "data.csv").write_text("a,b\n1,2\n")
    (docs / ".hidden.txt").write_text("never read")
    passages, report = ingest(docs)
    assert [p.id for p in passages] == ["one.txt#0", "three.txt#0"]
    assert report.duplicates == 1
    assert report.skipped["empty"] == ["empty.md"]
    assert report.skipped["binary"] == ["image.txt"]
    assert report.skipped["undecodable"][0].startswith("latin1.txt")
    assert report.skipped["unreadable"][0].startswith("broken.pdf")
    assert report.skipped["unsupported"] == ["data.csv"]
    assert report.counts()["skipped_binary"] == 1


def test_duplicate_ids_across_jsonl_files_are_an_error(tmp_path):
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"_id": "1", "text": "a"}) + "\n")
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "1", "text": "b"}) + "\n")
    with pytest.raises(UserError) as caught:
        ingest(tmp_path)
    # full paths, as every other ingest error names its file: the message starts with the offending line
    assert str(caught.value).startswith(
        f"{tmp_path / 'queries.jsonl'}:1: passage id '1' is also used in {tmp_path / 'corpus.jsonl'}:1; ")


# ---- bad inputs through the real command line ----------------------------------------------------------


def test_empty_folder_is_a_one_line_error(tmp_path):
    (tmp_path / "docs").mkdir()
    assert_one_line_error(run_generate("--corpus", "docs", "--out", "run", cwd=tmp_path), "no usable text", "docs")


def test_folder_of_only_bad_files_is_a_one_line_error_that_counts_them(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "bin.txt").write_bytes(b"\x00\x01\x02\x03" * 10)
    (docs / "bad.md").write_bytes(b"\xff\xfe\xfa not utf8 \xc3\x28")
    (docs / "empty.txt").write_text("")
    result = run_generate("--corpus", str(docs), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert_one_line_error(result, "no usable text", "1 binary (bin.txt)", "1 empty (empty.txt)", "1 undecodable (bad.md")


def test_missing_corpus_is_a_one_line_error(tmp_path):
    assert_one_line_error(run_generate("--corpus", "nowhere", "--out", "run", cwd=tmp_path), "corpus not found: nowhere")


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "1", "text": "fine"}) + "\n" + '{"_id": "2", "text": \n')
    assert_one_line_error(run_generate("--corpus", str(corpus), "--out", "run", cwd=tmp_path),
                          f"{corpus}:2", "malformed JSON")
    corpus.write_text(json.dumps({"_id": "1", "text": "fine"}) + "\n" + json.dumps({"_id": "2", "body": "x"}) + "\n")
    assert_one_line_error(run_generate("--corpus", str(corpus), "--out", "run", cwd=tmp_path),
                          f"{corpus}:2", "missing 'text'")


def test_unwritable_output_dir_is_a_one_line_error(tmp_path):
    # a folder under a file cannot be created, whoever runs the test (root ignores permission bits)
    (tmp_path / "run").write_text("a file, not a folder")
    for out in ("run/sub", "run"):
        assert_one_line_error(run_generate("--corpus", str(REPO / "examples" / "corpus"), "--out", out, cwd=tmp_path),
                              f"cannot write to {out}")


def test_passages_file_is_written_before_any_model_loads(tmp_path):
    # an unknown backend fails at --llm parsing, after passages.jsonl is written
    result = run_generate("--corpus", str(REPO / "examples" / "corpus"), "--out", "run", "--llm", "nope:x", cwd=tmp_path)
    assert_one_line_error(result, "bad --llm 'nope:x'")
    passages = list(read_records(tmp_path / "run" / "passages.jsonl", Passage))
    assert len(passages) == len(ingest(REPO / "examples" / "corpus")[0])


# ---- HTML through an HTML5 parser, Sphinx sources ------------------------------------------------------


def test_an_html5_page_without_its_head_end_tag_keeps_its_body(tmp_path):
    # valid HTML5: </head> and <body> may be omitted; the former hand-written reader dropped the whole body
    page = tmp_path / "retard.html"
    page.write_text("<!doctype html><html lang=en><head><meta charset=utf-8><title>Cold retard</title>"
                    "<link rel=stylesheet href=site.css>\n<h1>Cold retard</h1><p>Proofing shaped loaves in the fridge "
                    "slows the yeast.<p>A cold loaf is easier to score.")
    (passage,), report = ingest(page)
    assert passage.title == "Cold retard" and not report.skipped
    assert passage.text.split("\n") == ["Cold retard", "Proofing shaped loaves in the fridge slows the yeast.",
                                         "A cold loaf is easier to score."]


def test_an_html_page_is_read_without_its_frame(tmp_path):
    page = tmp_path / "swarm.html"
    page.write_text(
        "<html><head><title>Swarm control</title><script>var x = 1;</script></head><body>"
        "<header><a href='/'>Bee Notes</a></header><nav><ul><li>Archive of all posts</li></ul></nav>"
        "<div role='navigation'>Previous topic</div><main><article><h1>Swarm control</h1>"
        "<p>A colony preparing to swarm builds <b>queen</b> cells.</p><table><tr><td>May</td><td>high</td></tr></table>"
        "</article></main><aside>Related posts</aside><footer>All rights reserved.</footer></body></html>")
    (passage,), _ = ingest(page)
    assert passage.text.split("\n") == ["Swarm control", "A colony preparing to swarm builds queen cells.", "May high"]


def test_sphinx_sources_are_read_as_restructuredtext(tmp_path):
    source = tmp_path / "_sources" / "asyncio-task.rst.txt"
    source.parent.mkdir()
    source.write_text(".. currentmodule:: asyncio\n\n\n====================\nCoroutines and Tasks\n"
                      "====================\n\nThis section outlines :ref:`high-level APIs <coro>` such as "
                      ":func:`asyncio.run`.\n\n.. contents::\n   :depth: 1\n   :local:\n\nTasks run coroutines "
                      "``concurrently``.\n")
    (passage,), _ = ingest(tmp_path)
    assert passage.title == "Coroutines and Tasks" and passage.id == "_sources/asyncio-task.rst.txt#0"
    assert passage.text.split("\n") == ["Coroutines and Tasks", "This section outlines high-level APIs such as "
                                         "asyncio.run.", "Tasks run coroutines concurrently."]


@pytest.mark.parametrize("text, expected", [
    ("Dr. Smith met the U.S. Army team. They agreed.", ["Dr. Smith met the U.S. Army team.", "They agreed."]),
    ("See Fig. 2 for the result. It is clear.", ["See Fig. 2 for the result.", "It is clear."]),
    ("Use a starter, e.g. this one. Feed it daily.", ["Use a starter, e.g. this one.", "Feed it daily."]),
    ("The pH was 3.5 at 10 a.m. on Monday. Then it rose!", ["The pH was 3.5 at 10 a.m. on Monday.", "Then it rose!"]),
])
def test_sentences_are_not_cut_at_abbreviations(text, expected):
    from synthgen.chunking import sentences

    assert sentences(text) == expected


def test_passages_are_not_cut_inside_an_abbreviation():
    from synthgen.chunking import ChunkConfig, split_passages

    text = " ".join(f"Dr. Smith of the U.S. Army measured sample {i} as in Fig. {i} and e.g. this one." for i in range(12))
    passages = split_passages(text, ChunkConfig(size=40, overlap=0))
    assert len(passages) > 3
    for passage in passages:
        assert passage.startswith("Dr. Smith") and passage.endswith("this one.")

