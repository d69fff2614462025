"""Gradient caching (Gao et al. 2021, "GradCache"): the batch of the loss no longer has to fit in memory.

For a tower (queries or passages) whose texts do not fit in one mini-batch: embed all its mini-batches
without a graph, compute the loss on those embeddings and backpropagate into them only, then embed each
mini-batch again with a graph and push the cached embedding gradients through it. The result is the
full-batch loss and gradient, with the memory of one mini-batch. The second pass replays the random
state of the first, so dropout draws the same masks. A tower that fits in one mini-batch is embedded once,
with its graph, as plain training would: caching would only cost a second forward pass.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from distill.encoder import length_chunks


class RandomState:
    """The CPU and CUDA generator states at capture; `with state:` replays them and restores the outer ones."""

    def __init__(self, device: torch.device):
        self.devices = [device] if device.type == "cuda" else []
        self.cpu = torch.get_rng_state()
        self.cuda = [torch.cuda.get_rng_state(d) for d in self.devices]

    def __enter__(self) -> None:
        self._fork = torch.random.fork_rng(devices=self.devices)
        self._fork.__enter__()
        torch.set_rng_state(self.cpu)
        for d, s in zip(self.devices, self.cuda):
            torch.cuda.set_rng_state(s, d)

    def __exit__(self, *exc: object) -> None:
        self._fork.__exit__(*exc)


def forward_backward(
    embed: Callable[[list[np.ndarray]], torch.Tensor] | list[Callable[[list[np.ndarray]], torch.Tensor]],
    towers: list[list[np.ndarray]],
    mini_batch_size: int,
    loss_fn: Callable[..., dict[str, torch.Tensor]],
    device: torch.device | str = "cpu",
    scale: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Embed each tower's token rows, compute `loss_fn(*embeddings)`, and accumulate parameter gradients.

    `embed` is one function for every tower, or one per tower (separate query and passage encoders).

    Each tower's texts are sorted by length before they are cut into mini-batches (less padding);
    the embeddings reach `loss_fn` in the towers' original order. `scale` multiplies the loss before
    backward (fp16 loss scaling). Returns the loss parts, detached.
    """
    device = torch.device(device)
    embeds = embed if isinstance(embed, list) else [embed] * len(towers)
    sorted_reps, replays, orders, chunk_lists = [], [], [], []
    for rows, embed in zip(towers, embeds):
        order, chunks = length_chunks(rows, mini_batch_size)
        chunk_rows = [[rows[i] for i in chunk] for chunk in chunks]
        if len(chunks) == 1:
            sorted_reps.append(embed(chunk_rows[0]))
            replays.append(None)
        else:
            states, parts = [], []
            with torch.no_grad():
                for c in chunk_rows:
                    states.append(RandomState(device))
                    parts.append(embed(c))
            sorted_reps.append(torch.cat(parts).requires_grad_())
            replays.append(states)
        orders.append(order)
        chunk_lists.append(chunk_rows)
    reps = [r[torch.from_numpy(np.argsort(o)).to(r.device)] for r, o in zip(sorted_reps, orders)]
    result = loss_fn(*reps)
    loss = result["loss"]
    (scale(loss) if scale is not None else loss).backward()
    for rep, states, chunk_rows, embed in zip(sorted_reps, replays, chunk_lists, embeds):
        if states is None:
            continue
        grads = rep.grad.split([len(c) for c in chunk_rows])
        for rows, state, grad in zip(chunk_rows, states, grads):
            with state:
                again = embed(rows)
            again.backward(grad)
    return {k: v.detach() for k, v in result.items()}

