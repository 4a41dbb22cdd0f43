"""Merging: linear interpolation with the base model or another fine-tune."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from offswitch.attacks.base import Attack, AttackConfig, AttackData, CostMeter, register_attack
from offswitch.errors import ConfigError


class MergeConfig(AttackConfig):
    strength: float = Field(0.0, ge=0.0, le=1.0, description="weight of the other model: (1-a)·model + a·other")
    other: str | None = Field(None, description="model spec to merge with (default: the base model)")
    method: Literal["linear"] = "linear"


@register_attack("merge")
class MergeWithBase(Attack):
    """Linear interpolation of the weights with the base model (or another fine-tune)."""

    config_class = MergeConfig
    knows = frozenset({"weights", "base_model"})
    attacker = "user"
    seeded = False
    strength_meaning = "interpolation weight of the other model"

    def required_data(self) -> frozenset[str]:
        return frozenset({"base_model"}) if self.config.other is None else frozenset()

    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter):
        import torch

        c = self.config
        if c.strength == 0:
            return model
        if c.other is not None:
            from offswitch.models import load_model

            other, _ = load_model(c.other, device="cpu")
        elif data.base_model is not None:
            other = data.base_model
        else:
            raise ConfigError("the merge attack needs a model to merge with", "give the base model (--base) or set other: MODEL")
        theirs = dict(other.named_parameters())
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name not in theirs or theirs[name].shape != param.shape:
                    raise ConfigError(f"cannot merge: the other model has no parameter {name} of shape {tuple(param.shape)}",
                                      "merge with a model of the same architecture")
                param.mul_(1 - c.strength).add_(theirs[name].detach().to(param.device, param.dtype), alpha=c.strength)
        return model
