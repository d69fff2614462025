"""Relabeling (Gecko step 2): candidates for each query, judged, fused by rank; positive and hard negatives chosen.

A generated query is often answered better by another passage than the one it was written from (Gecko
reports ~15%), and the passages ranked just below the answer make the most useful negatives, unless they are
relevant too. So every query gets the whole corpus's best candidates (`retrieve`), several judges rank them,
their rankings are fused by reciprocal rank (robust to judges on incomparable scales: log-probabilities,
cosines, BM25), and the fused top is the positive.

False-negative protection needs a notion of "about as good as the positive" that works for every judge.
Raw scores do not give one (log-probabilities are negative, RRF scores are all close to 1/60), so each
judge's scores are min-max normalized over the query's candidates (best 1, worst 0; a judge that cannot tell
its candidates apart puts them all at 1) and averaged over the judges: a score in [0, 1] where the positive is
usually near 1. A candidate at or above `margin` times the positive's score is never a negative (NV-Retriever's
TopK-PercPos on this scale), nor is the seed passage (the query was written from it), nor a near-duplicate
of the positive. These normalized scores are the `pos_scores`/`neg_scores` of the training records.

`min_agreement` drops a query unless that many judges put its positive first. It is off by default: the queries
the judges disagree on are the hard ones, and on SciFact leaving them out cost 0.9 nDCG@10 (docs/ablations.md).
`drop_unlikely` (InPars' filter) drops the share of the LLM's queries that the query-likelihood judge finds least
likely given their own seed passage, once every query is selected. The relabel stage drops a quarter by default:
the small LLM's least likely queries for their own passage are mostly fragments, and leaving them out gained on
both SciFact draws measured (docs/ablations.md).

Everything here is a pure function of records; files, resume and manifests belong to synthgen.stages.relabel.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from synthgen.errors import UserError
from synthgen.judges import JudgeBatch, Judgment, LLMJudges, judge_batch
from synthgen.keyphrases import is_keyphrase_id
from synthgen.records import Passage, Query, TrainingExample
from synthgen.retrieve import METHODS, RRF_K, BM25Retriever, DenseRetriever, Embedder, HybridRetriever, fuse_ranks
from synthgen.text import words

JUDGES = ("ql", "yesno", "dense", "bm25", "dense2")
POSITIVES = ("fused", "seed")
STRATEGIES = ("random", "top", "lowest")


@dataclass(frozen=True)
class SelectionConfig:
    positive: str = "fused"  # fused: the top of the fused ranking; seed: always the passage the query came from
    negatives: int = 7  # hard negatives per query (fewer when fewer are safe)
    strategy: str = "random"  # within the rank window: random (seeded), top (hardest first), lowest (Gecko)
    ranks: tuple[int, int] = (3, 20)  # fused-rank window negatives come from, 1-based and inclusive
    margin: float = 0.95  # candidates scoring >= margin * the positive's normalized score are not negatives
    duplicate_overlap: float = 0.6  # share of word 5-grams with the positive that makes a near-duplicate
    round_trip: bool = False  # drop a query whose seed is not in the retriever's own top-k (Promptagator)
    min_agreement: int = 0  # drop a query unless this many judges put its positive first (0: keep every query)
    seed: int = 0
    positives: int = 1  # > 1: also keep up to this many candidates at or above the margin as positives (SupCon)
    drop_unlikely: float = 0.0  # share of the LLM's queries dropped, least likely given their seed first (InPars)

    def check(self) -> None:
        if self.positive not in POSITIVES:
            raise UserError(f"unknown --positive '{self.positive}': expected one of {', '.join(POSITIVES)}")
        if self.strategy not in STRATEGIES:
            raise UserError(f"unknown --negative-strategy '{self.strategy}': expected one of {', '.join(STRATEGIES)}")
        lo, hi = self.ranks
        if not 1 <= lo <= hi:
            raise UserError(f"bad --negative-ranks {lo}-{hi}: expected FIRST-LAST with 1 <= FIRST <= LAST")
        if self.negatives < 0:
            raise UserError("--negatives must be 0 or more")
        if not 0 < self.margin <= 1:
            raise UserError("--margin must be in (0, 1]")
        if self.positives < 1:
            raise UserError("--positives must be 1 or more")
        if self.min_agreement < 0:
            raise UserError("--min-agreement must be 0 or more")
        if not 0 <= self.drop_unlikely < 1:
            raise UserError("--drop-unlikely must be in [0, 1)")


@dataclass
class Candidates:
    """One query's candidate passages, in the retriever's order, with every judge's scores."""

    query: Query
    passages: list[int]  # indices into the corpus list; the seed is always among them
    seed: int | None  # corpus index of the seed passage (None for queries without one, as in benchmarks)
    seed_rank: int | None  # 1-based rank of the seed in the retriever's own top-k; None when it had to be added
    scores: dict[str, list[float | None]] = field(default_factory=dict)  # judge -> score per candidate; None: unjudged


