"""Gradient caching gives the full-batch loss and gradients, for any mini-batch size, dropout included."""

from __future__ import annotations

import pytest
import torch

from distill.data import build_dataset, epoch_batches
from distill.encoder import embedder, length_chunks, load_encoder, tokenize
from distill.gradcache import forward_backward
from distill.losses import BatchTensors, Objective
from distill.recipe import LossConfig, ModelConfig
from word_records import word_records


@pytest.fixture(scope="module")
def setup(tiny_bert_path):
    model = load_encoder(ModelConfig(base=str(tiny_bert_path), max_query_length=16, max_passage_length=48), "cpu")
    model.double()  # float64: the comparisons below are then about the method, not about rounding
    records = word_records()
    data = build_dataset(records, [])
    batch = epoch_batches(data.train, epoch=0, seed=0, batch_size=10, hard_negatives=2)[0]
    queries = tokenize(model, data.queries, 16)
    passages = tokenize(model, data.passages, 48)
    towers = [[queries[i] for i in batch.queries], [passages[i] for i in batch.passages]]
    objective = Objective(LossConfig(temperature=0.05, query_negatives=True, matryoshka_dims=[32, 16]), 32)
    tensors = BatchTensors.from_batch(batch, "cpu")
    return model, towers, (lambda q, p: objective(q, p, tensors))


def gradients(model, towers, loss_fn, mini_batch_size, seed=0):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss = forward_backward(embedder(model, "cpu", "fp32"), towers, mini_batch_size, loss_fn)["loss"]
    return float(loss), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_cached_equals_full_batch(setup):
    model, towers, loss_fn = setup
    model.eval()  # no dropout: the full batch at once is the reference
    assert len(towers[0]) == 10 and len(towers[1]) > 20
    full_loss, full = gradients(model, towers, loss_fn, mini_batch_size=1000)
    for size in (3, 16):  # 3: both towers cached; 16: queries in one pass, passages cached
        loss, grads = gradients(model, towers, loss_fn, mini_batch_size=size)
        assert loss == pytest.approx(full_loss, rel=1e-12)
        assert grads.keys() == full.keys() and len(full) > 10
        for name in full:
            torch.testing.assert_close(grads[name], full[name], rtol=1e-9, atol=1e-12)


def test_cached_replays_dropout(setup):
    """With dropout on, the second pass must draw the first pass's masks, else the cached gradients are wrong."""
    model, towers, loss_fn = setup
    model.train()
    loss, grads = gradients(model, towers, loss_fn, mini_batch_size=4, seed=7)
    # Reference: the same mini-batches, in the same order, from the same seed, all kept in one graph.
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    embed = embedder(model, "cpu", "fp32")
    reps = []
    for rows in towers:
        order, chunks = length_chunks(rows, 4)
        sorted_reps = torch.cat([embed([rows[i] for i in chunk]) for chunk in chunks])
        reps.append(sorted_reps[torch.from_numpy(order.argsort())])
    reference = loss_fn(*reps)["loss"]
    reference.backward()
    assert loss == pytest.approx(reference.item(), rel=1e-12)
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[name], p.grad, rtol=1e-9, atol=1e-12)
    model.eval()
