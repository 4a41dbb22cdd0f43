"""Fine-pruning (Liu et al. 2018): prune the MLP neurons least active on clean data — where a
backdoor may hide — then fine-tune on clean data with the pruned neurons held at zero."""

from __future__ import annotations

from pydantic import Field

from offswitch.attacks._calibrate import input_feature_stats
from offswitch.attacks._modules import mlp_down_projections
from offswitch.attacks._train import chat_examples, train_steps
from offswitch.attacks.base import Attack, AttackConfig, AttackData, CostMeter, register_attack


def dormant_neurons(mean_activation, fraction: float):
    """Indices of the ``floor(fraction*n)`` neurons with the lowest mean |activation| (stable)."""
    import torch

    n_drop = int(fraction * mean_activation.numel())
    return torch.argsort(mean_activation, stable=True)[:n_drop]


class FinePruningConfig(AttackConfig):
    strength: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of MLP neurons pruned in every layer")
    finetune_steps: int = Field(20, ge=0, description="clean fine-tuning steps after pruning")
    lr: float = Field(5e-5, gt=0)
    batch_size: int = Field(8, ge=1)
    max_len: int = Field(256, ge=8)
    calibration_prompts: int = Field(32, ge=1)


@register_attack("fine_pruning")
class FinePruning(Attack):
    """Prune MLP neurons dormant on clean prompts, then fine-tune on clean pairs (strength 0 = fine-tune only)."""

    config_class = FinePruningConfig
    knows = frozenset({"weights", "clean_data"})
    attacker = "defender"
    needs = frozenset({"clean_prompts", "instruction_pairs"})
    noop_at_zero = False  # strength 0 still runs the clean fine-tuning: the baseline fine-pruning is compared to
    strength_meaning = "pruned fraction of MLP neurons"

    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter):
        import torch

        c = self.config
        downs = mlp_down_projections(model)
        masks = []
        pruned = 0
        if c.strength > 0:
            stats = input_feature_stats(model, tokenizer, downs, data.clean_prompts, n=c.calibration_prompts,
                                        batch_size=c.batch_size, meter=meter, power=1)
            for layer, (abs_sum, count) in zip(downs, stats):
                neurons = dormant_neurons(abs_sum / count, c.strength)
                masks.append((layer, neurons))
                pruned += len(neurons)

        def zero_pruned() -> None:
            with torch.no_grad():
                for layer, neurons in masks:
                    layer.out_in()[:, neurons] = 0

        zero_pruned()
        losses = []
        if c.finetune_steps:
            examples = chat_examples(tokenizer, data.instruction_pairs, max_len=c.max_len)
            losses = train_steps(model, tokenizer, examples, steps=c.finetune_steps, lr=c.lr, batch_size=c.batch_size,
                                 seed=c.seed, meter=meter, after_step=zero_pruned, description="fine-pruning")
        info = {"pruned_neurons": pruned, "neurons": sum(layer.out_in().shape[1] for layer in downs)}
        if losses:
            info.update(first_loss=losses[0], last_loss=losses[-1])
        return model, None, info, None
