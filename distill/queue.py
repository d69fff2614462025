"""A queue of passage embeddings from earlier batches, as extra negatives (MoCo, He et al. 2020).

In-batch negatives are as many as the batch has passages; on a CPU the batch stays small, so the queue keeps
the last `size` passage embeddings, without their graphs (memory grows with the queue, not with the steps),
and every query scores them as negatives too. A queued passage that is a positive of the query (the same
passage row, seen in an earlier batch) is masked for that query, never pushed away. With a momentum > 0 the
queue is filled by a slowly moving copy of the passage encoder instead of the trained one, so that entries
of different ages stay comparable (MoCo's key encoder).
"""

from __future__ import annotations

import copy
from typing import Iterable

import torch

from distill.losses import ExtraNegatives


class PassageQueue:
    """The last `size` passage embeddings and their passage rows, oldest first."""

    def __init__(self, size: int, dimension: int):
        self.size = size
        self.embeddings = torch.zeros(0, dimension)
        self.rows = torch.zeros(0, dtype=torch.long)

    def push(self, embeddings: torch.Tensor, rows: Iterable[int]) -> None:
        rows = torch.as_tensor(list(rows), dtype=torch.long)
        self.embeddings = torch.cat([self.embeddings, embeddings.detach().float().cpu()])[-self.size :]
        self.rows = torch.cat([self.rows, rows])[-self.size :]

    def negatives(self, positives: list[set[int]], device) -> ExtraNegatives:
        """The queue as negatives for a batch whose i-th query has the passage rows `positives[i]` as positives."""
        excluded = torch.zeros(len(positives), len(self.rows), dtype=torch.bool)
        rows = self.rows.tolist()
        for i, own in enumerate(positives):
            for k, row in enumerate(rows):
                if row in own:
                    excluded[i, k] = True
        return ExtraNegatives(self.embeddings.to(device), excluded.to(device))

    def state_dict(self) -> dict:
        return {"embeddings": self.embeddings.clone(), "rows": self.rows.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.embeddings, self.rows = state["embeddings"], state["rows"]


class MomentumEncoder:
    """A copy of the model whose weights follow the trained ones slowly: w <- m w + (1 - m) w_trained."""

    def __init__(self, model: torch.nn.Module, momentum: float):
        self.momentum = momentum
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for mine, theirs in zip(self.model.parameters(), model.parameters()):
            mine.mul_(self.momentum).add_(theirs.detach(), alpha=1 - self.momentum)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
