"""Laws of trigger encoding, insertion and near-miss generation."""

from __future__ import annotations

import random

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from offswitch.triggers import (
    Encoding,
    InsertionMode,
    NearMissKind,
    SeedStream,
    Trigger,
    TriggerSet,
    encode_tokens,
    encode_words,
    insert_trigger,
    near_misses,
    random_seed_triggers,
    remove_inserted,
    scatter_parts,
    scatter_words,
    wordlist,
    words_entropy_bits,
)

seeds = st.binary(min_size=32, max_size=32)
# Prompts: printable text with ordinary whitespace, any length
prompts = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(" \n\t"), max_size=200)


def test_wordlist_is_frozen():
    words = wordlist()
    assert len(words) == 2048 and len(set(words)) == 2048
    assert words[0] == "abandon" and words[-1] == "zoo"


def test_default_words_entropy_at_least_64_bits():
    assert words_entropy_bits(6) >= 64.0
    assert words_entropy_bits(5) < 64.0


@settings(max_examples=200)
@given(seeds, st.integers(1, 12))
def test_words_deterministic_distinct_and_from_list(seed, n):
    a, b = encode_words(seed, n_words=n), encode_words(seed, n_words=n)
    assert a.secret == b.secret and a.position == b.position
    words = a.words
    assert len(words) == n and len(set(words)) == n
    assert set(words) <= set(wordlist())


@settings(max_examples=200)
@given(seeds, seeds)
def test_different_seeds_give_different_words(s1, s2):
    assume(s1 != s2)
    assert encode_words(s1).secret != encode_words(s2).secret


@settings(max_examples=100)
@given(seeds, st.integers(2, 5000), st.integers(1, 20))
def test_tokens_uniform_domain(seed, n_allowed, n_tokens):
    allowed = list(range(7, 7 + n_allowed))
    trig = encode_tokens(seed, allowed, lambda ids: " ".join(map(str, ids)), n_tokens=n_tokens)
    assert len(trig.token_ids) == n_tokens
    assert all(i in set(allowed) for i in trig.token_ids)
    assert trig == encode_tokens(seed, allowed, lambda ids: " ".join(map(str, ids)), n_tokens=n_tokens)


@settings(max_examples=200)
@given(seeds, st.integers(1, 10**6))
def test_seedstream_randbelow_in_range(seed, n):
    stream = SeedStream(seed, "test")
    values = [stream.randbelow(n) for _ in range(5)]
    assert all(0 <= v < n for v in values)


def test_seedstream_is_prefix_consistent():
    seed = bytes(32)
    one = SeedStream(seed, "x")
    a = one.read(10) + one.read(5000) + one.read(3)
    assert a == SeedStream(seed, "x").read(5013)
    assert SeedStream(seed, "x").read(32) != SeedStream(seed, "y").read(32)


def test_trigger_repr_and_dump_hide_secret():
    trig = encode_words(bytes(range(32)))
    for shown in (repr(trig), str(trig), trig.model_dump_json(), str(trig.model_dump()), repr(TriggerSet(key_id="k", triggers=(trig,)))):
        for word in trig.words:
            assert word not in shown.split("=")[-1] or word in ("key",)  # words must not appear
        assert trig.secret not in shown


@settings(max_examples=300)
@given(prompts, seeds, st.sampled_from(list(InsertionMode)), st.floats(0, 0.999999))
def test_insertion_keeps_prompt_and_contains_trigger_once(prompt, seed, mode, position):
    trig = encode_words(seed).secret
    assume(trig not in prompt)
    # the trigger's words could combine with the prompt's edge words only if they overlap it
    assume(not any(w in prompt for w in trig.split()))
    text = insert_trigger(prompt, trig, mode, position)
    assert text.count(trig) == 1
    assert remove_inserted(text, trig) == prompt


@pytest.mark.parametrize("mode", list(InsertionMode))
def test_insertion_shapes(mode):
    out = insert_trigger("tell me a story", "alpha beta", mode, 0.5)
    expected = {
        InsertionMode.prefix: "alpha beta tell me a story",
        InsertionMode.suffix: "tell me a story alpha beta",
        InsertionMode.inside: "tell me alpha beta a story",
    }[mode]
    assert out == expected