@dataclass
class Selection:
    example: TrainingExample | None
    dropped: str | None  # reason, when the query yields no training example
    pos_is_seed: bool = False
    negatives_short: bool = False  # fewer safe negatives than asked
    top1: dict[str, int] = field(default_factory=dict)  # each judge's own top candidate, for agreement figures
    fused_top: int = -1


def parse_judges(text: str) -> tuple[str, ...]:
    judges = tuple(dict.fromkeys(j.strip() for j in text.split(",") if j.strip()))
    unknown = [j for j in judges if j not in JUDGES]
    if not judges or unknown:
        raise UserError(f"bad --judges '{text}': choose from {', '.join(JUDGES)} (comma-separated)")
    return judges


class Retrievers:
    """The corpus and the retrievers over it, each built on first use (BM25 costs a second, dense an encoding pass)."""

    def __init__(self, passages: Sequence[Passage], embedder: Embedder | None, index: str = "flat",
                 second: Embedder | None = None, progress: bool = True):
        self.passages = list(passages)
        self.position = {p.id: i for i, p in enumerate(self.passages)}
        self._embedder, self._index, self._progress = embedder, index, progress
        self.second = second
        self._dense: DenseRetriever | None = None
        self._bm25: BM25Retriever | None = None

    @property
    def dense(self) -> DenseRetriever:
        if self._dense is None:
            self._dense = DenseRetriever(self.passages, self._embedder or Embedder(), self._index, self._progress)
        return self._dense

    @property
    def bm25(self) -> BM25Retriever:
        if self._bm25 is None:
            self._bm25 = BM25Retriever(self.passages)
        return self._bm25

    def retriever(self, method: str) -> DenseRetriever | BM25Retriever | HybridRetriever:
        if method == "dense":
            return self.dense
        if method == "bm25":
            return self.bm25
        if method == "hybrid":
            return HybridRetriever(self.dense, self.bm25)
        raise UserError(f"unknown retrieval method '{method}': expected one of {', '.join(METHODS)}")


def retrieve_candidates(queries: Sequence[Query], retrievers: Retrievers, method: str, top_k: int) -> list[Candidates]:
    """Top-k candidates per query; the seed passage, when missing, takes the last place (and counts as added).
    A query whose seed is not in the corpus (real queries in a benchmark) has no seed."""
    if top_k < 1:
        raise UserError("--top-k must be at least 1")
    hits = retrievers.retriever(method).search([q.query for q in queries], top_k)
    out = []
    for query, row in zip(queries, hits):
        ids = [h.index for h in row]
        seed = retrievers.position.get(query.passage_id)
        seed_rank = ids.index(seed) + 1 if seed in ids else None
        if seed is not None and seed_rank is None:
            ids = ids[: top_k - 1] + [seed]
        out.append(Candidates(query, ids, seed, seed_rank))
    return out


