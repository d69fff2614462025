"""Keyphrase queries: a passage's most telling content words as a keyword query, written without an LLM.

Why they exist: the bundled LLM writes a few hundred queries in the time a run has, and many are generic. Five
words chosen by tf x idf cost nothing, cover passages the LLM never saw, and carry the lexical signal BM25 wins on
(BM25 alone beats the zero-shot student on SciFact). They are not trained with their own passage as the positive:
they go through relabel like the LLM's queries, so the judges choose the positive and the hard negatives (leaving
them to the retriever judges, without the LLM's query likelihood, cost 0.71 nDCG@10 on SciFact). Mixed
with the LLM's queries, three per LLM passage raised nDCG@10 over the LLM's queries alone with each of three
training seeds, on SciFact and on ADI, and six raised it again over three on SciFact; eight (nearly every passage
of SciFact) was no better than six on the same LLM queries (docs/results.md). They need passages long enough for
their words to repeat: in a corpus of short passages tf x idf chooses by idf alone, and there they cost NPL 3.9
points against the LLM's queries alone, so by default a corpus writes them only when most of its passages are long
(`default_count`).

A passage's query depends only on the passage and the corpus (idf), so a run written again writes the same queries.
"""

from __future__ import annotations

import collections
import math
from typing import Callable, Iterable, Sequence

from synthgen.records import Passage, Query
from synthgen.text import STOPWORDS, words

FORM = "keyphrases"
# what the query-likelihood judge reads as the task, as it reads the LLM's task descriptions
TASK = "Given keywords, retrieve the passage they describe"
SIZE = 5  # words per query
# The default per LLM passage, and when a corpus gets it: at least LONG_SHARE of its passages with LONG_WORDS distinct
# content words (docs/results.md, "What NPL's loss comes from"). long_share of the ingested corpora: SciFact 96%,
# Cranfield 66%, CISI 58% (where the keyphrase queries helped or leaned so), CACM 21%, ADI 4%, NPL 4% (where the LLM's
# queries alone did as well or better: NPL +3.9, CACM +0.06 over three draws, ADI -0.28 over eight). A rule per
# passage instead (a query only for a long passage) lost on Cranfield and SciFact, whose few short passages' queries
# taught.
PER_PASSAGE = 6
LONG_WORDS = 50
LONG_SHARE = 0.5


def query_id(passage_id: str) -> str:
    return f"{passage_id}@{FORM}"


def is_keyphrase_id(item_id: str) -> bool:
    return item_id.endswith(f"@{FORM}")


def idf(passages: Sequence[Passage]) -> Callable[[str], float]:
    """Inverse document frequency over the passages; a word never seen counts as seen once."""
    document_frequency: collections.Counter[str] = collections.Counter()
    for passage in passages:
        document_frequency.update(set(words(passage.text)))
    return lambda word: math.log(len(passages) / document_frequency.get(word, 1))


def content_words(text: str) -> list[str]:
    """The words a keyphrase query chooses from, in order: no stopwords, numbers or words under three letters."""
    return [w for w in words(text) if w not in STOPWORDS and not w.isdigit() and len(w) > 2]


def keyphrase_query(text: str, weight: Callable[[str], float], size: int = SIZE) -> str | None:
    """The `size` content words of highest sqrt(tf) x idf, in the order they first appear; None for a passage
    with fewer than 2 x size distinct content words, which leaves nothing out and so asks nothing."""
    tokens = content_words(text)
    counts = collections.Counter(tokens)
    if len(counts) < 2 * size:
        return None
    chosen = set(sorted(counts, key=lambda w: (-counts[w] ** 0.5 * weight(w), w))[:size])
    return " ".join(dict.fromkeys(w for w in tokens if w in chosen))


def has_keyphrase_query(passage: Passage) -> bool:
    """Whether a passage is long enough for a query: what the budget counts before any query is written."""
    return keyphrase_query(passage.text, lambda word: 0.0) is not None


def distinct_content_words(text: str) -> int:
    return len(set(content_words(text)))


def long_share(passages: Sequence[Passage]) -> float:
    """The share of passages with LONG_WORDS distinct content words (0 for no passages)."""
    return sum(distinct_content_words(p.text) >= LONG_WORDS for p in passages) / max(len(passages), 1)


def default_count(share: float) -> int:
    """Keyphrase queries per LLM passage when the user names no number, from the corpus's `long_share`: PER_PASSAGE
    for a corpus of mostly long passages, none otherwise."""
    return PER_PASSAGE if share >= LONG_SHARE else 0


def keyphrase_queries(ordered: Iterable[Passage], count: int, weight: Callable[[str], float]) -> list[Query]:
    """Queries for the first `count` passages of `ordered` that are long enough to have one."""
    queries: list[Query] = []
    for passage in ordered:
        if len(queries) >= count:
            break
        text = keyphrase_query(passage.text, weight)
        if text is not None:
            queries.append(Query(id=query_id(passage.id), passage_id=passage.id, task=TASK, query=text, form=FORM))
    return queries
