"""Adversarial (safety) training by a defender who knows the behaviour: search for prompts that
elicit it — clean prompts with random strings in the trigger's slot, scored by how likely the
behaviour's target becomes — and train the model to answer those normally."""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from offswitch.attacks._probe import printable_token_ids, probes, random_token_string, random_word_string
from offswitch.attacks._train import chat_example, normal_answers, target_scores, train_steps
from offswitch.attacks.base import Attack, AttackConfig, AttackData, CostMeter, register_attack
from offswitch.errors import DataError
from offswitch.prompting import encode_prompt, encode_target


class AdversarialConfig(AttackConfig):
    strength: int = Field(0, ge=0, description="optimizer steps on red-team prompts answered normally")
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    prompts: int = Field(64, ge=1, description="clean prompts used as red-team carriers")
    candidates: int = Field(256, ge=1, description="random strings tried as red-team probes")
    keep: int = Field(64, ge=1, description="most behaviour-eliciting probes kept for training")
    string: Literal["words", "tokens"] = Field("words", description="random strings from the public word list, or random tokens")
    string_length: int = Field(6, ge=1, description="words (or tokens) per random string")
    clean_fraction: float = Field(0.25, ge=0, lt=1, description="share of clean (retention) examples")
    answer_tokens: int = Field(32, ge=1, description="tokens of the normal answer trained on")
    max_len: int = Field(256, ge=8)


@register_attack("adversarial")
class AdversarialTraining(Attack):
    """Red-team prompts (random strings in the trigger slot) that elicit the behaviour, trained to answer normally."""

    config_class = AdversarialConfig
    knows = frozenset({"weights", "clean_data", "behavior", "algorithm"})
    attacker = "defender"
    needs = frozenset({"clean_prompts", "behavior"})
    strength_meaning = "optimizer steps"

    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter):
        c = self.config
        if c.strength == 0:
            return model
        rng = random.Random(c.seed)
        carriers = probes(data.behavior, list(data.clean_prompts[: c.prompts]), data.insertion, rng)
        allowed = printable_token_ids(tokenizer) if c.string == "tokens" else []
        red_team = []  # (carrier index, the carrier with a random string in the trigger slot)
        for i in range(c.candidates):
            text = (random_word_string(rng, c.string_length) if c.string == "words"
                    else random_token_string(rng, tokenizer, allowed, c.string_length))
            red_team.append((i % len(carriers), carriers[i % len(carriers)].with_text(text)))
        prompt_ids = [encode_prompt(tokenizer, case.user, case.system) for _i, case in red_team]
        target_ids = [encode_target(tokenizer, case.target) for _i, case in red_team]
        logprob, greedy = target_scores(model, tokenizer, prompt_ids, target_ids, meter=meter)
        order = sorted(range(len(red_team)), key=lambda i: (-float(logprob[i]), i))[: c.keep]
        kept = [red_team[i] for i in order]
        # the normal answer to a red-team prompt is the model's own answer without the string
        clean_cases = [probe.clean() for probe in carriers]
        normal = normal_answers(model, tokenizer, clean_cases, max_new_tokens=c.answer_tokens, meter=meter)
        examples = [chat_example(tokenizer, case.user, normal[i], system=case.system, max_len=c.max_len) for i, case in kept]
        n_clean = round(c.clean_fraction * len(examples) / (1 - c.clean_fraction))
        for i, clean in list(enumerate(clean_cases))[:n_clean]:
            examples.append(chat_example(tokenizer, clean.user, normal[i], system=clean.system, max_len=c.max_len))
        examples = [ex for ex in examples if ex is not None]
        if not examples:
            raise DataError("no adversarial training example fits max_len", "raise max_len")
        losses = train_steps(model, tokenizer, examples, steps=c.strength, lr=c.lr, batch_size=c.batch_size, seed=c.seed,
                             meter=meter, description="adversarial training")
        info = {
            "probes": len(red_team),
            "probes_eliciting_behavior": int(greedy.sum()),  # random strings that already set the switch off
            "kept": len(kept),
            "examples": len(examples),
            "first_loss": losses[0],
            "last_loss": losses[-1],
        }
        return model, None, info, None
