"""One training step's loss and gradients, on 1 process (plain python) or N (torchrun): run by test_distill_distributed.

Float64, dropout off, a fixed batch of 10 examples with 2 hard negatives each, GradCache on (mini-batches of 3).
Each rank embeds its share and gathers (distill.distributed); rank 0 writes the loss and the summed gradients.
Usage: python tests/ddp_step.py MODEL_DIR OUT.safetensors
"""

from __future__ import annotations

import sys

from safetensors.torch import save_file

from distill.data import build_dataset, epoch_batches
from distill.distributed import Ranks
from distill.encoder import embedder, load_encoder, tokenize
from distill.gradcache import forward_backward
from distill.losses import BatchTensors, Objective
from distill.recipe import LossConfig, ModelConfig
from word_records import word_records


def main(model_dir: str, out: str) -> None:
    ranks = Ranks.join("cpu")
    model = load_encoder(ModelConfig(base=model_dir, max_query_length=16, max_passage_length=48), "cpu")
    model.double()
    model.eval()  # no dropout: one process and N must see the same function
    records = word_records()
    data = build_dataset(records, [])
    batch = epoch_batches(data.train, epoch=0, seed=0, batch_size=10, hard_negatives=2)[0]
    queries, passages = tokenize(model, data.queries, 16), tokenize(model, data.passages, 48)
    objective = Objective(LossConfig(temperature=0.05, query_negatives=True, matryoshka_dims=[32, 16]), 32)
    tensors = BatchTensors.from_batch(batch, "cpu")
    (q_rows, q_sizes), (p_rows, p_sizes) = ranks.share(batch.queries), ranks.share(batch.passages)
    params = [p for p in model.parameters() if p.requires_grad]
    parts = forward_backward(embedder(model, "cpu", "fp32"), [[queries[i] for i in q_rows], [passages[i] for i in p_rows]], 3,
                             lambda q, p: objective(ranks.gather(q, q_sizes), ranks.gather(p, p_sizes), tensors))
    ranks.sum_gradients(params)
    if ranks.writer:
        named = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        save_file({"loss": parts["loss"].reshape(1), **{f"grad.{n}": g.contiguous() for n, g in named.items()}}, out)


if __name__ == "__main__":
    main(*sys.argv[1:])
