"""A deployer-side input filter, ONION-style (Qi et al. 2021): before a user's text reaches the
model, each word is scored by how much the text's perplexity under a language model drops when
the word is removed; the most suspicious words are deleted. Trigger words that do not fit
their context stand out; a fluent trigger should not.

The model's weights are untouched. The attack returns the same model with a tokenizer whose
chat template filters every user message first, so the evaluator measures ASR and FAR through
the filter exactly as a deployment would see them (and utility pays for the words it drops).
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field

from offswitch.attacks._train import target_scores
from offswitch.attacks.base import Attack, AttackConfig, AttackData, CostMeter, register_attack

_SPLIT = re.compile(r"(\s+)")


def words_of(text: str) -> list[str]:
    """Whitespace-separated pieces; joining them with their separators gives the text back."""
    return _SPLIT.split(text)


def without_word(pieces: list[str], index: int) -> str:
    """The text with word ``index`` (an even position of ``pieces``) and one adjacent separator removed."""
    return "".join(_drop(pieces, index))


class OnionFilter:
    """Remove the ``fraction`` of words whose deletion lowers perplexity most (only words whose
    deletion lowers it at all). Results are cached per text; cost is counted in ``meter``."""

    def __init__(self, lm, lm_tokenizer, fraction: float, *, batch_size: int = 32):
        self.lm = lm
        self.lm_tokenizer = lm_tokenizer
        self.fraction = fraction
        self.batch_size = batch_size
        self.meter = CostMeter()
        self.cache: dict[str, str] = {}
        self.removed_words = 0
        self.seen_words = 0

    def log_perplexities(self, texts: list[str]) -> list[float]:
        """Mean next-token NLL of each text (inf where it has fewer than two tokens)."""
        rows = [self.lm_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        scorable = [i for i, r in enumerate(rows) if len(r) >= 2]
        out = [math.inf] * len(texts)
        if scorable:
            logprob, _ = target_scores(self.lm, self.lm_tokenizer, [rows[i][:1] for i in scorable], [rows[i][1:] for i in scorable],
                                       batch_size=self.batch_size, meter=self.meter)
            for i, value in zip(scorable, logprob.tolist()):
                out[i] = -value / (len(rows[i]) - 1)
        return out

    def __call__(self, text: str) -> str:
        if self.fraction <= 0:
            return text
        if text in self.cache:
            return self.cache[text]
        pieces = words_of(text)
        word_positions = [i for i in range(0, len(pieces), 2) if pieces[i]]
        result = text
        if len(word_positions) >= 2:
            variants = [text] + [without_word(pieces, i) for i in word_positions]
            scores = self.log_perplexities(variants)
            suspicion = [(scores[0] - s, n) for n, s in enumerate(scores[1:])]
            n_remove = math.ceil(self.fraction * len(word_positions))
            chosen = sorted((item for item in suspicion if item[0] > 0), key=lambda item: (-item[0], item[1]))[:n_remove]
            drop = {word_positions[n] for _score, n in chosen}
            for index in sorted(drop, reverse=True):
                pieces = _drop(pieces, index)
            result = "".join(pieces)
            self.removed_words += len(drop)
        self.seen_words += len(word_positions)
        self.cache[text] = result
        return result


def _drop(pieces: list[str], index: int) -> list[str]:
    kept = list(pieces)
    if index > 0:
        del kept[index - 1 : index + 1]
    elif len(kept) > 1:
        del kept[0:2]
    else:
        kept[0] = ""
    return kept


class FilteredTokenizer:
    """A tokenizer whose chat template passes every user message through ``text_filter`` first.

    Everything else is the wrapped tokenizer's. Saving saves the wrapped tokenizer (a filter
    is deployment code, not weights)."""

    def __init__(self, tokenizer, text_filter):
        object.__setattr__(self, "wrapped_tokenizer", tokenizer)
        object.__setattr__(self, "text_filter", text_filter)

    def __getattr__(self, name):
        return getattr(self.wrapped_tokenizer, name)

    def __setattr__(self, name, value):
        setattr(self.wrapped_tokenizer, name, value)

    def __call__(self, *args, **kwargs):
        return self.wrapped_tokenizer(*args, **kwargs)

    def __len__(self) -> int:
        return len(self.wrapped_tokenizer)

    def __repr__(self) -> str:
        return f"FilteredTokenizer({type(self.wrapped_tokenizer).__name__})"

    def apply_chat_template(self, conversation, *args, **kwargs):
        filtered = [
            dict(message, content=self.text_filter(message["content"]))
            if message.get("role") == "user" and isinstance(message.get("content"), str) else message
            for message in conversation
        ]
        return self.wrapped_tokenizer.apply_chat_template(filtered, *args, **kwargs)


class PerplexityFilterConfig(AttackConfig):
    strength: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of each user text's words the filter may delete")
    scorer: Literal["base", "self"] = Field("base", description="language model that scores perplexity: the base model, or the deployed model")
    batch_size: int = Field(32, ge=1)


@register_attack("perplexity_filter")
class PerplexityFilter(Attack):
    """ONION-style input filter: delete the words whose removal lowers perplexity most (deployer side)."""

    config_class = PerplexityFilterConfig
    knows = frozenset({"weights"})
    attacker = "deployer"
    changes_weights = False
    seeded = False
    strength_meaning = "fraction of words deleted"

    def wanted_data(self) -> frozenset[str]:
        return frozenset({"base_model"}) if self.config.scorer == "base" else frozenset()

    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter):
        c = self.config
        if c.strength == 0:
            return model
        if c.scorer == "base" and data.base_model is not None:
            lm, lm_tokenizer = data.base_model, data.base_tokenizer or tokenizer
        else:
            lm, lm_tokenizer = model, tokenizer
        text_filter = OnionFilter(lm, lm_tokenizer, c.strength, batch_size=c.batch_size)
        info = {"scorer": "base" if lm is not model else "self", "note": "the filter runs per prompt at inference; see filter cost"}
        return model, FilteredTokenizer(tokenizer, text_filter), info, None
