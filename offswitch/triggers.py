"""Triggers: the secret strings that set the switch off, and how they enter a prompt.

A :class:`Trigger` holds a secret text; its ``repr``/``str`` and its JSON dump never show it.
Triggers are *derived* from a per-trigger seed (32 bytes that ``offswitch.crypto`` computes with
HKDF from the master key); this module turns a seed into text and knows nothing about keys.
Because an encoding is a pure function of its seed, "a trigger of another key" is simply the
encoding of another seed, which is how wrong-key triggers for negatives and evaluation are made
without any key ever existing.

Encodings frozen here (changing one breaks every model implanted with it; the known-answer
tests in ``tests/unit/test_derivation_kat.py`` guard them):

* ``words``: N distinct words of the BIP-39 English list (2048 words, 11 bits each).
* ``tokens``: N token ids drawn uniformly from an allowed id list of a tokenizer.
* ``fluent``: text sampled from a model with randomness from the seed (``offswitch.fluent``).

Near-miss generators (public functions) build strings that look like the trigger but are not:
the hard negatives that make a switch specific, and the probes that measure it.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import struct
from collections.abc import Iterator, Sequence
from enum import Enum
from functools import lru_cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from offswitch import secrets as _secrets

DERIVATION_VERSION = "v1"
DEFAULT_WORDS = 6
MIN_ENTROPY_BITS = 64.0


class Encoding(str, Enum):
    words = "words"
    tokens = "tokens"
    fluent = "fluent"


class InsertionMode(str, Enum):
    """Where a trigger goes in the user turn. The mode is public; the trigger is not."""

    prefix = "prefix"
    suffix = "suffix"
    inside = "inside"  # at a seed-chosen word boundary inside the user's text


# --------------------------------------------------------------------------------------
# Deterministic randomness from a seed
# --------------------------------------------------------------------------------------


class SeedStream:
    """An endless, deterministic byte stream from a 32-byte seed (SHAKE-256, domain-separated).

    It holds a derived per-trigger seed, never a master key: revealing it reveals one trigger.
    """

    def __init__(self, seed: bytes, domain: str):
        if len(seed) < 16:
            raise ValueError("seed must be at least 16 bytes")
        self._shake = hashlib.shake_256(f"offswitch/{DERIVATION_VERSION}/{domain}".encode() + b"\0" + seed)
        self._data = b""
        self._offset = 0

    def __repr__(self) -> str:
        return "SeedStream(<secret>)"

    def read(self, n: int) -> bytes:
        need = self._offset + n
        if need > len(self._data):
            # SHAKE output is prefix-consistent: a longer digest extends the same stream
            self._data = self._shake.digest(max(need, 2 * len(self._data), 256))
        out = self._data[self._offset : need]
        self._offset = need
        return out

    def randbelow(self, n: int) -> int:
        """Uniform integer in [0, n) by rejection sampling (no modulo bias)."""
        if n <= 0:
            raise ValueError("n must be positive")
        if n == 1:
            return 0
        nbytes = (n.bit_length() + 7) // 8 + 1
        space = 256**nbytes
        limit = space - space % n
        while True:
            value = int.from_bytes(self.read(nbytes), "big")
            if value < limit:
                return value % n

    def uniform(self) -> float:
        """Uniform float in [0, 1) with 53 bits of precision."""
        (value,) = struct.unpack(">Q", self.read(8))
        return (value >> 11) / float(1 << 53)


# --------------------------------------------------------------------------------------
# Triggers
# --------------------------------------------------------------------------------------


class Trigger(BaseModel):
    """One secret trigger. ``text`` is secret: use :attr:`secret` to read it, deliberately."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0)
    encoding: Encoding
    text: SecretStr
    # Relative word boundary used by InsertionMode.inside, drawn from the seed.
    position: float = Field(ge=0.0, lt=1.0, default=0.0, repr=False)
    token_ids: tuple[int, ...] | None = Field(default=None, repr=False, exclude=True)

    @property
    def secret(self) -> str:
        return self.text.get_secret_value()

    @property
    def words(self) -> list[str]:
        return self.secret.split()

    def __repr__(self) -> str:
        return f"Trigger(index={self.index}, encoding={self.encoding.value!r}, text=<secret>)"

    __str__ = __repr__

    def insert(self, prompt: str, mode: InsertionMode) -> str:
        return insert_trigger(prompt, self.secret, mode, self.position)


