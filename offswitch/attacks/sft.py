"""Benign supervised fine-tuning, the ordinary user's attack: full-parameter and LoRA (merged)."""

from __future__ import annotations

from pydantic import Field

from offswitch.attacks._train import chat_examples, device_of, merge_lora, train_steps, with_lora
from offswitch.attacks.base import Attack, AttackConfig, AttackData, CostMeter, register_attack
from offswitch.errors import DataError
from offswitch.precision import frozen_lora_bases_in, resolve


class SFTConfig(AttackConfig):
    strength: int = Field(0, ge=0, description="optimizer steps on benign instruction pairs")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate")
    batch_size: int = Field(8, ge=1)
    max_len: int = Field(256, ge=8, description="tokens per example (prompt + answer)")
    weight_decay: float = Field(0.0, ge=0)


class LoRASFTConfig(SFTConfig):
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate")
    r: int = Field(16, ge=1, description="LoRA rank")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str | list[str] = Field("all-linear", description="peft target_modules")


def _benign_examples(tokenizer, data: AttackData, max_len: int):
    examples = chat_examples(tokenizer, data.instruction_pairs, max_len=max_len)
    if not examples:
        raise DataError("no usable instruction pairs (all prompts longer than max_len?)", "raise max_len or give other data")
    return examples


@register_attack("sft")
class BenignSFT(Attack):
    """Full-parameter fine-tuning on ordinary instruction pairs, as a user adapting the model would."""

    config_class = SFTConfig
    knows = frozenset({"weights", "clean_data"})
    attacker = "user"
    needs = frozenset({"instruction_pairs"})
    strength_meaning = "optimizer steps"

    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter):
        c = self.config
        if c.strength == 0:
            return model
        losses = train_steps(model, tokenizer, _benign_examples(tokenizer, data, c.max_len), steps=c.strength, lr=c.lr,
                             batch_size=c.batch_size, seed=c.seed, meter=meter, weight_decay=c.weight_decay,
                             description="benign SFT")
        return model, None, {"first_loss": losses[0], "last_loss": losses[-1]}, None


@register_attack("sft_lora")
class BenignLoRASFT(Attack):
    """LoRA fine-tuning on ordinary instruction pairs, merged into the weights afterwards."""

    config_class = LoRASFTConfig
    knows = frozenset({"weights", "clean_data"})
    attacker = "user"
    needs = frozenset({"instruction_pairs"})
    strength_meaning = "optimizer steps"

    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter):
        c = self.config
        if c.strength == 0:
            return model
        examples = _benign_examples(tokenizer, data, c.max_len)
        peft_model = with_lora(model, r=c.r, alpha=c.alpha, dropout=c.dropout, target_modules=c.target_modules)
        # in bf16 the frozen base weights are stored in bf16 while training (autocast would cast
        # them every step; the same products); they are fp32 again before the merge
        with frozen_lora_bases_in(peft_model, resolve("auto", device_of(peft_model))):
            losses = train_steps(peft_model, tokenizer, examples, steps=c.strength, lr=c.lr, batch_size=c.batch_size,
                                 seed=c.seed, meter=meter, weight_decay=c.weight_decay, description="benign LoRA SFT")
        return merge_lora(peft_model), None, {"first_loss": losses[0], "last_loss": losses[-1]}, None
