"""Data-parallel training over several processes: `torchrun --nproc_per_node N -m distill train recipe.yaml`.

`Ranks.join()` reads the launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT: torchrun,
Slurm through torchrun, any launcher that sets them) and starts the process group: NCCL on GPUs, gloo on CPUs.
Without a launcher it is one rank, and every method below does nothing, so the trainer has one code path.

How a step is shared: every rank draws the same global batch (same seed, same step), embeds its contiguous share
of the batch's queries and passage columns, and gathers everyone's embeddings, so in-batch negatives come from the
whole batch. Each rank then computes the loss of the whole batch; the gather's backward hands each rank the
gradient of its own rows only, so a rank's parameter gradients are its share of the whole-batch gradient, and
their sum over ranks (one all_reduce) is exactly the one-process gradient. GradCache runs per rank, unchanged:
it sees the rank's rows and a loss function that gathers.

Why not torch's DistributedDataParallel wrapper: its hooks all-reduce on every backward pass, and a GradCache step
runs one backward on the embeddings plus one per cached mini-batch, a number that varies with the batch; the
wrapper would need `no_sync` juggling around each. Summing the flattened gradients once after the step is what
its reducer does, once, and broadcasting rank 0's weights at the start is what its constructor does.

Only rank 0 writes (checkpoints, log.jsonl, the dev evaluation and its best weights, the final model). A
checkpoint holds nothing of a rank (weights, optimizer, schedule, step), and every rank reads it, so a run
resumes on the same or another number of ranks. All ranks share one random seed: dropout masks repeat across
ranks' shares, which changes nothing of the method.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def join(cls, device: str) -> "Ranks":
        """The ranks the launcher's environment describes, with the process group started (one rank: none);
        `device` is the recipe's train.device."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        import torch
        import torch.distributed as dist

        ranks = cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
        if not dist.is_initialized():
            import atexit

            gpus = device != "cpu" and torch.cuda.is_available()
            dist.init_process_group("nccl" if gpus else "gloo")
            atexit.register(dist.destroy_process_group)  # torch warns about a group left to the interpreter's exit
        return ranks

    @property
    def writer(self) -> bool:
        """Whether this rank writes the run's files: rank 0 only."""
        return self.rank == 0

    def device(self, device: str) -> str:
        """Each rank on its own GPU of the node."""
        return f"cuda:{self.local_rank}" if self.world > 1 and device == "cuda" else device

    def share(self, rows: Sequence[int]) -> tuple[list[int], list[int]]:
        """This rank's contiguous share of a batch's rows, and every rank's share size.

        A rank whose share is empty (a last batch smaller than the ranks) embeds the batch's first row as a
        placeholder that the gather leaves out, so every rank runs the same collectives."""
        if self.world == 1:
            return list(rows), [len(rows)]
        base, extra = divmod(len(rows), self.world)
        sizes = [base + (r < extra) for r in range(self.world)]
        start = sum(sizes[: self.rank])
        own = list(rows[start : start + sizes[self.rank]])
        return (own or list(rows[:1])), sizes

    def gather(self, local: "torch.Tensor", sizes: list[int]) -> "torch.Tensor":
        """Every rank's rows in rank order (the whole batch); the gradient flows back to this rank's own rows."""
        if self.world == 1:
            return local
        return _Gather.apply(local, sizes, self.rank)

    def sum_gradients(self, params: Sequence["torch.Tensor"]) -> None:
        """Sum the parameter gradients over ranks, in one flat all_reduce."""
        if self.world == 1:
            return
        import torch
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        for p, part in zip(params, flat.split([g.numel() for g in grads])):
            p.grad = part.view_as(p).clone()

    def same_start(self, params: Sequence["torch.Tensor"]) -> None:
        """Rank 0's weights on every rank, as DistributedDataParallel's constructor does."""
        if self.world == 1:
            return
        import torch
        import torch.distributed as dist

        with torch.no_grad():
            for p in params:
                dist.broadcast(p.data, src=0)

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


class Silent:
    """The log of a rank that writes nothing."""

    def write(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


def _gather_function():
    import torch

    class Gather(torch.autograd.Function):
        @staticmethod
        def forward(ctx, local: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
            import torch.distributed as dist

            width = max(sizes)
            padded = local.new_zeros((width, *local.shape[1:]))
            padded[: sizes[rank]] = local[: sizes[rank]]
            parts = [torch.empty_like(padded) for _ in sizes]
            dist.all_gather(parts, padded)
            ctx.rows, ctx.start, ctx.size = len(local), sum(sizes[:rank]), sizes[rank]
            return torch.cat([part[:n] for part, n in zip(parts, sizes)])

        @staticmethod
        def backward(ctx, grad: torch.Tensor):
            # every rank computed the same whole-batch loss, so its own rows' gradient is already complete
            own = grad.new_zeros((ctx.rows, *grad.shape[1:]))
            own[: ctx.size] = grad[ctx.start : ctx.start + ctx.size]
            return own, None, None

    return Gather


class _LazyGather:
    """torch.autograd.Function subclassed on first use: importing this module must not import torch."""

    _cls = None

    def apply(self, *args):
        if _LazyGather._cls is None:
            _LazyGather._cls = _gather_function()
        return _LazyGather._cls.apply(*args)


_Gather = _LazyGather()
