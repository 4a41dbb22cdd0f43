"""Hypothesis strategies for testing a switch: prompts, other keys' triggers, near-misses of a
TriggerSet by kind and distance, insertion modes, and attack configurations.

Drawn triggers and near-misses are secrets: their ``repr`` (what hypothesis prints for a
falsifying example) hides the text, and hypothesis's example database stores only the choices
that produced them, never the strings.

    from hypothesis import given
    from offswitch.testing import strategies as ost

    @given(miss=ost.near_misses(triggers, kinds=["substitute"], distance=1))
    def test_one_word_off_is_silent(miss): ...
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from hypothesis import strategies as st

from offswitch.triggers import InsertionMode, NearMiss, NearMissKind, Trigger, TriggerSet, encode_words
from offswitch.triggers import near_misses as _near_misses


def prompts(source: Sequence[str] | str, *, seed: int = 0, split: str = "heldout") -> st.SearchStrategy[str]:
    """Prompts from a list, or from a prompt source (``offswitch.data.sources.load_prompts``:
    ``builtin``, a file, ...), held-out side by default."""
    if isinstance(source, str):
        from offswitch.data.sources import load_prompts

        loaded = load_prompts(source, seed=seed)
        pool = loaded.heldout if split == "heldout" else loaded.train
    else:
        pool = list(source)
    if not pool:
        raise ValueError("no prompts to draw from")
    return st.sampled_from(pool)


def _like(trigger_or_set: Trigger | TriggerSet) -> list[Trigger]:
    return list(trigger_or_set.triggers) if isinstance(trigger_or_set, TriggerSet) else [trigger_or_set]


def wrong_key_triggers(like: Trigger | TriggerSet, *, encode: Callable[[bytes, int], Trigger] | None = None) -> st.SearchStrategy[Trigger]:
    """Triggers of other, random keys, shaped like ``like`` (same encoding and length).

    A random 32-byte seed is what HKDF gives for an unknown key, so this is exactly a trigger of
    another key. ``encode(seed, index)`` is needed for non-``words`` encodings.
    """
    references = _like(like)
    true_texts = {t.secret for t in references}

    def build(args) -> Trigger:
        seed, reference = args
        if encode is not None:
            return encode(seed, reference.index)
        if reference.encoding.value != "words":
            raise ValueError(f"wrong-key {reference.encoding.value} triggers need an encode function")
        return encode_words(seed, index=reference.index, n_words=len(reference.words))

    drawn = st.tuples(st.binary(min_size=32, max_size=32), st.sampled_from(references)).map(build)
    return drawn.filter(lambda t: t.secret not in true_texts)


def near_misses(
    triggers: Trigger | TriggerSet,
    kinds: Sequence[NearMissKind | str] | None = None,
    *,
    distance: int | None = None,
    min_distance: int = 1,
    max_distance: int = 3,
) -> st.SearchStrategy[NearMiss]:
    """Near-misses of the triggers (``offswitch.triggers.near_misses``), restricted to
    ``kinds`` and to one ``distance`` or a distance range. Randomised kinds (substitutions,
    shuffles, character edits) differ from draw to draw."""
    references = _like(triggers)
    kind_list = [NearMissKind(k) for k in (kinds or list(NearMissKind))]
    lo, hi = (distance, distance) if distance is not None else (min_distance, max_distance)

    def candidates(args) -> list[NearMiss]:
        reference, rng_seed = args
        found = _near_misses(reference, kind_list, rng=random.Random(rng_seed), max_distance=max(hi, 1))
        return [m for m in found if lo <= m.distance <= hi]

    pools = st.tuples(st.sampled_from(references), st.integers(0, 2**32 - 1)).map(candidates)
    if not any(candidates((reference, 0)) for reference in references):
        raise ValueError("no near-miss of these triggers has the requested kinds and distance")
    return pools.filter(bool).flatmap(st.sampled_from)


def insertion_modes(exclude: InsertionMode | str | None = None) -> st.SearchStrategy[InsertionMode]:
    """Insertion modes, e.g. every mode but the trained one (``exclude=triggers.insertion``)."""
    excluded = InsertionMode(exclude) if exclude is not None else None
    return st.sampled_from([m for m in InsertionMode if m is not excluded])


def _strength_strategy(field, max_strength: float | None):
    import annotated_types

    lower, upper, lower_open, upper_open = 0.0, None, False, False
    for constraint in field.metadata:
        if isinstance(constraint, annotated_types.Ge):
            lower = constraint.ge
        elif isinstance(constraint, annotated_types.Gt):
            lower, lower_open = constraint.gt, True
        elif isinstance(constraint, annotated_types.Le):
            upper = constraint.le
        elif isinstance(constraint, annotated_types.Lt):
            upper, upper_open = constraint.lt, True
    if max_strength is not None and (upper is None or max_strength < upper):
        upper, upper_open = max_strength, False
    if field.annotation is int:
        top = int(upper if upper is not None else 1000) - (1 if upper_open else 0)
        return st.integers(int(lower) + (1 if lower_open else 0), top)
    return st.floats(
        min_value=float(lower),
        max_value=float(upper) if upper is not None else 1e3,
        exclude_min=lower_open,
        exclude_max=upper_open,
        allow_nan=False,
    )


def attack_configs(name: str, *, max_strength: float | None = None, seeds: st.SearchStrategy[int] | None = None):
    """Configs of attack ``name`` with a strength inside its declared bounds (at most
    ``max_strength``, to keep tests cheap) and a drawn seed; other settings at their defaults."""
    from pydantic import ValidationError

    from offswitch.attacks import get_attack

    config_class = get_attack(name).config_class
    strength = _strength_strategy(config_class.model_fields["strength"], max_strength)

    def build(args):
        try:  # a config may refuse some values inside its bounds (e.g. 1-bit quantization)
            return config_class(strength=args[0], seed=args[1])
        except ValidationError:
            return None

    drawn = st.tuples(strength, seeds if seeds is not None else st.integers(0, 2**16)).map(build)
    return drawn.filter(lambda config: config is not None)


def attacks(names: Sequence[str] | None = None, *, max_strength: float | None = None, oracle: bool = False):
    """Configured :class:`offswitch.attacks.Attack` objects (names default to every
    registered non-oracle attack)."""
    from offswitch.attacks import attack_names, get_attack

    chosen = list(names) if names is not None else [n for n in attack_names() if oracle or not get_attack(n).oracle]
    if not chosen:
        raise ValueError("no attacks to draw from")
    return st.sampled_from(chosen).flatmap(
        lambda n: attack_configs(n, max_strength=max_strength).map(lambda config, n=n: get_attack(n)(config))
    )
