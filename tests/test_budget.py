"""The time budget's arithmetic (synthgen.budget): the projection and the choice it makes; the budget stage that
measures the rates is in test_pipeline."""

from __future__ import annotations

import dataclasses
import json

import pytest

from synthgen.budget import GENERATE_OVERHEAD, READ_PAIRS, Choice, Rates, Shape, choose, decide, project
from synthgen.stages.budget import judging_rates

SHAPE = Shape(queries_per_passage=1, keyphrase_queries=6, passages=5000, judge_keyphrases=True, llm_judges=True,
              epochs=1, eval_passages=5000)
RATES = Rates(prompt_seconds=3.0, queries_per_prompt=0.95, pair_seconds=0.05, pairs_per_query=2.0, relabel_seconds=30.0,
              example_seconds=0.36, train_seconds=20.0, encode_seconds=0.07)


def remaining(n: int, done: int, shape: Shape = SHAPE, rates: Rates = RATES) -> float:
    return sum(project(n, shape, rates, done).values())


@pytest.mark.parametrize("budget_minutes", [5, 30, 60, 90, 170, 10_000])
@pytest.mark.parametrize("spent", [0.0, 300.0])
def test_the_choice_is_the_most_passages_that_fit(budget_minutes, spent):
    done, limit = 64, 1280
    fitting = [n for n in range(done, limit + 1) if spent + remaining(n, done) <= budget_minutes * 60]
    assert choose(budget_minutes * 60, spent, done, limit, SHAPE, RATES) == (fitting[-1] if fitting else done)


def test_more_minutes_never_buy_fewer_passages_and_the_limit_holds():
    chosen = [choose(m * 60, 120.0, 64, 1280, SHAPE, RATES) for m in range(1, 400, 7)]
    assert chosen == sorted(chosen) and chosen[0] == 64 and chosen[-1] == 1280


def test_each_stage_counts_the_work_the_options_give_it():
    small, large = project(100, SHAPE, RATES), project(800, SHAPE, RATES)
    assert all(large[k] > small[k] for k in ("generate", "relabel", "train")) and large["eval"] == small["eval"]
    # 100 passages: 95 LLM queries and 600 keyphrase queries, all judged and trained on; judging reads the 600 seed
    # passages (the LLM's 100 among them) and the 695 other candidates, less those that are seeds
    assert small["relabel"] == pytest.approx(30 + (READ_PAIRS * (600 + 695 * (1 - 600 / 5000)) + 695 * 2) * 0.05)
    # 800 passages: 760 + 4,800 queries, whose 4,800 seeds and 5,560 other candidates would read past the corpus
    assert large["relabel"] == pytest.approx(30 + (READ_PAIRS * 5000 + 5560 * 2) * 0.05)
    assert large["train"] == pytest.approx(20 + (760 + 4800) * 0.36)
    unjudged = project(800, dataclasses.replace(SHAPE, judge_keyphrases=False), RATES)
    assert unjudged["relabel"] == pytest.approx(30 + (READ_PAIRS * (800 + 760 * (1 - 800 / 5000)) + 760 * 2) * 0.05)
    assert unjudged["train"] == large["train"]
    assert project(800, dataclasses.replace(SHAPE, llm_judges=False), RATES)["relabel"] == 30
    capped = project(800, dataclasses.replace(SHAPE, max_examples=64), RATES)  # train.max_steps stops training
    assert capped["train"] == pytest.approx(20 + 64 * 0.36)
    # the keyphrase queries cannot outnumber the corpus's passages: beyond that only the LLM's queries add work
    assert project(1000, SHAPE, RATES)["train"] - project(900, SHAPE, RATES)["train"] == pytest.approx(95 * 0.36)


def test_the_prefix_is_neither_generated_nor_judged_again():
    # 64 passages done: 60.8 LLM queries and 384 keyphrase queries on 384 seeds already written and judged
    again = project(64, SHAPE, RATES, done=64)
    assert again["generate"] == 0 and again["relabel"] == 30
    assert again["train"] == project(64, SHAPE, RATES)["train"]  # training and evaluation start over
    more = project(200, SHAPE, RATES, done=64)
    assert more["generate"] == pytest.approx((200 - 64) * 3.0 * GENERATE_OVERHEAD)
    queries, seeds = 190 + 1200 - 60.8 - 384, 1200 - 384  # new: 945.2 queries on 816 seeds
    assert more["relabel"] == pytest.approx(30 + (READ_PAIRS * (seeds + queries * (1 - seeds / 5000)) + queries * 2) * 0.05)


