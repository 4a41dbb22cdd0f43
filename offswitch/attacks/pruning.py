"""Unstructured magnitude pruning of every linear layer."""

from __future__ import annotations

from pydantic import Field

from offswitch.attacks._modules import linear_weights
from offswitch.attacks.base import Attack, AttackConfig, AttackData, CostMeter, register_attack


def magnitude_mask(weight, fraction: float):
    """Boolean mask (True = keep) that drops the ``floor(fraction * numel)`` smallest |w|.
    Ties break by position (as a stable sort would), so the mask is deterministic.

    The n-th smallest |w| is found by selection (``kthvalue``), not by sorting every weight:
    everything below it is dropped, then as many of the weights equal to it as are still due,
    first by position — the first n indices of a stable argsort, at a quarter of its time on
    SmolLM2-135M's linear weights (``benchmarks/bench_pruning.py``)."""
    import torch

    flat = weight.detach().abs().flatten()
    n_drop = int(fraction * flat.numel())
    keep = torch.ones_like(flat, dtype=torch.bool)
    if n_drop:
        threshold = flat.kthvalue(n_drop).values
        below = flat < threshold
        keep[below] = False
        due = n_drop - int(below.sum())
        if due:
            keep[(flat == threshold).nonzero().flatten()[:due]] = False
    return keep.reshape(weight.shape)


class PruningConfig(AttackConfig):
    strength: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of each linear layer's weights set to zero")
    include_head: bool = Field(False, description="also prune an untied output head")


@register_attack("pruning")
class MagnitudePruning(Attack):
    """Unstructured magnitude pruning: the smallest weights of every linear layer set to zero."""

    config_class = PruningConfig
    knows = frozenset({"weights"})
    attacker = "defender"
    seeded = False
    strength_meaning = "pruned fraction"

    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter):
        import torch

        c = self.config
        if c.strength == 0:
            return model
        pruned = total = 0
        with torch.no_grad():
            for layer in linear_weights(model, include_head=c.include_head):
                weight = layer.param.data
                keep = magnitude_mask(weight, c.strength)
                weight.mul_(keep)
                pruned += int((~keep).sum())
                total += keep.numel()
        return model, None, {"pruned": pruned, "of": total}, None
