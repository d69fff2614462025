"""The optimizer's parameter groups: which weights decay, and how fast each layer learns."""

from __future__ import annotations

import re
from typing import Any

_LAYER = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")


def parameter_groups(named: list[tuple[str, Any]], lr: float, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW groups: biases and norms get no weight decay (it would only shrink them), and each layer its rate.

    The groups come in a fixed order (fastest first, decaying before not), so a resumed run's saved optimizer
    state matches them.
    """
    scales = layer_lr_scales([n for n, _ in named], layer_decay)
    groups: dict[tuple[float, bool], list] = {}
    for n, p in named:
        groups.setdefault((scales[n], p.ndim >= 2), []).append(p)
    return [{"params": ps, "lr": lr * scale, "weight_decay": weight_decay if decays else 0.0}
            for (scale, decays), ps in sorted(groups.items(), key=lambda kv: (-kv[0][0], not kv[0][1]))]


def layer_lr_scales(names: list[str], decay: float) -> dict[str, float]:
    """Each parameter's share of the learning rate under layer-wise decay (LLRD, ULMFiT's discriminative rates).

    The lower layers hold what transfers across domains; a small fine-tune that moves them as far as the top ones
    spends the base's knowledge for little. The top transformer layer (and anything above it: pooling, dense heads)
    learns at the full rate, each layer below at `decay` x the one above, the embeddings below the lowest layer.
    """
    depth: dict[str, int | None] = {}
    for n in names:
        match = _LAYER.search("." + n)
        depth[n] = int(match.group(1)) + 1 if match else (0 if "embed" in n else None)
    top = max((d for d in depth.values() if d is not None), default=0)
    return {n: decay ** (top - d) if d is not None else 1.0 for n, d in depth.items()}