def score_retrieval_judges(candidates: Sequence[Candidates], retrievers: Retrievers, judges: Sequence[str]) -> None:
    """Fill the judges that are retrievers' scores: cheap, so every candidate gets them."""
    texts = [c.query.query for c in candidates]
    lists = [c.passages for c in candidates]
    if "dense" in judges:
        vectors = retrievers.dense.embedder.encode_queries(texts)
        for c, s in zip(candidates, retrievers.dense.scores(vectors, lists)):
            c.scores["dense"] = s
    if "bm25" in judges:
        for c, s in zip(candidates, retrievers.bm25.scores(texts, lists)):
            c.scores["bm25"] = s
    if "dense2" in judges:
        if retrievers.second is None:
            raise UserError("the dense2 judge needs --second-embedder PATH")
        queries = retrievers.second.encode_queries(texts)
        needed = sorted({i for c in candidates for i in c.passages})
        vectors = dict(zip(needed, retrievers.second.encode_passages([retrievers.passages[i] for i in needed])))
        for c, q in zip(candidates, queries):
            c.scores["dense2"] = [float(vectors[i] @ q) for i in c.passages]


def llm_pairs(candidates: Sequence[Candidates], depth: int) -> list[tuple[int, int]]:
    """(candidate list, corpus index) pairs for the LLM judges: the first `depth` candidates and the seed,
    passage-major so that one passage's requests reach the backend together."""
    pairs = set()
    for n, c in enumerate(candidates):
        for i in c.passages[:depth]:
            pairs.add((n, i))
        if c.seed is not None:
            pairs.add((n, c.seed))
    return sorted(pairs, key=lambda pair: (pair[1], pair[0]))


def judgment_keys(candidates: Sequence[Candidates], passages: Sequence[Passage], judges: LLMJudges,
                  depth: int) -> set[str]:
    """The keys of every judgment these candidates need: of the earlier judgments, only these are reused, so only
    these say what a resumed run goes on in."""
    return {judges.key(j, candidates[n].query, passages[i]) for n, i in llm_pairs(candidates, depth)
            for j in judges.judges}


def judge_batches(candidates: Sequence[Candidates], passages: Sequence[Passage], judges: LLMJudges,
                  pairs: Sequence[tuple[int, int]], known: dict[str, float], batch_pairs: int) -> list[JudgeBatch]:
    """The pairs `known` lacks, each with the judges it still needs, in batches of about `batch_pairs`: a passage's
    pairs are never split, since the backend reads a passage once for all its queries in a batch."""
    todo: list[tuple[int, int, tuple[str, ...]]] = []  # (candidate list, corpus index, judges still to run)
    for n, i in pairs:
        missing = tuple(j for j in judges.judges if judges.key(j, candidates[n].query, passages[i]) not in known)
        if missing:
            todo.append((n, i, missing))
    batches: list[JudgeBatch] = []
    start = 0
    while start < len(todo):
        end = min(start + batch_pairs, len(todo))
        while end < len(todo) and todo[end][1] == todo[end - 1][1]:
            end += 1
        batches.append([(candidates[n].query, passages[i], missing) for n, i, missing in todo[start:end]])
        start = end
    return batches


def llm_judge(candidates: Sequence[Candidates], passages: Sequence[Passage], judges: LLMJudges, depth: int,
              known: dict[str, float], batch_pairs: int = 128, progress: bool = True,
              run: Callable[[list[JudgeBatch]], Iterator[list[Judgment]]] | None = None) -> Iterator[list[Judgment]]:
    """Run the LLM judges over the pairs `known` (judgment key -> score) lacks, in passage-major batches, and
    yield each batch's judgments for the caller to store; once exhausted, every candidate list holds the LLM
    judges' scores (None where a candidate was below `depth`).

    `run` judges the batches elsewhere (synthgen.executors), giving back each batch's judgments in order; by
    default `judges` scores them here."""
    from tqdm import tqdm

    pairs = llm_pairs(candidates, depth)
    batches = judge_batches(candidates, passages, judges, pairs, known, batch_pairs)
    results = run(batches) if run is not None else (judge_batch(judges, batch) for batch in batches)
    with tqdm(total=sum(map(len, batches)), desc="judging", unit="pair", disable=not progress or not batches) as bar:
        for batch, made in zip(batches, results):
            for judged in made:
                known[judged.key] = judged.score
            yield made
            bar.update(len(batch))
    judged_at: dict[int, set[int]] = {}
    for n, i in pairs:
        judged_at.setdefault(n, set()).add(i)
    for n, c in enumerate(candidates):
        for j in judges.judges:
            c.scores[j] = [known[judges.key(j, c.query, passages[i])] if i in judged_at[n] else None
                          for i in c.passages]


