"""The training objective: InfoNCE over in-batch and hard negatives, Matryoshka sizes, optional score distillation.

Every term is a function of the batch's query and passage embeddings alone (no model inside), which is
what lets gradient caching compute the loss on embeddings made without a graph, and what lets the tests
check each term against a plain loop. Similarities are cosines: embeddings are (re)normalized after any
Matryoshka truncation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from distill.recipe import LossConfig


@dataclass
class BatchTensors:
    """The parts of a `distill.data.Batch` the loss reads, as tensors on the training device."""

    positive: torch.Tensor  # [B] long
    candidates: torch.Tensor  # [B, 1+k] long, -1 pads
    teacher: torch.Tensor  # [B, 1+k] float, nan where unknown
    same_passage: torch.Tensor  # [B, P] bool
    same_query: torch.Tensor  # [B, B] bool

    @classmethod
    def from_batch(cls, batch, device) -> "BatchTensors":
        return cls(
            positive=torch.from_numpy(batch.positive).to(device),
            candidates=torch.from_numpy(batch.candidates).to(device),
            teacher=torch.from_numpy(batch.teacher).to(device),
            same_passage=torch.from_numpy(batch.same_passage).to(device),
            same_query=torch.from_numpy(batch.same_query).to(device),
        )


def info_nce(
    q: torch.Tensor,
    p: torch.Tensor,
    b: BatchTensors,
    temperature: float,
    in_batch_negatives: bool = True,
    query_negatives: bool = False,
) -> torch.Tensor:
    """Cross-entropy of each query's positive against its negatives, at temperature `temperature`.

    Negatives: the example's own hard negatives; with `in_batch_negatives` every other passage column
    of the batch; with `query_negatives` the batch's other queries (Gecko's same-tower negatives).
    Other positives of the example and repeats of its query never count as negatives.
    """
    q, p = F.normalize(q, dim=-1), F.normalize(p, dim=-1)
    scores = q @ p.T / temperature
    excluded = b.same_passage
    if not in_batch_negatives:
        own = torch.zeros_like(excluded)
        rows = torch.arange(len(q), device=q.device)[:, None].expand_as(b.candidates)
        valid = b.candidates >= 0
        own[rows[valid], b.candidates[valid]] = True
        excluded = excluded | ~own
    scores = scores.masked_fill(excluded, float("-inf"))
    if query_negatives:
        same_tower = (q @ q.T / temperature).masked_fill(b.same_query, float("-inf"))
        scores = torch.cat([scores, same_tower], dim=1)
    return F.cross_entropy(scores, b.positive)


def candidate_scores(q: torch.Tensor, p: torch.Tensor, b: BatchTensors) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine of each query with its own positive and hard negatives, and where both they and the judge's scores exist."""
    q, p = F.normalize(q, dim=-1), F.normalize(p, dim=-1)
    valid = (b.candidates >= 0) & ~torch.isnan(b.teacher)
    student = torch.einsum("bd,bkd->bk", q, p[b.candidates.clamp(min=0)])
    return student, valid


def margin_mse(q: torch.Tensor, p: torch.Tensor, b: BatchTensors) -> torch.Tensor:
    """MarginMSE (GPL): the student's positive-minus-negative margin should equal the judge's."""
    student, valid = candidate_scores(q, p, b)
    pairs = valid[:, :1] & valid[:, 1:]
    if not pairs.any():
        return q.sum() * 0.0
    teacher = torch.nan_to_num(b.teacher).to(student.dtype)
    s_margin = student[:, :1] - student[:, 1:]
    t_margin = teacher[:, :1] - teacher[:, 1:]
    return ((s_margin - t_margin) ** 2)[pairs].mean()


def kl_to_teacher(q: torch.Tensor, p: torch.Tensor, b: BatchTensors, temperature: float, teacher_temperature: float) -> torch.Tensor:
    """KL(judge || student) over each example's own candidates, both as softmax distributions."""
    student, valid = candidate_scores(q, p, b)
    rows = valid[:, 0] & (valid.sum(dim=1) >= 2)
    if not rows.any():
        return q.sum() * 0.0
    s = (student / temperature).masked_fill(~valid, float("-inf"))[rows]
    t = (torch.nan_to_num(b.teacher).to(student.dtype) / teacher_temperature).masked_fill(~valid, float("-inf"))[rows]
    log_s, log_t = F.log_softmax(s, dim=1), F.log_softmax(t, dim=1)
    terms = torch.where(valid[rows], log_t.exp() * (log_t - log_s), torch.zeros_like(log_s))
    return terms.sum(dim=1).mean()


class Objective:
    """InfoNCE at each Matryoshka size (truncate, renormalize, weight), plus the distillation term."""

    def __init__(self, config: LossConfig, dimension: int):
        self.config = config
        self.dims = config.matryoshka_dims or [dimension]
        self.weights = config.matryoshka_weights or [1.0] * len(self.dims)

    def __call__(self, q: torch.Tensor, p: torch.Tensor, b: BatchTensors) -> dict[str, torch.Tensor]:
        c = self.config
        contrastive = sum(
            w * info_nce(q[:, :d], p[:, :d], b, c.temperature, c.in_batch_negatives, c.query_negatives)
            for d, w in zip(self.dims, self.weights)
        )
        parts = {"contrastive": contrastive}
        loss = contrastive
        if c.distill != "none" and c.distill_weight > 0:
            if c.distill == "margin_mse":
                distill = margin_mse(q, p, b)
            else:
                distill = kl_to_teacher(q, p, b, c.temperature, c.distill_temperature)
            parts["distill"] = distill
            loss = loss + c.distill_weight * distill
        parts["loss"] = loss
        return parts