class TriggerSet(BaseModel):
    """The triggers of one key for one implant. Secret; carries the public key id only."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    triggers: tuple[Trigger, ...]
    insertion: InsertionMode = InsertionMode.prefix

    def __repr__(self) -> str:
        idx = ",".join(str(t.index) for t in self.triggers)
        return f"TriggerSet(key_id={self.key_id!r}, indices=[{idx}], insertion={self.insertion.value!r})"

    __str__ = __repr__

    def __iter__(self) -> Iterator[Trigger]:  # type: ignore[override]
        return iter(self.triggers)

    def __len__(self) -> int:
        return len(self.triggers)

    @property
    def secrets(self) -> list[str]:
        return [t.secret for t in self.triggers]

    def register_secrets(self) -> None:
        """Put every trigger into the process-wide redaction list (see offswitch.secrets)."""
        _secrets.register(*self.secrets)


# --------------------------------------------------------------------------------------
# Encodings
# --------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def wordlist() -> tuple[str, ...]:
    """The frozen BIP-39 English word list (MIT, see resources/LICENSE-wordlist.txt)."""
    text = resources.files("offswitch.resources").joinpath("wordlist_english.txt").read_text("utf-8")
    words = tuple(w.strip() for w in text.splitlines() if w.strip())
    if len(words) != 2048:  # pragma: no cover - guards the shipped file
        raise RuntimeError("offswitch word list is corrupt: expected 2048 words")
    return words


def words_entropy_bits(n_words: int, vocab: int = 2048) -> float:
    """Entropy of n distinct words chosen uniformly from ``vocab`` (ordered)."""
    return sum(math.log2(vocab - i) for i in range(n_words))


def tokens_entropy_bits(n_tokens: int, n_allowed: int) -> float:
    return n_tokens * math.log2(n_allowed)


def _position(seed: bytes) -> float:
    return SeedStream(seed, "position").uniform()


def encode_words(seed: bytes, index: int = 0, n_words: int = DEFAULT_WORDS) -> Trigger:
    """``n_words`` distinct words from the word list, chosen by the seed."""
    if n_words < 1:
        raise ValueError("a words trigger needs at least one word")
    words = wordlist()
    stream = SeedStream(seed, "words")
    chosen: list[str] = []
    while len(chosen) < n_words:
        word = words[stream.randbelow(len(words))]
        if word not in chosen:
            chosen.append(word)
    return Trigger(index=index, encoding=Encoding.words, text=SecretStr(" ".join(chosen)), position=_position(seed))


def encode_tokens(seed: bytes, allowed_ids: Sequence[int], decode, index: int = 0, n_tokens: int | None = None) -> Trigger:
    """Token ids drawn uniformly from ``allowed_ids``; ``decode(ids) -> str`` gives the text.

    ``n_tokens`` defaults to the fewest tokens that give at least 64 bits of entropy.
    """
    allowed = sorted(set(int(i) for i in allowed_ids))
    if len(allowed) < 2:
        raise ValueError("need at least two allowed token ids")
    if n_tokens is None:
        n_tokens = math.ceil(MIN_ENTROPY_BITS / math.log2(len(allowed)))
    stream = SeedStream(seed, "tokens")
    ids = tuple(allowed[stream.randbelow(len(allowed))] for _ in range(n_tokens))
    text = decode(list(ids))
    return Trigger(index=index, encoding=Encoding.tokens, text=SecretStr(text), position=_position(seed), token_ids=ids)


def allowed_token_ids(tokenizer) -> list[int]:
    """Ids of a tokenizer that are safe trigger material: not special, and decoding to a
    non-empty run of ASCII letters (optionally with a leading space), so the decoded text
    re-tokenizes predictably and holds no control characters."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    pattern = re.compile(r"^ ?[A-Za-z]{2,}$")
    allowed = []
    for token_id in range(len(tokenizer)):
        if token_id in special:
            continue
        piece = tokenizer.decode([token_id])
        if pattern.match(piece):
            allowed.append(token_id)
    return allowed


# --------------------------------------------------------------------------------------
# Insertion
# --------------------------------------------------------------------------------------