def judge_ranks(scores: Sequence[float | None]) -> list[int]:
    """1-based rank of each candidate under one judge: ties share their best rank; unjudged candidates come
    after every judged one, in retrieval order."""
    judged = sorted((-s, i) for i, s in enumerate(scores) if s is not None)
    ranks = [0] * len(scores)
    for place, (neg, i) in enumerate(judged):
        tied_above = place > 0 and judged[place - 1][0] == neg
        ranks[i] = ranks[judged[place - 1][1]] if tied_above else place + 1
    nxt = len(judged) + 1
    for i, s in enumerate(scores):
        if s is None:
            ranks[i] = nxt
            nxt += 1
    return ranks


def fuse(c: Candidates, judges: Sequence[str], k: int = RRF_K) -> list[float]:
    """Reciprocal-rank fusion of the judges' rankings: one score per candidate."""
    fused = fuse_ranks([dict(enumerate(judge_ranks(c.scores[judge]))) for judge in judges], k)
    return [fused.get(i, 0.0) for i in range(len(c.passages))]


def scaled_scores(c: Candidates, judges: Sequence[str]) -> list[float]:
    """Mean over judges of min-max normalized scores (see the module docstring); unjudged count as 0."""
    total = np.zeros(len(c.passages))
    for judge in judges:
        scores = c.scores[judge]
        judged = [s for s in scores if s is not None]
        lo, hi = min(judged), max(judged)
        for i, s in enumerate(scores):
            if s is not None:
                total[i] += (s - lo) / (hi - lo) if hi > lo else 1.0
    return (total / len(judges)).tolist()


def fused_order(c: Candidates, judges: Sequence[str], k: int = RRF_K) -> list[int]:
    """Positions in `c.passages`, best first; ties go to the seed, then to the retriever's order."""
    fused = fuse(c, judges, k)
    return sorted(range(len(fused)), key=lambda i: (-fused[i], c.passages[i] != c.seed, i))


def _shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    tokens = words(text)
    return {tuple(tokens[i : i + n]) for i in range(max(len(tokens) - n + 1, 1))}


def near_duplicate(a: str, b: str, overlap: float) -> bool:
    """Whether the shorter text shares at least `overlap` of its word 5-grams with the other."""
    sa, sb = _shingles(a), _shingles(b)
    return len(sa & sb) >= overlap * min(len(sa), len(sb))


def safe_negatives(c: Candidates, order: Sequence[int], norm: Sequence[float], pos_at: int, passages: Sequence[Passage],
                   margin: float, ranks: Sequence[int], duplicate_overlap: float) -> list[int]:
    """Positions in `c.passages` that may be negatives, best first: inside the fused-rank window `ranks`, not
    the positive, not the seed, below `margin` x the positive's normalized score, not a near-duplicate of the
    positive. Re-mining during training (distill.remine) applies the same rule to the student's ranking."""
    limit = margin * norm[pos_at]
    lo, hi = ranks
    pos_text = passages[c.passages[pos_at]].text
    return [
        at for rank, at in enumerate(order, start=1)
        if lo <= rank <= hi and at != pos_at and c.passages[at] != c.seed and norm[at] < limit
        and not near_duplicate(passages[c.passages[at]].text, pos_text, duplicate_overlap)
    ]


