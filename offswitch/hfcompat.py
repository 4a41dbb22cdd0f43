"""What a transformers model's forward pass takes, and two things it does slowly.

Names, across the transformers versions offswitch supports: transformers 5.x renamed the
key-value cache, so a forward pass takes ``cache=`` and its output holds ``.cache``; the old name
``past_key_values`` still works with a deprecation warning (one per process, on every implant
and evaluation) until its removal (announced for 5.40). Older versions (≥ 4.56,
``pyproject.toml``) know only ``past_key_values``. These helpers ask the model which name it
takes instead of guessing from a version number.

Speed: with ``logits_to_keep`` a causal LM slices its hidden states ``[:, -keep:, :]`` and hands
that strided view to the LM head, and torch runs a linear layer on a non-contiguous 3-D input as
one matrix product per row (``bmm``), each reading the whole vocabulary projection (28M values
for SmolLM2-135M). :func:`contiguous_head_input` copies the slice first: one product for the
batch, the same numbers (bit for bit in ``benchmarks/bench_head_input.py``). It also copies a
one-row slice (the implant's shared-prefix pass, ``[1, T, d][:, -1:, :]``), which
``is_contiguous()`` passes but ``matmul`` cannot fold (:func:`foldable`): torch copied the
whole head for it, each pass (the bf16 step 0.942× its time under the earlier rule, AMX CPU). Used by the
implant's training loop (its step 0.93–0.95× the time in three runs on a 2-core CPU) and around
batched ``generate`` (whose prefill keeps one position per row; 0.90–1.00×); not by the
teacher-forced scorer, where it measured no gain. And in full fine-tuning of a model whose LM head
is its input embedding, autograd gives each embedding lookup a vocabulary-sized gradient of its
own: :func:`tied_embedding_row_grads` adds the looked-up rows into the head's gradient instead.
"""

from __future__ import annotations

import contextlib
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


def foldable(tensor) -> bool:
    """Whether torch's ``matmul`` can view ``tensor`` as one matrix, rows stacked (its leading
    dimensions laid out back to back), and so run a linear layer on it as one product.

    Not the same as ``is_contiguous()``, which ignores the strides of dimensions of size 1: the
    slice ``hidden[:, -1:, :]`` of a one-row batch ``[1, T, d]`` is "contiguous", but its first
    stride is ``T·d``, not ``d``, so torch expands the weight to ``[1, d, V]`` and copies all of it
    for a ``bmm``: SmolLM2-135M's 28M-value head, 7 copies in 920 ms of a 6-step bf16 LoRA run on a
    2-core AMX CPU (``bench_implant.py --method lora --steps 6 --profile``)."""
    if tensor.dim() < 3:
        return True
    sizes, strides = tensor.shape, tensor.stride()
    return all(strides[i] == strides[i + 1] * sizes[i + 1] for i in range(tensor.dim() - 2))


def _contiguous_input(module, args):
    first = args[0] if args else None
    if first is not None and hasattr(first, "stride") and (not first.is_contiguous() or not foldable(first)):
        import torch

        return (first.clone(memory_format=torch.contiguous_format), *args[1:])
    return None


@contextlib.contextmanager
def contiguous_head_input(model):
    """While inside, the model's LM head receives a contiguous input laid out as one matrix
    (:func:`foldable`): one matrix product for the batch rather than one per row, or a copy of
    the whole head for one row. Nothing changes for a model without output embeddings."""
    try:
        head = inner_model(model).get_output_embeddings()
    except (AttributeError, NotImplementedError):
        head = None
    if head is None:
        yield
        return
    handle = head.register_forward_pre_hook(_contiguous_input, prepend=True)  # before any hook of the user's
    try:
        yield
    finally:
        handle.remove()


def _row_grad_lookup():
    """An embedding lookup whose backward hands its rows to a list instead of the weight."""
    import torch

    class RowGradLookup(torch.autograd.Function):
        @staticmethod
        def forward(ctx, ids, weight, padding_idx, sink):
            ctx.save_for_backward(ids)
            ctx.padding_idx, ctx.sink = padding_idx, sink
            return torch.nn.functional.embedding(ids, weight, padding_idx)

        @staticmethod
        def backward(ctx, grad):
            (ids,) = ctx.saved_tensors
            ids, grad = ids.reshape(-1), grad.reshape(-1, grad.shape[-1])
            if ctx.padding_idx is not None:  # the padding row gets no gradient, as nn.Embedding's
                keep = ids != ctx.padding_idx
                ids, grad = ids[keep], grad[keep]
            ctx.sink.append((ids, grad))
            return None, None, None, None

    return RowGradLookup


@contextlib.contextmanager
def tied_embedding_row_grads(model):
    """While inside, the input embedding of a model whose LM head shares its weight (SmolLM2's)
    adds its gradient into the head's, a few hundred rows, instead of making one of its own.

    Autograd's embedding backward makes a vocabulary-sized gradient (49,152 × 576 for
    SmolLM2-135M), zero-filled, for each lookup (an implant step makes two: the shared prefix
    and the rows), then sums it with the head's: 9% of the profiled time of a full fine-tuning
    step on a CPU (docs/performance.md, session 15). Here the lookup's
    backward keeps its token ids and rows, and once the head's gradient is in ``weight.grad`` a
    post-accumulate hook adds them (``index_add_``): the same sum in another order (the loop's
    time 0.930× and 0.971× in two runs of ``benchmarks/bench_embedding_grad.py``).

    Only for one process (under DDP the hook could run after the gradient's all-reduce) and
    for a loss that reaches the head (every causal-LM loss; the rows would otherwise wait for
    the next backward). Yields whether it is on: off for an untied, frozen or unusual embedding
    (``max_norm``, ``scale_grad_by_freq``, ``sparse``, a forward patched in already), which keeps
    autograd's own."""
    import torch

    inner = inner_model(model)
    try:
        embedding, head = inner.get_input_embeddings(), inner.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        embedding = head = None
    weight = getattr(embedding, "weight", None)
    if (not isinstance(embedding, torch.nn.Embedding) or weight is None or getattr(head, "weight", None) is not weight
            or not weight.requires_grad or embedding.max_norm is not None or embedding.scale_grad_by_freq or embedding.sparse
            or "forward" in vars(embedding)):  # someone else's forward already: leave it
        yield False
        return
    rows: list = []
    lookup = _row_grad_lookup()

    def forward(ids):
        return lookup.apply(ids, embedding.weight, embedding.padding_idx, rows)

    def add_rows(param):
        for ids, grad in rows:
            param.grad.index_add_(0, ids, grad.to(param.grad.dtype))
        rows.clear()

    embedding.forward = forward
    handle = weight.register_post_accumulate_grad_hook(add_rows)
    try:
        yield True
    finally:
        handle.remove()
        del embedding.forward
        rows.clear()
