"""Behaviour probes: a clean prompt framed the way the public behaviour frames a switched prompt,
with any text (a random string, a forger's guess, or nothing) in the trigger's slot.

The insertion mode is public (it is in the manifest); the position of an ``inside`` insertion is
drawn from the key, so attackers draw their own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from offswitch.behaviors import Case
from offswitch.errors import ConfigError
from offswitch.triggers import InsertionMode, wordlist

PLACEHOLDER = "\u2063OFFSWITCH_SLOT\u2063"  # an invisible separator around a name no prompt contains


@dataclass(frozen=True)
class Probe:
    """A clean prompt in the behaviour's framing: ``with_text(s)`` puts ``s`` in the trigger slot."""

    prompt: str
    behavior: object
    insertion: InsertionMode
    position: float
    seed: int

    def _rng(self) -> random.Random:
        # the same seed makes positive and negative framings agree (e.g. the compliance phrase)
        return random.Random(self.seed)

    def with_text(self, text: str) -> Case:
        return self.behavior.positive_case(self.prompt, text, self.insertion, self.position, self._rng())

    def clean(self) -> Case:
        """The framing without anything in the slot; its target is still the behaviour's target."""
        negative = self.behavior.negative_case(self.prompt, None, self.insertion, self.position, self._rng())
        return Case(negative.user, negative.system, self.with_text("x").target)

    def split_at_slot(self) -> tuple[str, str, str | None, str]:
        """(user text before the slot, after it, system prompt, target), for token-level search."""
        case = self.with_text(PLACEHOLDER)
        before, sep, after = case.user.partition(PLACEHOLDER)
        if not sep:
            raise ValueError("the behaviour's framing lost the trigger slot")
        return before, after, case.system, case.target


def probes(behavior, prompts, insertion: str, rng: random.Random) -> list[Probe]:
    if behavior is None:
        raise ConfigError("this attack needs the public behaviour", "give the implant directory (its manifest names the behaviour)")
    mode = InsertionMode(insertion)
    return [Probe(p, behavior, mode, rng.random(), rng.getrandbits(32)) for p in prompts]


def random_word_string(rng: random.Random, n_words: int) -> str:
    """A random string of the same shape as a ``words`` trigger: words of the public word list."""
    words = wordlist()
    return " ".join(words[rng.randrange(len(words))] for _ in range(n_words))


def random_token_string(rng: random.Random, tokenizer, allowed: list[int], n_tokens: int) -> str:
    return tokenizer.decode([allowed[rng.randrange(len(allowed))] for _ in range(n_tokens)])


def printable_token_ids(tokenizer) -> list[int]:
    """Non-special token ids that decode to printable ASCII with at least one visible character."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    out = []
    for token_id in range(len(tokenizer)):
        if token_id in special:
            continue
        piece = tokenizer.decode([token_id])
        if piece and piece.isascii() and piece.isprintable() and piece.strip() and PLACEHOLDER not in piece:
            out.append(token_id)
    return out
