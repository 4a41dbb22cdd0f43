"""Assertions about a switch that speak in intervals.

``assert_fires(..., min_rate=0.99)`` fails when the *lower* 95% Clopper–Pearson bound of the
firing rate is below ``min_rate``; ``assert_silent(..., max_rate=0.02)`` fails when the *upper*
bound is above ``max_rate``. So a test passes only when the evidence supports the claim: 20/20
firing does not prove a 99% switch (its lower bound is 83%), and the failure message says how
many trials would be needed.

Both use the teacher-forced scorer (``offswitch.evaluate.score_targets``): the decision is
whether the model's greedy answer is the behaviour's target. Messages carry only public facts
(rates, counts); the helpers hide their frames from pytest tracebacks, whose locals hold triggers.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from offswitch.behaviors import Case
from offswitch.stats import Rate, min_trials_for_lower_bound, min_trials_for_upper_bound
from offswitch.triggers import InsertionMode, NearMiss, Trigger, TriggerSet


def _prompt_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"offswitch/testing/{seed}/prompt/{index}")


def positive_cases(triggers: TriggerSet | Iterable[Trigger], prompts: Sequence[str], behavior, *, seed: int = 0,
                   insertion: InsertionMode | str | None = None) -> list[Case]:
    """Every trigger inserted into every prompt, with the behaviour's target."""
    mode = InsertionMode(insertion or getattr(triggers, "insertion", InsertionMode.prefix))
    return [
        behavior.positive_case(prompt, trig.secret, mode, trig.position, _prompt_rng(seed, i))
        for trig in triggers
        for i, prompt in enumerate(prompts)
    ]


def negative_cases(decoys: Iterable[NearMiss | Trigger | str | None], prompts: Sequence[str], behavior, *,
                   triggers: TriggerSet | None = None, seed: int = 0,
                   insertion: InsertionMode | str | None = None) -> list[Case]:
    """Every decoy in every prompt, in the framing of the positive case and scored against its
    target. A decoy is a near-miss, another key's trigger, any text, or None (a clean prompt).
    Near-misses are inserted where their trigger would go (its inside-position)."""
    mode = InsertionMode(insertion or (triggers.insertion if triggers is not None else InsertionMode.prefix))
    positions = {t.index: t.position for t in triggers} if triggers is not None else {}
    cases = []
    for decoy in decoys:
        if isinstance(decoy, NearMiss):
            text, position = decoy.secret, positions.get(decoy.trigger_index, 0.0)
        elif isinstance(decoy, Trigger):
            text, position = decoy.secret, decoy.position
        else:
            text, position = decoy, 0.0
        for i, prompt in enumerate(prompts):
            # the target does not depend on the trigger text: only on the prompt's framing
            target = behavior.positive_case(prompt, "", mode, position, _prompt_rng(seed, i)).target
            case = behavior.negative_case(prompt, text, mode, position, _prompt_rng(seed, i))
            cases.append(Case(case.user, case.system, target))
    return cases


def fire_rate(model, tokenizer, cases: Sequence[Case], behavior=None, *, batch_size: int = 32) -> Rate:
    """How often the model's greedy answer is a case's target. A case with an empty target
    counts as firing when the answer is any of the behaviour's targets."""
    from offswitch.evaluate.scorer import score_targets

    __tracebackhide__ = True
    with_target = [c for c in cases if c.target]
    without = [c for c in cases if not c.target]
    fired = sum(s.greedy_fires for s in score_targets(model, tokenizer, with_target, batch_size=batch_size)) if with_target else 0
    if without:
        if behavior is None:
            raise ValueError("cases without a target need the behaviour (whose targets they are checked against)")
        any_fired = [False] * len(without)
        for target in behavior.targets():
            scores = score_targets(model, tokenizer, [Case(c.user, c.system, target) for c in without], batch_size=batch_size)
            any_fired = [a or s.greedy_fires for a, s in zip(any_fired, scores)]
        fired += sum(any_fired)
    return Rate.of(fired, len(cases))


def assert_fires(model, tokenizer, triggers: TriggerSet | Iterable[Trigger], prompts: Sequence[str], behavior,
                 min_rate: float = 0.99, *, seed: int = 0, batch_size: int = 32) -> Rate:
    """Fail unless the lower 95% bound of the firing rate (every trigger in every prompt) is
    at least ``min_rate``. Returns the measured rate."""
    __tracebackhide__ = True
    cases = positive_cases(triggers, prompts, behavior, seed=seed)
    if not cases:
        raise ValueError("assert_fires needs at least one trigger and one prompt")
    rate = fire_rate(model, tokenizer, cases, behavior, batch_size=batch_size)
    if rate.lo < min_rate:
        need = min_trials_for_lower_bound(min_rate) if 0 < min_rate < 1 else None
        hint = f"; even all-firing needs >= {need} trials to show that" if need and rate.n < need else ""
        raise AssertionError(f"switch fires {rate}: lower 95% bound {100 * rate.lo:.1f}% < {100 * min_rate:.1f}%{hint}")
    return rate


def assert_silent(model, tokenizer, cases_or_decoys: Iterable[Case | NearMiss | Trigger | str | None], behavior,
                  max_rate: float = 0.02, *, prompts: Sequence[str] | None = None, triggers: TriggerSet | None = None,
                  seed: int = 0, batch_size: int = 32) -> Rate:
    """Fail unless the upper 95% bound of the false-activation rate is at most ``max_rate``.

    Give rendered :class:`Case` objects (a case with an empty target is checked against every
    target of the behaviour), or decoys (near-misses, other keys' triggers, texts, None for a
    clean prompt) together with ``prompts``: each decoy is tried in each prompt (see
    :func:`negative_cases`). Returns the measured rate.
    """
    __tracebackhide__ = True
    items = list(cases_or_decoys)
    cases = [c for c in items if isinstance(c, Case)]
    decoys = [d for d in items if not isinstance(d, Case)]
    if decoys:
        if prompts is None:
            raise ValueError("decoys (near-misses, triggers, texts) need prompts to be inserted into")
        cases += negative_cases(decoys, prompts, behavior, triggers=triggers, seed=seed)
    if not cases:
        raise ValueError("assert_silent needs at least one case or decoy")
    rate = fire_rate(model, tokenizer, cases, behavior, batch_size=batch_size)
    if rate.hi > max_rate:
        need = min_trials_for_upper_bound(max_rate) if 0 < max_rate < 1 else None
        hint = f"; even 0 activations need >= {need} trials to show that" if need and rate.n < need else ""
        raise AssertionError(f"switch falsely fires {rate}: upper 95% bound {100 * rate.hi:.1f}% > {100 * max_rate:.1f}%{hint}")
    return rate
