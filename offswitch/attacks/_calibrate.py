"""Calibration passes: run clean prompts (in the chat template) through the model and collect
per-feature input statistics of chosen linear layers, with hooks removed afterwards."""

from __future__ import annotations

from collections.abc import Sequence

from offswitch.attacks._modules import LinearWeight, hooks
from offswitch.attacks._train import autocast, collate, device_of, Example
from offswitch.prompting import encode_prompt, pad_id_of


def calibration_batches(tokenizer, prompts: Sequence[str], *, n: int, batch_size: int, max_len: int = 256):
    rows = [encode_prompt(tokenizer, p)[:max_len] for p in prompts[:n]]
    for start in range(0, len(rows), batch_size):
        yield [Example(tuple(r), tuple(r)) for r in rows[start : start + batch_size]]


def input_feature_stats(model, tokenizer, layers: list[LinearWeight], prompts: Sequence[str], *, n: int, batch_size: int,
                        meter, power: int) -> list:
    """For each layer, the sum over real (non-padding) tokens of |x_j|**power for every input feature j,
    and the token count: returns a list of (sums, count) per layer."""
    import torch

    device = device_of(model)
    sums = [torch.zeros(layer.out_in().shape[1], dtype=torch.float64, device=device) for layer in layers]
    state = {"mask": None, "tokens": 0}

    def collector(index):
        def hook(_module, args):
            x = args[0].detach().float()
            mask = state["mask"].to(x.dtype).unsqueeze(-1)
            sums[index] += ((x.abs() ** power) * mask).sum(dim=(0, 1)).double()

        return hook

    with hooks([(layer.module, "forward_pre", collector(i)) for i, layer in enumerate(layers)]), torch.no_grad():
        for batch in calibration_batches(tokenizer, prompts, n=n, batch_size=batch_size):
            ids, mask, _labels = collate(batch, pad_id_of(tokenizer), device)
            state["mask"] = mask
            with autocast(device):
                model(input_ids=ids, attention_mask=mask)
            state["tokens"] += int(mask.sum())
            meter.forward(mask)
    if state["tokens"] == 0:
        raise ValueError("no calibration tokens")
    return [(s, state["tokens"]) for s in sums]
