"""Generation logic: answers, prompts, sampling plan, seeds and filters (pure functions, no model)."""

from __future__ import annotations

import pytest

from synthgen.errors import UserError
from synthgen.generate import (
    FORMS,
    GenerateConfig,
    Item,
    QueryFilter,
    check_template,
    derive_seed,
    parse_answer,
    parse_chat,
    plan,
    read_answer,
    render,
)
from synthgen.prompts import load_template
from synthgen.records import Passage
from synthgen.text import NearDuplicateIndex, content_overlap, longest_common_run, words


def passages(n: int) -> list[Passage]:
    return [Passage(id=f"doc{i}.txt#0", text=f"Passage number {i} about topic {i}.", title=f"T{i}") for i in range(n)]


# ---- answers -------------------------------------------------------------------------------------------


def test_parse_answer_takes_the_first_well_formed_object():
    assert parse_answer('{"task": "find studies", "query": "does x cause y?"}') == ("find studies", "does x cause y?")
    assert parse_answer('Sure! {"task": " a\\n task ", "query": "q  with   spaces"} and more {') == ("a task", "q with spaces")
    assert parse_answer('{"query": "q", "task": "t", "extra": [1, 2]}') == ("t", "q")


@pytest.mark.parametrize("text", [
    "",
    "no json here",
    '{"task": "t"}',  # no query
    '{"task": "t", "query": ""}',  # empty query
    '{"task": "t", "query": ["a", "b"]}',  # not a string
    '{"task": 1, "query": "q"}',
    '["task", "query"]',
    '{"task": "t", "query": "unterminated}',
    "{'task': 't', 'query': 'python literal, not JSON'}",
    '{"task": "t", "query": __import__("os").getcwd()}',  # never evaluated
])
def test_parse_answer_rejects_malformed(text):
    assert parse_answer(text) is None


def test_read_answer_joins_prefill_completion_and_cut_brace():
    prefill = '{"task": "'
    assert read_answer(prefill, 'Given a claim, find evidence", "query": "bees see ultraviolet"') == (
        "Given a claim, find evidence", "bees see ultraviolet")
    # a backend that answered from scratch instead of continuing the prefill
    assert read_answer(prefill, '{"task": "t", "query": "q"') == ("t", "q")
    assert read_answer(prefill, 'x", "query": "what is y?",') == ("x", "what is y?")  # trailing comma
    assert read_answer(prefill, 'x", "query": "y is z". ') == ("x", "y is z")
    assert read_answer(prefill, 'x", "query": "unfinished, sentence,') is None  # truncated inside the string
    assert read_answer(prefill, "garbage garbage") is None
    assert read_answer("", '{"task": "t", "query": "q"}') == ("t", "q")


# ---- prompts -------------------------------------------------------------------------------------------


def test_parse_chat_roles_and_prefill():
    chat = parse_chat("[[system]]\nBe brief.\n[[user]]\nHello\nthere\n[[assistant]]\n{\"task\": \"", "t.j2")
    assert chat.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello\nthere"}]
    assert chat.prefill == '{"task": "'
    assert chat.prompt()[-1] == {"role": "assistant", "content": '{"task": "'}
    plain = parse_chat("[[user]]\nHi\n", "t.j2")
    assert plain.prefill == "" and plain.prompt() == [{"role": "user", "content": "Hi"}]


def test_parse_chat_plain_text_for_a_base_model():
    plain = parse_chat('Passage: a\nQuery form: claim\n[[answer]]\n{"task": "t", "query": "', "b.j2")
    assert plain.messages == "Passage: a\nQuery form: claim\n" and plain.prefill == '{"task": "t", "query": "'
    assert plain.prompt() == 'Passage: a\nQuery form: claim\n{"task": "t", "query": "'


