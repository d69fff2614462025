"""Resuming over damaged outputs: a corrupt line costs at most its batch (queries) or its pair (judgments), and bytes
that are not UTF-8 are an error naming file and line, never replaced silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_generate_cli import CORPUS, KNOWN_ANSWER
from test_relabel_cli import cli, make_run

PROGRESS = "generate.progress.jsonl"


@pytest.fixture
def generate_args(tmp_path, tiny_llm_path) -> list:
    template = tmp_path / "known.j2"
    template.write_text(KNOWN_ANSWER)
    return ["generate", "--corpus", CORPUS, "--llm", f"hf:{tiny_llm_path}", "--prompt", template, "--max-passages",
            "8", "--batch-size", "2", "--max-tokens", "8", "--keyphrase-queries", "0", "--quiet"]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def by_id(path: Path) -> dict[str, str]:
    return {json.loads(line)["id"]: line for line in lines(path)}


@pytest.fixture
def whole(tmp_path, generate_args) -> Path:
    run = tmp_path / "whole"
    assert cli([*generate_args, "--out", run]) == 0
    assert len(lines(run / "queries.jsonl")) == 8 and len(lines(run / PROGRESS)) == 4
    return run


def damaged_copy(whole: Path, name: str, line: int, text: bytes) -> Path:
    run = whole.parent / "damaged"
    run.mkdir()
    for f in ("queries.jsonl", PROGRESS, "manifest.json", "passages.jsonl"):
        (run / f).write_bytes((whole / f).read_bytes())
    raw = (run / name).read_bytes().split(b"\n")
    raw[line - 1] = text
    (run / name).write_bytes(b"\n".join(raw))
    return run


def test_a_corrupt_query_line_costs_only_its_batch(whole, generate_args, capsys):
    run = damaged_copy(whole, "queries.jsonl", 4, b'{"id": "half a li')  # the second query of the second batch
    progress = lines(run / PROGRESS)
    assert cli([*generate_args, "--out", run]) == 0
    assert "1 corrupt line" in capsys.readouterr().err
    assert by_id(run / "queries.jsonl") == by_id(whole / "queries.jsonl")  # same seeds: the same queries again
    after = lines(run / PROGRESS)
    # the other three batches were kept as they were (their recorded timings are those of the first run)
    assert after[:3] == [progress[0], *progress[2:]] and len(after) == 4
    assert json.loads(after[3])["items"] == json.loads(progress[1])["items"]
    counts = json.loads((run / "manifest.json").read_text())["generate"]["counts"]
    assert counts == json.loads((whole / "manifest.json").read_text())["generate"]["counts"]


def test_a_corrupt_progress_line_costs_only_its_batch(whole, generate_args):
    run = damaged_copy(whole, PROGRESS, 3, b"garbage")
    assert cli([*generate_args, "--out", run]) == 0
    assert by_id(run / "queries.jsonl") == by_id(whole / "queries.jsonl")
    after = lines(run / PROGRESS)
    assert after[:3] == [lines(whole / PROGRESS)[i] for i in (0, 1, 3)]


def test_bytes_that_are_not_utf8_are_an_error_naming_file_and_line(whole, generate_args, capsys):
    run = damaged_copy(whole, "queries.jsonl", 5, b'{"id": "\xff\xfe"}')
    before = (run / "queries.jsonl").read_bytes()
    assert cli([*generate_args, "--out", run]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(f"error: {run / 'queries.jsonl'}:5: bytes that are not UTF-8")
    assert (run / "queries.jsonl").read_bytes() == before


def test_a_corrupt_judgment_is_skipped_counted_and_judged_again(tmp_path, minilm_path, tiny_llm_path, capsys):
    opts = ["--embedder", minilm_path, "--llm", f"hf:{tiny_llm_path}", "--cache-dir", tmp_path / "cache", "--quiet",
            "--judges", "ql,dense", "--top-k", "4", "--judge-depth", "2"]
    run = make_run(tmp_path / "run")
    assert cli(["relabel", "--run", run, *opts]) == 0
    store = run / "judgments.jsonl"
    judged, train = lines(store), (run / "train.jsonl").read_text()
    damaged = [*judged[:5], '{"query_id": 7, "passage_id": "x"}', *judged[6:]]  # JSON, but not a judgment
    store.write_text("\n".join(damaged) + "\n")
    capsys.readouterr()
    assert cli(["relabel", "--run", run, *opts]) == 0
    assert "1 corrupt line skipped" in capsys.readouterr().err
    counts = json.loads((run / "manifest.json").read_text())["relabel"]["counts"]
    assert counts["corrupt_judgments_skipped"] == 1 and counts["llm_pairs_judged"] == 1
    assert (run / "train.jsonl").read_text() == train
    scores = lambda rows: {(j := json.loads(r))["key"]: j["score"] for r in rows}  # noqa: E731
    again, first = scores(lines(store)), scores(judged)
    assert len(lines(store)) == len(judged) and again.keys() == first.keys()
    # the one pair judged again, alone now instead of in a padded batch: the same score up to batching's rounding
    assert all(again[k] == pytest.approx(first[k], abs=1e-3) for k in first)
