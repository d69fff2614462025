"""Keyphrase queries: what a passage's query is, and how the generate stage writes, resumes and rewrites them
around the LLM's queries (through the real command and the tiny random LLM)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from synthgen.keyphrases import (FORM, LONG_WORDS, PER_PASSAGE, TASK, default_count, has_keyphrase_query, idf,
                                 keyphrase_queries, keyphrase_query, long_share)
from synthgen.records import Passage, Query, read_records
from test_corpus import assert_one_line_error, run_generate
from test_generate_cli import CORPUS, KNOWN_ANSWER
from test_relabel_cli import cli

PROGRESS = "generate.progress.jsonl"
# words every passage has, so their idf is 0 and they are never keyphrases
COMMON = "river valley mountain forest meadow village harbour bridge"


def test_the_query_is_the_rarest_repeated_words_in_their_order_of_appearance():
    rare = ["zeolite", "catalyst", "pore", "silica", "lattice"]
    text = f"{COMMON} {rare[0]} {rare[1]} {COMMON} {rare[2]} {rare[3]} {rare[4]} {rare[4]} quartz"
    others = [Passage(id=str(i), text=f"{COMMON} quartz basalt {i}") for i in range(9)]
    passages = [Passage(id="p", text=text), *others]
    weight = idf(passages)
    assert weight("river") == 0 and weight("zeolite") == pytest.approx(math.log(10))
    assert weight("quartz") == pytest.approx(0)  # in all ten passages
    # quartz (idf 0) loses to every rare word; the rare words come in the order the passage has them
    assert keyphrase_query(text, weight) == " ".join(rare)
    # lattice twice first; then four equally rare words once each, the tie going to the first in alphabetical order
    assert keyphrase_query(text, weight, size=2) == "catalyst lattice"


def test_more_often_wins_among_equally_rare_words_and_stopwords_numbers_short_words_never_count():
    text = ("the the the of 2024 2024 ab ab gamma gamma gamma delta epsilon zeta theta iota kappa lambda omega sigma "
            "alpha beta")
    weight = idf([Passage(id="0", text=text), Passage(id="1", text="nothing in common here")])
    # gamma three times; the rest once, equally rare: ties go to the alphabetically first (alpha beta delta
    # epsilon), the same query in every run; they come in the passage's order
    assert keyphrase_query(text, weight) == "gamma delta epsilon alpha beta"


def test_a_passage_with_too_few_content_words_asks_nothing_and_is_skipped():
    short = Passage(id="s", text="Bees make honey from nectar in summer.")
    long = Passage(id="l", text=" ".join(f"word{chr(97 + i)}{chr(97 + j)}" for i in range(4) for j in range(4)))
    weight = idf([short, long])
    assert keyphrase_query(short.text, weight) is None and not has_keyphrase_query(short)
    assert has_keyphrase_query(long)
    made = keyphrase_queries([short, long, short], 5, weight)
    assert made == [Query(id=f"l@{FORM}", passage_id="l", task=TASK, query=keyphrase_query(long.text, weight), form=FORM)]
    assert keyphrase_queries([long, long], 1, weight) == made  # at most `count`


def distinct_words(n: int, prefix: str = "word") -> str:
    return " ".join(f"{prefix}{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(n))


def test_a_corpus_gets_them_by_default_only_when_at_least_half_its_passages_are_long():
    long = Passage(id="l", text=distinct_words(LONG_WORDS))
    # as many words and more, but one distinct word short, and stopwords, numbers and short words do not count
    short = Passage(id="s", text=" ".join([distinct_words(LONG_WORDS - 1)] * 2 + ["the 1234 of an"] * 10))
    assert long_share([long, short]) == 0.5 and default_count(long_share([long, short])) == PER_PASSAGE
    assert long_share([long, short, short]) == pytest.approx(1 / 3) and default_count(long_share([long, short, short])) == 0
    assert default_count(long_share([])) == 0


def test_generate_without_a_number_lets_the_corpus_decide_and_writes_the_number_down(tmp_path, common):
    run = tmp_path / "run"  # the example corpus: every passage long
    assert cli([*common, "--out", run]) == 0
    manifest = json.loads((run / "manifest.json").read_text())["generate"]
    assert manifest["config"]["keyphrase_queries"] == PER_PASSAGE
    assert manifest["counts"]["keyphrases"] == min(4 * PER_PASSAGE, 22)

    corpus = tmp_path / "short"  # passages of 30 distinct content words: long enough for a query, not for the default
    corpus.mkdir()
    for i in range(6):
        (corpus / f"{i}.txt").write_text(distinct_words(30, prefix=f"topic{chr(97 + i)}") + ".")
    short = tmp_path / "short-run"
    at = common.index("--corpus") + 1
    assert cli([*common[:at], corpus, *common[at + 1:], "--out", short]) == 0
    manifest = json.loads((short / "manifest.json").read_text())["generate"]
    assert manifest["config"]["keyphrase_queries"] == 0 and manifest["counts"].get("keyphrases", 0) == 0
    assert FORM not in {q.form for q in queries(short)}
    assert cli([*common[:at], corpus, *common[at + 1:], "--out", short, "--keyphrase-queries", "1"]) == 0
    assert {q.form for q in queries(short)} >= {FORM}  # a number named is a number written


@pytest.fixture
def common(tmp_path, tiny_llm_path) -> list:
    template = tmp_path / "known.j2"
    template.write_text(KNOWN_ANSWER)
    return ["generate", "--corpus", CORPUS, "--llm", f"hf:{tiny_llm_path}", "--prompt", template, "--max-passages",
            "4", "--batch-size", "2", "--max-tokens", "8", "--quiet"]


def queries(run: Path) -> list[Query]:
    return list(read_records(run / "queries.jsonl", Query))


def test_generate_writes_them_last_for_the_first_passages_of_its_sample_and_rewrites_only_them(tmp_path, common):
    from synthgen.generate import GenerateConfig
    from synthgen.sampling import sample_order

    run = tmp_path / "run"
    assert cli([*common, "--out", run, "--keyphrase-queries", "2"]) == 0
    written = queries(run)
    llm, keyphrases = written[:4], written[4:]
    assert FORM not in {q.form for q in llm} and {q.form for q in keyphrases} == {FORM}
    passages = list(read_records(run / "passages.jsonl", Passage))
    order = sample_order(passages, GenerateConfig.sample, GenerateConfig.seed)
    weight = idf(passages)
    assert keyphrases == keyphrase_queries(order, 8, weight) and len(keyphrases) == 8
    assert [q.passage_id for q in llm] == [q.passage_id for q in keyphrases[:4]]  # the LLM's passages come first
    counts = json.loads((run / "manifest.json").read_text())["generate"]["counts"]
    assert counts["keyphrases"] == 8 and counts["written"] == 12 and counts["passages_prompted"] == 4
    progress = (run / PROGRESS).read_text().splitlines()
    assert json.loads(progress[-1])["items"] == [q.id for q in keyphrases] and len(progress) == 3

    # another number rewrites the keyphrase queries; the LLM's batches stay as they were
    assert cli([*common, "--out", run, "--keyphrase-queries", "1"]) == 0
    assert queries(run) == llm + keyphrases[:4]
    assert (run / PROGRESS).read_text().splitlines()[:2] == progress[:2]
    assert cli([*common, "--out", run, "--keyphrase-queries", "0"]) == 0
    assert queries(run) == llm and (run / PROGRESS).read_text().splitlines() == progress[:2]

    # a larger sample: the LLM's new batches first, then the keyphrase queries again, as a fresh run writes them
    assert cli([*common, "--out", run, "--keyphrase-queries", "2", "--max-passages", "6"]) == 0
    fresh = tmp_path / "fresh"
    assert cli([*common, "--out", fresh, "--keyphrase-queries", "2", "--max-passages", "6"]) == 0
    assert (run / "queries.jsonl").read_text() == (fresh / "queries.jsonl").read_text()


def test_a_kill_before_their_progress_line_or_a_corrupt_line_is_made_good(tmp_path, common):
    run = tmp_path / "run"
    three = [*common, "--out", run, "--keyphrase-queries", "3"]  # 12 of the corpus' 22 passages: not all of them
    assert cli(three) == 0
    whole = (run / "queries.jsonl").read_text()
    progress = (run / PROGRESS).read_text().splitlines(keepends=True)
    assert whole.count(f'"form": "{FORM}"') == 12
    (run / PROGRESS).write_text("".join(progress[:-1]))  # killed after writing the queries, before the log
    assert cli(three) == 0
    assert (run / "queries.jsonl").read_text() == whole
    lines = whole.splitlines(keepends=True)
    lines[-3] = '{"id": "torn\n'
    (run / "queries.jsonl").write_text("".join(lines))
    assert cli(three) == 0
    assert (run / "queries.jsonl").read_text() == whole


def test_a_negative_number_is_a_one_line_error(tmp_path):
    assert_one_line_error(run_generate("--corpus", str(CORPUS), "--out", "run", "--keyphrase-queries", "-1", cwd=tmp_path),
                          "--keyphrase-queries must be 0 or more")
