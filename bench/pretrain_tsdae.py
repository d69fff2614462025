"""Domain-adaptive pretraining by TSDAE: the bundled all-MiniLM-L6-v2 learns to rebuild a BEIR corpus's sentences
from its own embedding of them with 60% of their words deleted (Wang et al. 2021), before `distill train` starts
from it (`--set model.base=OUT`). Screened once on SciFact and a loss (docs/ablations.md), so it is a bench script,
not a pipeline stage.

    .venv/bin/python bench/pretrain_tsdae.py --corpus ../shared/data/scifact/corpus.jsonl --out OUT --steps 800
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def sentences(corpus: Path, rng: random.Random) -> list[str]:
    found = [s for line in open(corpus, encoding="utf-8") for s in re.split(r"(?<=[.!?])\s+", json.loads(line)["text"])
             if len(s.split()) >= 5]
    rng.shuffle(found)
    return found


def delete_words(sentence: str, rng: random.Random, keep: float = 0.4) -> str:
    words = sentence.split()
    kept = [w for w in words if rng.random() < keep]
    return " ".join(kept) if kept else rng.choice(words)


def pretraining_options(doc: str, steps: int, batch: int, lr: float, max_length: int) -> argparse.ArgumentParser:
    """The options both pretraining scripts take (this one and pretrain_mlm.py), with their own defaults."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a BEIR corpus.jsonl")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--max-length", type=int, default=max_length)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    return parser


def main() -> None:
    args = pretraining_options(__doc__, steps=800, batch=8, lr=3e-5, max_length=64).parse_args()

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import DenoisingAutoEncoderLoss

    from distill.recipe import resolve_base_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    model = SentenceTransformer(str(resolve_base_model("all-MiniLM-L6-v2")), device="cpu")
    loss = DenoisingAutoEncoderLoss(model, tie_encoder_decoder=True)
    texts = sentences(args.corpus, rng)
    print(f"{len(texts)} sentences", flush=True)
    optimizer = torch.optim.AdamW([p for p in loss.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)

    def tokenize(batch: list[str]) -> dict:
        return dict(model.tokenizer(batch, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt"))

    loss.train()
    started = time.time()
    for step in range(args.steps):
        batch = [texts[(step * args.batch + k) % len(texts)] for k in range(args.batch)]
        value = loss([tokenize([delete_words(s, rng) for s in batch]), tokenize(batch)], None)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step} loss {value.item():.3f} {time.time() - started:.0f} s", flush=True)
    model.eval()
    model.save(str(args.out), safe_serialization=True)
    print(f"saved {args.out} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
