"""The training objective: InfoNCE-family losses over in-batch, hard and queued negatives, Matryoshka sizes,
optional score distillation, and the pair losses (triplet, CoSENT, Circle) to compare against.

Every term is a function of the batch's query and passage embeddings alone (no model inside), which is
what lets gradient caching compute the loss on embeddings made without a graph, and what lets the tests
check each term against a plain loop. Similarities are cosines: embeddings are (re)normalized after any
Matryoshka truncation.

Synthetic data has more false negatives than real data, so the InfoNCE term takes three corrections, each off
by default: several positives per query (SupCon's L_out: the mean over the query's positives, each against
the same denominator), a debiased negative term for an assumed false-negative rate `tau_plus` (Chuang et al.
2020), and extra negatives from a queue of earlier batches (MoCo) whose entries that are positives of the
query are masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from distill.recipe import LossConfig


@dataclass
class BatchTensors:
    """The parts of a `distill.data.Batch` the loss reads, as tensors on the training device."""

    positive: torch.Tensor  # [B] long: the first positive's column
    candidates: torch.Tensor  # [B, 1+k] long, -1 pads
    teacher: torch.Tensor  # [B, 1+k] float, nan where unknown
    same_passage: torch.Tensor  # [B, P] bool: another positive of the example, not trained as one (never a negative)
    related_queries: torch.Tensor  # [B, B] bool: never each other's negatives
    positives: torch.Tensor | None = None  # [B, P] bool: every column trained as a positive; None: `positive` only

    @classmethod
    def from_batch(cls, batch, device) -> "BatchTensors":
        return cls(
            positive=torch.from_numpy(batch.positive).to(device),
            candidates=torch.from_numpy(batch.candidates).to(device),
            teacher=torch.from_numpy(batch.teacher).to(device),
            same_passage=torch.from_numpy(batch.same_passage).to(device),
            related_queries=torch.from_numpy(batch.related_queries).to(device),
            positives=torch.from_numpy(batch.positives).to(device),
        )

    def positive_mask(self) -> torch.Tensor:
        if self.positives is not None:
            return self.positives
        mask = torch.zeros_like(self.same_passage)
        mask[torch.arange(len(mask), device=mask.device), self.positive] = True
        return mask


@dataclass
class ExtraNegatives:
    """Passage embeddings from outside the batch (the queue), detached, and per query the entries that must
    not count as its negatives (its own positives)."""

    embeddings: torch.Tensor  # [K, d]
    excluded: torch.Tensor  # [B, K] bool


def score_columns(
    q: torch.Tensor,
    p: torch.Tensor,
    b: BatchTensors,
    temperature: float,
    in_batch_negatives: bool = True,
    query_negatives: bool = False,
    extra: ExtraNegatives | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scaled cosines of each query with every column it is scored against, and which are positives and negatives.

    Columns: the batch's passages, then the queue's entries (`extra`), then the batch's queries
    (`query_negatives`, Gecko's same-tower term). A column that is neither is left out of the loss, and so is a
    query column related to the row's (`related_queries`): a keyphrase query of the LLM query's passage is no
    negative of it.
    """
    q, p = F.normalize(q, dim=-1), F.normalize(p, dim=-1)
    scores = q @ p.T / temperature
    positive = b.positive_mask()
    negative = ~positive & ~b.same_passage
    if not in_batch_negatives:
        own = torch.zeros_like(negative)
        rows = torch.arange(len(q), device=q.device)[:, None].expand_as(b.candidates)
        valid = b.candidates >= 0
        own[rows[valid], b.candidates[valid]] = True
        negative = negative & own
    parts, positives, negatives = [scores], [positive], [negative]
    if extra is not None and len(extra.embeddings):
        queued = F.normalize(extra.embeddings[:, : q.shape[1]].to(q.dtype), dim=-1)
        parts.append(q @ queued.T / temperature)
        positives.append(torch.zeros_like(extra.excluded))
        negatives.append(~extra.excluded)
    if query_negatives:
        parts.append(q @ q.T / temperature)
        positives.append(torch.zeros_like(b.related_queries))
        negatives.append(~b.related_queries)
    return torch.cat(parts, dim=1), torch.cat(positives, dim=1), torch.cat(negatives, dim=1)


def row_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    return values.mean() if weights is None else (values * weights).sum() / weights.sum()


def confidence(b: BatchTensors) -> torch.Tensor:
    """Each row's weight under `loss.confidence_weights`: the judges' score of its positive as relabel writes it
    (each judge's scores min-max scaled over the query's candidates, then averaged: 1 when every judge put the
    positive first, lower the more they disagree), so a label the judges are unsure of moves the student less.
    A row without scores weighs 1."""
    t = b.teacher[:, 0]
    return torch.where(torch.isnan(t), torch.ones_like(t), t.clamp(0, 1)).clamp(min=1e-3)


