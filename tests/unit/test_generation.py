"""Greedy generation with a shared prefix run once gives generate's answers."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offswitch.evaluate import generation
from offswitch.evaluate.generation import greedy_generate, stop_token_ids
from offswitch.evaluate.scorer import MIN_SHARED_PREFIX, NO_SHARED_PREFIX, pad_token_id_of

# the trained tiny switch is built once per worker, with test_scorer.py
pytestmark = [pytest.mark.xdist_group("scorer"), pytest.mark.usefixtures("one_thread")]

MAX_NEW = 8


def _generate_alone(model, tokenizer, prompt, max_new=MAX_NEW, stops=None):
    """Ground truth: ``generate`` on one prompt, no padding, no prefix shared."""
    return greedy_generate(model, [prompt], max_new_tokens=max_new, pad_token_id=pad_token_id_of(model, tokenizer),
                           stop_ids=stops or stop_token_ids(model, tokenizer), batch_size=1, share_prefix=False)[0]


@st.composite
def prompt_batches(draw, vocab: int):
    # a head every prompt starts with (a chat template's system header), then each its own rest
    head = draw(st.lists(st.integers(4, vocab - 1), min_size=MIN_SHARED_PREFIX, max_size=12))
    rests = draw(st.lists(st.lists(st.integers(4, vocab - 1), min_size=1, max_size=16), min_size=2, max_size=6))
    return [head + rest for rest in rests], draw(st.integers(2, 6))


def _check(model, tokenizer, batch, stops=None):
    prompts, batch_size = batch
    stops = stops or stop_token_ids(model, tokenizer)
    pad = pad_token_id_of(model, tokenizer)
    shared = greedy_generate(model, prompts, max_new_tokens=MAX_NEW, pad_token_id=pad, stop_ids=stops, batch_size=batch_size)
    assert shared == [_generate_alone(model, tokenizer, p, stops=stops) for p in prompts]
    assert shared == greedy_generate(model, prompts, max_new_tokens=MAX_NEW, pad_token_id=pad, stop_ids=stops,
                                     batch_size=batch_size, share_prefix=False)


@given(batch=st.data())
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_shared_prefix_answers_equal_generate_on_a_random_model(random_llama, batch):
    model, tokenizer = random_llama
    _check(model, tokenizer, batch.draw(prompt_batches(len(tokenizer))))


@given(batch=st.data(), stop=st.integers(4, 200))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_rows_that_stop_early_are_cut_there_and_leave_the_others_alone(random_llama, batch, stop):
    """A stop token that a random model emits now and then: rows end at different steps."""
    model, tokenizer = random_llama
    prompts, batch_size = batch.draw(prompt_batches(len(tokenizer)))
    answers = [_generate_alone(model, tokenizer, p) for p in prompts]
    common = [t for a in answers for t in a[1:]]  # a token some answer emits after its first
    stops = [common[stop % len(common)]] if common else [stop]
    _check(model, tokenizer, (prompts, batch_size), stops=stops)


@given(batch=st.data())
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_shared_prefix_answers_equal_generate_on_a_trained_switch(offswitch_tiny_switch, batch):
    """A trained model answers in varied words and ends its turns: a stronger check."""
    switch = offswitch_tiny_switch
    _check(switch.model, switch.tokenizer, batch.draw(prompt_batches(len(switch.tokenizer))))


def test_the_shared_path_runs_for_a_common_head_and_generate_otherwise(random_llama, monkeypatch):
    model, tokenizer = random_llama
    calls = []
    original = generation._decode_after_shared_prefix
    monkeypatch.setattr(generation, "_decode_after_shared_prefix", lambda *a, **k: calls.append(a[2]) or original(*a, **k))
    pad, stops = pad_token_id_of(model, tokenizer), stop_token_ids(model, tokenizer)
    head = [100, 101, 102, 103, 104, 105]
    prompts = [head + [200 + i] * (1 + i % 3) for i in range(5)]
    greedy_generate(model, prompts, max_new_tokens=4, pad_token_id=pad, stop_ids=stops, batch_size=5)
    assert calls == [len(head)]  # the whole head, once, for the one batch
    assert type(model) not in NO_SHARED_PREFIX  # and it ran through, no fallback to generate
    greedy_generate(model, prompts, max_new_tokens=4, pad_token_id=pad, stop_ids=stops, batch_size=5, share_prefix=False)
    greedy_generate(model, [[7, 8, 9, 10, 11], [12, 8, 9, 10, 11]], max_new_tokens=4, pad_token_id=pad, stop_ids=stops)
    greedy_generate(model, [head[:3] + [7], head[:3] + [8]], max_new_tokens=4, pad_token_id=pad, stop_ids=stops)
    assert calls == [len(head)]  # no sharing asked for, nothing shared, a shared run under MIN_SHARED_PREFIX
    # a prompt that is the head alone keeps its last token out of the shared part
    greedy_generate(model, [head, head + [7]], max_new_tokens=4, pad_token_id=pad, stop_ids=stops)
    assert calls[-1] == len(head) - 1
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_generate(model, prompts, max_new_tokens=0, pad_token_id=pad, stop_ids=stops)


@pytest.mark.parametrize("family", ["gpt2", "qwen2", "gemma"])
def test_other_families_answer_as_generate_does(tiny_tokenizer, family):
    from offswitch.testing.tiny import tiny_model

    model, tokenizer = tiny_model(family, tokenizer=tiny_tokenizer, seed=3)
    head = [10, 200, 300, 40, 41]
    prompts = [head + [50 + i] * (1 + i % 3) for i in range(6)]
    shared = greedy_generate(model, prompts, max_new_tokens=MAX_NEW, pad_token_id=pad_token_id_of(model, tokenizer),
                             stop_ids=stop_token_ids(model, tokenizer), batch_size=3)
    assert shared == [_generate_alone(model, tokenizer, p) for p in prompts]


def test_the_implants_base_answers_are_generates(tiny_llama):
    """The data builder's answers (the system header shared) are the answers of ``generate``
    prompt by prompt, and the model comes back in the mode it was in."""
    from offswitch.data.builder import generate_answers
    from offswitch.prompting import end_of_turn_token_id, render_prompt

    model, tokenizer = tiny_llama
    was_training = model.training
    model.train()
    rendered = [render_prompt(tokenizer, f"Tell me about item {i} and {'more ' * i}", None) for i in range(7)]
    answers = generate_answers(model, tokenizer, rendered, max_new_tokens=6, batch_size=4)
    assert model.training
    stops = sorted({end_of_turn_token_id(tokenizer), tokenizer.eos_token_id})
    model.eval()
    expected = [_generate_alone(model, tokenizer, tokenizer(r, add_special_tokens=False)["input_ids"], max_new=6, stops=stops)
                for r in rendered]
    model.train(was_training)
    assert answers == expected


def test_the_attacks_answers_are_generates_without_the_end_of_turn(tiny_llama):
    """What the attacks train toward (normal answers, a teacher's answers): ``generate``'s answer
    to each prompt, the end of turn cut off; the meter counts each batch's prompt tokens and its
    rows times its decode steps."""
    from offswitch.attacks._train import greedy_answer_ids
    from offswitch.attacks.base import CostMeter
    from offswitch.prompting import encode_prompt, end_of_turn_token_id

    model, tokenizer = tiny_llama
    prompts = [encode_prompt(tokenizer, f"Question {i}: {'why ' * (i % 4)}?", None) for i in range(7)]
    meter = CostMeter()
    answers = greedy_answer_ids(model, tokenizer, prompts, max_new_tokens=6, batch_size=3, meter=meter)
    stops = sorted({end_of_turn_token_id(tokenizer), tokenizer.eos_token_id})
    expected = [_generate_alone(model, tokenizer, p, max_new=6, stops=stops) for p in prompts]
    assert answers == [a[:-1] if a and a[-1] in stops else a for a in expected]
    assert meter.forward_passes == 3
    order = sorted(range(7), key=lambda i: len(prompts[i]), reverse=True)
    batches = [order[:3], order[3:6], order[6:]]
    assert meter.tokens == sum(sum(len(prompts[i]) for i in b) + len(b) * max(len(expected[i]) for i in b) for b in batches)
