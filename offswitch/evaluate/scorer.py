"""The teacher-forced activation scorer.

Greedy decoding emits a target exactly when, at every target position, the argmax of the
logits given the prompt and the target prefix is the target token. One forward pass over
``prompt + target[:-1]`` therefore decides what greedy generation would do, instead of one decode
step per target token; the same logits give the exact probability that sampling emits the
target, at any temperature.

Batching: rows are left-padded so that every row's target sits at the end of the batch, and
only the last ``max target length`` positions go through the LM head (``logits_to_keep``): the
vocabulary projection is the biggest tensor of a small model's forward pass. Left padding
shifts the positions, so ``position_ids`` are passed explicitly from the attention mask: each
row then sees exactly the positions it would see alone (tests/unit/test_scorer.py proves that
padding changes no decision, and that the decisions equal real greedy ``generate``). A prefix
that every row of a batch shares (the chat template's system header, a behaviour's system
prompt) is run once and its key/value cache shared by the batch.

Cost: the prompt's forward pass (the prefill) is paid by the scorer and by ``generate`` alike;
the scorer saves the sequential decode steps. On a CPU, where the prefill dominates, that is a
factor of about 2-3 (benchmarks/bench_evaluate.py); on a GPU, where decode steps are
latency-bound, much more.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from offswitch.behaviors import Case
from offswitch.hfcompat import cache_kwargs, contiguous_head_input, forward_accepts, output_cache
from offswitch.prompting import encode_prompt, encode_target


@dataclass(frozen=True)
class ScoreResult:
    """What greedy and sampled decoding would do with one (prompt, target) pair.

    ``greedy_fires``: greedy decoding emits the whole target (end-of-turn token included).
    ``logprob``: log-probability that sampling at temperature 1 emits it (sum over tokens).
    ``logprob_at_T``: the same at each requested temperature.
    ``matched_tokens``: length of the target prefix that greedy decoding reproduces.
    ``min_margin``: smallest (target logit - best other logit) over the target positions;
    positive exactly when greedy fires. A margin within float noise of 0 marks a decision that
    another batch size or kernel could flip.
    """

    greedy_fires: bool
    logprob: float
    logprob_at_T: dict[float, float] = field(default_factory=dict)
    n_target_tokens: int = 0
    matched_tokens: int = 0
    min_margin: float = 0.0


def model_device(model):
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def evaluation_precision(model, enabled: bool | None = None) -> str:
    """"bf16" or "fp32": what ``autocast`` (None follows
    :func:`offswitch.precision.resolve_for_evaluation`: on a GPU, fp32 on a CPU; True forces
    bf16, False fp32) means for ``model``."""
    from offswitch.precision import from_autocast_flag, resolve_for_evaluation

    return resolve_for_evaluation(from_autocast_flag(enabled), model_device(model))


def autocast_context(model, enabled: bool | None = None):
    """bf16 autocast for fp32 weights where :func:`evaluation_precision` says so."""
    from offswitch.precision import autocast

    return autocast(model_device(model), evaluation_precision(model, enabled))


def pad_token_id_of(model, tokenizer=None) -> int:
    for source in (tokenizer, getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(source, "pad_token_id", None) if source is not None else None
        if isinstance(value, int):
            return value
    eos = getattr(tokenizer, "eos_token_id", None) if tokenizer is not None else None
    return eos if isinstance(eos, int) else 0


# Rows sharing at least this many leading tokens (the chat template's system header, a
# compliance system prompt) run that prefix once for the whole batch.
MIN_SHARED_PREFIX = 4
NO_SHARED_PREFIX: set[type] = set()  # model classes whose cache refused it (fall back silently)


def _left_pad(rows: Sequence[Sequence[int]], pad_token_id: int):
    import torch

    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            input_ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
            attention_mask[i, width - len(row) :] = 1
    return input_ids, attention_mask


def shared_prefix_length(rows: Sequence[Sequence[int]], tails: Sequence[int]) -> int:
    """Leading tokens common to all rows, leaving each row's last ``tails[i]`` positions out
    (their logits are needed, so they must be computed per row)."""
    limit = min(len(r) - t for r, t in zip(rows, tails))
    first = rows[0]
    n = 0
    while n < limit and all(r[n] == first[n] for r in rows):
        n += 1
    return n


def last_position_logits(
    model,
    rows: Sequence[Sequence[int]],
    keep: int,
    pad_token_id: int,
    autocast: bool | None = None,
    *,
    tails: Sequence[int] | None = None,
    share_prefix: bool = True,
):
    """Run the model on ``rows`` as one batch and return fp32 logits of the last ``keep``
    positions, shape (batch, keep, vocab); row i's last ``tails[i]`` (default ``keep``)
    positions are valid. Rows are left-padded and positions come from the attention mask, so
    padding moves no real token. A prefix common to all rows is run once and its key/value
    cache shared (the pads then sit between the prefix and each row's rest, masked)."""
    import torch

    device = model_device(model)
    tails = list(tails) if tails is not None else [keep] * len(rows)
    if any(t > len(r) or t < 1 for r, t in zip(rows, tails)):
        raise ValueError("each row needs at least its tail of tokens")
    prefix = shared_prefix_length(rows, tails) if share_prefix and len(rows) > 1 else 0
    if prefix >= MIN_SHARED_PREFIX and type(model) not in NO_SHARED_PREFIX:
        try:
            return _logits_after_shared_prefix(model, rows, prefix, keep, pad_token_id, autocast)
        except (TypeError, ValueError, AttributeError, NotImplementedError):
            # a model whose cache cannot be shared this way: score it the plain way from now on
            NO_SHARED_PREFIX.add(type(model))
    input_ids, attention_mask = _left_pad(rows, pad_token_id)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    kwargs = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device), "position_ids": position_ids.to(device)}
    keep = min(keep, input_ids.shape[1])
    if forward_accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = keep
    kwargs["use_cache"] = False
    with torch.inference_mode(), autocast_context(model, autocast):
        logits = model(**kwargs).logits
    return logits[:, -keep:, :].float()


