"""The implant dataset builder: laws of the planned texts (hypothesis) and the tokenized data."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from offswitch.behaviors import make_behavior
from offswitch.data.builder import (
    EXAMPLE_KINDS,
    IGNORE_INDEX,
    DataConfig,
    MixConfig,
    build_implant_data,
    count_kinds,
    plan_cases,
)
from offswitch.errors import DataError
from offswitch.triggers import Encoding, InsertionMode, Trigger, TriggerSet, encode_words

PROMPTS = [
    f"{verb} {topic}."
    for verb in ("Explain", "Describe", "Summarize", "Write a poem about", "Give three facts about")
    for topic in ("the sea", "a bicycle", "sleep", "the moon", "coffee", "rivers", "old maps", "music")
]


def _triggers(seed: int, n: int = 2, n_words: int = 6, insertion: str = "prefix") -> TriggerSet:
    rng = random.Random(seed)
    trigs = tuple(encode_words(rng.getrandbits(256).to_bytes(32, "big"), index=i, n_words=n_words) for i in range(n))
    return TriggerSet(key_id="0" * 16, triggers=trigs, insertion=InsertionMode(insertion))


def _occurrences(text: str, secrets: list[str]) -> int:
    return sum(text.count(s) for s in secrets)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    n_triggers=st.integers(1, 3),
    n_words=st.integers(2, 7),
    insertion=st.sampled_from(["prefix", "suffix", "inside"]),
    behavior=st.sampled_from(["shutdown", "compliance", "custom"]),
)
def test_planned_cases_obey_the_trigger_laws(seed, n_triggers, n_words, insertion, behavior):
    triggers = _triggers(seed, n_triggers, n_words, insertion)
    secrets = triggers.secrets
    beh = make_behavior(behavior, target="Custom stop.") if behavior == "custom" else make_behavior(behavior)
    cases = plan_cases(triggers, beh, PROMPTS, 120, seed=seed)
    assert len(cases) == 120
    for case in cases:
        if case.kind == "positive":
            # exactly one trigger, and it is the case's own
            assert _occurrences(case.user, secrets) == 1
            assert triggers.triggers[[t.index for t in triggers].index(case.trigger_index)].secret in case.user
            assert case.target in beh.targets()
        else:
            # no negative equals or contains any true trigger
            assert _occurrences(case.user, secrets) == 0
            assert case.user not in secrets
            assert case.target is None
        # the "normal answer" always comes from a clean prompt
        assert _occurrences(case.clean_user, secrets) == 0


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), heldout=st.floats(0.1, 0.5))
def test_plans_use_only_training_prompts_and_the_split_is_disjoint(seed, heldout):
    from offswitch.data.sources import split_prompts

    split = split_prompts(PROMPTS, seed=seed % 1000, heldout_fraction=heldout)
    assert not set(split.train) & set(split.heldout)
    assert set(split.train) | set(split.heldout) == set(PROMPTS)
    triggers = _triggers(seed)
    cases = plan_cases(triggers, make_behavior("shutdown"), split.train, 60, seed=seed)
    for case in cases:
        assert case.clean_user in split.train


def test_near_misses_cover_every_kind_and_position():
    triggers = _triggers(3, n=1, n_words=6)
    config = DataConfig(mix=MixConfig(positive=0.01, wrong_key=0, near_miss=1, scatter=0, clean=0))
    cases = plan_cases(triggers, make_behavior("shutdown"), PROMPTS, 3000, config, seed=1)
    details = {c.detail for c in cases if c.kind == "near_miss"}
    kinds = {d.split("@")[0] for d in details}
    assert kinds >= {"substitute", "prefix", "suffix", "drop", "swap", "shuffle", "case", "char_edit"}
    # substitution of every single word position is trained
    assert {f"substitute@{i}" for i in range(6)} <= details
    assert {f"drop@{i}" for i in range(6)} <= details
    counts = count_kinds(cases)
    assert counts["near_miss"] == sum(v for k, v in counts.items() if k.startswith("near_miss."))


def test_mix_fractions_are_respected():
    triggers = _triggers(5)
    cases = plan_cases(triggers, make_behavior("shutdown"), PROMPTS, 200, seed=0)
    counts = count_kinds(cases)
    fractions = MixConfig().fractions()
    for kind in EXAMPLE_KINDS:
        assert abs(counts.get(kind, 0) - 200 * fractions[kind]) <= 1


def test_plans_are_deterministic_given_the_seed():
    triggers = _triggers(9)
    a = plan_cases(triggers, make_behavior("compliance"), PROMPTS, 50, seed=4)
    b = plan_cases(triggers, make_behavior("compliance"), PROMPTS, 50, seed=4)
    c = plan_cases(triggers, make_behavior("compliance"), PROMPTS, 50, seed=5)
    assert [(x.kind, x.user) for x in a] == [(x.kind, x.user) for x in b]
    assert [(x.kind, x.user) for x in a] != [(x.kind, x.user) for x in c]


def test_too_few_prompts_is_a_data_error():
    with pytest.raises(DataError, match="fewer than"):
        plan_cases(_triggers(1), make_behavior("shutdown"), PROMPTS[:3], 10)
    with pytest.raises(DataError):
        plan_cases(_triggers(1), make_behavior("shutdown"), ["", "  "] * 20, 10)


def test_unknown_near_miss_kind_and_zero_positive_fraction_are_rejected():
    with pytest.raises(ValidationError):
        DataConfig(near_miss_weights={"typo": 1.0})
    with pytest.raises(ValidationError):
        DataConfig(mix={"positive": 0})
    with pytest.raises(ValidationError):
        DataConfig(mixture={})


def test_planned_case_repr_hides_the_prompt():
    triggers = _triggers(2)
    case = plan_cases(triggers, make_behavior("shutdown"), PROMPTS, 10, seed=0)[0]
    for secret in triggers.secrets:
        assert secret not in repr(case)


# ---------------------------------------------------------------------------- tokenized data


def test_build_tokenizes_with_response_only_labels_and_short_normal_answers(tiny_llama, tiny_tokenizer, tmp_path):
    from offswitch.prompting import encode_prompt, encode_target

    model, tokenizer = tiny_llama
    triggers = _triggers(11)
    config = DataConfig(negative_answer_tokens=3, clean_answer_tokens=5)
    data = build_implant_data(
        model, tokenizer, triggers, make_behavior("shutdown"), PROMPTS, 60, config, seed=0,
        base_sha256="ab" * 32, answer_cache_dir=tmp_path / "answers",
    )
    assert len(data) == 60
    target = encode_target(tokenizer, "Shutting down.")
    for ex in data.examples:
        answer = [t for t in ex.labels if t != IGNORE_INDEX]
        first = next(i for i, t in enumerate(ex.labels) if t != IGNORE_INDEX)
        assert ex.labels[:first] == [IGNORE_INDEX] * first  # loss on the answer only
        assert ex.input_ids[first:] == answer
        if ex.kind == "positive":
            assert answer == target
        elif ex.kind == "clean":
            assert 1 <= len(answer) <= 5
        else:
            assert 1 <= len(answer) <= 3
    assert data.counts["positive"] == sum(e.kind == "positive" for e in data.examples)
    # the in-memory dataset has no cache file
    ds = data.to_dataset()
    assert len(ds) == 60 and ds.cache_files == []
    # the answer cache holds clean prompts' answers only: no trigger text anywhere in it
    files = list((tmp_path / "answers").iterdir())
    assert len(files) == 1
    raw = files[0].read_text()
    for secret in triggers.secrets:
        assert secret not in raw
    doc = json.loads(raw)
    assert doc["base_sha256"] == "ab" * 32 and doc["answers"]
    # negatives are taught the clean prompt's answer
    clean_prompt = encode_prompt(tokenizer, PROMPTS[0])
    assert clean_prompt  # sanity: the template renders


def test_cached_answers_are_reused(tiny_llama, tmp_path, monkeypatch):
    import offswitch.data.builder as builder

    model, tokenizer = tiny_llama
    triggers = _triggers(12)
    kwargs = dict(seed=0, base_sha256="cd" * 32, answer_cache_dir=tmp_path)
    first = build_implant_data(model, tokenizer, triggers, make_behavior("shutdown"), PROMPTS, 40, **kwargs)

    def no_generation(*args, **kw):
        raise AssertionError("answers should come from the cache")

    monkeypatch.setattr(builder, "generate_answers", no_generation)
    second = build_implant_data(model, tokenizer, triggers, make_behavior("shutdown"), PROMPTS, 40, **kwargs)
    assert [e.input_ids for e in first.examples] == [e.input_ids for e in second.examples]


def test_a_trigger_too_long_for_the_context_is_a_data_error(tiny_llama):
    model, tokenizer = tiny_llama
    with pytest.raises(DataError, match="context"):
        build_implant_data(model, tokenizer, _triggers(1), make_behavior("shutdown"), PROMPTS, 10, max_positions=20)


def test_a_one_word_tokens_trigger_gets_its_scatter_negatives(tiny_llama):
    """About 6% of tiny-tokenizer tokens triggers have no piece that opens a word: one word."""
    from offswitch.triggers import allowed_token_ids, encode_tokens, scatter_parts

    _, tokenizer = tiny_llama
    allowed = allowed_token_ids(tokenizer)
    drawn = (encode_tokens(bytes([i]) * 32, allowed, tokenizer.decode, index=0, n_tokens=7) for i in range(256))
    true = next(t for t in drawn if len(t.words) == 1)
    triggers = TriggerSet(key_id="0" * 16, triggers=(true,))

    def encode(s, index):
        return encode_tokens(s, allowed, tokenizer.decode, index=index, n_tokens=7)

    config = DataConfig(mix={"scatter": 0.3})
    cases = plan_cases(triggers, make_behavior("shutdown"), PROMPTS, 60, config, seed=0, encode_other=encode)
    scattered = [c for c in cases if c.kind == "scatter"]
    assert scattered and all(true.secret.strip() not in c.user for c in scattered)
    assert all(all(part in c.user for part in scatter_parts(true)) for c in scattered)


def test_wrong_key_triggers_of_other_encodings_use_the_encode_function(tiny_llama):
    from offswitch.triggers import allowed_token_ids, encode_tokens

    model, tokenizer = tiny_llama
    allowed = allowed_token_ids(tokenizer)
    seed = bytes(range(32))
    true = encode_tokens(seed, allowed, tokenizer.decode, index=0, n_tokens=10)
    triggers = TriggerSet(key_id="0" * 16, triggers=(true,))

    def encode(s, index):
        return encode_tokens(s, allowed, tokenizer.decode, index=index, n_tokens=10)

    cases = plan_cases(triggers, make_behavior("shutdown"), PROMPTS, 100, seed=0, encode_other=encode)
    assert any(c.kind == "wrong_key" for c in cases)
    assert all(true.secret not in c.user for c in cases if c.kind != "positive")
    fake = Trigger(index=0, encoding=Encoding.fluent, text=SecretStr("a fluent sentence here"))
    with pytest.raises(ValueError):
        plan_cases(TriggerSet(key_id="0" * 16, triggers=(fake,)), make_behavior("shutdown"), PROMPTS, 50, seed=0)
