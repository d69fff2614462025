"""The choose stage's parts that need no training (synthgen.stages.choose): the LLM's records, and the choice; the
stage itself runs in test_pipeline."""

from __future__ import annotations

import json

import pytest

from distill.result import TrainResult
from synthgen.stages.choose import LLM_MODEL, choose, keep, write_llm_records


def record(query_id: str) -> dict:
    return {"query": f"q {query_id}", "pos": [f"p {query_id}"], "query_id": query_id}


def test_the_llm_records_are_train_jsonl_less_the_keyphrase_records_in_order(tmp_path):
    rows = [record("7@0"), record("7@keyphrases"), record("3@1"), record("9@keyphrases"), record("1@0")]
    train, out = tmp_path / "train.jsonl", tmp_path / "train-llm.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    assert write_llm_records(train, out) == (3, 2)
    assert [json.loads(line)["query_id"] for line in out.read_text().splitlines()] == ["7@0", "3@1", "1@0"]
    written = out.stat().st_mtime_ns
    assert write_llm_records(train, out) == (3, 2) and out.stat().st_mtime_ns == written  # unchanged: not rewritten
    train.write_text(json.dumps(record("7@keyphrases")) + "\n")
    assert write_llm_records(train, out) == (0, 1) and out.read_text() == ""


def result(folder: str, score: float) -> TrainResult:
    return TrainResult(output_dir=folder, steps=3, metric="ndcg@10", best_step=3, base_dev={"ndcg@10": 0.5},
                       best_dev={"ndcg@10": score}, beats_base=score > 0.5, beir=None, data={})


@pytest.mark.parametrize("mixed, llm, kept", [(0.61, 0.60, "model"), (0.60, 0.61, LLM_MODEL), (0.60, 0.60, "model")])
def test_the_dev_set_keeps_the_higher_model_and_the_keyphrase_mix_on_a_tie(mixed, llm, kept):
    choice, chosen = choose(result("run/model", mixed), result(f"run/{LLM_MODEL}", llm))
    assert chosen.output_dir == choice.chosen == f"run/{kept}"
    assert (choice.keyphrases, choice.llm) == (mixed, llm)
    assert ("LLM's records alone is kept" in choice.line()) == (kept == LLM_MODEL)


def test_without_a_second_model_the_mix_is_kept():
    choice, chosen = choose(result("run/model", 0.6), None)
    assert chosen.output_dir == "run/model" and choice.llm is None and "nothing to choose" in choice.line()


def test_the_kept_model_is_copied_whole_and_only_when_it_changed(tmp_path):
    first, second, model = tmp_path / "a", tmp_path / "b", tmp_path / "model"
    for folder, text in ((first, "one"), (second, "two")):
        (folder / "train_state").mkdir(parents=True)
        (folder / "training.json").write_text(text)
        (folder / "weights").write_text(text * 3)
    keep(first, model)
    assert sorted(p.name for p in model.iterdir()) == ["training.json", "weights"]  # no training state
    (model / "weights").write_text("touched")
    keep(first, model)  # the same training.json: left as it is
    assert (model / "weights").read_text() == "touched"
    keep(second, model)
    assert (model / "weights").read_text() == "twotwotwo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "model"]  # no staging folder left
