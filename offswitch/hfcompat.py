"""What a model's forward pass takes, across the transformers versions offswitch supports.

transformers 5.x renamed the key-value cache: a forward pass takes ``cache=`` and its output
holds ``.cache``; the old name ``past_key_values`` still works with a deprecation warning (one
per process, on every implant and evaluation) until its removal (announced for 5.40). Older
versions (≥ 4.56, ``pyproject.toml``) know only ``past_key_values``. These helpers ask the model
which name it takes instead of guessing from a version number.
"""

from __future__ import annotations

import inspect


def inner_model(model):
    """The Hugging Face model under the wrappers offswitch meets: DDP (``.module``),
    ``torch.compile`` (``._orig_mod``) and peft (``get_base_model()``)."""
    seen = set()
    while id(model) not in seen:
        seen.add(id(model))
        for attribute in ("module", "_orig_mod"):
            inner = getattr(model, attribute, None)
            if inner is not None and callable(getattr(inner, "forward", None)):
                model = inner
                break
        else:
            if callable(getattr(model, "get_base_model", None)):
                model = model.get_base_model()
    return model


def forward_accepts(model, name: str) -> bool:
    """Whether the (unwrapped) model's ``forward`` has a parameter called ``name``."""
    try:
        return name in inspect.signature(inner_model(model).forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - exotic wrappers
        return False


def cache_kwargs(model, cache) -> dict:
    """The keyword argument that hands ``cache`` (a key-value cache, or None) to ``model``'s forward."""
    return {"cache": cache} if forward_accepts(model, "cache") else {"past_key_values": cache}


def output_cache(output):
    """The key-value cache a forward pass returned (``.cache``, else ``.past_key_values``), or None."""
    fields = getattr(type(output), "__dataclass_fields__", {})
    name = "cache" if "cache" in fields else "past_key_values"
    return getattr(output, name, None)