def relabeled(queries: int, fresh: int, read: int, reused: int, seconds: float) -> dict:
    return {"counts": {"llm_judged_queries": queries, "llm_pairs_judged": fresh, "llm_passages_read": read,
                       "llm_pairs_reused": reused},
            "throughput": {"judging_seconds": seconds}}


def test_judging_is_measured_per_pair_and_passage_read():
    rates = judging_rates(relabeled(100, 200, 150, 0, 50.0), None)
    assert rates == pytest.approx({"pair_seconds": 50.0 / (READ_PAIRS * 150 + 200), "pairs_per_query": 2.0})
    # half the pairs reused: the 200 fresh pairs and their reads took the time
    half = judging_rates(relabeled(100, 200, 150, 200, 50.0), None)
    assert half == pytest.approx({"pair_seconds": rates["pair_seconds"], "pairs_per_query": 4.0})
    # nothing judged now: the seconds come from the run that judged them, the pairs from what this one would judge
    resumed = judging_rates(relabeled(100, 0, 0, 200, 0.0), relabeled(100, 200, 150, 0, 50.0))
    assert resumed == pytest.approx(rates)
    assert judging_rates(relabeled(100, 0, 0, 200, 0.0), None)["pair_seconds"] == 0.0


def test_the_record_says_what_was_chosen_and_whether_it_fits():
    choice = decide(90, 240.0, 64, 1280, SHAPE, RATES)
    assert choice.passages == choose(90 * 60, 240.0, 64, 1280, SHAPE, RATES)
    assert choice.projected_total_minutes == pytest.approx((240 + remaining(choice.passages, 64)) / 60, abs=0.06)
    assert choice.projected_total_minutes <= 90 and "over the budget" not in choice.line()
    over = decide(1, 240.0, 64, 1280, SHAPE, RATES)
    assert over.passages == 64 and "over the budget already" in over.line()


def test_a_projection_of_stages_under_a_tenth_of_a_minute_says_so():
    record = decide(90, 240.0, 64, 1280, SHAPE, RATES).to_dict()
    assert Choice(**record).projected().startswith("generate ")
    tiny = Choice(**{**record, "projected_minutes": {stage: 0.0 for stage in record["projected_minutes"]}})
    assert tiny.projected() == "under 0.1 each" and "projected minutes under 0.1 each, " in tiny.line()


def test_a_choice_recorded_by_another_projection_is_not_current():
    record = decide(90, 240.0, 64, 1280, SHAPE, RATES).to_dict()
    assert Choice.current(record)
    older = {**record, "rates": {"judge_seconds" if k == "pair_seconds" else k: v for k, v in record["rates"].items()}}
    assert not Choice.current(older)  # session 41's rates: its report could not be written
    assert not Choice.current({k: v for k, v in record.items() if k != "projected_minutes"})
    assert not Choice.current({})


def test_the_dev_sets_evaluations_count_its_distinct_passages(tmp_path):
    from synthgen.stages.budget import dev_pool_passages

    records = [{"query": "q1", "pos": ["a"], "neg": ["b", "c"]}, {"query": "q2", "pos": ["b"], "neg": ["d"]},
               {"query": "q3", "pos": ["a"]}]
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert dev_pool_passages(tmp_path / "dev.jsonl") == 4


def test_choosing_the_keyphrase_records_adds_a_training_on_the_llms_examples_and_an_evaluation():
    """--choose-keyphrases: model-llm/ trains on the LLM's queries alone (95 of 100 passages' prompts kept) with its
    own loading and saving, and is evaluated as the first model is."""
    plain, chosen = project(100, SHAPE, RATES), project(100, dataclasses.replace(SHAPE, choose=True), RATES)
    assert chosen["train"] - plain["train"] == pytest.approx(20 + 95 * 0.36)
    assert chosen["eval"] == pytest.approx(2 * plain["eval"])
    assert {k: chosen[k] for k in ("generate", "relabel")} == {k: plain[k] for k in ("generate", "relabel")}
    capped = dataclasses.replace(SHAPE, choose=True, max_examples=64)
    assert project(100, capped, RATES)["train"] == pytest.approx(2 * 20 + 2 * 64 * 0.36)