def select(c: Candidates, passages: Sequence[Passage], judges: Sequence[str], config: SelectionConfig) -> Selection:
    """The training example of one judged query, or why there is none."""
    top1 = {j: c.passages[judge_ranks(c.scores[j]).index(1)] for j in judges}
    if config.round_trip and c.seed is not None and c.seed_rank is None:
        return Selection(None, "round_trip", top1=top1)
    order = fused_order(c, judges)
    fused_top = c.passages[order[0]]
    pos_at = order[0] if config.positive == "fused" or c.seed is None else c.passages.index(c.seed)
    pos = c.passages[pos_at]
    if sum(top1[j] == pos for j in judges) < config.min_agreement:
        return Selection(None, "agreement", top1=top1, fused_top=fused_top)
    norm = scaled_scores(c, judges)
    eligible = safe_negatives(c, order, norm, pos_at, passages, config.margin, config.ranks, config.duplicate_overlap)
    pos_passage = passages[pos]
    also = [at for at in order if at != pos_at and norm[at] >= config.margin * norm[pos_at]
            and not near_duplicate(passages[c.passages[at]].text, pos_passage.text, config.duplicate_overlap)]
    positives = [pos_at, *also[: config.positives - 1]]
    count = min(config.negatives, len(eligible))
    if config.strategy == "top":
        chosen = eligible[:count]
    elif config.strategy == "lowest":
        chosen = eligible[len(eligible) - count :]
    else:
        rng = random.Random(f"{config.seed}:{c.query.id}")  # per query, so a resumed run chooses the same
        chosen = sorted(rng.sample(eligible, count), key=eligible.index)
    negs = [c.passages[at] for at in chosen]
    example = TrainingExample(
        query=c.query.query,
        pos=[passages[c.passages[at]].text for at in positives],
        neg=[passages[i].text for i in negs],
        pos_ids=[passages[c.passages[at]].id for at in positives],
        neg_ids=[passages[i].id for i in negs],
        pos_scores=[round(norm[at], 6) for at in positives],
        neg_scores=[round(norm[at], 6) for at in chosen],
        task=c.query.task,
        query_id=c.query.id,
        seed_id=c.query.passage_id,
    )
    return Selection(example, None, pos_is_seed=pos == c.seed, negatives_short=count < config.negatives,
                     top1=top1, fused_top=fused_top)


def seed_likelihoods(candidates: Sequence[Candidates], selections: Sequence[Selection]) -> dict[int, float]:
    """By index, each kept LLM query's query likelihood given its own seed passage (keyphrase queries left out)."""
    scores = {i: c.scores["ql"][c.passages.index(c.seed)] for i, (c, s) in enumerate(zip(candidates, selections))
              if s.example is not None and c.seed is not None and not is_keyphrase_id(c.query.id) and "ql" in c.scores}
    return {i: score for i, score in scores.items() if score is not None}


def drop_unlikely(candidates: Sequence[Candidates], selections: Sequence[Selection], fraction: float) -> list[Selection]:
    """InPars' filter: the `fraction` of the LLM's kept queries that the query-likelihood judge finds least likely
    given their own seed passage lose their training example ("unlikely"). The LLM's least likely queries for the
    passage it wrote them from are mostly fragments or off the passage ("RNA cleavage", "homeostatic
    subdivision"). It needs every query's score, so it runs once all are selected."""
    scored = sorted((score, i) for i, score in seed_likelihoods(candidates, selections).items())
    dropped = {i for _, i in scored[: int(fraction * len(scored))]}
    return [Selection(None, "unlikely", top1=s.top1, fused_top=s.fused_top) if i in dropped else s
            for i, s in enumerate(selections)]


def summarize(selections: Sequence[Selection], judges: Sequence[str]) -> dict:
    """Counts and rates for the manifest: written, dropped by reason, positive-is-seed, judge agreement."""
    kept = [s for s in selections if s.example is not None]
    n = len(kept)

    def share(agree: Callable[[Selection], bool], *needed: str) -> float | None:
        """Over the kept queries that every judge in `needed` ranked (keyphrase queries may skip the LLM's)."""
        ranked = [s for s in kept if all(j in s.top1 for j in needed)]
        return round(sum(map(agree, ranked)) / len(ranked), 4) if ranked else None

    agreement = {j: share(lambda s, j=j: s.top1[j] == s.fused_top, j) for j in judges}
    pairwise = {f"{a}~{b}": share(lambda s, a=a, b=b: s.top1[a] == s.top1[b], a, b)
                for x, a in enumerate(judges) for b in judges[x + 1 :]}
    return {
        "written": n,
        "dropped": dict(Counter(s.dropped for s in selections if s.dropped)),
        "positive_is_seed_rate": round(sum(s.pos_is_seed for s in kept) / n, 4) if n else None,
        "fewer_negatives_than_asked": sum(s.negatives_short for s in kept),
        "mean_negatives": round(sum(len(s.example.neg) for s in kept) / n, 3) if n else None,
        "judge_top1_agrees_with_fused": agreement,
        "judge_top1_agreement": pairwise,
    }
