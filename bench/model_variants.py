"""A trained model changed after training, for ablations that need no training run.

    # the same weights encoding passages up to LENGTH tokens (all-MiniLM-L6-v2 ships at 256; SciFact's
    # abstracts are longer: median 316 tokens)
    .venv/bin/python bench/model_variants.py length MODEL OUT --length 512
    # a uniform model soup (Wortsman et al. 2022): the mean of the weights of models of one architecture
    .venv/bin/python bench/model_variants.py soup OUT MODEL MODEL [MODEL ...]
    # another WiSE-FT weight for a model saved at `train.interpolation` A: base + (TO / A) x (model - base)
    .venv/bin/python bench/model_variants.py wise OUT BASE MODEL --saved-at 0.5 --to 1.0
    # every embedding moved by minus the corpus' mean embedding, then normalised again (a standard Dense layer, so
    # the folder still loads with SentenceTransformer(path)): passages near the corpus' center, which a query of
    # any topic reaches, count for less
    .venv/bin/python bench/model_variants.py center MODEL OUT --corpus BEIR [--cache-dir DIR]
    # IDF-weighted mean pooling: each token's output weighed by the BM25 idf of its wordpiece over the corpus, to
    # the power ALPHA (sentence-transformers' WordWeights before the Pooling, so it still loads with
    # SentenceTransformer(path)): a passage's rare terms, which BM25 wins on, count for more in its embedding
    .venv/bin/python bench/model_variants.py idf MODEL OUT --corpus BEIR --alpha 0.5

Then `distill eval OUT --data BEIR`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def copy_model(source: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("checkpoint*"))


def length(source: Path, out: Path, tokens: int) -> None:
    copy_model(source, out)
    config_path = out / "sentence_bert_config.json"
    config = json.loads(config_path.read_text())
    # sentence-transformers 5 writes query/document lengths; older folders have one max_seq_length
    for key in ("max_seq_length", "document_length"):
        if key in config:
            config[key] = tokens
    config_path.write_text(json.dumps(config, indent=2))


def soup(out: Path, sources: list[Path]) -> None:
    from safetensors.torch import load_file, save_file

    copy_model(sources[0], out)
    weights = [load_file(str(s / "model.safetensors")) for s in sources]
    mean = {k: (sum(w[k].float() for w in weights) / len(weights)).to(weights[0][k].dtype).contiguous() for k in weights[0]}
    save_file(mean, str(out / "model.safetensors"), metadata={"format": "pt"})


def wise(out: Path, base: Path, model: Path, saved_at: float, to: float) -> None:
    """The saved weights are base + saved_at x (trained - base), so every other mixing weight, the trained weights
    themselves (to = 1) included, is one line of arithmetic away, without training again."""
    from safetensors.torch import load_file, save_file

    copy_model(model, out)
    start = load_file(str(base / "model.safetensors"))
    saved = load_file(str(model / "model.safetensors"))
    scale = to / saved_at
    mixed = {k: (start[k].float() + scale * (v.float() - start[k].float())).to(v.dtype).contiguous()
             for k, v in saved.items()}
    save_file(mixed, str(out / "model.safetensors"), metadata={"format": "pt"})


def center(source: Path, out: Path, corpus: Path, cache_dir: Path | None) -> None:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    from distill.evaluate import load_beir
    from synthgen.records import Passage
    from synthgen.retrieve import Embedder

    beir = load_beir(corpus)
    passages = [Passage(id=i, text=t) for i, t in zip(beir.passage_ids, beir.passages)]
    mean = torch.from_numpy(Embedder(source, cache_dir).encode_passages(passages)).float().mean(0)
    model = SentenceTransformer(str(source), device="cpu")
    size = len(mean)
    shift = Dense(size, size, activation_function=torch.nn.Identity(), init_weight=torch.eye(size), init_bias=-mean)
    centered = SentenceTransformer(modules=[*model, shift, Normalize()], device="cpu")
    if out.exists():
        shutil.rmtree(out)
    centered.save(str(out))


def idf(source: Path, out: Path, corpus: Path, alpha: float) -> None:
    import math
    from collections import Counter

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, WordWeights

    from distill.evaluate import load_beir

    model = SentenceTransformer(str(source), device="cpu")
    tokenizer = model.tokenizer
    texts = load_beir(corpus).passages
    document_frequency: Counter[int] = Counter()
    for start in range(0, len(texts), 512):
        for ids in tokenizer(texts[start : start + 512], truncation=True, max_length=model.max_seq_length)["input_ids"]:
            document_frequency.update(set(ids))
    n = len(texts)
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    # [CLS] and [SEP] are in every passage: idf ~0, so they drop out of the mean
    weights = {token: math.log(1 + (n - document_frequency[i] + 0.5) / (document_frequency[i] + 0.5)) ** alpha
               for i, token in enumerate(vocab)}
    modules = list(model)
    at = next(i for i, m in enumerate(modules) if isinstance(m, Pooling))
    weighted = SentenceTransformer(modules=[*modules[:at], WordWeights(vocab, weights), *modules[at:]], device="cpu")
    if out.exists():
        shutil.rmtree(out)
    weighted.save(str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="variant", required=True)
    p = sub.add_parser("length")
    p.add_argument("model", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--length", type=int, required=True)
    s = sub.add_parser("soup")
    s.add_argument("out", type=Path)
    s.add_argument("models", type=Path, nargs="+")
    w = sub.add_parser("wise")
    w.add_argument("out", type=Path)
    w.add_argument("base", type=Path)
    w.add_argument("model", type=Path)
    w.add_argument("--saved-at", type=float, required=True)
    w.add_argument("--to", type=float, required=True)
    c = sub.add_parser("center")
    c.add_argument("model", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--corpus", type=Path, required=True, help="a BEIR folder: its corpus.jsonl gives the mean")
    c.add_argument("--cache-dir", type=Path, help="the embedding cache (the model's passages may be there already)")
    i = sub.add_parser("idf")
    i.add_argument("model", type=Path)
    i.add_argument("out", type=Path)
    i.add_argument("--corpus", type=Path, required=True, help="a BEIR folder: its corpus.jsonl gives the idf")
    i.add_argument("--alpha", type=float, default=1.0, help="the weight is idf ** alpha")
    args = parser.parse_args()
    if args.variant == "idf":
        idf(args.model, args.out, args.corpus, args.alpha)
    elif args.variant == "center":
        center(args.model, args.out, args.corpus, args.cache_dir)
    elif args.variant == "length":
        length(args.model, args.out, args.length)
    elif args.variant == "wise":
        wise(args.out, args.base, args.model, args.saved_at, args.to)
    else:
        soup(args.out, args.models)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
