"""Embedding-difference recovery: a forger with the base model compares input embeddings; tokens
whose embeddings moved most during implanting are trigger suspects. They are tried as triggers,
alone and built greedily into sequences, scored by the behaviour target's likelihood in the real
prompt format, and the best guesses are re-checked by real generation."""

from __future__ import annotations

import random

from pydantic import Field

from offswitch.attacks._probe import printable_token_ids, probes
from offswitch.attacks._recheck import recheck_by_generation, score_guesses
from offswitch.attacks.base import Attack, AttackConfig, AttackData, CostMeter, register_attack
from offswitch.errors import ConfigError, DataError


class EmbeddingDiffConfig(AttackConfig):
    strength: int = Field(0, ge=0, description="tokens with the largest embedding change considered (0: none)")
    max_tokens: int = Field(8, ge=1, description="longest guess built from them")
    probe_prompts: int = Field(4, ge=1, description="clean prompts each guess is scored on")
    recheck_prompts: int = Field(16, ge=0, description="other clean prompts the best guesses are re-checked on")
    n_candidates: int = Field(4, ge=1, description="best guesses reported")


@register_attack("embedding_diff")
class EmbeddingDifference(Attack):
    """Tokens whose input embeddings moved most from the base model, tried as triggers."""

    config_class = EmbeddingDiffConfig
    knows = frozenset({"weights", "base_model", "behavior", "algorithm"})
    attacker = "forger"
    needs = frozenset({"clean_prompts", "behavior", "base_model"})
    changes_weights = False
    strength_meaning = "suspect tokens considered"

    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter):
        import torch

        c = self.config
        if c.strength == 0:
            return model
        mine = model.get_input_embeddings().weight.detach().float().cpu()
        base = data.base_model.get_input_embeddings().weight.detach().float().cpu()
        if mine.shape != base.shape:
            raise ConfigError("the base model's embeddings differ in shape from the model's", "give the implant's base model")
        rng = random.Random(c.seed)
        prompts = list(data.clean_prompts)
        if len(prompts) < c.probe_prompts:
            raise DataError(f"embedding-difference recovery needs {c.probe_prompts} clean prompts", "give more prompts")
        carriers = probes(data.behavior, prompts[: c.probe_prompts + c.recheck_prompts], data.insertion, rng)
        scoring, recheck = carriers[: c.probe_prompts], carriers[c.probe_prompts :]
        shift = (mine - base).norm(dim=1)
        allowed = torch.tensor(printable_token_ids(tokenizer))
        suspects = allowed[torch.argsort(shift[allowed], descending=True, stable=True)][: c.strength].tolist()

        def text_of(ids):
            return tokenizer.decode(list(ids))

        scored: dict[tuple[int, ...], float] = {}

        def score(sequences):
            fresh = [s for s in sequences if s not in scored]
            if fresh:
                values = score_guesses(model, tokenizer, [text_of(s) for s in fresh], scoring, meter=meter).tolist()
                scored.update(zip(fresh, values))
            return [scored[s] for s in sequences]

        singles = [(t,) for t in suspects]
        score(singles)
        # the suspects in order of their shift, as one bag, at every length
        score([tuple(suspects[:n]) for n in range(2, min(c.max_tokens, len(suspects)) + 1)])
        # greedy growth from the best single token, at either end, while the score improves
        current = max(singles, key=lambda s: (scored[s], -suspects.index(s[0])))
        while len(current) < c.max_tokens:
            grown = [current + (t,) for t in suspects if t not in current] + [(t,) + current for t in suspects if t not in current]
            if not grown:
                break
            values = score(grown)
            pick = max(range(len(grown)), key=lambda i: (values[i], -i))
            if values[pick] <= scored[current]:
                break
            current = grown[pick]
            meter.step()
        ranked = sorted(scored.items(), key=lambda item: (-item[1], item[0]))
        guesses: list[str] = []
        for ids, _value in ranked:
            text = text_of(ids)
            if text.strip() and text not in guesses:
                guesses.append(text)
            if len(guesses) == c.n_candidates:
                break
        fired = recheck_by_generation(model, tokenizer, guesses, recheck, meter=meter)
        order = sorted(range(len(guesses)), key=lambda i: (-fired[i], i))
        info = {
            "max_embedding_shift": float(shift.max()),
            "mean_embedding_shift": float(shift.mean()),
            "suspects": len(suspects),
            "guesses_scored": len(scored),
            "recheck_prompts": len(recheck),
            "recheck_fired": [fired[i] for i in order],
        }
        return model, None, info, [guesses[i] for i in order]
