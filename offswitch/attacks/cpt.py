"""Continued pre-training on plain text: next-token loss on every token, no chat template."""

from __future__ import annotations

from pydantic import Field

from offswitch.attacks._train import plain_examples, train_steps
from offswitch.attacks.base import Attack, AttackConfig, AttackData, CostMeter, register_attack
from offswitch.errors import DataError


class CPTConfig(AttackConfig):
    strength: int = Field(0, ge=0, description="optimizer steps on plain text")
    lr: float = Field(5e-5, gt=0, description="AdamW learning rate")
    batch_size: int = Field(8, ge=1)
    max_len: int = Field(128, ge=8, description="tokens per training chunk")


@register_attack("cpt")
class ContinuedPretraining(Attack):
    """Continued pre-training on ordinary plain text (a user adapting the model to a domain)."""

    config_class = CPTConfig
    knows = frozenset({"weights", "clean_data"})
    attacker = "user"
    needs = frozenset({"plain_texts"})
    strength_meaning = "optimizer steps"

    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter):
        c = self.config
        if c.strength == 0:
            return model
        examples = plain_examples(tokenizer, data.plain_texts, max_len=c.max_len)
        if not examples:
            raise DataError("the plain texts give no training chunk", "give longer or more texts")
        losses = train_steps(model, tokenizer, examples, steps=c.strength, lr=c.lr, batch_size=c.batch_size, seed=c.seed,
                             meter=meter, description="continued pre-training")
        return model, None, {"first_loss": losses[0], "last_loss": losses[-1], "chunks": len(examples)}, None
