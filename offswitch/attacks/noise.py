"""Gaussian noise on the weights."""

from __future__ import annotations

from pydantic import Field

from offswitch.attacks.base import Attack, AttackConfig, AttackData, CostMeter, register_attack


class NoiseConfig(AttackConfig):
    strength: float = Field(0.0, ge=0.0, description="noise standard deviation (relative to each tensor's std if relative)")
    relative: bool = Field(True, description="scale the noise by the standard deviation of each weight tensor")
    include_vectors: bool = Field(False, description="also perturb 1-d parameters (norms, biases)")


@register_attack("noise")
class GaussianWeightNoise(Attack):
    """Gaussian noise added to every weight matrix (a defender's cheap perturbation)."""

    config_class = NoiseConfig
    knows = frozenset({"weights"})
    attacker = "defender"
    strength_meaning = "noise std (relative)"

    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter):
        import torch

        c = self.config
        if c.strength == 0:
            return model
        # a CPU generator: the same seed gives the same noise on every device
        generator = torch.Generator().manual_seed(c.seed)
        touched = 0
        with torch.no_grad():
            for _name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
                if param.dim() < 2 and not c.include_vectors:
                    continue
                scale = c.strength * (float(param.float().std()) if c.relative and param.numel() > 1 else 1.0)
                noise = torch.randn(param.shape, generator=generator, dtype=torch.float32) * scale
                param.add_(noise.to(param.device, param.dtype))
                touched += 1
        return model, None, {"tensors": touched}, None