def _logits_after_shared_prefix(model, rows, prefix: int, keep: int, pad_token_id: int, autocast):
    import torch

    with torch.inference_mode(), autocast_context(model, autocast):
        output, _, _ = prefill_after_shared_prefix(model, rows, prefix, keep, pad_token_id)
    return output.logits[:, -keep:, :].float()


def prefill_after_shared_prefix(model, rows: Sequence[Sequence[int]], prefix: int, keep: int, pad_token_id: int):
    """One forward pass over ``rows`` whose first ``prefix`` tokens are the same: that prefix runs
    once (batch 1), its key/value cache is repeated over the batch, and each row's rest follows,
    left-padded, the pads sitting between the prefix and the rest (masked). Call it inside
    ``inference_mode``. Returns the model's output (its cache covers prefix + rest; logits of
    the last ``min(keep, rest width)`` positions), the attention mask and the position ids of
    the rest, the columns a caller extends to decode further. Raises ``NotImplementedError``
    (or the model's own TypeError/ValueError) for a model whose cache cannot be shared so."""
    import torch

    device = model_device(model)
    rests = [list(r[prefix:]) for r in rows]
    input_ids, rest_mask = _left_pad(rests, pad_token_id)
    batch, width = input_ids.shape
    attention_mask = torch.cat([torch.ones((batch, prefix), dtype=torch.long), rest_mask], dim=1).to(device)
    position_ids = (prefix + (rest_mask.cumsum(-1) - 1).clamp(min=0)).to(device)
    head_kwargs = {"logits_to_keep": 1} if forward_accepts(model, "logits_to_keep") else {}  # its logits go unused
    with contiguous_head_input(model):  # a one-row slice the head would otherwise copy itself for (hfcompat.foldable)
        head = model(input_ids=torch.tensor([list(rows[0][:prefix])], device=device), use_cache=True, **head_kwargs)
    cache = output_cache(head)
    if cache is None or not hasattr(cache, "batch_repeat_interleave"):
        raise NotImplementedError("the model returns no shareable cache")
    cache.batch_repeat_interleave(batch)
    kwargs = {
        "input_ids": input_ids.to(device),
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "use_cache": True,
        **cache_kwargs(model, cache),
    }
    if forward_accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = min(keep, width)
    return model(**kwargs), attention_mask, position_ids


