"""The LLM judges through the real hf backend (tiny random Llama): request shape, shared contexts, arithmetic."""

import math

import pytest

from relabel_corpus import passages, queries
from synthgen.judges import NO, YES, LLMJudges, cut_words
from synthgen.llm import load_llm


class Recording:
    """The real backend, with the requests it was sent kept for inspection."""

    def __init__(self, llm):
        self.llm, self.name, self.calls = llm, llm.name, []

    def score(self, requests):
        self.calls.append(list(requests))
        return self.llm.score(requests)

    def close(self):
        self.llm.close()


@pytest.fixture(scope="module")
def tiny(tiny_llm_path):
    llm = Recording(load_llm(f"hf:{tiny_llm_path}"))
    yield llm
    llm.close()


def test_judges_share_one_context_per_passage_sent_passage_major(tiny):
    ps, qs = passages(), queries()
    judges = LLMJudges(tiny, ["ql", "yesno"], words=5)
    pairs = [(qs[0], ps[1]), (qs[1], ps[0]), (qs[2], ps[1]), (qs[3], ps[0])]
    scores = judges.score(pairs)
    (requests,) = tiny.calls[-1:]
    contexts = [r.context for r in requests]
    assert len(requests) == 8 and len(set(contexts)) == 2  # two passages, one context each for both judges
    first_change = next(i for i, c in enumerate(contexts) if c != contexts[0])
    assert set(contexts[first_change:]) == {contexts[first_change]}  # each passage's requests are adjacent
    assert all(cut_words(ps[0].text, 5) in c or cut_words(ps[1].text, 5) in c for c in contexts)
    assert not any(ps[0].text in c for c in contexts)  # cut to 5 words
    assert all(q.query not in r.context for q in qs for r in requests)  # the query is never in the context
    ql = [r for r in requests if not r.choices]
    yesno = [r for r in requests if r.choices]
    assert len(ql) == len(yesno) == 4 and all(r.choices == YES + NO for r in yesno)
    assert all(s.keys() == {"ql", "yesno"} and all(math.isfinite(v) for v in s.values()) for s in scores)


def test_scores_are_mean_log_probability_and_yes_no_log_odds(tiny):
    ps, qs = passages(), queries()
    judges = LLMJudges(tiny, ["ql", "yesno"], words=20)
    (score,) = judges.score([(qs[4], ps[4])])
    ql_request, yesno_request = tiny.calls[-1]
    raw_ql, raw_yesno = tiny.llm.score([ql_request, yesno_request])
    assert score["ql"] == pytest.approx(sum(raw_ql.token_logprobs) / len(raw_ql.token_logprobs))
    lp = raw_yesno.choice_logprobs
    odds = math.log(sum(math.exp(lp[c]) for c in YES)) - math.log(sum(math.exp(lp[c]) for c in NO))
    assert score["yesno"] == pytest.approx(odds, abs=1e-6)


def test_keys_change_with_texts_and_settings(tiny):
    ps, qs = passages(), queries()
    a = LLMJudges(tiny, ["ql"], words=20)
    assert a.key("ql", qs[0], ps[0]) == LLMJudges(tiny, ["ql"], words=20).key("ql", qs[0], ps[0])
    assert a.key("ql", qs[0], ps[0]) != a.key("ql", qs[0], ps[1])
    assert a.key("ql", qs[0], ps[0]) != LLMJudges(tiny, ["ql"], words=30).key("ql", qs[0], ps[0])
    assert a.key("ql", qs[0], ps[0]) != LLMJudges(tiny, ["yesno"], words=20).key("yesno", qs[0], ps[0])
    # a judge's judgments do not depend on which other judges run beside it
    assert a.key("ql", qs[0], ps[0]) == LLMJudges(tiny, ["ql", "yesno"], words=20).key("ql", qs[0], ps[0])