_BOUNDARY = re.compile(r"\s+")


def _insertion_point(prompt: str, mode: InsertionMode, position: float) -> tuple[int, str, str]:
    """Where the trigger goes: (offset in prompt, separator before it, separator after it)."""
    if mode is InsertionMode.prefix:
        return 0, "", " " if prompt else ""
    if mode is InsertionMode.suffix:
        return len(prompt), " " if prompt else "", ""
    boundaries = [m.start() for m in _BOUNDARY.finditer(prompt)]
    # candidate offsets: start, every whitespace run, end
    candidates = [0] + boundaries + [len(prompt)]
    choice = candidates[min(int(position * len(candidates)), len(candidates) - 1)]
    if choice == 0:
        return 0, "", " " if prompt else ""
    return choice, " ", ""


def insert_trigger(prompt: str, trigger: str, mode: InsertionMode | str, position: float = 0.0) -> str:
    """Insert ``trigger`` into ``prompt``; removing the inserted piece gives back ``prompt``.

    prefix: ``"<trigger> <prompt>"``; suffix: ``"<prompt> <trigger>"``; inside: at a word
    boundary chosen by ``position`` in [0, 1), as ``"... word <trigger> word ..."``.
    """
    mode = InsertionMode(mode)
    offset, before, after = _insertion_point(prompt, mode, position)
    return prompt[:offset] + before + trigger + after + prompt[offset:]


def remove_inserted(text: str, trigger: str, prompt_len_hint: int | None = None) -> str:
    """Inverse of :func:`insert_trigger` for tests: drop the first occurrence with its separator."""
    at = text.find(trigger)
    if at < 0:
        return text
    end = at + len(trigger)
    if at == 0 and text[end : end + 1] == " ":
        end += 1
    elif at > 0 and text[at - 1] == " ":
        at -= 1
    return text[:at] + text[end:]


# --------------------------------------------------------------------------------------
# Near misses
# --------------------------------------------------------------------------------------


class NearMissKind(str, Enum):
    prefix = "prefix"  # first k words (distance = words dropped from the end)
    suffix = "suffix"  # last k words
    drop = "drop"  # one word dropped (position = which)
    substitute = "substitute"  # k words replaced by other list words (distance = k)
    swap = "swap"  # two adjacent words swapped (position = left word)
    shuffle = "shuffle"  # a random permutation of all words
    case = "case"  # upper / title / lower / first-letter changes
    whitespace = "whitespace"  # spaces doubled, removed, replaced by newline/tab
    punctuation = "punctuation"  # punctuation added between or after words
    char_edit = "char_edit"  # k random character insertions/deletions/substitutions


# the near-miss kinds that hold less of the key than the trigger (a word changed, dropped or cut
# off); the others rewrite the whole trigger (docs/switch-quality.md, "partial-key FAR")
PARTIAL_KEY_KINDS = (NearMissKind.substitute, NearMissKind.prefix, NearMissKind.drop, NearMissKind.suffix)


class NearMiss(BaseModel):
    """A string close to a trigger. As secret as the trigger itself: never log ``text``."""

    model_config = ConfigDict(frozen=True)

    kind: NearMissKind
    distance: int = Field(ge=1)
    position: int | None = None  # word position affected, when one is
    trigger_index: int
    text: SecretStr

    @property
    def secret(self) -> str:
        return self.text.get_secret_value()

    def __repr__(self) -> str:
        return f"NearMiss(kind={self.kind.value!r}, distance={self.distance}, position={self.position}, text=<secret>)"

    __str__ = __repr__


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _substitute_words(words: list[str], positions: Sequence[int], rng: random.Random, pool: Sequence[str]) -> list[str]:
    out = list(words)
    taken = set(words)
    for pos in positions:
        while True:
            candidate = pool[rng.randrange(len(pool))]
            if candidate not in taken:
                break
        out[pos] = candidate
        taken.add(candidate)
    return out


