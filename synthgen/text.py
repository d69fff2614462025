"""Text comparison shared by ingestion and generation: normalized keys, word tokens, copying and near-duplicates.

Why word tokens and not a model tokenizer: these checks decide what counts as "the same text" for a person
reading the output (a duplicate passage, a query that repeats another or copies its passage), and they must
not depend on which LLM or student model a run uses.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from difflib import SequenceMatcher

_WORD = re.compile(r"\w+", re.UNICODE)
_SPACE = re.compile(r"\s+")

# Words that carry no topic. Near-duplicate candidates are looked up by the other words only, so the posting
# lists stay short; the similarity itself is computed over all words.
STOPWORDS = frozenset(
    "a an and are as at be by can do does for from has have how in is it its of on or that the this to was "
    "were what when where which who why with".split()
)


def normalize(text: str) -> str:
    """A key under which texts that differ only in case, Unicode form or whitespace are equal."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def words(text: str) -> list[str]:
    return _WORD.findall(normalize(text))


def longest_common_run(a: list[str], b: list[str]) -> int:
    """Length of the longest run of consecutive words that `a` and `b` share."""
    if not a or not b:
        return 0
    return SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b)).size


def content_overlap(query: str, passage: str) -> float:
    """Share of the query's topic words (not stopwords or numbers) that occur in the passage.

    Words match exactly or by their first five letters, a crude stem that lets "shortening" match "shorten".
    A small model often writes fluent queries about something else entirely; they share almost no words
    with their passage, while people's queries for a passage mostly do (SciFact's training claims: 95% share
    at least 0.17 of their words with the abstract they cite).
    """
    topic = [w for w in words(query) if w not in STOPWORDS and not w.isdigit()]
    if not topic:
        return 0.0
    vocabulary = set(words(passage))
    stems = {w[:5] for w in vocabulary}
    return sum(1 for w in topic if w in vocabulary or w[:5] in stems) / len(topic)


class NearDuplicateIndex:
    """Word-set Jaccard similarity against every text added so far, through an inverted index."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self._sets: list[frozenset[str]] = []
        self._postings: dict[str, list[int]] = defaultdict(list)

    def find(self, text: str) -> int | None:
        """Index of an added text at least `threshold` similar to `text`, or None."""
        tokens = frozenset(words(text))
        if not tokens:
            return None
        keys = (tokens - STOPWORDS) or tokens
        seen: set[int] = set()
        for key in keys:
            for i in self._postings.get(key, ()):
                if i in seen:
                    continue
                seen.add(i)
                other = self._sets[i]
                shared = len(tokens & other)
                if shared / (len(tokens) + len(other) - shared) >= self.threshold:
                    return i
        return None

    def add(self, text: str) -> None:
        tokens = frozenset(words(text))
        i = len(self._sets)
        self._sets.append(tokens)
        for key in (tokens - STOPWORDS) or tokens:
            self._postings[key].append(i)
