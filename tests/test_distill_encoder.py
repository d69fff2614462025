"""The saved model folder: SentenceTransformer(path) gives the training-side embeddings; LoRA adapters and merges."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from sentence_transformers import SentenceTransformer

from distill.data import build_dataset
from distill.encoder import add_lora, disable_dropout, embed_rows, embedder, load_encoder, save_encoder, tokenize
from distill.recipe import LoraConfig, ModelConfig
from synthgen.errors import UserError
from synthgen.records import TrainingExample

QUERIES = ["what do proteins fold into?", "solar panel efficiency " * 12]  # the second one is cut in training
PASSAGES = ["Proteins fold into three-dimensional structures.", "Panels convert light. " * 40]


def training_side(model, spec: ModelConfig, query_length: int | None = None):
    """Embeddings as training computes them: rows built by distill.data, tokenized once, padded per mini-batch;
    queries cut at `query_length` (default: training's max_query_length)."""
    data = build_dataset([TrainingExample(query=q, pos=[p]) for q, p in zip(QUERIES, PASSAGES)], [],
                         spec.query_prefix, spec.passage_prefix, spec.task)
    embed = embedder(model, "cpu", "fp32")
    model.eval()
    q = embed_rows(embed, tokenize(model, data.queries, query_length or spec.max_query_length), 1)
    p = embed_rows(embed, tokenize(model, data.passages, spec.max_passage_length), 2)
    return q, p


def test_saved_folder_gives_the_training_side_embeddings(tiny_bert_path, tmp_path):
    spec = ModelConfig(base=str(tiny_bert_path), pooling="cls", max_query_length=12, max_passage_length=40,
                       query_prefix="task: {task} | query: ", passage_prefix="passage: ", task="find facts")
    model = load_encoder(spec, "cpu")
    q, p = training_side(model, spec)
    save_encoder(model, tmp_path / "saved")
    loaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    # A user's query is read as far as a passage, not cut where training cut the LLM's short queries
    read = loaded.encode_query(QUERIES, convert_to_tensor=True)
    torch.testing.assert_close(read, training_side(model, spec, spec.max_passage_length)[0], rtol=1e-5, atol=1e-6)
    assert loaded[0].query_length == spec.max_passage_length != spec.max_query_length
    torch.testing.assert_close(loaded.encode_document(PASSAGES, convert_to_tensor=True), p, rtol=1e-5, atol=1e-6)
    assert loaded.prompts["query"] == "task: find facts | query: "
    # The recipe's pooling replaced the base model's mean pooling: plain mean pooling differs.
    mean = load_encoder(ModelConfig(base=str(tiny_bert_path), max_query_length=12, max_passage_length=40,
                                    query_prefix="task: {task} | query: ", passage_prefix="passage: ", task="find facts"), "cpu")
    assert not torch.allclose(training_side(mean, spec)[0], q, atol=1e-3)


def test_without_dropout_a_training_mode_pass_repeats_and_the_saved_model_is_unchanged(tiny_bert_path, tmp_path):
    spec = ModelConfig(base=str(tiny_bert_path), max_query_length=12, max_passage_length=40)
    model = load_encoder(spec, "cpu")
    rows = tokenize(model, PASSAGES, 40)
    embed = embedder(model, "cpu", "fp32")
    model.train()
    with torch.no_grad():
        assert not torch.allclose(embed(rows), embed(rows))  # the tiny BERT drops out at 0.1
        disable_dropout(model)
        first = embed(rows)
        torch.testing.assert_close(embed(rows), first, rtol=0, atol=0)
    model.eval()
    torch.testing.assert_close(embed_rows(embed, rows, 2), first, rtol=1e-5, atol=1e-6)  # = inference, which never drops
    save_encoder(model, tmp_path / "saved")
    assert SentenceTransformer(str(tmp_path / "saved"), device="cpu")[0].auto_model.config.hidden_dropout_prob > 0


def test_lengths_beyond_the_model_are_refused(tiny_bert_path):
    with pytest.raises(UserError, match="model.max_passage_length is 1000 but the base model takes at most 256 tokens"):
        load_encoder(ModelConfig(base=str(tiny_bert_path), max_passage_length=1000), "cpu")


def test_lora_adapters_and_merged_reload_equal(tiny_bert_path, tmp_path):
    spec = ModelConfig(base=str(tiny_bert_path), max_query_length=16, max_passage_length=48)
    model = load_encoder(spec, "cpu")
    base_q, _ = training_side(model, spec, spec.max_passage_length)
    torch.manual_seed(0)
    add_lora(model, LoraConfig(enabled=True, r=4, alpha=8, dropout=0.0))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():  # stand-in for training: give the adapters weights
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.5)
    q, p = training_side(model, spec, spec.max_passage_length)  # the saved model reads queries as far as passages
    assert not torch.allclose(q, base_q, atol=1e-3)

    save_encoder(model, tmp_path / "adapters", lora_save="adapters")
    assert (tmp_path / "adapters" / "adapter_model.safetensors").exists()
    assert not (tmp_path / "adapters" / "model.safetensors").exists()
    adapters = SentenceTransformer(str(tmp_path / "adapters"), device="cpu")
    torch.testing.assert_close(adapters.encode_query(QUERIES, convert_to_tensor=True), q, rtol=1e-5, atol=1e-6)

    save_encoder(model, tmp_path / "merged", lora_save="merged")
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    merged = SentenceTransformer(str(tmp_path / "merged"), device="cpu")
    torch.testing.assert_close(merged.encode_query(QUERIES, convert_to_tensor=True), q, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(merged.encode_document(PASSAGES, convert_to_tensor=True), p, rtol=1e-5, atol=1e-6)

    # The merged folder needs no peft: load it with peft made unimportable.
    code = (
        "import sys; sys.modules['peft'] = None\n"
        "from sentence_transformers import SentenceTransformer\n"
        f"m = SentenceTransformer({str(tmp_path / 'merged')!r}, device='cpu')\n"
        f"print(m.encode_query({QUERIES[0]!r}).tolist()[:4])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = [float(x) for x in done.stdout.strip().splitlines()[-1].strip("[]").split(",")]
    assert printed == pytest.approx(q[0, :4].tolist(), abs=1e-5)
