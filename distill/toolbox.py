"""The training loop's optional parts, behind two calls: the negative queue (with its momentum encoder),
re-mining, and the query topics of topic batches. `train.py` asks for the loss function of a step and reports
each finished step; nothing here runs when the recipe leaves these options off. Their state goes into the
checkpoint (the topics come from the starting model, before a restore), so a resumed run ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


class Toolbox:
    """One per training run; reads the run's recipe, model, dataset and token rows (`distill.train._Run`)."""

    def __init__(self, run: Any):
        from distill.queue import MomentumEncoder, PassageQueue

        r = run.recipe
        self.run = run
        self.positives_of: dict[int, set[int]] = {}
        for ex in run.dataset.train:
            self.positives_of.setdefault(ex.query, set()).update(ex.pos)
        self.queue = PassageQueue(r.loss.queue_size, run.dimension) if r.loss.queue_size else None
        self.momentum = MomentumEncoder(run.model, r.loss.queue_momentum) if self.queue is not None and r.loss.queue_momentum else None
        self.passages: torch.Tensor | None = None
        self.remined = False
        self.topics = self.query_topics() if r.data.topic_batches else None

    def embed_queries(self) -> torch.Tensor:
        """Every training example's query under the model as it is now."""
        run = self.run
        return run.encode(run.embed_query, [run.query_tokens[ex.query] for ex in run.dataset.train])

    def query_topics(self) -> list[int]:
        """k-means topic of each training example's query, about `data.topic_size` batches' worth of examples per
        topic."""
        from synthgen.sampling import kmeans_clusters

        r = self.run.recipe
        topics = -(-len(self.run.dataset.train) // (r.train.batch_size * r.data.topic_size))
        return kmeans_clusters(self.embed_queries().float().cpu().numpy(), topics, r.train.seed)

    def loss_fn(self, objective: Callable, tensors: Any, batch: Any) -> Callable:
        """The step's loss on (query, passage) embeddings, with the queue's entries as extra negatives."""
        extra = None
        if self.queue is not None:
            extra = self.queue.negatives([self.positives_of.get(q, set()) for q in batch.queries], self.run.device)

        def loss(q: torch.Tensor, p: torch.Tensor) -> dict:
            self.passages = p.detach()
            return objective(q, p, tensors, extra)

        return loss

    def after_step(self, step: int, batch: Any) -> bool:
        """Fill the queue with the step's passages; re-mine when due. True when the negatives changed (the
        epoch's batches must be drawn again)."""
        run, every = self.run, self.run.recipe.remine.every
        if self.queue is not None:
            embeddings = self.passages
            if self.momentum is not None:
                from distill.encoder import embedder, embed_rows

                self.momentum.update(run.model)
                embed = embedder(self.momentum.model, run.device, run.precision)
                embeddings = embed_rows(embed, [run.passage_tokens[i] for i in batch.passages], len(batch.passages))
            self.queue.push(embeddings, batch.passages)
        if every and step % every == 0 and step < run.total_steps:
            self.remine(step)
            return True
        return False

    def remine(self, step: int) -> None:
        from distill.remine import REMINED, mine, pool_rows, write_remined

        run, r = self.run, self.run.recipe
        data = run.dataset
        rows = pool_rows(data, r.remine.pool, r.train.seed, step)
        q = self.embed_queries()
        p = run.encode(run.embed, [run.passage_tokens[i] for i in rows])
        q, p = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(p, dim=-1)
        for ex, negs in zip(data.train, mine(data, q, p, rows, r.remine, step / run.total_steps, r.train.seed, step)):
            if negs is not None:
                ex.neg, ex.neg_scores = negs, []  # the judges' scores belong to the old negatives
        self.remined = True
        write_remined(run.out / REMINED, data, step)

    def state_dict(self) -> dict:
        state: dict = {}
        if self.queue is not None:
            state["queue"] = self.queue.state_dict()
        if self.momentum is not None:
            state["momentum"] = self.momentum.state_dict()
        if self.remined:
            state["negatives"] = [list(ex.neg) for ex in self.run.dataset.train]
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.queue is not None and "queue" in state:
            self.queue.load_state_dict(state["queue"])
        if self.momentum is not None and "momentum" in state:
            self.momentum.load_state_dict(state["momentum"])
        for ex, negs in zip(self.run.dataset.train, state.get("negatives", [])):
            ex.neg, ex.neg_scores = list(negs), []
            self.remined = True
