"""A picture of the embedding space: queries and passages projected to 2-D, before and after training.

Numbers say whether a model ranks better; the picture shows how the space moved. Each panel projects one
model's embeddings of the same sample (every test query, the passages relevant to them and a seeded sample
of the rest) with t-SNE (PCA when scikit-learn is missing). Colors are topic clusters: k-means on the first
panel's passage embeddings, so a color means the same passages in every panel; a query takes the color of
its first relevant passage. A model that learned the collection shows queries (crosses) landing inside the
cloud of their own color.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from synthgen.errors import UserError


def sample_rows(passage_ids: Sequence[str], qrels: dict[str, dict[str, int]], query_ids: Sequence[str],
                size: int, seed: int) -> tuple[list[int], list[int]]:
    """(query positions, passage positions): every query, its relevant passages, and others up to `size`."""
    where = {pid: i for i, pid in enumerate(passage_ids)}
    relevant = sorted({where[p] for q in query_ids for p, g in qrels.get(q, {}).items() if g > 0 and p in where})
    rest = sorted(set(range(len(passage_ids))) - set(relevant))
    extra = max(0, size - len(relevant))
    if extra < len(rest):
        rest = sorted(np.random.default_rng(seed).choice(rest, size=extra, replace=False).tolist())
    return list(range(len(query_ids))), relevant + rest


def project(points: np.ndarray, seed: int) -> np.ndarray:
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        centered = torch.from_numpy(points - points.mean(axis=0))
        _, _, v = torch.pca_lowrank(centered, q=2, center=False)
        return (centered @ v[:, :2]).numpy()
    return TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30, len(points) - 1)).fit_transform(points)


def topics(passages: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    try:
        from sklearn.cluster import KMeans
    except ImportError:  # a few rounds of Lloyd's algorithm in torch
        x = torch.from_numpy(passages)
        centers = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:clusters]]
        for _ in range(20):
            labels = torch.cdist(x, centers).argmin(dim=1)
            centers = torch.stack([x[labels == k].mean(dim=0) if (labels == k).any() else centers[k] for k in range(len(centers))])
        return labels.numpy()
    return KMeans(n_clusters=clusters, n_init=4, random_state=seed).fit_predict(passages)


def plot_space(panels: list[tuple[str, torch.Tensor, torch.Tensor]], query_topic_passage: list[int | None], path: Path,
               clusters: int = 8, seed: int = 0) -> None:
    """Draw one panel per (title, query embeddings, passage embeddings) to a PNG at `path`.

    `query_topic_passage[i]` is the position (in the panels' passage rows) of query i's first relevant passage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def unit(x: torch.Tensor) -> np.ndarray:
        return torch.nn.functional.normalize(x.float(), dim=-1).cpu().numpy().astype(np.float64)

    labels = topics(unit(panels[0][2]), min(clusters, len(panels[0][2])), seed)
    colors = plt.get_cmap("tab10")
    query_colors = [colors(labels[j] % 10) if j is not None else (0.5, 0.5, 0.5, 1.0) for j in query_topic_passage]
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 6), squeeze=False)
    for ax, (title, q, p) in zip(axes[0], panels):
        xy = project(np.concatenate([unit(q), unit(p)]), seed)
        qxy, pxy = xy[: len(q)], xy[len(q):]
        ax.scatter(pxy[:, 0], pxy[:, 1], s=6, c=[colors(k % 10) for k in labels], alpha=0.45, linewidths=0)
        ax.scatter(qxy[:, 0], qxy[:, 1], s=22, c=query_colors, marker="x", linewidths=0.9)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(f"queries (x) and passages (dots), colored by {len(set(labels))} k-means topics of the first panel's passages",
                    fontsize=10)
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=110)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)


def draw(before: list[tuple[str, dict]], after: tuple[str, dict], path: Path, size: int = 1500, seed: int = 0) -> None:
    """The picture for `distill eval --plot`, from what `evaluate(keep=...)` kept of each model."""
    beir = after[1]["beir"]
    query_rows, passage_rows = sample_rows(beir.passage_ids, beir.qrels, beir.query_ids, size, seed)
    at = {beir.passage_ids[j]: n for n, j in enumerate(passage_rows)}
    first = [next((at[p] for p, g in beir.qrels[q].items() if g > 0 and p in at), None) for q in beir.query_ids]
    panels = [(title, kept["queries"][query_rows], kept["passages"][passage_rows]) for title, kept in (*before, after)]
    plot_space(panels, first, path, seed=seed)