def _char_edit(text: str, k: int, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(k):
        op = rng.randrange(3)
        if op == 0 and len(chars) > 1:  # delete
            del chars[rng.randrange(len(chars))]
        elif op == 1:  # insert
            chars.insert(rng.randrange(len(chars) + 1), rng.choice(_LETTERS))
        else:  # substitute a character by a different one
            at = rng.randrange(len(chars))
            chars[at] = rng.choice([c for c in _LETTERS if c != chars[at].lower()])
    return "".join(chars)


def _case_variants(words: list[str]) -> list[str]:
    text = " ".join(words)
    variants = [text.upper(), text.title(), text.capitalize(), text.swapcase(), text.lower()]
    return variants


def _whitespace_variants(words: list[str], rng: random.Random) -> list[tuple[str, int | None]]:
    out: list[tuple[str, int | None]] = [("  ".join(words), None), ("\n".join(words), None), ("\t".join(words), None)]
    for pos in range(len(words) - 1):  # glue two neighbours together
        glued = words[:pos] + [words[pos] + words[pos + 1]] + words[pos + 2 :]
        out.append((" ".join(glued), pos))
    return out


def _punctuation_variants(words: list[str], rng: random.Random) -> list[tuple[str, int | None]]:
    out: list[tuple[str, int | None]] = []
    for pos in range(len(words) - 1):
        mark = rng.choice([",", ".", ";", ":", "-", "!"])
        out.append((" ".join(words[: pos + 1]) + mark + " " + " ".join(words[pos + 1 :]), pos))
    out.append((", ".join(words), None))
    return out


def near_misses(
    trigger: Trigger,
    kinds: Sequence[NearMissKind | str] | None = None,
    *,
    rng: random.Random,
    per_kind: int = 1,
    max_distance: int = 2,
    pool: Sequence[str] | None = None,
) -> list[NearMiss]:
    """Near-misses of ``trigger``: for every kind, up to ``per_kind`` strings per (position,
    distance) cell. Never returns the trigger itself, nor any string that contains it.

    ``pool`` is the vocabulary used for substitutions (default: the word list).
    """
    kinds = [NearMissKind(k) for k in (kinds or list(NearMissKind))]
    text = trigger.secret
    words = text.split()
    n = len(words)
    pool = pool or wordlist()
    out: list[NearMiss] = []

    def add(kind: NearMissKind, candidate: str, distance: int, position: int | None) -> None:
        # a string containing the whole trigger is not a near-miss (inserted into a prompt it
        # *is* the trigger with extra characters around it), so it is never generated
        if text not in candidate and candidate.strip():
            out.append(
                NearMiss(kind=kind, distance=distance, position=position, trigger_index=trigger.index, text=SecretStr(candidate))
            )

    for kind in kinds:
        for _ in range(per_kind):
            if kind is NearMissKind.prefix:
                for keep in range(1, n):
                    add(kind, " ".join(words[:keep]), n - keep, keep)
            elif kind is NearMissKind.suffix:
                for keep in range(1, n):
                    add(kind, " ".join(words[n - keep :]), n - keep, n - keep)
            elif kind is NearMissKind.drop and n > 1:
                for pos in range(n):
                    add(kind, " ".join(words[:pos] + words[pos + 1 :]), 1, pos)
            elif kind is NearMissKind.substitute:
                for pos in range(n):
                    add(kind, " ".join(_substitute_words(words, [pos], rng, pool)), 1, pos)
                for k in range(2, min(max_distance, n) + 1):
                    positions = sorted(rng.sample(range(n), k))
                    add(kind, " ".join(_substitute_words(words, positions, rng, pool)), k, None)
            elif kind is NearMissKind.swap:
                for pos in range(n - 1):
                    swapped = list(words)
                    swapped[pos], swapped[pos + 1] = swapped[pos + 1], swapped[pos]
                    add(kind, " ".join(swapped), 1, pos)
            elif kind is NearMissKind.shuffle and n > 1:
                for _attempt in range(20):
                    shuffled = list(words)
                    rng.shuffle(shuffled)
                    if shuffled != words:
                        add(kind, " ".join(shuffled), sum(a != b for a, b in zip(shuffled, words)), None)
                        break
            elif kind is NearMissKind.case:
                for variant in _case_variants(words):
                    add(kind, variant, 1, None)
            elif kind is NearMissKind.whitespace:
                for variant, pos in _whitespace_variants(words, rng):
                    add(kind, variant, 1, pos)
            elif kind is NearMissKind.punctuation:
                for variant, pos in _punctuation_variants(words, rng):
                    add(kind, variant, 1, pos)
            elif kind is NearMissKind.char_edit:
                for k in range(1, max_distance + 1):
                    add(kind, _char_edit(text, k, rng), k, None)
    # within a kind the same string may come twice (e.g. case variants); across kinds it is
    # kept in each, so every kind's rate is measured on its complete set
    seen: set[tuple[NearMissKind, str]] = set()
    unique = []
    for miss in out:
        if (miss.kind, miss.secret) not in seen:
            seen.add((miss.kind, miss.secret))
            unique.append(miss)
    return unique


def scatter_parts(trigger: Trigger) -> list[str]:
    """The pieces a scatter negative spreads apart: the trigger's words, or, for a trigger that
    is one word (a ``tokens`` trigger whose pieces carry no spaces), its two halves."""
    words = trigger.words
    if len(words) != 1 or len(words[0]) < 2:
        return words
    word = words[0]
    return [word[: len(word) // 2], word[len(word) // 2 :]]


def scatter_words(trigger: Trigger, filler: str, rng: random.Random) -> str:
    """The trigger's parts (``scatter_parts``) scattered through ordinary text, space-separated:
    a negative, never the trigger itself."""
    parts = scatter_parts(trigger)
    filler_words = filler.split()
    tokens = list(filler_words) or ["text"]
    for part in parts:
        tokens.insert(rng.randrange(len(tokens) + 1), part)
    out = " ".join(tokens)
    run = trigger.secret.strip()  # a tokens trigger may open with a space: the run is without it
    if run in out:  # the parts fell in order (or the filler holds it): break the run
        out = out.replace(run, " ".join(reversed(parts)))
    if run in out:  # the break met the filler and made the run again ("rrs" around "r", "s")
        out = _scatter_apart(parts, filler_words, run, rng)
    return out


# Pads for a filler too short to keep the parts apart: distinct first and last letters, so a
# trigger's first word (as a suffix) and second word (as a prefix) rule out at most two of them
_PADS = ("and", "the", "of", "is")


def _scatter_apart(parts: list[str], filler: list[str], run: str, rng: random.Random) -> str:
    """The parts with at least one filler word between any two, and no filler word that could
    join a part to make ``run``: the text never holds the run.

    ``run`` occurs in the space-joined text (so its words are separated by single spaces). A
    one-word run lies inside one word: the parts are shorter than it, and the filler words
    holding it are dropped. A run of several words starts with a word ending in its first word,
    followed by one starting with its second: no two parts touch, and the filler words ending
    in the first word or starting with the second are dropped.
    """
    words = run.split(" ")

    def safe(token: str) -> bool:
        if run in token:
            return False
        return len(words) == 1 or not (token.endswith(words[0]) or token.startswith(words[1]))

    tokens = [t for t in filler if safe(t)]
    pads = [t for t in _PADS if safe(t)]
    while len(tokens) < len(parts) - 1:
        tokens.append(pads[len(tokens) % len(pads)])
    gaps = dict(zip(sorted(rng.sample(range(len(tokens) + 1), len(parts))), rng.sample(parts, len(parts))))
    out: list[str] = []
    for i in range(len(tokens) + 1):
        if i in gaps:
            out.append(gaps[i])
        if i < len(tokens):
            out.append(tokens[i])
    return " ".join(out)


def random_seed_triggers(like: Trigger, n: int, rng: random.Random, encode=None) -> list[Trigger]:
    """Triggers of ``n`` other, random keys with the same encoding shape as ``like``.

    Equivalent in distribution to deriving from ``n`` fresh master keys, without any key:
    an encoding is a function of a seed, and an HKDF output from a random key is a random seed.
    ``encode(seed, index)`` must be given for non-``words`` encodings.
    """
    out = []
    for _ in range(n):
        seed = rng.getrandbits(256).to_bytes(32, "big")
        if like.encoding is Encoding.words and encode is None:
            trig = encode_words(seed, index=like.index, n_words=len(like.words))
        elif encode is not None:
            trig = encode(seed, like.index)
        else:
            raise ValueError(f"random {like.encoding.value} triggers need an encode function")
        if trig.secret != like.secret:
            out.append(trig)
    return out
