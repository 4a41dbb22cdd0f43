"""Round-to-nearest weight quantisation (8/4/3-bit per channel) as fake quant, so it runs on CPU."""

from __future__ import annotations

from pydantic import Field, field_validator

from offswitch.attacks._modules import linear_weights
from offswitch.attacks.base import Attack, AttackConfig, AttackData, CostMeter, register_attack
from offswitch.errors import ConfigError


def fake_quantize(weight, bits: int, *, symmetric: bool = False, group_size: int | None = None):
    """Round-to-nearest quantisation of a (out, in) weight per output channel (or per group of
    ``group_size`` inputs), returned dequantised in the weight's dtype (fake quant: runs anywhere)."""
    import torch

    out_features, in_features = weight.shape
    w = weight.detach().float()
    if group_size is not None and group_size < in_features:
        if in_features % group_size:
            raise ConfigError(f"group_size {group_size} does not divide {in_features} input features", "choose a divisor")
        w = w.reshape(out_features, in_features // group_size, group_size)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = w.abs().amax(-1, keepdim=True) / qmax
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        q = torch.clamp(torch.round(w / scale), -qmax - 1, qmax)
        deq = q * scale
    else:
        levels = 2**bits - 1
        low = torch.clamp(w.amin(-1, keepdim=True), max=0.0)
        high = torch.clamp(w.amax(-1, keepdim=True), min=0.0)
        scale = (high - low) / levels
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        zero = torch.round(-low / scale)
        q = torch.clamp(torch.round(w / scale) + zero, 0, levels)
        deq = (q - zero) * scale
    return deq.reshape(out_features, in_features).to(weight.dtype)


class QuantizeConfig(AttackConfig):
    strength: int = Field(0, ge=0, le=16, description="bits per weight (0 = no quantisation; lower is harsher)")
    symmetric: bool = Field(False, description="symmetric (zero-point free) instead of min-max quantisation")
    group_size: int | None = Field(None, ge=1, description="inputs per scale; None = one scale per output channel")
    include_head: bool = Field(False, description="also quantise an untied output head")

    @field_validator("strength")
    @classmethod
    def _bits(cls, value: int) -> int:
        if value == 1:
            raise ValueError("1-bit round-to-nearest is not supported; use 0 (off) or 2..16 bits")
        return value


@register_attack("quantize")
class FakeQuantization(Attack):
    """Round-to-nearest weight quantisation per output channel (8/4/3-bit...), as fake quant."""

    config_class = QuantizeConfig
    knows = frozenset({"weights"})
    attacker = "user"
    seeded = False
    strength_meaning = "bits (0 = none; fewer is harsher)"

    @classmethod
    def severity(cls, strength: float) -> float:
        return 0.0 if strength == 0 else 17.0 - float(strength)  # 0 (none), 16, 8, ..., 2 bits: ever harsher

    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter):
        import torch

        c = self.config
        if c.strength == 0:
            return model
        layers = linear_weights(model, include_head=c.include_head)
        with torch.no_grad():
            for layer in layers:
                view = layer.out_in()
                view.copy_(fake_quantize(view, c.strength, symmetric=c.symmetric, group_size=c.group_size))
        return model, None, {"layers": len(layers)}, None