def contrastive(scores: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, temperature: float,
                tau_plus: float = 0.0, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over queries (weighted by `weights` when given) of the mean over their positives of -log softmax,
    the denominator being the query's positives and negatives (SupCon's L_out; with one positive, InfoNCE).

    With `tau_plus` > 0 the negatives' sum becomes the debiased
    N_g = max((sum_n e^s_n - N tau_plus e^s_p) / (1 - tau_plus), N e^(-1/temperature)) (Chuang et al. 2020),
    N the query's count of negatives: the expected share `tau_plus` of false negatives among them is taken out.
    With one positive that is Chuang's e^s_p / (e^s_p + N_g); as `tau_plus` goes to 0 it becomes the above.
    """
    kept = positive | negative
    if tau_plus == 0:
        log_prob = scores - torch.logsumexp(scores.masked_fill(~kept, float("-inf")), dim=1, keepdim=True)
        per_row = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
        return -row_mean(per_row / positive.sum(dim=1), weights)
    shift = scores.masked_fill(~kept, float("-inf")).max(dim=1, keepdim=True).values.detach()
    shifted = scores - shift
    e = torch.where(kept, shifted, torch.full_like(shifted, float("-inf"))).exp()
    count = negative.sum(dim=1, keepdim=True).to(scores.dtype)
    negatives = torch.where(negative, e, torch.zeros_like(e)).sum(dim=1, keepdim=True)
    floor = count * torch.exp(-1.0 / temperature - shift)
    debiased = torch.maximum((negatives - count * tau_plus * e) / (1 - tau_plus), floor)
    positives = torch.where(positive, e, torch.zeros_like(e)).sum(dim=1, keepdim=True)
    denominator = torch.where(positive, positives + debiased, torch.ones_like(e))
    terms = torch.where(positive, shifted - denominator.log(), torch.zeros_like(e))
    return -row_mean(terms.sum(dim=1) / positive.sum(dim=1), weights)


def info_nce(
    q: torch.Tensor,
    p: torch.Tensor,
    b: BatchTensors,
    temperature: float,
    in_batch_negatives: bool = True,
    query_negatives: bool = False,
    tau_plus: float = 0.0,
    extra: ExtraNegatives | None = None,
    symmetric: bool = False,
    false_negative_margin: float = 0.0,
    passage_negatives: bool = False,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of each query's positives against its negatives, at temperature `temperature`.

    Negatives: the example's own hard negatives; with `in_batch_negatives` every other passage column
    of the batch; with `extra` the queue; with `query_negatives` the batch's other queries.
    Other positives of the example and repeats of its query never count as negatives, nor does a negative whose
    cosine is more than `false_negative_margin` above the first positive's: on synthetic data a negative the
    student already ranks well above the positive is more often unlabeled relevant than hard (Qwen3-Embedding's
    mask, margin 0.1; 0: no mask).
    With `passage_negatives` the row's positive passage is scored against the row's passage negatives too, in the
    same denominator (GTE's passage-passage term), in the hope of spreading the corpus where the query-side terms
    only move the passages a batch's queries touch; on SciFact it lost 1.73 points (docs/ablations.md).
    With `symmetric`, the mean of that and `passage_to_query`. `weights` (one per row) weigh the rows' terms.
    """
    scores, positive, negative = score_columns(q, p, b, temperature, in_batch_negatives, query_negatives, extra)
    if false_negative_margin > 0:
        first = scores[torch.arange(len(scores), device=scores.device), b.positive][:, None]
        negative = negative & (scores <= first + false_negative_margin / temperature).detach()
    if passage_negatives:
        columns = len(p)
        p_unit = F.normalize(p, dim=-1)
        scores = torch.cat([scores, p_unit[b.positive] @ p_unit.T / temperature], dim=1)
        positive = torch.cat([positive, torch.zeros_like(positive[:, :columns])], dim=1)
        negative = torch.cat([negative, negative[:, :columns]], dim=1)
    forward = contrastive(scores, positive, negative, temperature, tau_plus, weights)
    if not symmetric:
        return forward
    return (forward + passage_to_query(q, p, b, temperature, tau_plus, weights)) / 2


