"""The trainable weights of the student: saved and loaded as safetensors for checkpoints, and interpolated (WiSE-FT)."""

from __future__ import annotations

from pathlib import Path

from synthgen.rundir import atomic_file


def interpolate(model, initial: dict, alpha: float) -> None:
    """WiSE-FT (Wortsman et al. 2022): move the trained weights back towards where training started.

    A model tuned on a billion pairs loses general skill to a small, noisy synthetic set faster than it gains
    the domain; the straight line between the two keeps most of both. With LoRA only the B matrices move
    (they start at zero), which scales the adapters' update by `alpha` exactly.
    """
    import torch

    lora = any("lora_B" in name for name in initial)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in initial and (not lora or "lora_B" in name):
                param.copy_(initial[name] + alpha * (param - initial[name]))


def save_weights(model, path: Path) -> None:
    """The trainable weights only (all of them, or just the LoRA adapters), written atomically."""
    from safetensors.torch import save

    state = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    with atomic_file(path, binary=True) as handle:
        handle.write(save(state))


def load_weights(model, path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    state = load_file(str(path))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
