"""Weight averaging along the training run: `distill train` as it is, plus models made from the average of the
weights it passed through, each moved to the recipe's WiSE-FT point toward the base as the saved model is. One
run gives the plain model at OUT and, beside it, OUT-ema98 and OUT-ema99 (bias-corrected exponential moving
averages, windows of about 50 and 100 steps) and OUT-tail50 (the uniform mean over the last half of the steps,
SWA/LAWA-style). Screened on two SciFact draws and a tie (docs/ablations.md), so it is a bench script, not a
recipe option. It hooks the trainer's step and finish, so the plain model is byte for byte what `distill train`
writes (checked: model.safetensors identical to both draws' own).

    .venv/bin/python bench/train_averages.py RUN/model/recipe.yaml OUT --threads 2 [--set KEY=VALUE ...]
    .venv/bin/python bench/paired.py --data BEIR RUN/model OUT OUT-ema98 OUT-ema99 OUT-tail50
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DECAYS = {"ema98": 0.98, "ema99": 0.99}


def hook(run_class) -> None:
    """Wrap `_Run.optimizer_step` to update the averages after each step, and `_Run.finish` to save them first."""
    import torch

    from distill.encoder import save_encoder
    from distill.weights import interpolate

    step, finish = run_class.optimizer_step, run_class.finish

    def trainable(run):
        return [(n, p) for n, p in run.model.named_parameters() if p.requires_grad]

    def averaged_step(run) -> None:
        step(run)
        named = trainable(run)
        if not hasattr(run, "averages"):
            run.averages = {k: {n: torch.zeros_like(p, dtype=torch.float32) for n, p in named} for k in [*DECAYS, "tail50"]}
            run.tail_steps = 0
        run.done_steps = run.step + 1  # run.step counts finished steps after this call
        with torch.no_grad():
            for name, decay in DECAYS.items():
                for n, p in named:
                    run.averages[name][n].mul_(decay).add_(p.detach().float(), alpha=1 - decay)
            if run.done_steps > run.total_steps // 2:
                run.tail_steps += 1
                for n, p in named:
                    run.averages["tail50"][n].add_(p.detach().float())

    def averaged_finish(run, seconds: float, rate: float):
        named = trainable(run)
        trained = {n: p.detach().clone() for n, p in named}
        for name, total in run.averages.items():
            scale = 1 / (1 - DECAYS[name] ** run.done_steps) if name in DECAYS else 1 / run.tail_steps
            with torch.no_grad():
                for n, p in named:
                    p.copy_(total[n] * scale)
            if run.recipe.train.interpolation < 1:
                interpolate(run.model, run.initial, run.recipe.train.interpolation)
            run.model.eval()
            save_encoder(run.model, Path(f"{run.out}-{name}"), run.recipe.lora.save)
            print(f"{name}: saved to {run.out}-{name}", flush=True)
        with torch.no_grad():
            for n, p in named:
                p.copy_(trained[n])
        run.model.train()
        return finish(run, seconds, rate)

    run_class.optimizer_step, run_class.finish = averaged_step, averaged_finish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE, as distill train's --set")
    args = parser.parse_args()

    from distill import train
    from distill.recipe import load_recipe
    from synthgen.machine import use_threads

    use_threads(args.threads)
    hook(train._Run)
    result = train.train(load_recipe(args.recipe, [*args.sets, f"output={args.out}", "eval.beir="]), progress=False)
    print(f"plain: {result.steps} steps in {result.train_seconds} s, saved to {args.out}")


if __name__ == "__main__":
    main()
