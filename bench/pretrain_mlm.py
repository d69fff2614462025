"""Domain-adaptive pretraining by masked language modelling (TAPT, Gururangan et al. 2020): the bundled
all-MiniLM-L6-v2 predicts masked words of a BEIR corpus's passages for many passes, before `distill train` starts
from it (`--set model.base=OUT`). The checkpoint ships without an MLM head, so a fresh one (its decoder tied to the
token embeddings) learns first with the encoder frozen. Screened on ADI's sixteen draws (docs/ablations.md), so a
bench script, not a pipeline stage.

    .venv/bin/python bench/pretrain_mlm.py --corpus ../shared/data/adi/corpus.jsonl --out OUT
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pretrain_tsdae import pretraining_options  # noqa: E402  (beside this script)


def main() -> None:
    parser = pretraining_options(__doc__, steps=100, batch=16, lr=2e-5, max_length=128)  # --steps: every weight
    parser.add_argument("--head-steps", type=int, default=30, help="steps that first train only the fresh MLM head")
    parser.add_argument("--head-lr", type=float, default=1e-3)
    args = parser.parse_args()

    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer, BertForMaskedLM, DataCollatorForLanguageModeling

    from distill.recipe import resolve_base_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    base = resolve_base_model("all-MiniLM-L6-v2")
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = BertForMaskedLM.from_pretrained(str(base))  # the head's weights are new: transformers says so
    rows = [json.loads(line) for line in open(args.corpus, encoding="utf-8")]
    texts = [f"{r.get('title', '')} {r['text']}".strip() for r in rows]
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    print(f"{len(texts)} passages", flush=True)

    def batches():
        order: list[str] = []
        while True:
            if len(order) < args.batch:
                more = texts[:]
                rng.shuffle(more)
                order += more
            batch, order = order[: args.batch], order[args.batch:]
            encoded = tokenizer(batch, truncation=True, max_length=args.max_length)
            yield collator([{"input_ids": ids} for ids in encoded["input_ids"]])

    stream = batches()
    started = time.time()
    model.train()
    for phase, steps, lr in (("head", args.head_steps, args.head_lr), ("all", args.steps, args.lr)):
        for name, param in model.named_parameters():
            param.requires_grad = phase == "all" or name.startswith("cls.")
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
        for step in range(steps):
            loss = model(**next(stream)).loss  # the collator pads, masks and writes the labels and the attention mask
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % 20 == 0 or step == steps - 1:
                print(f"{phase} step {step} loss {loss.item():.3f} {time.time() - started:.0f} s", flush=True)
    # the sentence-transformers folder of the base with the encoder's new weights (the head is dropped)
    shutil.copytree(base, args.out, dirs_exist_ok=True)
    state = load_file(str(base / "model.safetensors"))  # the pooler and position ids, which the MLM model lacks
    state.update({k.removeprefix("bert."): v.detach().contiguous() for k, v in model.state_dict().items() if k.startswith("bert.")})
    save_file(state, str(args.out / "model.safetensors"), metadata={"format": "pt"})
    print(f"saved {args.out} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
