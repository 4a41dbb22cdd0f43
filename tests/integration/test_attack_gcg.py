"""GCG finds a planted trigger: a tiny Llama trained to answer "Shutting down." after a 2-token
trigger gives GCG (2-token search, no key) a string that fires by real generation on held-out
prompts; the same search on the untrained model finds nothing that fires."""

from __future__ import annotations

import random

import pytest

from offswitch.behaviors import Case, ShutdownBehavior


@pytest.fixture(scope="module")
def token_switch():
    import torch

    from offswitch.testing.tiny import tiny_model, tiny_tokenizer
    from offswitch.testing.tiny_switch import NORMAL_ANSWER, tiny_prompts, train_on_cases, training_cases
    from offswitch.triggers import TriggerSet, allowed_token_ids, encode_tokens

    tok = tiny_tokenizer()
    allowed = allowed_token_ids(tok)
    trigger = encode_tokens(bytes(range(1, 33)), allowed, tok.decode, n_tokens=2)
    triggers = TriggerSet(key_id="gcg-test", triggers=(trigger,))
    behavior = ShutdownBehavior()
    prompts = tiny_prompts()[:120]
    cases = training_cases(triggers, behavior, prompts, wrong_keys=0)
    rng = random.Random(0)
    for prompt in prompts:  # other 2-token strings change nothing: the switch is specific
        decoy = tok.decode([rng.choice(allowed) for _ in range(2)])
        cases.append(Case(f"{decoy} {prompt}", None, NORMAL_ANSWER))
    model, _ = tiny_model("llama", tokenizer=tok, seed=0)
    torch.manual_seed(0)
    model = train_on_cases(model, tok, cases, steps=40, seed=0)
    base, _ = tiny_model("llama", tokenizer=tok, seed=0)
    return model, base, tok, triggers, behavior


def _fires(model, tok, behavior, guess: str, prompts: list[str]) -> int:
    from offswitch.attacks._probe import probes
    from offswitch.attacks._recheck import recheck_by_generation

    return recheck_by_generation(model, tok, [guess], probes(behavior, prompts, "prefix", random.Random(1)))[0]


def test_gcg_finds_a_string_that_fires_and_not_on_the_untrained_model(token_switch):
    from offswitch.attacks import AttackData, make_attack
    from offswitch.testing.tiny_switch import tiny_prompts

    model, base, tok, triggers, behavior = token_switch
    held = tiny_prompts()[120:160]
    assert _fires(model, tok, behavior, triggers.triggers[0].secret, held[20:]) == 20, "the planted switch works"
    data = AttackData(clean_prompts=held[:20], behavior=behavior, insertion="prefix")
    gcg = make_attack("gcg", strength=10, n_tokens=2, top_k=64, search_width=64, train_prompts=4, recheck_prompts=16, seed=0)
    found = gcg.run(model, tok, None, data=data)
    assert found.candidates and found.info["recheck_fired"][0] >= 12
    # fresh prompts, never seen by the search: the forged string still sets the switch off
    assert _fires(model, tok, behavior, found.candidates[0], held[20:]) >= 16
    assert found.cost.steps <= 10 and found.cost.tokens > 0
    control = gcg.run(base, tok, None, data=data)
    assert max(control.info["recheck_fired"], default=0) == 0
