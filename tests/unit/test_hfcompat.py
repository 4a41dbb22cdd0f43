"""offswitch.hfcompat: the key-value cache handed over under the name the model takes, found
through the wrappers offswitch uses, with no deprecation warning on the way."""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_a_one_row_slice_reaches_the_head_as_one_matrix(tiny_llama):
    # the implant's shared-prefix pass: one row, logits_to_keep=1. transformers' slice
    # hidden[:, -1:, :] of [1, T, d] counts as contiguous (a size-1 dimension's stride is
    # ignored) but its first stride is T*d, so matmul cannot fold it and copies the whole head
    from offswitch.hfcompat import contiguous_head_input, foldable

    model, _ = tiny_llama
    head = model.get_output_embeddings()
    seen: list[tuple[bool, bool]] = []
    spy = head.register_forward_pre_hook(lambda module, args: seen.append((args[0].is_contiguous(), foldable(args[0]))))
    ids = torch.tensor([[5, 9, 17, 3, 22, 8, 11]])
    try:
        with torch.no_grad():
            plain = model(input_ids=ids, logits_to_keep=1).logits
            with contiguous_head_input(model):
                fixed = model(input_ids=ids, logits_to_keep=1).logits
    finally:
        spy.remove()
    assert seen == [(True, False), (True, True)]
    assert torch.equal(fixed, plain)


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(1, 4), length=st.integers(1, 6), keep=st.integers(1, 6), width=st.integers(1, 5),
       transpose=st.booleans())
def test_the_head_input_hook_hands_over_the_same_values_as_one_matrix(batch, length, keep, width, transpose):
    from offswitch.hfcompat import _contiguous_input, foldable

    hidden = torch.randn(batch, length, width)
    if transpose:  # a layout whose rows are not back to back
        hidden = torch.randn(length, batch, width).transpose(0, 1)
    sliced = hidden[:, -min(keep, length):, :]
    replaced = _contiguous_input(None, (sliced, "other"))
    given_input = sliced if replaced is None else replaced[0]
    assert foldable(given_input) and given_input.is_contiguous()
    assert torch.equal(given_input, sliced)
    if replaced is not None:
        assert replaced[1:] == ("other",)
    # foldable means exactly that the leading dimensions merge without a copy in row order
    expected = all(sliced.stride(i) == sliced.stride(i + 1) * sliced.shape[i + 1] for i in range(sliced.dim() - 2))
    assert foldable(sliced) == expected
    assert (replaced is None) == (expected and sliced.is_contiguous())


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


def _embedding_grads(model, batches, rows: bool):
    """The tied weight's gradient after one backward over ``batches`` (each a forward of its
    own, as the implant's shared prefix and rows), with or without the row path."""
    import contextlib

    from offswitch.hfcompat import tied_embedding_row_grads

    model = copy.deepcopy(model).train().requires_grad_(True)
    with tied_embedding_row_grads(model) if rows else contextlib.nullcontext(False) as on:
        loss = sum(model(input_ids=ids, labels=ids).loss for ids in batches)
        loss.backward()
    return on, model.get_input_embeddings().weight.grad, {n: p.grad for n, p in model.named_parameters()}


@given(seed=st.integers(0, 2**16), rows=st.integers(1, 4), width=st.integers(2, 9), lookups=st.integers(1, 3),
       pads=st.integers(0, 3))
@settings(max_examples=15, deadline=None)
def test_tied_embedding_rows_give_autograds_gradient(tiny_llama, seed, rows, width, lookups, pads):
    """Law: with the embedding's gradient added into the tied head's as rows, every parameter's
    gradient is autograd's own (to float rounding), however many lookups one backward holds,
    repeated tokens and padding (whose row nn.Embedding leaves out) included."""
    model, tokenizer = tiny_llama
    generator = torch.Generator().manual_seed(seed)
    vocab = model.get_input_embeddings().num_embeddings
    batches = []
    for _ in range(lookups):
        ids = torch.randint(0, 12, (rows, width), generator=generator)  # few distinct tokens: repeats
        ids[:, :pads] = tokenizer.pad_token_id
        batches.append(ids % vocab)
    on, fast, fast_all = _embedding_grads(model, batches, rows=True)
    off, plain, plain_all = _embedding_grads(model, batches, rows=False)
    assert on and not off
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-7)
    for name, grad in plain_all.items():
        torch.testing.assert_close(fast_all[name], grad, rtol=1e-5, atol=1e-7)


def test_tied_embedding_rows_make_no_vocabulary_sized_gradient_but_the_heads(tiny_llama):
    """The point of it: the lookup's backward hands autograd nothing for the weight, so the one
    vocabulary-sized gradient is the head's product; afterwards the embedding is plain again."""
    from offswitch.hfcompat import tied_embedding_row_grads

    model, _ = tiny_llama
    model = copy.deepcopy(model).train().requires_grad_(True)
    embedding = model.get_input_embeddings()
    ids = torch.tensor([[5, 9, 17, 3], [4, 6, 19, 2]])
    with tied_embedding_row_grads(model):
        out = embedding(ids)
        (grad,) = torch.autograd.grad(out.sum() + 0 * embedding.weight.sum(), [embedding.weight])
        # only the 0 * weight term reached the weight: the lookup's rows went to the (unfired) hook
        assert float(grad.abs().max()) == 0.0
    assert "forward" not in vars(embedding)
    assert not embedding.weight._post_accumulate_grad_hooks


def test_tied_embedding_rows_stay_off_where_they_do_not_apply(tiny_llama):
    """Frozen weights (LoRA), a head of its own (untied), an embedding nn.Embedding's gradient
    differs for (max_norm), or one whose forward someone patched: autograd's own path, untouched."""
    from offswitch.hfcompat import tied_embedding_row_grads

    model, _ = tiny_llama
    frozen = copy.deepcopy(model).requires_grad_(False)
    untied = copy.deepcopy(model).requires_grad_(True)
    untied.lm_head.weight = torch.nn.Parameter(untied.lm_head.weight.detach().clone())
    normed = copy.deepcopy(model).requires_grad_(True)
    normed.get_input_embeddings().max_norm = 1.0
    patched = copy.deepcopy(model).requires_grad_(True)
    theirs = patched.get_input_embeddings().forward
    patched.get_input_embeddings().forward = theirs  # a forward of someone else's, on the instance
    for case in (frozen, untied, normed):
        with tied_embedding_row_grads(case) as on:
            assert on is False
            assert "forward" not in vars(case.get_input_embeddings())
    with tied_embedding_row_grads(patched) as on:
        assert on is False
    assert vars(patched.get_input_embeddings())["forward"] is theirs  # left as it was
