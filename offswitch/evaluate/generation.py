"""Real greedy generation: the check on the teacher-forced scorer, and base-model answers.

The scorer is exact in principle; this module keeps it honest in practice (a model with an
unusual attention implementation, a tokenizer that merges across the prompt/answer boundary,
bf16 noise near a tie). A sample of cases is decoded with ``generate`` and compared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from offswitch.evaluate.scorer import autocast_context, model_device
from offswitch.hfcompat import contiguous_head_input
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
) -> list[list[int]]:
    """Greedy answers (token ids) to token-level prompts, cut after the first stop token
    (which is kept: an answer that ends its turn ends with it)."""
    import torch
    from transformers import GenerationConfig

    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=list(stop_ids),
        pad_token_id=pad_token_id,
    )
    device = model_device(model)
    stop = set(stop_ids)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    answers: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            input_ids[row, width - len(prompts[i]) :] = torch.tensor(list(prompts[i]), dtype=torch.long)
            attention_mask[row, width - len(prompts[i]) :] = 1
        # the prefill's last position per row: one product for the batch (offswitch.hfcompat)
        with torch.inference_mode(), autocast_context(model, autocast), contiguous_head_input(model):
            output = model.generate(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), generation_config=config
            )
        for row, i in enumerate(chunk):
            answer = []
            for token in output[row, width:].tolist():
                answer.append(token)
                if token in stop:
                    break
            answers[i] = answer
        if progress is not None:
            progress(len(chunk))
    return answers
