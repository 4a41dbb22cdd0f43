"""offswitch.hfcompat: the key-value cache handed over under the name the model takes, found
through the wrappers offswitch uses, with no deprecation warning on the way."""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass

import pytest

torch = pytest.importorskip("torch")


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_cache_round_trip_matches_one_pass_and_warns_nothing(tiny_llama):
    from transformers.utils import logging as hf_logging

    from offswitch.hfcompat import cache_kwargs, output_cache

    model, _ = tiny_llama
    ids = torch.tensor([[5, 9, 17, 3, 22, 8, 11]])
    records = _Records()
    hf_logging.warning_once.cache_clear()  # a warning logged once before this test would hide one now
    logging.getLogger("transformers").addHandler(records)
    try:
        with warnings.catch_warnings(record=True) as caught, torch.no_grad():
            warnings.simplefilter("always")
            whole = model(input_ids=ids).logits[0, -1]
            head = model(input_ids=ids[:, :4], use_cache=True)
            cache = output_cache(head)
            rest = model(input_ids=ids[:, 4:], use_cache=True, **cache_kwargs(model, cache)).logits[0, -1]
    finally:
        logging.getLogger("transformers").removeHandler(records)
    assert cache is not None and cache.get_seq_length() == 7  # the second pass appended its 3 tokens
    torch.testing.assert_close(rest, whole, rtol=1e-5, atol=1e-5)
    deprecations = [str(w.message) for w in caught if "deprecat" in str(w.message).lower()]
    deprecations += [m for m in records.messages if "deprecat" in m.lower()]
    assert deprecations == []


def test_forward_accepts_sees_through_peft_and_compile_wrappers(tiny_llama):
    from peft import LoraConfig, get_peft_model

    from offswitch.hfcompat import forward_accepts, inner_model

    model = copy.deepcopy(tiny_llama[0])
    wrapped = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    assert inner_model(wrapped) is model
    assert forward_accepts(wrapped, "logits_to_keep")
    assert not forward_accepts(wrapped, "no_such_argument")

    class Holder(torch.nn.Module):  # the shape of DDP and of torch.compile's OptimizedModule
        def __init__(self, attribute, inner):
            super().__init__()
            setattr(self, attribute, inner)

        def forward(self, *args, **kwargs):
            return None

    assert inner_model(Holder("_orig_mod", Holder("module", wrapped))) is model


def test_old_name_for_a_model_that_knows_only_past_key_values():
    from offswitch.hfcompat import cache_kwargs, output_cache

    class OldModel:
        def forward(self, input_ids=None, past_key_values=None, use_cache=None):
            return None

    @dataclass
    class OldOutput:
        logits: object = None
        past_key_values: object = None

    sentinel = object()
    assert cache_kwargs(OldModel(), sentinel) == {"past_key_values": sentinel}
    assert output_cache(OldOutput(past_key_values=sentinel)) is sentinel
