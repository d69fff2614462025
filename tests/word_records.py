"""Ten training records of varied lengths from a dozen words: a fixed batch for the gradient-caching tests, in one
process (tests/test_distill_gradcache.py) and across torchrun ranks (tests/ddp_step.py)."""

from __future__ import annotations

from synthgen.records import TrainingExample

WORDS = "cell protein river music law fire stone bread light water metal glass".split()


def word_records(n: int = 10) -> list[TrainingExample]:
    return [
        TrainingExample(
            query=" ".join(WORDS[i % 12 : i % 12 + 1 + i % 4]),
            pos=[" ".join(WORDS[(i + k) % 12] for k in range(3 + 2 * (i % 5)))],
            neg=[" ".join(WORDS[(i + 5 + k) % 12] for k in range(2 + i % 7)), f"{WORDS[i % 12]} alone"],
        )
        for i in range(n)
    ]
