"""A document's text -> passages of about a target length, cut at sentence ends.

Chunking: a document is cut into the whole number of passages that brings their length closest to `size`,
so anything up to 1.5 x size stays whole (with the default 300 words, 99% of SciFact's abstracts), and cut
points fall on sentence ends, preferring paragraph ends. Each passage after the first repeats up to `overlap`
of the previous one's last sentences, so a fact cut in two is still whole somewhere.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable

from synthgen.errors import UserError


@dataclass(frozen=True)
class ChunkConfig:
    size: int = 300  # target passage length, in words (or in tokens of `tokenizer`)
    overlap: int = 30  # at most this much of a passage's end is repeated at the start of the next
    tokenizer: str | None = None  # path of a transformers tokenizer: size and overlap count its tokens

    def __post_init__(self) -> None:
        if self.size < 10:
            raise UserError(f"passage size must be at least 10, got {self.size}")
        if not 0 <= self.overlap < self.size // 2:
            raise UserError(f"passage overlap must be between 0 and half the passage size, got {self.overlap}")


_PARAGRAPH = re.compile(r"\n\s*\n")


# Longer paragraphs (a minified page, a table flattened to one line) are not prose: they are cut into word windows
# without looking for sentences, which would cost seconds a paragraph.
MAX_SENTENCE_SEARCH = 50_000  # characters


def sentences(paragraph: str) -> list[str]:
    """The sentences of one paragraph (whitespace already collapsed to single spaces), by pysbd's rule-based
    segmenter. A regex on ". Capital" cut "Dr. Smith", "U.S. Army", "Fig. 2" and "e.g. this"; pysbd keeps them and
    gives the text back unchanged. blingfire, 100 times faster, did not split "It was good. Dr. Smith came.", and
    the speed matters little: only documents longer than a passage are split into sentences at all."""
    if len(paragraph) > MAX_SENTENCE_SEARCH:
        return [paragraph]
    return [s.strip() for s in _segmenter().segment(paragraph) if s.strip()]


@functools.lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def length_function(tokenizer: str | None) -> Callable[[str], int]:
    if tokenizer is None:
        return lambda text: len(text.split())
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(tokenizer)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load tokenizer {tokenizer}: {exc}") from None
    return lambda text: len(tok(text, add_special_tokens=False).input_ids)


@dataclass(frozen=True)
class _Unit:
    text: str
    length: int
    starts_paragraph: bool


def split_passages(text: str, config: ChunkConfig, length: Callable[[str], int] = lambda t: len(t.split())) -> list[str]:
    """Passage texts of one document: whole if it fits, else balanced cuts on sentence ends, with overlap."""
    paragraphs = [" ".join(p.split()) for p in _PARAGRAPH.split(text)]
    whole = "\n".join(p for p in paragraphs if p)
    if not whole or round(length(whole) / config.size) <= 1:  # it stays whole: no sentences needed
        return [whole] if whole else []
    units = list(_units(text, config.size, length))
    if not units:
        return []
    total = sum(u.length for u in units)
    n = min(max(1, round(total / config.size)), len(units))
    if n == 1:
        return [_join(units)]
    cuts = _cut_points(units, n, total)
    passages = []
    bounds = list(zip([0] + cuts, cuts + [len(units)]))
    for k, (start, end) in enumerate(bounds):
        first, carried = start, 0  # walk back over whole sentences of the previous passage, within the overlap
        while k and first > bounds[k - 1][0] + 1 and carried + units[first - 1].length <= config.overlap:
            first -= 1
            carried += units[first].length
        passages.append(_join(units[first:end]))
    return passages


def _cut_points(units: list[_Unit], n: int, total: int) -> list[int]:
    """n-1 unit indexes to cut before, each nearest its ideal share of the length; paragraph ends preferred."""
    ends, running = [], 0  # ends[i]: length before unit i
    for u in units:
        ends.append(running)
        running += u.length
    target = total / n
    cuts: list[int] = []
    for k in range(1, n):
        ideal = k * target
        lo = (cuts[-1] + 1) if cuts else 1
        hi = len(units) - (n - k)  # leave at least one unit for each later passage
        best = min(range(lo, hi + 1),
                   key=lambda i: abs(ends[i] - ideal) - (0.15 * target if units[i].starts_paragraph else 0))
        cuts.append(best)
    return cuts


def _units(text: str, size: int, length: Callable[[str], int]):
    """Sentences with their lengths; a sentence longer than half a passage is cut into word windows."""
    for paragraph in _PARAGRAPH.split(text):
        paragraph = " ".join(paragraph.split())
        first = True
        for sentence in sentences(paragraph):
            for piece in _windows(sentence, max(size // 2, 1), length):
                yield _Unit(piece, length(piece), first)
                first = False


def _windows(sentence: str, limit: int, length: Callable[[str], int]) -> list[str]:
    n = length(sentence)
    if n <= limit:
        return [sentence]
    tokens = sentence.split()
    step = max(1, int(len(tokens) * limit / n))
    pieces = [" ".join(tokens[i : i + step]) for i in range(0, len(tokens), step)]
    return [p for piece in pieces for p in (_windows(piece, limit, length) if length(piece) > limit and step > 1 else [piece])]


def _join(units: list[_Unit]) -> str:
    out = []
    for u in units:
        if out:
            out.append("\n" if u.starts_paragraph else " ")
        out.append(u.text)
    return "".join(out)