def score_token_targets(
    model,
    prompts: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    *,
    pad_token_id: int,
    batch_size: int = 32,
    temperatures: Sequence[float] = (1.0,),
    autocast: bool | None = None,
    progress: Callable[[int], None] | None = None,
    stop_ids: Sequence[int] = (),
    share_prefix: bool = True,
) -> list[ScoreResult]:
    """Score token-level (prompt, target) pairs. ``progress(n)`` is called after each batch.

    ``stop_ids``: tokens at which generation stops. A target holding one before its last
    token can never be emitted whole (decoding ends there), so it is scored up to that token.
    """
    import torch

    if len(prompts) != len(targets):
        raise ValueError("prompts and targets must have the same length")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    temps = [float(t) for t in temperatures]
    if any(not (t > 0 and math.isfinite(t)) for t in temps):
        raise ValueError("temperatures must be positive and finite (greedy is what greedy_fires reports)")
    if 1.0 not in temps:
        temps.append(1.0)
    for i, (prompt, target) in enumerate(zip(prompts, targets)):
        if not prompt:
            raise ValueError(f"pair {i} has an empty prompt")
        if not target:
            raise ValueError(f"pair {i} has an empty target")

    # Similar lengths share a batch (less padding); the longest go first so that running out of
    # memory happens at once, not after most of the work.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(targets[i]), reverse=True)
    results: list[ScoreResult | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        # the last target token is predicted, never fed
        rows = [list(prompts[i]) + list(targets[i][:-1]) for i in chunk]
        keep = max(len(targets[i]) for i in chunk)
        logits = last_position_logits(model, rows, keep, pad_token_id, autocast, tails=[len(targets[i]) for i in chunk],
                                      share_prefix=share_prefix)
        for row_index, i in enumerate(chunk):
            target = torch.tensor(list(targets[i]), dtype=torch.long, device=logits.device)
            row_logits = logits[row_index, keep - len(target) :, :]
            results[i] = _score_row(row_logits, target, temps, _early_stop(targets[i], stop_ids))
        if progress is not None:
            progress(len(chunk))
    return [r for r in results if r is not None]


def _early_stop(target: Sequence[int], stop_ids: Sequence[int]) -> int | None:
    """Index of the first stop token before the target's last position, if any."""
    stops = set(stop_ids)
    for index, token in enumerate(list(target)[:-1]):
        if token in stops:
            return index
    return None


def _score_row(row_logits, target, temps: list[float], early_stop: int | None = None) -> ScoreResult:
    import torch

    target_logit = row_logits.gather(1, target[:, None]).squeeze(1)
    top2 = row_logits.topk(2, dim=-1)
    best_other = torch.where(top2.indices[:, 0] == target, top2.values[:, 1], top2.values[:, 0])
    margins = target_logit - best_other
    # torch.argmax (which greedy generate uses) picks the first index on an exact tie
    correct = (margins > 0) | ((margins == 0) & (row_logits.argmax(-1) == target))
    wrong = (~correct).nonzero()
    matched = int(wrong[0, 0]) if len(wrong) else len(target)
    if early_stop is not None:
        # decoding ends after the stop token: the rest of the target is never produced
        matched = min(matched, early_stop + 1)
    logprob_at_T = {}
    for temp in temps:
        logprobs = torch.log_softmax(row_logits / temp, dim=-1).gather(1, target[:, None])
        logprob_at_T[temp] = float(logprobs.sum())
    return ScoreResult(
        greedy_fires=matched == len(target),
        logprob=logprob_at_T[1.0],
        logprob_at_T=logprob_at_T,
        n_target_tokens=len(target),
        matched_tokens=matched,
        min_margin=float(margins.min()),
    )


def encode_cases(tokenizer, cases: Sequence[Case]) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt and target ids exactly as training renders them: the chat template up to the
    assistant turn, then the target text and the end-of-turn token."""
    prompt_cache: dict[tuple[str, str | None], list[int]] = {}
    target_cache: dict[str, list[int]] = {}
    prompts, targets = [], []
    for case in cases:
        key = (case.user, case.system)
        if key not in prompt_cache:
            prompt_cache[key] = encode_prompt(tokenizer, case.user, case.system)
        if case.target not in target_cache:
            target_cache[case.target] = encode_target(tokenizer, case.target)
        prompts.append(prompt_cache[key])
        targets.append(target_cache[case.target])
    return prompts, targets


def score_targets(
    model,
    tokenizer,
    cases: Sequence[Case],
    *,
    batch_size: int = 32,
    temperatures: Sequence[float] = (1.0,),
    autocast: bool | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[ScoreResult]:
    """Teacher-forced scores of ``cases``: does greedy decoding answer each case's ``target``
    (then end the turn), and with what probability would sampling do so."""
    from offswitch.evaluate.generation import stop_token_ids

    prompts, targets = encode_cases(tokenizer, cases)
    return score_token_targets(
        model,
        prompts,
        targets,
        pad_token_id=pad_token_id_of(model, tokenizer),
        batch_size=batch_size,
        temperatures=temperatures,
        autocast=autocast,
        progress=progress,
        stop_ids=stop_token_ids(model, tokenizer),
    )
