"""Unstructured magnitude pruning of every linear layer."""

from __future__ import annotations

from pydantic import Field

from offswitch.attacks._modules import linear_weights
from offswitch.attacks.base import Attack, AttackConfig, AttackData, CostMeter, register_attack


def keep_all_but_smallest(scores, n_drop: int):
    """Boolean keep-mask of a 2-D ``scores``: in each row the ``n_drop`` smallest are dropped,
    ties broken by position — the first ``n_drop`` indices of a stable argsort of the row.

    Found by selection, not by sorting: the row's ``n_drop``-th smallest value
    (``kthvalue``), everything below it, then as many of the values equal to it as are still
    due, first by position. A quarter of the sort's time on SmolLM2-135M's linear weights
    (``benchmarks/bench_pruning.py``)."""
    import torch

    if n_drop <= 0:
        return torch.ones_like(scores, dtype=torch.bool)
    threshold = scores.kthvalue(n_drop, dim=1, keepdim=True).values
    below = scores < threshold
    ties = scores == threshold
    due = n_drop - below.sum(dim=1, keepdim=True)
    return ~(below | (ties & (ties.cumsum(dim=1) <= due)))


def magnitude_mask(weight, fraction: float):
    """Boolean mask (True = keep) that drops the ``floor(fraction * numel)`` smallest |w|.
    Ties break by position (as a stable sort would), so the mask is deterministic."""
    flat = weight.detach().abs().flatten()
    return keep_all_but_smallest(flat.unsqueeze(0), int(fraction * flat.numel())).reshape(weight.shape)


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
