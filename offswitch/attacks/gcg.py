"""Greedy Coordinate Gradient trigger search (Zou et al. 2023), implemented here because nanoGCG
pins an old transformers release.

A forger who knows the weights, the public behaviour and the insertion mode, but not the key,
optimises a short token string placed in the trigger's slot of a few clean prompts so that the
behaviour's target becomes the greedy answer. Every step: gradients of the target loss with
respect to a one-hot encoding of the string give the top-k replacement tokens per position;
a batch of single-token swaps is scored exactly and the best is kept. Only strings that
survive a decode→encode round trip are considered, and every guess it reports is re-checked
by real generation in the real prompt format on other prompts.

The model is returned unchanged; the guesses travel in memory (``AttackResult.candidates``)
to the evaluator, which measures how often they set the switch off on held-out prompts.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from offswitch.attacks._probe import PLACEHOLDER, printable_token_ids, probes
from offswitch.attacks._recheck import recheck_by_generation
from offswitch.attacks._train import autocast, device_of, progress, target_scores
from offswitch.attacks.base import Attack, AttackConfig, AttackData, CostMeter, register_attack
from offswitch.errors import DataError
from offswitch.prompting import encode_target, render_prompt


class GCGConfig(AttackConfig):
    strength: int = Field(0, ge=0, description="search steps (0: no search, no guesses)")
    n_tokens: int = Field(8, ge=1, description="tokens in the searched string")
    top_k: int = Field(64, ge=1, description="replacement tokens per position, from the gradient")
    search_width: int = Field(128, ge=1, description="candidate swaps scored per step")
    train_prompts: int = Field(4, ge=1, description="clean prompts the string is optimised on")
    recheck_prompts: int = Field(16, ge=0, description="other clean prompts each guess is re-checked on by generation")
    n_candidates: int = Field(4, ge=1, description="best distinct guesses reported")
    batch_size: int = Field(64, ge=1, description="rows per scoring forward pass")
    init: Literal["random", "x"] = Field("random", description="start from random printable tokens or from 'x' repeated")
    early_stop: bool = Field(True, description="stop once the string makes the target greedy on every training prompt")


class _Slot:
    """One training prompt split around the trigger slot, as token ids."""

    def __init__(self, tokenizer, probe):
        before, after, system, target = probe.split_at_slot()
        rendered = render_prompt(tokenizer, before + PLACEHOLDER + after, system)
        pre, _sep, post = rendered.partition(PLACEHOLDER)
        self.pre = tokenizer(pre, add_special_tokens=False)["input_ids"]
        self.post = tokenizer(post, add_special_tokens=False)["input_ids"]
        self.target = encode_target(tokenizer, target)


@register_attack("gcg")
class GCGSearch(Attack):
    """GCG: gradient-guided token search for a string that sets the switch off (forger, no key)."""

    config_class = GCGConfig
    knows = frozenset({"weights", "behavior", "algorithm"})
    attacker = "forger"
    needs = frozenset({"clean_prompts", "behavior"})
    changes_weights = False
    strength_meaning = "search steps"

    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter):
        c = self.config
        if c.strength == 0:
            return model
        rng = random.Random(c.seed)
        prompts = list(data.clean_prompts)
        if len(prompts) < c.train_prompts:
            raise DataError(f"GCG needs {c.train_prompts} clean prompts, got {len(prompts)}", "give more prompts or lower train_prompts")
        carriers = probes(data.behavior, prompts[: c.train_prompts + c.recheck_prompts], data.insertion, rng)
        train, recheck = carriers[: c.train_prompts], carriers[c.train_prompts :]
        slots = [_Slot(tokenizer, probe) for probe in train]
        allowed = printable_token_ids(tokenizer)
        if not allowed:
            raise DataError("the tokenizer has no printable tokens to search over", "use another tokenizer")
        if c.init == "x":
            x_ids = tokenizer("x", add_special_tokens=False)["input_ids"]
            ids = (x_ids * c.n_tokens)[: c.n_tokens]
        else:
            ids = [allowed[rng.randrange(len(allowed))] for _ in range(c.n_tokens)]
        best: dict[tuple[int, ...], float] = {}
        steps_run, solved_at = 0, None
        with progress(c.strength, "GCG search") as advance:
            for step in range(c.strength):
                top = self._top_k_tokens(model, slots, ids, allowed, meter)
                candidates = self._sample_candidates(ids, top, rng, tokenizer)
                steps_run += 1
                meter.step()
                advance()
                if not candidates:
                    continue
                losses, solved = self._score(model, tokenizer, slots, candidates, meter)
                pick = min(range(len(candidates)), key=lambda i: (losses[i], i))
                ids = list(candidates[pick])
                best[tuple(ids)] = min(losses[pick], best.get(tuple(ids), float("inf")))
                if solved[pick] and solved_at is None:
                    solved_at = step + 1
                    if c.early_stop:
                        break
        ranked = sorted(best.items(), key=lambda item: (item[1], item[0]))
        guesses: list[str] = []
        for guess_ids, _loss in ranked:
            text = tokenizer.decode(list(guess_ids))
            if text not in guesses:
                guesses.append(text)
            if len(guesses) == c.n_candidates:
                break
        fired = recheck_by_generation(model, tokenizer, guesses, recheck, meter=meter)
        order = sorted(range(len(guesses)), key=lambda i: (-fired[i], i))
        info = {
            "steps_run": steps_run,
            "solved_train_prompts_at_step": solved_at,
            "best_loss": ranked[0][1] if ranked else None,
            "recheck_prompts": len(recheck),
            "recheck_fired": [fired[i] for i in order],  # per guess, best first
        }
        return model, None, info, [guesses[i] for i in order]

    # ------------------------------------------------------------------ one step
    def _top_k_tokens(self, model, slots, ids, allowed, meter):
        import torch

        device = device_of(model)
        embed = model.get_input_embeddings().weight
        vocab = embed.shape[0]
        one_hot = torch.zeros(len(ids), vocab, device=device, dtype=embed.dtype)
        one_hot[torch.arange(len(ids)), torch.tensor(ids, device=device)] = 1.0
        one_hot.requires_grad_(True)
        adv = one_hot @ embed
        total = 0.0
        for slot in slots:
            pre = embed[torch.tensor(slot.pre, device=device, dtype=torch.long)]
            post = embed[torch.tensor(slot.post + slot.target, device=device, dtype=torch.long)]
            inputs = torch.cat([pre, adv, post]).unsqueeze(0)
            with autocast(device):
                logits = model(inputs_embeds=inputs).logits[0].float()
            start = len(slot.pre) + len(ids) + len(slot.post)
            target = torch.tensor(slot.target, device=device)
            loss = torch.nn.functional.cross_entropy(logits[start - 1 : start - 1 + len(target)], target)
            total = total + loss / len(slots)
            meter.forward(tokens=inputs.shape[1])
        (grad,) = torch.autograd.grad(total, [one_hot])
        mask = torch.full((vocab,), float("inf"), device=device)
        mask[torch.tensor(allowed, device=device)] = 0.0
        grad = grad.float() + mask
        return (-grad).topk(min(self.config.top_k, len(allowed)), dim=1).indices.tolist()

    def _sample_candidates(self, ids, top, rng: random.Random, tokenizer) -> list[tuple[int, ...]]:
        seen, out = set(), []
        for _ in range(self.config.search_width):
            pos = rng.randrange(len(ids))
            candidate = list(ids)
            candidate[pos] = top[pos][rng.randrange(len(top[pos]))]
            key = tuple(candidate)
            if key in seen or key == tuple(ids):
                continue
            seen.add(key)
            # keep strings that survive decode -> encode, so the found ids are what a real prompt contains
            if tokenizer(tokenizer.decode(candidate), add_special_tokens=False)["input_ids"] == candidate:
                out.append(key)
        return out

    def _score(self, model, tokenizer, slots, candidates, meter):
        prompts, targets = [], []
        for candidate in candidates:
            for slot in slots:
                prompts.append(slot.pre + list(candidate) + slot.post)
                targets.append(slot.target)
        logprob, greedy = target_scores(model, tokenizer, prompts, targets, batch_size=self.config.batch_size, meter=meter)
        n = len(slots)
        losses = (-logprob).reshape(len(candidates), n).mean(dim=1).tolist()
        solved = greedy.reshape(len(candidates), n).all(dim=1).tolist()
        return losses, solved