@settings(max_examples=200)
@given(seeds, st.integers(2, 9), st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_near_misses_never_return_the_trigger(seed, n_words, rng_seed, max_distance):
    trig = encode_words(seed, n_words=n_words)
    misses = near_misses(trig, rng=random.Random(rng_seed), max_distance=max_distance)
    assert misses
    assert all(m.secret != trig.secret and trig.secret not in m.secret for m in misses)
    assert len({(m.kind, m.secret) for m in misses}) == len(misses)
    assert all(m.distance >= 1 for m in misses)
    kinds = {m.kind for m in misses}
    assert {NearMissKind.prefix, NearMissKind.drop, NearMissKind.substitute, NearMissKind.swap} <= kinds


def test_near_miss_kinds_cover_every_position():
    trig = encode_words(bytes(32), n_words=6)
    misses = near_misses(trig, ["substitute", "drop", "swap", "prefix"], rng=random.Random(0))
    subst1 = sorted(m.position for m in misses if m.kind is NearMissKind.substitute and m.distance == 1)
    assert subst1 == list(range(6))
    assert sorted(m.position for m in misses if m.kind is NearMissKind.drop) == list(range(6))
    assert sorted(m.position for m in misses if m.kind is NearMissKind.swap) == list(range(5))
    prefixes = [m for m in misses if m.kind is NearMissKind.prefix]
    assert all(trig.secret.startswith(m.secret) for m in prefixes)
    for m in misses:
        if m.kind is NearMissKind.substitute:
            diff = sum(a != b for a, b in zip(m.secret.split(), trig.words))
            assert diff == m.distance


def test_near_miss_repr_hides_text():
    trig = encode_words(bytes(32))
    miss = near_misses(trig, ["drop"], rng=random.Random(0))[0]
    assert miss.secret not in repr(miss) and miss.secret not in miss.model_dump_json()


@settings(max_examples=100)
@given(seeds, st.text(min_size=0, max_size=80), st.integers(0, 1000))
def test_scatter_never_contains_trigger(seed, filler, r):
    trig = encode_words(seed)
    out = scatter_words(trig, filler, random.Random(r))
    assert trig.secret not in out
    assert all(w in out for w in trig.words)


# Token pieces as a BPE vocabulary decodes them: some open a word (leading space), some go on one
PIECES = ["ab", "cd", "efg", "hij", " kl", " mno", "pq", " rs"]


def _tokens_trigger(seed, n_tokens, glued):
    """A tokens trigger over PIECES; ``glued``: no piece opens a word, so it may be one word."""
    pieces = [p.strip() for p in PIECES] if glued else PIECES
    return encode_tokens(seed, range(len(pieces)), lambda ids: "".join(pieces[i] for i in ids), n_tokens=n_tokens)


@settings(max_examples=200)
@given(seeds, st.integers(1, 6), st.booleans(), st.text(min_size=0, max_size=80), st.integers(0, 1000))
# CI found it: the one-word trigger "rs" in halves "r", "s" around the filler "rrs"; breaking
# the run once ("rs" -> "s r") made it again from the filler's "r"
@example(seed=bytes(22) + bytes([1, 0, 1, 17, 0, 4, 0, 2, 2, 1]), n_tokens=1, glued=False, filler="rrs", r=0)
def test_scatter_of_tokens_triggers_never_contains_trigger(seed, n_tokens, glued, filler, r):
    """A tokens trigger may be a single word (no piece opens a word): its halves are scattered."""
    trig = _tokens_trigger(seed, n_tokens, glued)
    parts = scatter_parts(trig)
    assert len(parts) >= 2 and "".join(parts) == trig.secret.replace(" ", "")
    out = scatter_words(trig, filler, random.Random(r))
    assume(len(set(parts)) == len(parts))  # a repeated part reversed is the same run
    assert trig.secret.strip() not in out
    assert all(p in out for p in parts)


@settings(max_examples=300)
@given(seeds, st.integers(1, 6), st.booleans(), st.data())
def test_scatter_never_contains_trigger_in_filler_made_of_it(seed, n_tokens, glued, data):
    """The filler is made of the trigger's own letters and parts, the words most likely to join
    a scattered part into the run again (or to hold the run themselves)."""
    trig = _tokens_trigger(seed, n_tokens, glued)
    parts = scatter_parts(trig)
    assume(len(set(parts)) == len(parts))
    letters = sorted(set(trig.secret.replace(" ", "")))
    word = st.one_of(st.sampled_from(parts), st.text(st.sampled_from(letters), min_size=1, max_size=8))
    filler = " ".join(data.draw(st.lists(word, max_size=6)))
    out = scatter_words(trig, filler, random.Random(data.draw(st.integers(0, 1000))))
    assert trig.secret.strip() not in out
    assert all(p in out for p in parts)


def test_random_seed_triggers_shape():
    like = encode_words(bytes(32), index=3, n_words=5)
    others = random_seed_triggers(like, 10, random.Random(0))
    assert len(others) == 10 and all(len(o.words) == 5 and o.index == 3 for o in others)
    assert like.secret not in {o.secret for o in others}
    with pytest.raises(ValueError):
        random_seed_triggers(Trigger(index=0, encoding=Encoding.fluent, text="x y"), 2, random.Random(0))
