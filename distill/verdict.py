"""The dev set's verdict on the saved model against the base model, and what `distill train` says about it.

Only a loss beyond the dev queries' own noise (a paired bootstrap interval wholly below 0) counts as worse: on
synthetic dev sets a point drop was the rule for models that real test queries put two points above the base, while
every model the test put decidedly below the base lay beyond that noise (docs/guard.md, ninth check).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from distill.metrics import paired_interval


@dataclass(frozen=True)
class Verdict:
    beats: bool  # the saved model's mean above the base's
    worse: bool  # below the base beyond the dev set's noise: warned about, and eval.keep_base acts on it
    interval: Optional[tuple[float, float]]  # 95% interval of saved minus base over the dev queries
    warning: str = ""
    note: str = ""  # a drop within the noise: said, not warned


def side_of_zero(interval: Sequence[float]) -> int:
    """-1 when the interval of saved minus base lies wholly below 0 (a loss beyond the noise), +1 wholly above, 0 when
    it holds 0: the one rule the warning, eval.keep_base and the pipeline's report read the interval by."""
    return -1 if interval[1] < 0 else 1 if interval[0] > 0 else 0


def judge(metric: str, base: dict[str, float], saved: dict[str, float], base_queries: Optional[Sequence[float]],
          saved_queries: Optional[Sequence[float]], step: Optional[int], keep_base: bool) -> Verdict:
    """The per-query values are None for a checkpoint of a version that kept none: then the means decide."""
    beats = saved[metric] > base[metric]
    interval = (paired_interval([s - b for s, b in zip(saved_queries, base_queries)])
                if base_queries is not None and saved_queries is not None else None)
    worse = side_of_zero(interval) < 0 if interval is not None else not beats
    figures = f"{metric} {saved[metric]:.4f} at step {step} vs {base[metric]:.4f} before training" + (
        f", 95% interval of the difference {100 * interval[0]:+.2f} to {100 * interval[1]:+.2f} points" if interval else "")
    if not beats and base[metric] >= 1.0:
        return Verdict(beats, False, interval, warning=(
            f"the dev set cannot show a gain: the base model already scores {metric} 1.0 on it "
            "(too few or too easy dev queries; set data.dev to a harder file)"))
    if worse:
        return Verdict(beats, True, interval, warning=(
            f"the trained model is worse than the base model on the dev set beyond its noise ({figures}); "
            + ("the base model is saved instead (eval.keep_base)" if keep_base else
               "the training data may be hurting: check on labelled data before using the model")))
    if not beats:
        return Verdict(beats, False, interval,
                       note=f"the trained model does not beat the base model on the dev set, within its noise ({figures})")
    return Verdict(beats, False, interval)
