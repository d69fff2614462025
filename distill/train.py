"""`train(recipe)`: contrastive training of the student, resumable, keeping the checkpoint best on the dev set.

The output folder is the model: when training ends it holds what `SentenceTransformer(output)` loads,
plus README.md (the model card), recipe.yaml (the resolved recipe), log.jsonl (loss and dev metrics per
step) and training.json (the `TrainResult`). While training runs, `train_state/` holds the last checkpoint
(trainable weights, optimizer, scheduler and random state) and the best weights so far; a killed run
started again with the same recipe goes on from the last checkpoint and ends with the same weights as an
uninterrupted run. A finished folder is not trained again: `train` returns its recorded result.

The dev set is evaluated before the first step (the base model), every `eval.every` steps and after the
last one; the saved model is the best trained checkpoint, moved 1 - `train.interpolation` of the way back to
the base (WiSE-FT), and a warning says so when it is worse than the base model beyond the dev queries' noise (a
paired bootstrap interval). The warning does not discard the model unless `eval.keep_base` asks: a dev slice of
synthetic queries, labelled by the same judges, was measured to disagree with real test queries
(docs/guard.md), so it is a hint, not a verdict.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from distill.checkpoint import restore_checkpoint, save_checkpoint
from distill.distributed import Ranks, Silent
from distill.logbook import LOG, Logbook
from distill.verdict import judge
from distill.optimizer import parameter_groups
from distill.recipe import Recipe, check_recipe, resolve_base_model, save_recipe
from distill.weights import interpolate, load_weights, save_weights
from distill.result import STATE_DIR, SUMMARY, TrainResult, finished_result, recipe_fingerprint
from synthgen.errors import UserError
from synthgen.lock import hold
from synthgen.machine import resolve_precision
from synthgen.rundir import prepare_dir, remove_tree, write_json, write_text

log = logging.getLogger("distill")


def train(recipe: Recipe, *, progress: bool = True, on_step: Callable[[int], None] | None = None) -> TrainResult | None:
    """Train the student the recipe describes and save it to `recipe.output`; see the module docstring.

    `on_step(step)` is called after every finished step (after its checkpoint, if any). Under torchrun each rank
    trains its share (distill.distributed); rank 0 alone writes and returns the result, the others return None.
    """
    check_recipe(recipe)
    out = Path(recipe.output).expanduser()
    writer = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 holds the folder for every rank
    with hold(out, "model folder") if writer else contextlib.nullcontext():  # the pipeline replaces it under it too
        return _train(recipe, out, progress, on_step)


def _train(recipe: Recipe, out: Path, progress: bool, on_step) -> TrainResult | None:
    digest = recipe_fingerprint(recipe)
    finished = finished_result(out, digest)
    if finished is not None:
        return finished
    ranks = Ranks.join(recipe.train.device)
    state_dir = out / STATE_DIR
    if ranks.writer:
        prepare_dir(out)
        state_dir.mkdir(exist_ok=True)
        write_text(state_dir / "fingerprint", digest)
    ranks.barrier()
    return _Run(recipe, out, state_dir, digest, progress, on_step, ranks).run()


class _Run:
    """One training run's state; methods are the steps of `train`, kept apart so each is short."""

    def __init__(self, recipe: Recipe, out: Path, state_dir: Path, digest: str, progress: bool, on_step, ranks):
        self.recipe, self.out, self.state_dir, self.digest = recipe, out, state_dir, digest
        self.progress, self.on_step, self.ranks = progress and ranks.writer, on_step, ranks
        self.warnings: list[str] = []

    # -- setup -------------------------------------------------------------------------------------
    def load_data(self) -> None:
        from distill.data import build_dataset, read_examples, simcse_records, split_dev

        r = self.recipe
        records = read_examples(Path(r.data.train).expanduser())
        if r.data.dev:
            train_records, dev_records = records, read_examples(Path(r.data.dev).expanduser())
        else:
            train_records, dev_records = split_dev(records, r.data.dev_size, r.train.seed)
        if r.data.max_examples:
            train_records = train_records[: r.data.max_examples]
        if r.data.simcse:
            train_records = simcse_records(train_records)
        if r.loss.distill != "none" and not any(x.pos_scores for x in train_records):
            raise UserError(f"loss.distill is {r.loss.distill} but no record in {r.data.train} has pos_scores/neg_scores")
        if r.loss.confidence_weights and not any(x.pos_scores for x in train_records):
            raise UserError(f"loss.confidence_weights needs pos_scores, and no record in {r.data.train} has them")
        self.dataset = build_dataset(train_records, dev_records, r.model.query_prefix, r.model.passage_prefix, r.model.task)

    def build_model(self) -> None:
        import torch

        from distill import encoder as enc

        r = self.recipe
        self.device = self.ranks.device(enc.resolve_device(r.train.device))
        self.precision = resolve_precision(r.train.precision, self.device)
        torch.manual_seed(r.train.seed)
        self.model = enc.load_encoder(r.model, self.device)
        self.dimension = self.model.get_embedding_dimension()
        for key, dims in (("loss.matryoshka_dims", r.loss.matryoshka_dims), ("eval.dims", r.eval.dims)):
            too_big = [d for d in dims if d > self.dimension]
            if too_big:
                raise UserError(f"{key}: {too_big[0]} is larger than the model's embedding size {self.dimension}")
        if r.lora.enabled:
            enc.add_lora(self.model, r.lora)
        if not r.train.dropout:
            enc.disable_dropout(self.model)
        if r.train.freeze_embeddings:
            enc.freeze_token_embeddings(self.model)
        if r.train.interpolation < 1 or r.eval.keep_base:
            self.initial = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
        self.model.train()
        self.embed = enc.embedder(self.model, self.device, self.precision)
        self.embed_query = enc.embedder(self.model, self.device, self.precision, "query")
        query_length = r.model.max_passage_length if r.data.simcse else r.model.max_query_length  # SimCSE: queries are passages
        self.query_tokens = enc.tokenize(self.model, self.dataset.queries, query_length, self.progress, "tokenize queries")
        self.passage_tokens = enc.tokenize(self.model, self.dataset.passages, r.model.max_passage_length, self.progress, "tokenize passages")
        # a frozen passage tower embeds each passage the same way all run: once, without dropout
        self.passage_table = self.encode(self.embed, self.passage_tokens) if r.model.towers == "query" else None

    def build_optimizer(self) -> None:
        import torch
        from transformers import get_scheduler

        from distill.data import steps_per_epoch

        t = self.recipe.train
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        self.optimizer = torch.optim.AdamW(parameter_groups(named, t.lr, t.weight_decay, t.layer_decay), lr=t.lr)
        self.steps_per_epoch = steps_per_epoch(len(self.dataset.train), t.batch_size)
        self.total_steps = t.max_steps or t.epochs * self.steps_per_epoch
        schedule = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[t.schedule]
        self.scheduler = get_scheduler(
            schedule, self.optimizer, num_warmup_steps=int(t.warmup_ratio * self.total_steps), num_training_steps=self.total_steps
        )
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None

    # -- the run -----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        import torch
        from tqdm.auto import tqdm

        from distill.data import epoch_batches, statistics
        from distill.gradcache import forward_backward
        from distill.losses import BatchTensors, Objective
        from distill.toolbox import Toolbox

        r = self.recipe
        self.load_data()
        self.build_model()
        self.build_optimizer()
        self.stats = statistics(
            self.dataset,
            [len(x) for x in self.query_tokens],
            [len(x) for x in self.passage_tokens],
            r.model.max_query_length,
            r.model.max_passage_length,
        )
        objective = Objective(r.loss, self.dimension)
        self.toolbox = Toolbox(self)  # queue, momentum encoder, re-mining, topics (distill/toolbox.py), before a restore
        self.step, self.best_step, self.best_value, self.base_dev, self.best_dev = 0, None, None, None, None
        self.base_dev_queries: list[float] | None = None  # the base model's eval.metric per dev query
        self.best_dev_queries: list[float] | None = None  # the best checkpoint's
        resumed = restore_checkpoint(self)
        self.ranks.same_start(self.params)
        self.logbook = Logbook(self.out / LOG, self.step if resumed else None) if self.ranks.writer else Silent()
        has_dev = bool(self.dataset.dev) and self.ranks.writer
        if has_dev and self.base_dev is None:
            self.base_dev, self.base_dev_queries = self.dev_metrics()
            self.logbook.write({"event": "dev", "step": 0, **self.base_dev, "base": True})

        batches: dict[int, list] = {}
        started, examples = time.perf_counter(), 0
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", disable=not self.progress, dynamic_ncols=True)
        while self.step < self.total_steps:
            epoch, index = divmod(self.step, self.steps_per_epoch)
            if epoch not in batches:
                batches = {epoch: epoch_batches(self.dataset.train, epoch, r.train.seed, r.train.batch_size, r.data.hard_negatives,
                                                r.data.positives, self.toolbox.topics)}
            batch = batches[epoch][index]
            tensors = BatchTensors.from_batch(batch, self.device)
            (queries, q_sizes), (passages, p_sizes) = self.ranks.share(batch.queries), self.ranks.share(batch.passages)
            loss_fn = self.toolbox.loss_fn(objective, tensors, batch)  # on the embeddings of every rank's share
            towers, table = [[self.query_tokens[i] for i in queries], [self.passage_tokens[i] for i in passages]], None
            if self.passage_table is not None:  # a frozen passage tower: its embeddings are looked up, not computed
                towers, table = towers[:1], self.passage_table[torch.as_tensor(batch.passages, device=self.passage_table.device)]
            parts = forward_backward(
                [self.embed_query, self.embed],
                towers,
                r.train.mini_batch_size,
                lambda q, p=None: loss_fn(self.ranks.gather(q, q_sizes), table if table is not None else self.ranks.gather(p, p_sizes)),
                self.device,
                scale=self.scaler.scale if self.scaler else None,
            )
            self.ranks.sum_gradients(self.params)  # this rank's share of the whole-batch gradient -> the whole
            self.optimizer_step()
            self.step += 1
            if self.toolbox.after_step(self.step, batch):
                batches = {}  # re-mined: the rest of the epoch draws the new negatives
            examples += len(batch.queries)
            elapsed = time.perf_counter() - started
            loss = float(parts["loss"])
            if self.step % r.train.log_every == 0 or self.step == self.total_steps:
                self.logbook.write({
                    "event": "train",
                    "step": self.step,
                    "epoch": round(self.step / self.steps_per_epoch, 4),
                    **{k: round(float(v), 6) for k, v in parts.items()},
                    "lr": self.scheduler.get_last_lr()[0],
                    "examples_per_s": round(examples / elapsed, 3),
                    "elapsed_s": round(elapsed, 2),
                })
            last = self.step == self.total_steps
            if has_dev and (last or (r.eval.every and self.step % r.eval.every == 0)):
                self.evaluate_dev()
            if self.ranks.writer and (last or self.step % r.train.checkpoint_every == 0):
                save_checkpoint(self)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if self.on_step is not None:
                self.on_step(self.step)
        bar.close()
        if not self.ranks.writer:
            return None
        seconds = time.perf_counter() - started
        return self.finish(seconds, examples / seconds if seconds > 0 and examples else 0.0)

    def optimizer_step(self) -> None:
        import torch

        max_norm = self.recipe.train.max_grad_norm
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if max_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    # -- dev set -----------------------------------------------------------------------------------
    def encode(self, embed: Callable, rows) -> "torch.Tensor":
        """Token rows embedded without dropout or gradients, mid-training (dev check, re-mining, query topics):
        the model goes back to training mode after, whatever happens."""
        from distill.encoder import embed_rows

        self.model.eval()
        try:
            return embed_rows(embed, rows, self.recipe.eval.batch_size)
        finally:
            self.model.train()

    def dev_metrics(self) -> tuple[dict[str, float], list[float]]:
        """Each dev query ranks the dev pool (eval.dev_pool); its positives are the relevant ones. Returns the means
        and each query's eval.metric, which the saved model is paired against the base with."""
        from distill.data import dev_pool
        from distill.evaluate import rank_dev
        from distill.metrics import average

        others = self.dataset.train if self.recipe.eval.dev_pool == "all" else []
        query_rows, passage_rows, relevant = dev_pool(self.dataset.dev, others)
        q = self.encode(self.embed_query, (self.query_tokens[i] for i in query_rows))
        p = self.encode(self.embed, (self.passage_tokens[i] for i in passage_rows))
        per_query = rank_dev(q, p, query_rows, passage_rows, relevant)
        means = {k: round(v, 6) for k, v in average(per_query.values()).items()}
        return means, [m[self.recipe.eval.metric] for m in per_query.values()]

    def evaluate_dev(self) -> None:
        metrics, queries = self.dev_metrics()
        value = metrics[self.recipe.eval.metric]
        better = self.best_value is None or value > self.best_value
        if better:
            self.best_step, self.best_value, self.best_dev, self.best_dev_queries = self.step, value, metrics, queries
            save_weights(self.model, self.state_dir / "best.safetensors")
        self.logbook.write({"event": "dev", "step": self.step, **metrics, "best": better})

    # -- the end -----------------------------------------------------------------------------------
    def finish(self, seconds: float, rate: float) -> TrainResult:
        from distill.card import write_card
        from distill.encoder import load_encoder, passages_as_loaded, save_encoder

        r = self.recipe
        metric = r.eval.metric
        if self.best_step is not None:
            load_weights(self.model, self.state_dir / "best.safetensors")
        if r.train.interpolation < 1:
            interpolate(self.model, self.initial, r.train.interpolation)
            if self.best_dev is not None:
                self.best_dev, self.best_dev_queries = self.dev_metrics()  # the saved model's, not the checkpoint's
        beats, interval = None, None
        if self.base_dev is not None and self.best_dev is not None:
            verdict = judge(metric, self.base_dev, self.best_dev, self.base_dev_queries, self.best_dev_queries,
                            self.best_step, r.eval.keep_base)
            beats, interval, worse = verdict.beats, verdict.interval, verdict.worse
            if verdict.warning:
                self.warn(verdict.warning)
            elif verdict.note:
                log.info(verdict.note)
            if worse and r.eval.keep_base:
                interpolate(self.model, self.initial, 0.0)  # back to the start: the base weights
                self.best_dev = self.base_dev
        self.model.eval()
        save_encoder(self.model, self.out, r.lora.save)
        beir = None
        if r.eval.beir:
            from distill.evaluate import evaluate

            dims = r.eval.dims or r.loss.matryoshka_dims or None
            base, folder = load_encoder(r.model, self.device), resolve_base_model(r.model.base)  # passages: relabel's cache
            beir = {
                "base": evaluate(base, Path(r.eval.beir), r.eval.beir_split, dims, r.eval.batch_size, progress=self.progress, name=str(folder), passages_of=folder if passages_as_loaded(r.model) else None),
                "trained": evaluate(self.out, Path(r.eval.beir), r.eval.beir_split, dims, r.eval.batch_size, self.device, self.progress),
            }
            del base
        result = TrainResult(
            output_dir=str(self.out), steps=self.step, metric=metric, best_step=self.best_step, base_dev=self.base_dev,
            best_dev=self.best_dev, beats_base=beats, dev_interval=[round(x, 6) for x in interval] if interval else None, beir=beir, data=self.stats, train_seconds=round(seconds, 2),
            examples_per_s=round(rate, 3), warnings=self.warnings, fingerprint=self.digest,
        )
        save_recipe(r, self.out / "recipe.yaml")
        write_card(self.out / "README.md", r, result)
        write_json(self.out / SUMMARY, asdict(result))
        self.logbook.close()
        remove_tree(self.state_dir)
        return result

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning(message)
