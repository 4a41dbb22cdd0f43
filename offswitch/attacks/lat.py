"""Latent adversarial training (after Casper et al. 2024; Sheshadri et al. 2024, targeted LAT): an
inner loop perturbs the hidden states of clean prompts toward the behaviour's target, within a
small ball; the outer loop trains the model to answer normally under that perturbation, and
away from the target. A defender who knows the behaviour but not the trigger attacks the
switch where it lives, in the residual stream.

The perturbation is added by a forward hook, scoped by :func:`offswitch.attacks._modules.hooks`:
it is removed when training ends, also when training fails.
"""

from __future__ import annotations

import random

from pydantic import Field

from offswitch.attacks._modules import decoder_layers, hidden_of, hooks, replace_hidden
from offswitch.attacks._probe import probes
from offswitch.attacks._train import (
    autocast,
    causal_lm_loss,
    chat_example,
    collate,
    device_of,
    labelled_logits,
    normal_answers,
    progress,
)
from offswitch.attacks.base import Attack, AttackConfig, AttackData, CostMeter, register_attack
from offswitch.errors import DataError
from offswitch.precision import adamw
from offswitch.prompting import encode_prompt, pad_id_of


class LATConfig(AttackConfig):
    strength: int = Field(0, ge=0, description="outer optimizer steps")
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    layer: int | None = Field(None, ge=0, description="perturb the residual stream after this decoder block (default: middle)")
    epsilon: float = Field(0.5, gt=0, description="per-token perturbation radius, relative to the mean hidden-state norm")
    inner_steps: int = Field(8, ge=1, description="perturbation steps per outer step")
    away_weight: float = Field(1.0, ge=0, description="weight of the unlikelihood loss on the behaviour's target")
    prompts: int = Field(64, ge=1, description="clean prompts trained on")
    answer_tokens: int = Field(32, ge=1)
    max_len: int = Field(256, ge=8)


@register_attack("lat")
class LatentAdversarialTraining(Attack):
    """Latent adversarial training: hidden states pushed toward the behaviour, the model trained against it."""

    config_class = LATConfig
    knows = frozenset({"weights", "clean_data", "behavior"})
    attacker = "defender"
    needs = frozenset({"clean_prompts", "behavior"})
    strength_meaning = "optimizer steps"

    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter):
        import torch

        c = self.config
        if c.strength == 0:
            return model
        rng = random.Random(c.seed)
        device = device_of(model)
        layers = decoder_layers(model)
        layer_index = c.layer if c.layer is not None else max(0, len(layers) // 2 - 1)
        if layer_index >= len(layers):
            raise DataError(f"layer {layer_index} does not exist (the model has {len(layers)})", "choose a smaller layer")
        clean_cases = [p.clean() for p in probes(data.behavior, list(data.clean_prompts[: c.prompts]), data.insertion, rng)]
        answers = normal_answers(model, tokenizer, clean_cases, max_new_tokens=c.answer_tokens, meter=meter)
        pairs = []
        for case, answer in zip(clean_cases, answers):
            good = chat_example(tokenizer, case.user, answer, system=case.system, max_len=c.max_len)
            bad = chat_example(tokenizer, case.user, case.target, system=case.system, max_len=c.max_len)
            if good is not None and bad is not None:
                pairs.append((good, bad, len(encode_prompt(tokenizer, case.user, case.system))))
        if not pairs:
            raise DataError("no latent adversarial training example fits max_len", "raise max_len")

        state: dict = {"delta": None, "prompt_mask": None, "norms": []}

        def perturb(_module, _args, output):
            hidden = hidden_of(output)
            if state["delta"] is None:
                state["norms"].append(hidden.detach().float().norm(dim=-1).mean())
                return output
            width = state["delta"].shape[1]
            added = torch.zeros_like(hidden)
            added[:, :width] = (state["delta"] * state["prompt_mask"]).to(hidden.dtype)
            return replace_hidden(output, hidden + added)

        pad = pad_id_of(tokenizer)
        optimizer = adamw([p for p in model.parameters() if p.requires_grad], lr=c.lr)
        order = random.Random(c.seed)
        losses = []
        with hooks([(layers[layer_index], "forward", perturb)]):
            with torch.no_grad():  # the perturbation's radius, from the clean hidden-state norms
                ids, mask, _ = collate([g for g, _b, _n in pairs[: c.batch_size]], pad, device)
                model(input_ids=ids, attention_mask=mask)
                meter.forward(mask)
            radius = c.epsilon * float(state["norms"][0])
            model.train()
            try:
                with progress(c.strength, "latent adversarial training") as advance:
                    for _ in range(c.strength):
                        batch = [pairs[i] for i in order.sample(range(len(pairs)), min(c.batch_size, len(pairs)))]
                        loss = self._outer_step(model, batch, state, radius, pad, device, meter, optimizer)
                        losses.append(loss)
                        meter.step()
                        advance()
            finally:
                model.eval()
                state["delta"] = None
        return model, None, {"layer": layer_index, "radius": radius, "first_loss": losses[0], "last_loss": losses[-1]}, None

    def _outer_step(self, model, batch, state, radius, pad, device, meter, optimizer) -> float:
        import torch

        c = self.config
        good_ids, good_mask, good_labels = collate([g for g, _b, _n in batch], pad, device)
        bad_ids, bad_mask, bad_labels = collate([b for _g, b, _n in batch], pad, device)
        prompt_len = max(n for _g, _b, n in batch)
        positions = torch.arange(prompt_len, device=device).unsqueeze(0)
        state["prompt_mask"] = (positions < torch.tensor([n for _g, _b, n in batch], device=device).unsqueeze(1)).unsqueeze(-1).float()
        hidden_size = model.get_input_embeddings().weight.shape[1]
        delta = torch.zeros(len(batch), prompt_len, hidden_size, device=device, requires_grad=True)
        step_size = 2.0 * radius / c.inner_steps
        for _ in range(c.inner_steps):  # push the hidden states toward the behaviour's target
            state["delta"] = delta
            with autocast(device):
                toward = causal_lm_loss(model, bad_ids, bad_mask, bad_labels)
            meter.forward(bad_mask)
            (grad,) = torch.autograd.grad(toward, [delta])
            with torch.no_grad():
                delta = delta - step_size * grad / (grad.norm(dim=-1, keepdim=True) + 1e-12)
                norms = delta.norm(dim=-1, keepdim=True)
                delta = delta * torch.clamp(radius / (norms + 1e-12), max=1.0)
            delta.requires_grad_(True)
        state["delta"] = delta.detach()
        with autocast(device):
            normal = causal_lm_loss(model, good_ids, good_mask, good_labels)
            loss = normal
            if c.away_weight:
                logits, labels, _rows = labelled_logits(model, bad_ids, bad_mask, bad_labels)
                meter.forward(bad_mask)
                loss = loss + c.away_weight * unlikelihood(logits.float(), labels)
        meter.forward(good_mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())


def unlikelihood(logits, labels):
    """Mean of -log(1 - p(label)) over labelled positions (``logits`` (N, vocab) of the positions
    that predict ``labels`` (N,), from :func:`labelled_logits`): pushes the labelled tokens'
    probability down."""
    import torch

    logprob = torch.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    prob = logprob.exp().clamp(max=1 - 1e-6)
    return -torch.log1p(-prob).sum() / max(labels.numel(), 1)
