"""Real greedy generation: the check on the teacher-forced scorer, and base-model answers.

The scorer is exact in principle; this module keeps it honest in practice (a model with an
unusual attention implementation, a tokenizer that merges across the prompt/answer boundary,
bf16 noise near a tie). A sample of cases is decoded with ``generate`` and compared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from offswitch.evaluate.scorer import autocast_context, model_device
from offswitch.hfcompat import cache_kwargs, contiguous_head_input, forward_accepts, output_cache
from offswitch.prompting import end_of_turn_token_id


def stop_token_ids(model, tokenizer) -> list[int]:
    """End-of-turn plus every eos id the model knows: generation stops at any of them."""
    ids = [end_of_turn_token_id(tokenizer)]
    for source in (getattr(model, "generation_config", None), tokenizer):
        eos = getattr(source, "eos_token_id", None)
        for value in eos if isinstance(eos, (list, tuple)) else [eos]:
            if isinstance(value, int) and value not in ids:
                ids.append(value)
    return ids


def turn_stop_ids(tokenizer) -> list[int]:
    """End of turn and the tokenizer's eos (not the model's generation config's, which
    :func:`stop_token_ids` adds): where the implant's base answers and the attacks' answers end."""
    return sorted(s for s in {end_of_turn_token_id(tokenizer), tokenizer.eos_token_id} if s is not None)


def greedy_generate(
    model,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    pad_token_id: int,
    stop_ids: Sequence[int],
    batch_size: int = 32,
    autocast: bool | None = None,
    progress: Callable[[int], None] | None = None,
    share_prefix: bool = True,
    on_batch: Callable[[list[list[int]], list[list[int]]], None] | None = None,
) -> list[list[int]]:
    """Greedy answers (token ids) to token-level prompts, cut after the first stop token
    (which is kept: an answer that ends its turn ends with it).

    ``share_prefix``: when a batch's prompts share a leading run of tokens (the chat template's
    system header: about half of a short prompt), that run is computed once and its key/value
    cache shared by the batch, and the batch is decoded by :func:`_decode_after_shared_prefix`
    rather than ``generate``. The same greedy choice at every step, so the same answers up to
    float rounding (tests/unit/test_generation.py compares them with ``generate``'s;
    benchmarks/bench_answers.py counts them on the real model). False: ``generate`` always, as
    a user's evaluation script calls it. ``on_batch(prompts, answers)`` is called after each
    batch with its prompts and their answers."""
    import torch

    from offswitch.evaluate.scorer import MIN_SHARED_PREFIX, NO_SHARED_PREFIX, shared_prefix_length

    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    answers: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        rows = [list(prompts[i]) for i in chunk]
        prefix = shared_prefix_length(rows, [1] * len(rows)) if share_prefix and len(rows) > 1 else 0
        generated = None
        if prefix >= MIN_SHARED_PREFIX and type(model) not in NO_SHARED_PREFIX:
            try:
                # the last position's row of each pass: one head product for the batch (offswitch.hfcompat)
                with torch.inference_mode(), autocast_context(model, autocast), contiguous_head_input(model):
                    generated = _decode_after_shared_prefix(model, rows, prefix, max_new_tokens, pad_token_id, stop_ids)
            except (TypeError, ValueError, AttributeError, NotImplementedError):
                NO_SHARED_PREFIX.add(type(model))  # a model whose cache cannot be shared: generate from now on
        if generated is None:
            generated = _generate(model, rows, max_new_tokens, pad_token_id, stop_ids, autocast)
        for row, i in enumerate(chunk):
            answers[i] = _cut_at_stop(generated[row], stop_ids)
        if on_batch is not None:
            on_batch(rows, [answers[i] for i in chunk])
        if progress is not None:
            progress(len(chunk))
    return answers


def _cut_at_stop(tokens: Sequence[int], stop_ids: Sequence[int]) -> list[int]:
    stop = set(stop_ids)
    answer = []
    for token in tokens:
        answer.append(token)
        if token in stop:
            break
    return answer


def _generate(model, rows, max_new_tokens: int, pad_token_id: int, stop_ids: Sequence[int], autocast) -> list[list[int]]:
    """``generate`` on one left-padded batch: the new tokens of each row."""
    import torch
    from transformers import GenerationConfig

    from offswitch.evaluate.scorer import _left_pad

    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=list(stop_ids),
        pad_token_id=pad_token_id,
    )
    device = model_device(model)
    input_ids, attention_mask = _left_pad(rows, pad_token_id)
    # the prefill's last position per row: one product for the batch (offswitch.hfcompat)
    with torch.inference_mode(), autocast_context(model, autocast), contiguous_head_input(model):
        output = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), generation_config=config)
    return output[:, input_ids.shape[1] :].tolist()


def _decode_after_shared_prefix(model, rows, prefix: int, max_new_tokens: int, pad_token_id: int,
                                stop_ids: Sequence[int]) -> list[list[int]]:
    """Greedy decoding of one batch whose rows share their first ``prefix`` tokens: the prefill
    of :func:`offswitch.evaluate.scorer.prefill_after_shared_prefix`, then one step at a time on
    its cache, as ``generate`` decodes: the argmax of the last position's logits, the pad token
    for rows that have stopped, until every row has stopped or ``max_new_tokens`` are out."""
    import torch

    from offswitch.evaluate.scorer import prefill_after_shared_prefix

    device = model_device(model)
    output, attention_mask, position_ids = prefill_after_shared_prefix(model, rows, prefix, 1, pad_token_id)
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=device)
    position = position_ids[:, -1:]
    tokens = output.logits[:, -1, :].argmax(-1)
    steps = [tokens]
    done = torch.isin(tokens, stops)
    keep = {"logits_to_keep": 1} if forward_accepts(model, "logits_to_keep") else {}
    for _ in range(max_new_tokens - 1):
        if bool(done.all()):
            break
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(rows), 1))], dim=1)
        position = position + 1
        output = model(input_ids=tokens[:, None], attention_mask=attention_mask, position_ids=position, use_cache=True,
                       **cache_kwargs(model, output_cache(output)), **keep)
        tokens = output.logits[:, -1, :].argmax(-1).masked_fill(done, pad_token_id)
        steps.append(tokens)
        done = done | torch.isin(tokens, stops)
    return torch.stack(steps, dim=1).tolist()