@pytest.mark.parametrize("text, message", [
    ("Just text, no roles", "no [[user]] line"),
    ("[[answer]]\n{", "no [[user]] line"),  # a plain template needs text before its answer
    ("a\n[[answer]]\nb\n[[answer]]\nc", "no [[user]] line"),  # and one answer line only
    ("Intro\n[[user]]\nHi", "text before the first"),
    ("[[system]]\nOnly a system message", "must be a [[user]] message"),
])
def test_parse_chat_errors(text, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_chat(text, "t.j2")


def test_bundled_template_renders_every_form_with_the_passage_last():
    template = load_template("generate.j2")
    config = GenerateConfig()
    examples = check_template(template, config)
    assert len(examples) >= len(FORMS)
    passage = Passage(id="p", text=" ".join(f"w{i}" for i in range(500)), title="The Title")
    prompts = [render(template, Item(passage, 0, form), config) for form in FORMS]
    for form, chat in zip(FORMS, prompts):
        last = chat.messages[-1]["content"]
        assert chat.prefill.startswith("{")
        assert "The Title" in last and f"Query form: {form}" in last
        assert f"w{config.passage_words - 1} ..." in last and f"w{config.passage_words}" not in last  # cut
    # everything before the last message is the same for every prompt: one shared prefix
    assert all(chat.messages[:-1] == prompts[0].messages[:-1] for chat in prompts)


def test_bundled_base_model_template_matches_the_chat_template():
    """generate_base.j2 is generate.j2 as plain text: the same examples, and an answer opening per form."""
    config = GenerateConfig()
    base, chat = load_template("generate_base.j2"), load_template("generate.j2")
    assert check_template(base, config) == check_template(chat, config)
    passage = Passage(id="p", text=" ".join(f"w{i}" for i in range(500)), title="The Title")
    for form in FORMS:
        plain = render(base, Item(passage, 0, form), config)
        assert isinstance(plain.messages, str) and plain.messages.splitlines()[-1].startswith(f"Query form: {form} (")
        assert "The Title. w0" in plain.messages and f"w{config.passage_words}" not in plain.messages
        assert plain.prefill == render(chat, Item(passage, 0, form), config).prefill


def test_template_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="query form 'poem' does not render"):
        check_template(load_template("generate.j2"), GenerateConfig(forms=("question", "poem")))
    custom = tmp_path / "mine.j2"
    custom.write_text("[[user]]\n{{ passage }} {{ undefined_name }}\n")
    with pytest.raises(UserError, match="undefined_name"):
        check_template(load_template(custom), GenerateConfig())
    with pytest.raises(UserError, match="not found"):
        load_template(tmp_path / "missing.j2")


@pytest.mark.parametrize("reach", [
    "{{ passage.__class__.__mro__[1].__subclasses__() }}",  # every class in the interpreter, from a str
    "{{ cycler.__init__.__globals__.os.system('echo owned') }}",  # a shell, the classic escape
    "{{ ''.__class__.__base__ }}",
])
def test_user_templates_cannot_reach_python_internals(tmp_path, reach):
    custom = tmp_path / "evil.j2"
    custom.write_text(f"[[user]]\n{{{{ passage }}}} {reach}\n")
    with pytest.raises(UserError, match="evil.j2: not allowed in a prompt template"):
        load_template(custom).render(passage="text", title="", form="question")


# ---- plan and seeds ------------------------------------------------------------------------------------


def test_plan_is_seeded_and_a_larger_sample_extends_a_smaller_one():
    ps = passages(50)
    full = plan(ps, GenerateConfig(seed=3))
    assert [i.id for i in full] == [i.id for i in plan(list(reversed(ps)), GenerateConfig(seed=3))]
    assert sorted(i.passage.id for i in full) == sorted(p.id for p in ps)
    small = plan(ps, GenerateConfig(seed=3, max_passages=10))
    assert [i.id for i in small] == [i.id for i in full[:10]]
    other = plan(ps, GenerateConfig(seed=4, max_passages=10))
    assert [i.id for i in other] != [i.id for i in small]
    assert [i.passage.id for i in full] != [p.id for p in ps]  # shuffled, not file order


