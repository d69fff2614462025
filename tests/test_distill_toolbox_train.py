"""The contrastive toolbox inside `train`: each option trains end to end on a tiny BERT, two towers load with
SentenceTransformer(path), and the queue and re-mining survive a kill and resume exactly."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer

from distill.train import train
from tests.test_distill_train import log_lines, make_recipe


@pytest.mark.parametrize("options", [
    ["loss.tau_plus=0.1"],
    ["loss.queue_size=20"],
    ["loss.queue_size=20", "loss.queue_momentum=0.9"],
    ["loss.contrastive=circle", "loss.queue_size=20"],
    ["loss.contrastive=triplet"],
    ["loss.contrastive=cosent"],
    ["data.simcse=true"],
    ["remine.every=2", "remine.ranks=[2,10]", "remine.curriculum=true"],
], ids=lambda o: ";".join(o))
def test_each_option_trains_and_moves_the_weights(tmp_path, tiny_bert_path, options):
    recipe = make_recipe(tmp_path, tiny_bert_path, "model", "train.max_steps=4", "eval.every=0", *options)
    result = train(recipe, progress=False)
    losses = [line["loss"] for line in log_lines(tmp_path / "model") if line["event"] == "train"]
    assert len(losses) == 4 and all(x == x and x >= 0 for x in losses)  # no nan
    before = load_file(str(tiny_bert_path / "model.safetensors"))
    after = load_file(str(tmp_path / "model" / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)
    assert result.steps == 4


def test_two_towers_save_a_router_model_that_sentence_transformers_loads(tmp_path, tiny_bert_path):
    recipe = make_recipe(tmp_path, tiny_bert_path, "model", "model.towers=separate", "train.max_steps=3", "eval.every=0")
    train(recipe, progress=False)
    model = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    assert type(model[0]).__name__ == "Router"
    text = ["protein folding amino acid chain"]
    q, d = model.encode_query(text, convert_to_tensor=True), model.encode_document(text, convert_to_tensor=True)
    assert not torch.allclose(q, d)  # the two towers were trained apart: the same text embeds differently
    assert torch.allclose(q.norm(dim=-1), torch.ones(1), atol=1e-5)
    # The query tower saw the query prefix during training: encode_query adds it again on load.
    assert model.prompts["query"] == "query: "


def test_a_query_tower_trains_alone_and_passages_stay_where_the_base_put_them(tmp_path, tiny_bert_path):
    recipe = make_recipe(tmp_path, tiny_bert_path, "model", "model.towers=query", "train.max_steps=3", "eval.every=0")
    train(recipe, progress=False)
    model = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    base = SentenceTransformer(str(tiny_bert_path), device="cpu")
    text = ["protein folding amino acid chain", "a second passage about cells"]
    assert torch.allclose(model.encode_document(text, convert_to_tensor=True), base.encode(text, convert_to_tensor=True), atol=1e-6)
    query = model.encode_query(text, convert_to_tensor=True)
    assert not torch.allclose(query, base.encode([f"query: {t}" for t in text], convert_to_tensor=True), atol=1e-4)


@pytest.mark.parametrize("options", [["loss.queue_size=12", "loss.queue_momentum=0.5"], ["remine.every=2", "remine.pool=30"]],
                         ids=["queue", "remine"])
def test_resume_after_a_kill_ends_as_an_uninterrupted_run(tmp_path, tiny_bert_path, options):
    extra = ["train.max_steps=5", "eval.every=0", "train.checkpoint_every=3", *options]
    train(make_recipe(tmp_path, tiny_bert_path, "whole", *extra), progress=False)

    def killed(step: int) -> None:
        if step == 4:
            raise KeyboardInterrupt

    recipe = make_recipe(tmp_path, tiny_bert_path, "resumed", *extra)
    with pytest.raises(KeyboardInterrupt):
        train(recipe, progress=False, on_step=killed)
    train(recipe, progress=False)
    a, b = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(tmp_path / "resumed" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-6, atol=1e-7)
    assert log_lines(tmp_path / "whole") == log_lines(tmp_path / "resumed")


def test_remining_writes_the_negatives_it_trained_on(tmp_path, tiny_bert_path):
    recipe = make_recipe(tmp_path, tiny_bert_path, "model", "train.max_steps=4", "eval.every=0", "remine.every=2")
    train(recipe, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "model" / "remined.jsonl").read_text().splitlines()]
    assert {x["step"] for x in lines} == {2}  # not at the last step: nothing would train on it
    assert all(x["neg_ids"] and all(n for n in x["neg_ids"]) for x in lines)
