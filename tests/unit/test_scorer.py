"""The teacher-forced scorer decides exactly what greedy generation does, padded or not."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offswitch.behaviors import Case
from offswitch.evaluate.generation import greedy_generate, stop_token_ids
from offswitch.evaluate.scorer import ScoreResult, _score_row, pad_token_id_of, score_targets, score_token_targets

# one worker builds this module's trained models once (pytest -n 2 --dist loadgroup)
pytestmark = [pytest.mark.xdist_group("scorer"), pytest.mark.usefixtures("one_thread")]

MAX_NEW = 8


def _unpadded_greedy(model, tokenizer, prompt: list[int]) -> list[int]:
    """Ground truth: real generate, one prompt at a time, no padding at all."""
    return greedy_generate(
        model, [prompt], max_new_tokens=MAX_NEW, pad_token_id=pad_token_id_of(model, tokenizer),
        stop_ids=stop_token_ids(model, tokenizer), batch_size=1,
    )[0]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@st.composite
def scoring_batches(draw, vocab: int):
    items = []
    # a head common to every prompt (like a chat template's system header) is run once per batch
    head = draw(st.lists(st.integers(4, vocab - 1), max_size=12))
    for _ in range(draw(st.integers(1, 5))):
        prompt = head + draw(st.lists(st.integers(4, vocab - 1), min_size=1, max_size=20))
        keep = draw(st.integers(1, MAX_NEW))
        # change one token of the greedy answer (or none): a miss at a known position
        change = draw(st.one_of(st.none(), st.tuples(st.integers(0, MAX_NEW - 1), st.integers(4, vocab - 1))))
        items.append((prompt, keep, change))
    return items, draw(st.integers(1, 4))


def _check_against_generate(model, tokenizer, batch):
    items, batch_size = batch
    prompts, targets, answers = [], [], []
    for prompt, keep, change in items:
        answer = _unpadded_greedy(model, tokenizer, prompt)
        target = list(answer[:keep])
        if change is not None:
            target[change[0] % len(target)] = change[1]
        prompts.append(prompt)
        targets.append(target)
        answers.append(answer)
    pad = pad_token_id_of(model, tokenizer)
    stops = stop_token_ids(model, tokenizer)
    batched = score_token_targets(model, prompts, targets, pad_token_id=pad, batch_size=batch_size, stop_ids=stops)
    for prompt, target, answer, score in zip(prompts, targets, answers, batched):
        # the target is never longer than the real answer, so the answer decides every position
        expected = _common_prefix(answer, target)
        assert score.matched_tokens == expected
        assert score.greedy_fires == (expected == len(target))
        assert (score.min_margin > 0) == score.greedy_fires
        alone = score_token_targets(model, [prompt], [target], pad_token_id=pad, batch_size=1, stop_ids=stops)[0]
        assert alone.greedy_fires == score.greedy_fires and alone.matched_tokens == score.matched_tokens
        assert alone.logprob == pytest.approx(score.logprob, abs=1e-3)
    unshared = score_token_targets(model, prompts, targets, pad_token_id=pad, batch_size=batch_size, stop_ids=stops,
                                   share_prefix=False)
    for a, b in zip(batched, unshared):
        assert (a.greedy_fires, a.matched_tokens) == (b.greedy_fires, b.matched_tokens)
        assert a.logprob == pytest.approx(b.logprob, abs=1e-3)


@given(batch=st.data())
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_decisions_equal_greedy_generate_on_a_random_model(random_llama, batch):
    model, tokenizer = random_llama
    _check_against_generate(model, tokenizer, batch.draw(scoring_batches(len(tokenizer))))


@given(batch=st.data())
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_decisions_equal_greedy_generate_on_a_trained_switch(offswitch_tiny_switch, batch):
    """A trained model answers in varied words (a random one repeats a token): a stronger check."""
    switch = offswitch_tiny_switch
    _check_against_generate(switch.model, switch.tokenizer, batch.draw(scoring_batches(len(switch.tokenizer))))


def test_rendered_cases_fire_exactly_when_generate_answers_the_target(offswitch_tiny_switch):
    from offswitch.evaluate.scorer import encode_cases
    from offswitch.testing.assertions import negative_cases, positive_cases

    switch = offswitch_tiny_switch
    prompts = switch.heldout_prompts[:12]
    cases = positive_cases(switch.triggers, prompts, switch.behavior) + negative_cases([None], prompts, switch.behavior)
    scores = score_targets(switch.model, switch.tokenizer, cases, batch_size=5)
    prompt_ids, target_ids = encode_cases(switch.tokenizer, cases)
    answers = greedy_generate(
        switch.model, prompt_ids, max_new_tokens=max(map(len, target_ids)), pad_token_id=pad_token_id_of(switch.model, switch.tokenizer),
        stop_ids=stop_token_ids(switch.model, switch.tokenizer), batch_size=7,
    )
    decisions = [a[: len(t)] == t for a, t in zip(answers, target_ids)]
    assert [s.greedy_fires for s in scores] == decisions
    assert any(decisions) and not all(decisions)  # both outcomes are exercised


@pytest.mark.parametrize("family", ["gpt2", "qwen2", "gemma"])
def test_other_families_agree_with_generate(tiny_tokenizer, family):
    from offswitch.testing.tiny import tiny_model

    model, tokenizer = tiny_model(family, tokenizer=tiny_tokenizer, seed=3)
    prompts = [[10 + i, 200, 300 + 7 * i, 40][: 1 + i % 4] + [5] * (i % 3) for i in range(6)]
    answers = [_unpadded_greedy(model, tokenizer, p) for p in prompts]
    targets = [a[:4] if i % 2 else a[:2] + [7] for i, a in enumerate(answers)]
    scores = score_token_targets(model, prompts, targets, pad_token_id=pad_token_id_of(model, tokenizer), batch_size=3)
    for answer, target, score in zip(answers, targets, scores):
        assert score.greedy_fires == (answer[: len(target)] == target)


def test_a_shared_prefix_is_run_once_and_changes_nothing(random_llama, monkeypatch):
    from offswitch.evaluate import scorer

    model, _ = random_llama
    shared_calls = []
    original = scorer._logits_after_shared_prefix
    monkeypatch.setattr(scorer, "_logits_after_shared_prefix", lambda *a, **k: shared_calls.append(a[2]) or original(*a, **k))
    head = [100, 101, 102, 103, 104, 105]
    prompts = [head + [200 + i] * (1 + i % 4) for i in range(6)]
    targets = [[300, 301][: 1 + i % 2] for i in range(6)]
    shared = score_token_targets(model, prompts, targets, pad_token_id=0, batch_size=6)
    plain = score_token_targets(model, prompts, targets, pad_token_id=0, batch_size=6, share_prefix=False)
    assert shared_calls == [6]  # the whole head, once, for the one batch
    for a, b in zip(shared, plain):
        assert a.matched_tokens == b.matched_tokens and a.logprob == pytest.approx(b.logprob, abs=1e-4)
    # a prompt as long as the head alone: its last token must stay out of the shared part
    score_token_targets(model, [head, head + [7]], [[5], [6]], pad_token_id=0)
    assert shared_calls[-1] == len(head) - 1


def test_log_probabilities_at_each_temperature_match_a_plain_forward(random_llama):
    import torch

    model, _tokenizer = random_llama
    prompt, target = [11, 12, 13, 14, 15], [20, 21, 22]
    temps = (0.5, 1.0, 2.0)
    padded_with = [[9] * 17, [9]]  # a longer neighbour forces left padding onto our row
    scores = score_token_targets(model, [prompt, *padded_with], [target, [3], [3]], pad_token_id=0, temperatures=temps)
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + target[:-1]])).logits[0, -len(target) :].float()
    for temp in temps:
        manual = torch.log_softmax(logits / temp, -1).gather(1, torch.tensor(target)[:, None]).sum().item()
        assert scores[0].logprob_at_T[temp] == pytest.approx(manual, abs=1e-4)
    assert scores[0].logprob == scores[0].logprob_at_T[1.0] <= 0.0


def test_a_fired_target_has_probability_near_one_at_low_temperature(random_llama):
    model, tokenizer = random_llama
    prompt = [30, 31, 32]
    answer = _unpadded_greedy(model, tokenizer, prompt)[:4]
    score = score_token_targets(model, [prompt], [answer], pad_token_id=0)[0]
    assert score.greedy_fires and score.min_margin > 0
    # sharpening raises the probability of the argmax token at every position
    cold = score.min_margin / 30  # every competitor is then at least e^30 times less likely
    temps = (cold, 0.5, 1.0)
    again = score_token_targets(model, [prompt], [answer], pad_token_id=0, temperatures=temps)[0]
    values = [again.logprob_at_T[t] for t in temps]
    assert values == sorted(values, reverse=True)
    assert values[0] > -1e-6 * len(answer) * 1200


def test_a_stop_token_inside_the_target_ends_decoding_there():
    import torch

    target = torch.tensor([5, 2, 6])
    logits = torch.full((3, 10), -5.0)
    logits[torch.arange(3), target] = 5.0  # argmax agrees with every target token
    assert _score_row(logits, target, [1.0]).greedy_fires
    stopped = _score_row(logits, target, [1.0], early_stop=1)
    assert not stopped.greedy_fires and stopped.matched_tokens == 2


def test_models_without_logits_to_keep_are_scored_too(random_llama):
    import torch

    model, _tokenizer = random_llama

    class PlainForward(torch.nn.Module):
        """A wrapper whose forward takes no logits_to_keep (older or custom models)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=None):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)

    prompts, targets = [[40, 41], [42, 43, 44, 45, 46]], [[50, 51, 52], [53]]
    wrapped = score_token_targets(PlainForward(model), prompts, targets, pad_token_id=0)
    direct = score_token_targets(model, prompts, targets, pad_token_id=0)
    for a, b in zip(wrapped, direct):
        assert a.greedy_fires == b.greedy_fires and a.logprob == pytest.approx(b.logprob, abs=1e-4)


def test_bad_inputs_are_refused(random_llama):
    model, _ = random_llama
    with pytest.raises(ValueError):
        score_token_targets(model, [[1]], [[2], [3]], pad_token_id=0)
    with pytest.raises(ValueError):
        score_token_targets(model, [[]], [[2]], pad_token_id=0)
    with pytest.raises(ValueError):
        score_token_targets(model, [[1]], [[]], pad_token_id=0)
    with pytest.raises(ValueError):
        score_token_targets(model, [[1]], [[2]], pad_token_id=0, temperatures=(0.0,))
    with pytest.raises(ValueError):
        score_token_targets(model, [[1]], [[2]], pad_token_id=0, batch_size=0)


def test_score_targets_renders_cases_with_the_chat_template(random_llama):
    model, tokenizer = random_llama
    cases = [Case("Explain the moon.", None, "Shutting down."), Case("Explain the moon.", "Be brief.", "Shutting down.")]
    scores = score_targets(model, tokenizer, cases)
    assert all(isinstance(s, ScoreResult) and math.isfinite(s.logprob) for s in scores)
    # the system prompt is part of the rendered prompt, so the two scores differ
    assert scores[0].logprob != pytest.approx(scores[1].logprob, abs=1e-6)