def passage_to_query(q: torch.Tensor, p: torch.Tensor, b: BatchTensors, temperature: float,
                     tau_plus: float = 0.0, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The reverse direction (CLIP's symmetric loss, sentence-transformers' MultipleNegativesSymmetricRankingLoss):
    each example's first positive passage against the batch's queries, its own query the answer. It pushes a
    passage away from the queries it does not answer, which the query-side term only does for the passages
    that happen to be in the batch. Queries related to the row's (same text, a shared positive) are left out."""
    q, p = F.normalize(q, dim=-1), F.normalize(p, dim=-1)
    scores = p[b.positive] @ q.T / temperature
    own = torch.eye(len(q), dtype=torch.bool, device=q.device)
    return contrastive(scores, own, ~b.related_queries, temperature, tau_plus, weights)


def circle(q: torch.Tensor, p: torch.Tensor, b: BatchTensors, margin: float, gamma: float,
           in_batch_negatives: bool = True, extra: ExtraNegatives | None = None) -> torch.Tensor:
    """Circle loss (Sun et al. 2020) on cosines: log(1 + sum_n e^(gamma a_n (s_n - m)) sum_p e^(-gamma a_p (s_p - 1 + m))),
    a_p = [1 + m - s_p]+ and a_n = [s_n + m]+ (not differentiated), over the same positives and negatives as InfoNCE."""
    scores, positive, negative = score_columns(q, p, b, 1.0, in_batch_negatives, False, extra)
    rows = negative.any(dim=1)  # a query without negatives has nothing to push away: its term is 0
    if not rows.any():
        return q.sum() * 0.0
    scores, positive, negative = scores[rows], positive[rows], negative[rows]
    a_p = (1 + margin - scores).clamp(min=0).detach()
    a_n = (scores + margin).clamp(min=0).detach()
    pos = (-gamma * a_p * (scores - (1 - margin))).masked_fill(~positive, float("-inf"))
    neg = (gamma * a_n * (scores - margin)).masked_fill(~negative, float("-inf"))
    return F.softplus(torch.logsumexp(pos, dim=1) + torch.logsumexp(neg, dim=1)).sum() / len(q)


def candidate_scores(q: torch.Tensor, p: torch.Tensor, b: BatchTensors) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine of each query with its own positive and hard negatives, and where both they and the judge's scores exist."""
    q, p = F.normalize(q, dim=-1), F.normalize(p, dim=-1)
    valid = (b.candidates >= 0) & ~torch.isnan(b.teacher)
    student = torch.einsum("bd,bkd->bk", q, p[b.candidates.clamp(min=0)])
    return student, valid


def triplet(q: torch.Tensor, p: torch.Tensor, b: BatchTensors, margin: float) -> torch.Tensor:
    """Mean of [margin - cos(q, pos) + cos(q, neg)]+ over each example's hard negatives (no scores needed)."""
    student, _ = candidate_scores(q, p, b)
    pairs = b.candidates[:, 1:] >= 0
    if not pairs.any():
        return q.sum() * 0.0
    return (margin - student[:, :1] + student[:, 1:]).clamp(min=0)[pairs].mean()


def cosent(q: torch.Tensor, p: torch.Tensor, b: BatchTensors, scale: float) -> torch.Tensor:
    """CoSENT (Su 2022): log(1 + sum over candidate pairs of one query that the judge orders i above j of
    e^(scale (cos_j - cos_i))); only the order of the judge's scores matters, never their scale."""
    student, valid = candidate_scores(q, p, b)
    teacher = torch.nan_to_num(b.teacher).to(student.dtype)
    above = (teacher[:, :, None] > teacher[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    if not above.any():
        return q.sum() * 0.0
    diffs = (scale * (student[:, None, :] - student[:, :, None]))[above]
    return torch.logsumexp(torch.cat([diffs.new_zeros(1), diffs]), dim=0)


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
    """The contrastive term (loss.contrastive) at each Matryoshka size (truncate, renormalize, weight), plus
    the distillation term."""

    def __init__(self, config: LossConfig, dimension: int):
        self.config = config
        self.dims = config.matryoshka_dims or [dimension]
        self.weights = config.matryoshka_weights or [1.0] * len(self.dims)

    def term(self, q: torch.Tensor, p: torch.Tensor, b: BatchTensors, extra: ExtraNegatives | None) -> torch.Tensor:
        c = self.config
        if c.contrastive == "triplet":
            return triplet(q, p, b, c.margin)
        if c.contrastive == "cosent":
            return cosent(q, p, b, 1 / c.temperature)
        if c.contrastive == "circle":
            return circle(q, p, b, c.margin, 1 / c.temperature, c.in_batch_negatives, extra)
        return info_nce(q, p, b, c.temperature, c.in_batch_negatives, c.query_negatives, c.tau_plus, extra, c.symmetric,
                        c.false_negative_margin, c.passage_negatives, confidence(b) if c.confidence_weights else None)

    def __call__(self, q: torch.Tensor, p: torch.Tensor, b: BatchTensors,
                 extra: ExtraNegatives | None = None) -> dict[str, torch.Tensor]:
        c = self.config
        contrastive_term = sum(w * self.term(q[:, :d], p[:, :d], b, extra) for d, w in zip(self.dims, self.weights))
        parts = {"contrastive": contrastive_term}
        loss = contrastive_term
        if c.distill != "none" and c.distill_weight > 0:
            if c.distill == "margin_mse":
                distill = margin_mse(q, p, b)
            else:
                distill = kl_to_teacher(q, p, b, c.temperature, c.distill_temperature)
            parts["distill"] = distill
            loss = loss + c.distill_weight * distill
        parts["loss"] = loss
        return parts
