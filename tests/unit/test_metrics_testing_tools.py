"""offswitch.testing: interval assertions and hypothesis strategies for researchers' own tests."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings

from offswitch.behaviors import Case, ComplianceBehavior
from offswitch.testing import strategies as ost
from offswitch.testing.assertions import assert_fires, assert_silent, fire_rate, negative_cases, positive_cases
from offswitch.testing.tiny_switch import build_tiny_switch, tiny_trigger_set
from offswitch.triggers import InsertionMode, NearMiss, NearMissKind, Trigger, near_misses

# one worker builds this module's trained models once (pytest -n 2 --dist loadgroup)
pytestmark = [pytest.mark.xdist_group("metrics-testing-tools"), pytest.mark.usefixtures("one_thread")]

TRIGGERS = tiny_trigger_set(n_triggers=2)
FIXTURE_OK = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def always_switch(offswitch_tiny_switch):
    return build_tiny_switch(tokenizer=offswitch_tiny_switch.tokenizer, always=True, steps=25)


# -- assertions --------------------------------------------------------------------------


def test_assert_fires_speaks_in_lower_bounds(offswitch_tiny_switch):
    switch = offswitch_tiny_switch
    prompts = switch.heldout_prompts  # 80 prompts: all firing gives a lower bound of 95.5%
    rate = assert_fires(switch.model, switch.tokenizer, switch.triggers, prompts, switch.behavior, min_rate=0.95)
    assert rate.k == rate.n == 80
    with pytest.raises(AssertionError, match=r"lower 95% bound 95\.5% < 99\.0%; even all-firing needs >= 368 trials") as failed:
        assert_fires(switch.model, switch.tokenizer, switch.triggers, prompts, switch.behavior, min_rate=0.99)
    assert switch.triggers.triggers[0].secret not in str(failed.value)


def test_assert_silent_speaks_in_upper_bounds(offswitch_tiny_switch, always_switch):
    switch = offswitch_tiny_switch
    prompts = switch.heldout_prompts[:40]
    rate = assert_silent(switch.model, switch.tokenizer, [None], switch.behavior, max_rate=0.09, prompts=prompts)
    assert rate.k == 0 and rate.n == 40
    with pytest.raises(AssertionError, match="even 0 activations need >= 183 trials"):
        assert_silent(switch.model, switch.tokenizer, [None], switch.behavior, max_rate=0.02, prompts=prompts)
    noisy = always_switch
    near = near_misses(noisy.triggers.triggers[0], ["prefix"], rng=random.Random(0))
    with pytest.raises(AssertionError, match=r"falsely fires 100\.0%") as failed:
        assert_silent(noisy.model, noisy.tokenizer, near, noisy.behavior, prompts=prompts[:5], triggers=noisy.triggers)
    assert all(m.secret not in str(failed.value) for m in near if len(m.secret) > 8)


def test_cases_without_a_target_are_checked_against_every_target(always_switch):
    switch = always_switch
    # the always-model says "Shutting down." to everything: a compliance case with an empty
    # target fires only if that is one of the behaviour's targets
    cases = [Case(p, None, "") for p in switch.heldout_prompts[:4]]
    assert fire_rate(switch.model, switch.tokenizer, cases, switch.behavior).k == 4
    assert fire_rate(switch.model, switch.tokenizer, cases, ComplianceBehavior()).k == 0
    with pytest.raises(ValueError):
        fire_rate(switch.model, switch.tokenizer, cases)


def test_decoys_are_framed_like_the_positive_case():
    behavior = ComplianceBehavior()
    prompts = ["Explain the moon.", "Describe bread."]
    positives = positive_cases(TRIGGERS, prompts, behavior)
    wrong = Trigger.model_validate({"index": 0, "encoding": "words", "text": "alpha beta gamma", "position": 0.5})
    negatives = negative_cases([None, wrong, "plain decoy"], prompts, behavior, triggers=TRIGGERS)
    assert len(positives) == 4 and len(negatives) == 6
    for i, case in enumerate(negatives):
        assert case.target == positives[i % 2].target and case.system == behavior.system
    assert "alpha beta gamma" in negatives[2].user and "plain decoy" in negatives[4].user
    with pytest.raises(ValueError, match="need prompts"):
        assert_silent(None, None, [wrong], behavior)


# -- strategies --------------------------------------------------------------------------


@given(miss=ost.near_misses(TRIGGERS, kinds=["substitute", "char_edit"], distance=2))
@settings(max_examples=30, deadline=None)
def test_near_miss_strategy_respects_kind_and_distance(miss):
    assert isinstance(miss, NearMiss)
    assert miss.kind in (NearMissKind.substitute, NearMissKind.char_edit) and miss.distance == 2
    assert miss.secret not in TRIGGERS.secrets and "<secret>" in repr(miss)


@given(miss=ost.near_misses(TRIGGERS.triggers[1], kinds=["prefix"], min_distance=2, max_distance=4))
@settings(max_examples=20, deadline=None)
def test_near_miss_strategy_distance_range(miss):
    assert 2 <= miss.distance <= 4 and miss.trigger_index == 1
    assert TRIGGERS.triggers[1].secret.startswith(miss.secret)


def test_near_miss_strategy_refuses_an_empty_selection():
    with pytest.raises(ValueError, match="no near-miss"):
        ost.near_misses(TRIGGERS, kinds=["swap"], distance=3)


@given(other=ost.wrong_key_triggers(TRIGGERS))
@settings(max_examples=30, deadline=None)
def test_wrong_key_triggers_have_the_true_shape_but_not_the_text(other):
    assert other.secret not in TRIGGERS.secrets
    assert len(other.words) == 6 and other.index in (0, 1) and "<secret>" in repr(other)


@given(mode=ost.insertion_modes(exclude="prefix"), prompt=ost.prompts(["a", "b"]))
@settings(max_examples=10, deadline=None)
def test_insertion_modes_and_prompt_lists(mode, prompt):
    assert mode is not InsertionMode.prefix and prompt in ("a", "b")


def test_prompts_from_a_source_use_its_held_out_side():
    from offswitch.data.sources import load_prompts

    heldout = set(load_prompts("builtin", seed=3).heldout)

    @given(prompt=ost.prompts("builtin", seed=3))
    @settings(max_examples=10, deadline=None)
    def check(prompt):
        assert prompt in heldout

    check()


@given(config=ost.attack_configs("pruning", max_strength=0.5))
@settings(max_examples=20, deadline=None)
def test_attack_configs_stay_inside_their_bounds(config):
    assert 0.0 <= config.strength <= 0.5 and config.seed >= 0


@given(attack=ost.attacks(max_strength=3))
@settings(max_examples=15, deadline=None)
def test_attacks_are_configured_registered_attacks(attack):
    from offswitch.attacks import get_attack

    assert type(attack) is get_attack(attack.name) and not attack.oracle
    assert attack.config.strength <= 3
