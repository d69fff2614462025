"""A training run's resumable checkpoint: everything a killed run needs to end with the weights an uninterrupted
run would have, kept in the run's state folder (only the latest; written beside it, then swapped in, so a kill
while writing leaves the one before)."""

from __future__ import annotations

import logging
import os

from distill.weights import load_weights, save_weights
from synthgen.rundir import remove_tree

log = logging.getLogger("distill")
PROGRESS = ("best_step", "best_value", "best_dev", "base_dev", "base_dev_queries", "best_dev_queries")  # of keep-best


def save_checkpoint(run) -> None:
    """`run` is distill.train's run: its model, optimizer, scheduler, step and keep-best progress."""
    import torch

    final = run.state_dir / f"ckpt-{run.step:08d}"
    tmp = run.state_dir / f"ckpt-{run.step:08d}.tmp"
    remove_tree(tmp)
    tmp.mkdir()
    save_weights(run.model, tmp / "weights.safetensors")
    torch.save(
        {
            "step": run.step,
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler else None,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            **{key: getattr(run, key) for key in PROGRESS},
            "toolbox": run.toolbox.state_dict(),
        },
        tmp / "state.pt",
    )
    remove_tree(final)
    os.replace(tmp, final)
    for old in run.state_dir.glob("ckpt-*"):
        if old != final:
            remove_tree(old)


def restore_checkpoint(run) -> bool:
    """Load the latest checkpoint into the run; False when there is none (a new run)."""
    import torch

    done = sorted(p for p in run.state_dir.glob("ckpt-*") if not p.name.endswith(".tmp"))
    if not done:
        return False
    latest = done[-1]
    load_weights(run.model, latest / "weights.safetensors")
    state = torch.load(latest / "state.pt", map_location="cpu", weights_only=True)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if run.scaler is not None and state["scaler"] is not None:
        run.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    run.step = state["step"]
    for key in PROGRESS:
        setattr(run, key, state.get(key))
    run.toolbox.load_state_dict(state.get("toolbox", {}))
    log.info("resuming %s from step %d", run.out, run.step)
    return True