def test_forms_rotate_within_and_across_passages():
    items = plan(passages(40), GenerateConfig(queries_per_passage=3))
    assert [i.id for i in items[:3]] == [f"{items[0].passage.id}@{n}" for n in range(3)]
    for k in range(0, len(items), 3):
        assert len({i.form for i in items[k : k + 3]}) == 3  # a passage's queries take different forms
    firsts = [i.form for i in items if i.index == 0]
    assert set(firsts) == set(FORMS) and max(firsts.count(f) for f in FORMS) < 0.5 * len(firsts)


def test_llm_queries_per_passage_named_else_decided_by_size_unless_the_corpus_gets_keyphrase_queries():
    assert GenerateConfig(max_passages=1280).per_passage(82) == 8  # keyphrases undecided: the size decides
    assert GenerateConfig(max_passages=1280, keyphrase_queries=0).per_passage(82) == 8
    assert GenerateConfig(max_passages=1280, keyphrase_queries=6).per_passage(82) == 1
    assert GenerateConfig(max_passages=1280, keyphrase_queries=6, queries_per_passage=3).per_passage(82) == 3
    assert GenerateConfig(max_passages=1280, keyphrase_queries=0).per_passage(5183) == 1


def test_seeds_depend_on_ids_and_attempt_not_position():
    seed = derive_seed(0, "a.txt#0", 0, 0)
    assert seed == derive_seed(0, "a.txt#0", 0, 0)
    assert len({seed, derive_seed(0, "a.txt#0", 0, 1), derive_seed(0, "a.txt#0", 1, 0),
                derive_seed(1, "a.txt#0", 0, 0), derive_seed(0, "b.txt#0", 0, 0)}) == 5
    assert 0 <= seed < 2**31


def test_config_checks_are_user_errors():
    for bad in (dict(queries_per_passage=0), dict(temperature=-1), dict(top_p=0), dict(forms=()),
                dict(forms=("claim", "claim")), dict(max_passages=0), dict(min_query_words=5, max_query_words=3),
                dict(sample="topics")):
        with pytest.raises(UserError):
            GenerateConfig(**bad)


# ---- filters -------------------------------------------------------------------------------------------


def test_text_helpers():
    assert words("Don't STOP, believing!") == ["don", "t", "stop", "believing"]
    assert longest_common_run(words("a b c d e"), words("x b c d y e")) == 3
    index = NearDuplicateIndex(0.8)
    index.add("effects of vitamin D on bone density in older adults")
    assert index.find("Effects of vitamin D on bone density in older adults?") == 0
    assert index.find("effects of vitamin D on bone density in adults") == 0  # 8 of 9 words
    assert index.find("vitamin D and muscle strength") is None
    assert index.find("the of and") is None  # only stopwords: nothing shared with content words
    passage = "Telomeres shorten with every cell division in cultured human fibroblasts."
    assert content_overlap("Does telomere shortening limit fibroblast division?", passage) == 0.8  # not "limit"
    assert content_overlap("what is the role of telomeres in yeast", passage) == pytest.approx(1 / 3)  # role, yeast missing
    assert content_overlap("how to cook rice", passage) == 0.0 and content_overlap("what is it", passage) == 0.0


def test_query_filter_reasons():
    passage = Passage(id="p", title="Queen rearing",
                      text="The colony raises new queens in large cells hanging from the comb before it swarms in spring.")
    f = QueryFilter(GenerateConfig(min_query_words=3, max_query_words=12, max_copied_words=6),
                    examples=["why does my phone battery die faster in winter?"])
    assert f.reason("queens", passage) == "length"
    assert f.reason("one two three four five six seven eight nine ten eleven twelve thirteen", passage) == "length"
    assert f.reason("Why does my phone battery die faster in winter", passage) == "copies_example"
    assert f.reason("new queens in large cells hanging from the comb", passage) == "copies_passage"
    assert f.reason("when do bee colonies swarm?", passage) is None
    f.keep("when do bee colonies swarm?")
    assert f.reason("When do bee colonies swarm", passage) == "duplicate"
    assert f.reason("how are new queens raised?", passage) is None
    assert f.reason("best smartphone for making phone calls", passage) == "off_topic"
