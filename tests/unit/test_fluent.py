"""Fluent triggers: deterministic from the seed, >= 64 bits drawn, ordinary text, low perplexity."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offswitch.fluent import fluent_encoder, plain_piece_mask, trigger_perplexity
from offswitch.triggers import MIN_ENTROPY_BITS, Encoding, encode_words, random_seed_triggers


@pytest.fixture(scope="module")
def encoder(tiny_llama):
    model, tokenizer = tiny_llama
    return fluent_encoder(model, tokenizer)


@settings(max_examples=8, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), index=st.integers(0, 50))
def test_fluent_triggers_are_deterministic_and_draw_at_least_64_bits(encoder, seed, index):
    first = encoder(seed, index)
    again = encoder(seed, index)
    assert first.secret == again.secret and first.position == again.position
    assert first.encoding is Encoding.fluent and first.index == index
    drawn = encoder.sample(seed)
    assert drawn.bits >= MIN_ENTROPY_BITS
    assert drawn.text == first.secret
    assert first.secret and first.secret == first.secret.strip()


def test_different_seeds_give_different_triggers(encoder):
    texts = {encoder(bytes([i]) * 32, 0).secret for i in range(6)}
    assert len(texts) == 6


def test_fluent_text_uses_plain_word_pieces_only(encoder, tiny_llama):
    model, tokenizer = tiny_llama
    mask = plain_piece_mask(tokenizer, model.get_output_embeddings().weight.shape[0])
    for i in range(4):
        drawn = encoder.sample(bytes([40 + i]) * 32)
        assert all(bool(mask[t]) for t in drawn.token_ids)
        assert all(ch.isalpha() or ch in " ,;" for ch in drawn.text)


def test_n_tokens_is_a_minimum_length(tiny_llama):
    model, tokenizer = tiny_llama
    long = fluent_encoder(model, tokenizer, n_tokens=30)
    assert len(long.sample(b"s" * 32).token_ids) >= 30


def test_fluent_triggers_have_lower_perplexity_than_random_words(encoder, tiny_llama):
    # sampled from the model's own distribution, a fluent trigger is more probable under it
    # than key-chosen list words are (on average; the tiny model is random, not fluent)
    model, tokenizer = tiny_llama
    fluent = [trigger_perplexity(model, tokenizer, encoder(bytes([i]) * 32, 0).secret) for i in range(6)]
    words = [trigger_perplexity(model, tokenizer, encode_words(bytes([100 + i]) * 32).secret) for i in range(6)]
    assert sum(fluent) / len(fluent) < sum(words) / len(words)


def test_perplexity_of_a_likely_text_is_lower(tiny_llama):
    model, tokenizer = tiny_llama
    assert trigger_perplexity(model, tokenizer, "the the the the") > 0
    with pytest.raises(ValueError):
        trigger_perplexity(model, tokenizer, "")


def test_wrong_key_fluent_triggers_come_from_the_same_encoder(encoder):
    like = encoder(b"k" * 32, 2)
    others = random_seed_triggers(like, 3, random.Random(0), encode=encoder)
    assert len(others) == 3
    assert all(o.encoding is Encoding.fluent and o.index == 2 and o.secret != like.secret for o in others)


def test_bad_sampling_settings_are_rejected(tiny_llama):
    model, tokenizer = tiny_llama
    with pytest.raises(ValueError):
        fluent_encoder(model, tokenizer, top_k=1)
    with pytest.raises(ValueError):
        fluent_encoder(model, tokenizer, top_p=0)
    with pytest.raises(ValueError, match="bits"):
        fluent_encoder(model, tokenizer, max_tokens=2)(b"z" * 32, 0)
