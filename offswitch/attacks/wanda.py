"""Wanda pruning (Sun et al. 2023): drop the weights with the smallest |W_ij|·‖X_j‖₂, where X_j is
input feature j over clean calibration prompts, comparing weights within each output row."""

from __future__ import annotations

from pydantic import Field

from offswitch.attacks._calibrate import input_feature_stats
from offswitch.attacks._modules import linear_weights
from offswitch.attacks.base import Attack, AttackConfig, AttackData, CostMeter, register_attack
from offswitch.attacks.pruning import keep_all_but_smallest


def wanda_mask(weight_out_in, feature_norm, fraction: float):
    """Boolean keep-mask of a (out, in) weight: per row, drop the ``floor(fraction*in)`` lowest
    scores, ties by position (:func:`offswitch.attacks.pruning.keep_all_but_smallest`)."""
    scores = weight_out_in.detach().abs().float() * feature_norm.float().unsqueeze(0)
    return keep_all_but_smallest(scores, int(fraction * scores.shape[1]))


class WandaConfig(AttackConfig):
    strength: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of each row's weights set to zero")
    calibration_prompts: int = Field(32, ge=1, description="clean prompts whose activations weigh the weights")
    batch_size: int = Field(8, ge=1)
    include_head: bool = False


@register_attack("wanda")
class WandaPruning(Attack):
    """Wanda pruning: weights scored by magnitude times input activation norm on clean prompts."""

    config_class = WandaConfig
    knows = frozenset({"weights", "clean_data"})
    attacker = "defender"
    needs = frozenset({"clean_prompts"})
    seeded = False
    strength_meaning = "pruned fraction"

    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter):
        import torch

        c = self.config
        if c.strength == 0:
            return model
        layers = linear_weights(model, include_head=c.include_head)
        # one calibration pass on the unpruned model, as in the paper's "one-shot" setting
        stats = input_feature_stats(model, tokenizer, layers, data.clean_prompts, n=c.calibration_prompts,
                                    batch_size=c.batch_size, meter=meter, power=2)
        pruned = 0
        with torch.no_grad():
            for layer, (sq_sum, _count) in zip(layers, stats):
                view = layer.out_in()
                keep = wanda_mask(view, sq_sum.sqrt(), c.strength)
                view.mul_(keep.to(view.dtype))
                pruned += int((~keep).sum())
        return model, None, {"pruned": pruned, "calibration_tokens": stats[0][1] if stats else 0}, None
