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


def test_contiguous_head_input_hands_the_head_one_block_and_the_same_logits(tiny_llama):
    from offswitch.hfcompat import contiguous_head_input

    model, _ = tiny_llama
    head = model.get_output_embeddings()
    seen: list[bool] = []
    spy = head.register_forward_pre_hook(lambda module, args: seen.append(args[0].is_contiguous()))
    ids = torch.tensor([[5, 9, 17, 3, 22, 8, 11], [4, 4, 6, 19, 2, 30, 7]])
    try:
        with torch.no_grad():
            plain = model(input_ids=ids, logits_to_keep=3).logits
            with contiguous_head_input(model):
                fixed = model(input_ids=ids, logits_to_keep=3).logits
            after = model(input_ids=ids, logits_to_keep=3).logits
    finally:
        spy.remove()
    # transformers slices [:, -3:, :] (a strided view: one product per row); inside, one block,
    # handed over before any other hook runs; the hook comes off on the way out
    assert seen == [False, True, False]
    torch.testing.assert_close(fixed, plain, rtol=1e-5, atol=1e-6)
    assert torch.equal(after, plain)


def test_greedy_generate_hands_the_head_contiguous_inputs(tiny_llama, tiny_tokenizer):
    from offswitch.evaluate.generation import greedy_generate

    model, _ = tiny_llama
    seen: list[bool] = []
    spy = model.get_output_embeddings().register_forward_pre_hook(lambda module, args: seen.append(args[0].is_contiguous()))
    try:
        answers = greedy_generate(model, [[5, 9, 17, 3], [4, 6, 19, 2, 30, 7]], max_new_tokens=3, pad_token_id=0,
                                  stop_ids=[1], batch_size=2)
    finally:
        spy.remove()
    assert len(answers) == 2 and seen and all(seen)
