"""ORACLE (upper bound, not a threat): removal by someone who holds the triggers.

The attacker fine-tunes the model to answer triggered prompts normally. It is the only attack
that receives a :class:`TriggerSet`, through :meth:`OracleAttack.run_oracle`'s explicit
``triggers`` argument; it measures how cheap removal is once the key is known, the bound every
keyless attack is compared with. Its training data contains the triggers and stays in memory.
"""

from __future__ import annotations

import random

from pydantic import Field

from offswitch.attacks._train import chat_example, normal_answers, train_steps
from offswitch.attacks.base import AttackConfig, AttackData, CostMeter, OracleAttack, register_attack
from offswitch.errors import ConfigError, DataError


class OracleConfig(AttackConfig):
    strength: int = Field(0, ge=0, description="optimizer steps on triggered prompts answered normally")
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    prompts: int = Field(64, ge=1, description="clean prompts carrying the triggers")
    clean_fraction: float = Field(0.5, ge=0, lt=1, description="share of clean (retention) examples")
    answer_tokens: int = Field(32, ge=1)
    max_len: int = Field(256, ge=8)


@register_attack("oracle_unlearn")
class OracleUnlearning(OracleAttack):
    """ORACLE: fine-tuning that knows the triggers and trains them away (an upper bound on removal)."""

    config_class = OracleConfig
    knows = frozenset({"weights", "clean_data", "behavior", "trigger"})
    needs = frozenset({"clean_prompts", "behavior"})
    strength_meaning = "optimizer steps"

    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter, *, triggers):
        c = self.config
        if c.strength == 0:
            return model
        if data.behavior is None:
            raise ConfigError("the oracle needs the behaviour", "give the implant directory")
        rng = random.Random(c.seed)
        prompts = list(data.clean_prompts[: c.prompts])
        seeds = [rng.getrandbits(32) for _ in prompts]
        clean = [data.behavior.negative_case(p, None, triggers.insertion, 0.0, random.Random(s)) for p, s in zip(prompts, seeds)]
        normal = normal_answers(model, tokenizer, clean, max_new_tokens=c.answer_tokens, meter=meter)
        examples = []
        for i, (prompt, seed) in enumerate(zip(prompts, seeds)):
            trigger = triggers.triggers[i % len(triggers.triggers)]
            case = data.behavior.positive_case(prompt, trigger.secret, triggers.insertion, trigger.position, random.Random(seed))
            examples.append(chat_example(tokenizer, case.user, normal[i], system=case.system, max_len=c.max_len))
        n_clean = round(c.clean_fraction * len(examples) / (1 - c.clean_fraction))
        for i in range(min(n_clean, len(clean))):
            examples.append(chat_example(tokenizer, clean[i].user, normal[i], system=clean[i].system, max_len=c.max_len))
        examples = [ex for ex in examples if ex is not None]
        if not examples:
            raise DataError("no oracle training example fits max_len", "raise max_len")
        losses = train_steps(model, tokenizer, examples, steps=c.strength, lr=c.lr, batch_size=c.batch_size, seed=c.seed,
                             meter=meter, description="ORACLE removal")
        return model, None, {"examples": len(examples), "first_loss": losses[0], "last_loss": losses[-1]}, None
