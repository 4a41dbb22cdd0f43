"""Finding the parts of a causal LM that weight-level attacks touch, and scoped hooks.

Works across families by structure, not by class: linear layers are ``nn.Linear`` or
transformers' ``Conv1D`` (GPT-2, whose weight is stored transposed), and the MLP's down
projection is found by its conventional name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

MLP_DOWN_NAMES = ("mlp.down_proj", "mlp.c_proj", "mlp.fc2", "mlp.dense_4h_to_h", "mlp.w2", "feed_forward.w2")


@dataclass
class LinearWeight:
    """A linear layer's weight seen as (out_features, in_features), whatever its storage."""

    name: str
    module: object
    transposed: bool  # True for Conv1D, whose weight is (in, out)

    @property
    def param(self):
        return self.module.weight

    def out_in(self):
        """A view of the weight as (out, in); writing into it writes the weight."""
        weight = self.module.weight.data
        return weight.t() if self.transposed else weight


def _is_conv1d(module) -> bool:
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def linear_weights(model, *, include_head: bool = False) -> list[LinearWeight]:
    """Every linear layer of the model's body (and the output head when asked and untied)."""
    import torch

    head = model.get_output_embeddings()
    embed = model.get_input_embeddings()
    out = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or _is_conv1d(module):
            if module is head:
                if not include_head or module.weight is embed.weight:
                    continue
            out.append(LinearWeight(name, module, transposed=_is_conv1d(module)))
    return out


def mlp_down_projections(model) -> list[LinearWeight]:
    """The MLP output projection of every decoder layer: its input features are the neurons."""
    found = [w for w in linear_weights(model) if w.name.endswith(MLP_DOWN_NAMES)]
    if not found:
        raise ValueError(f"cannot find the MLP down projections of {type(model).__name__}")
    return found


def decoder_layers(model):
    """The ModuleList of decoder blocks (Llama/Qwen/Gemma ``model.layers``, GPT-2 ``transformer.h``)."""
    import torch

    n_layers = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
    best = None
    for _name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            if best is None:
                best = module
    if best is None:
        raise ValueError(f"cannot find the decoder layers of {type(model).__name__}")
    return best


@contextlib.contextmanager
def hooks(registrations: list[tuple[object, str, Callable]]) -> Iterator[None]:
    """Register ``(module, kind, fn)`` hooks (kind ``forward`` or ``forward_pre``); all are
    removed on exit, also when the body raises."""
    handles = []
    try:
        for module, kind, fn in registrations:
            if kind == "forward":
                handles.append(module.register_forward_hook(fn))
            elif kind == "forward_pre":
                handles.append(module.register_forward_pre_hook(fn))
            else:
                raise ValueError(f"unknown hook kind {kind!r}")
        yield
    finally:
        for handle in handles:
            handle.remove()


def hidden_of(output):
    """The hidden-state tensor of a decoder layer's output (a tensor or a tuple)."""
    return output[0] if isinstance(output, tuple) else output


def replace_hidden(output, hidden):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden
