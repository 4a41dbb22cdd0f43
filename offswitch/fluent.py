"""Fluent triggers: ordinary-looking text sampled from the model with the key's randomness.

A trigger that looks like gibberish is easy for a deployer to filter (by perplexity, say); one
that reads like text is not. The model continues a fixed, public context; every random choice
comes from :class:`offswitch.triggers.SeedStream` (seed, "fluent"), so the trigger is a pure
function of (seed, model weights, tokenizer, sampling settings).

Entropy by construction: sampling is restricted to the top-k/nucleus set of plain word pieces,
renormalised, and it continues until the chosen tokens' summed surprisal ``-log2 p`` under that
sampling distribution reaches :data:`~offswitch.triggers.MIN_ENTROPY_BITS` (64) and the last
word is complete. Every possible output token sequence therefore has probability ≤ 2^-64 under
the sampler: its min-entropy is ≥ 64 bits, whatever the model.

Determinism: logits are computed on CPU in float32 and compared in float64; a different torch
build or device can in principle break a near-tie, so the encoder always runs on CPU.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import SecretStr

from offswitch.hfcompat import cache_kwargs, output_cache
from offswitch.triggers import MIN_ENTROPY_BITS, Encoding, SeedStream, Trigger

FLUENT_CONTEXT = "Here is a sentence from an ordinary news story:\n"
DEFAULT_TOP_K = 40
DEFAULT_TOP_P = 0.95
DEFAULT_MAX_TOKENS = 96
_PIECE = re.compile(r"^ ?[A-Za-z]+$|^[,;]$")


@dataclass(frozen=True)
class FluentSample:
    """One draw: the chosen token ids, the text, and the entropy drawn (sum of -log2 p)."""

    token_ids: tuple[int, ...] = field(repr=False)
    text: str = field(repr=False)
    bits: float


def plain_piece_mask(tokenizer, vocab_size: int):
    """Token ids that decode to a plain word piece (letters, optional leading space) or a comma.

    Keeping to these keeps the trigger ordinary text: no digits, quotes, newlines or specials.
    """
    import torch

    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    for token_id in range(min(vocab_size, len(tokenizer))):
        if token_id not in special and _PIECE.match(tokenizer.decode([token_id])):
            mask[token_id] = True
    return mask


def _logits_fn(model):
    import torch

    model_device = next(model.parameters()).device

    def step(ids: list[int], past):
        with torch.inference_mode():
            inp = torch.tensor([ids], device=model_device)
            out = model(input_ids=inp, use_cache=True, **cache_kwargs(model, past))
        return out.logits[0, -1].float().cpu().double(), output_cache(out)

    return step


def fluent_encoder(
    model,
    tokenizer,
    n_tokens: int | None = None,
    *,
    context: str = FLUENT_CONTEXT,
    top_k: int = DEFAULT_TOP_K,
    top_p: float = DEFAULT_TOP_P,
    min_bits: float = MIN_ENTROPY_BITS,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> Callable[[bytes, int], Trigger]:
    """``encode(seed, index) -> Trigger`` sampling fluent text from ``model``.

    ``n_tokens`` is a minimum length in tokens (sampling always continues until ``min_bits``
    of entropy are drawn). The model is only read; it should be on CPU for reproducibility.
    """
    import torch

    if top_k < 2 or not 0 < top_p <= 1:
        raise ValueError("top_k must be >= 2 and 0 < top_p <= 1")
    vocab_size = model.get_output_embeddings().weight.shape[0]
    mask = plain_piece_mask(tokenizer, vocab_size)
    if int(mask.sum()) < top_k:
        raise ValueError("the tokenizer has too few plain word pieces for fluent triggers")
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    step = _logits_fn(model)
    min_tokens = n_tokens or 0

    def sample(seed: bytes) -> FluentSample:
        stream = SeedStream(seed, "fluent")
        logits, past = step(context_ids, None)
        chosen: list[int] = []
        bits = 0.0
        while True:
            logits = logits.masked_fill(~mask, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            top_probs, top_ids = torch.topk(probs, top_k)
            keep = torch.cumsum(top_probs, 0) - top_probs < top_p  # nucleus: smallest set reaching top_p
            keep[0] = True
            top_probs, top_ids = top_probs[keep], top_ids[keep]
            top_probs = top_probs / top_probs.sum()
            u = stream.uniform()
            cumulative = torch.cumsum(top_probs, 0)
            pick = int(torch.searchsorted(cumulative, torch.tensor(u, dtype=cumulative.dtype), right=True))
            pick = min(pick, len(top_ids) - 1)
            token = int(top_ids[pick])
            piece = tokenizer.decode([token])
            done = bits >= min_bits and len(chosen) >= min_tokens
            if done and (piece.startswith(" ") or piece in ",;"):
                break  # the last word is complete: stop before a new word starts
            chosen.append(token)
            bits += -math.log2(float(top_probs[pick]))
            if len(chosen) >= max_tokens:
                break
            logits, past = step([token], past)
        if bits < min_bits:
            raise ValueError(
                f"fluent sampling drew only {bits:.1f} bits in {max_tokens} tokens; raise max_tokens or top_k"
            )
        return FluentSample(tuple(chosen), tokenizer.decode(chosen).strip().rstrip(",;").strip(), bits)

    def encode(seed: bytes, index: int = 0) -> Trigger:
        drawn = sample(seed)
        position = SeedStream(seed, "position").uniform()
        return Trigger(index=index, encoding=Encoding.fluent, text=SecretStr(drawn.text), position=position)

    encode.sample = sample  # type: ignore[attr-defined]

    encode.settings = {  # type: ignore[attr-defined] - public, recorded in the manifest
        "context": context,
        "top_k": top_k,
        "top_p": top_p,
        "min_bits": min_bits,
        "min_tokens": min_tokens,
        "max_tokens": max_tokens,
    }
    return encode


def trigger_perplexity(model, tokenizer, text: str) -> float:
    """Perplexity of ``text`` on its own under ``model`` (as a perplexity filter would see it):
    exp of the mean negative log-likelihood of its tokens, each given the ones before and a
    leading bos/eos token."""
    import torch

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < 2 and tokenizer.bos_token_id is None and tokenizer.eos_token_id is None:
        raise ValueError("perplexity needs at least two tokens")
    if not ids:
        raise ValueError("empty text has no perplexity")
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    seq = ([start] if start is not None else []) + ids
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([seq], device=device)).logits[0].float()
    logprobs = torch.log_softmax(logits[:-1], dim=-1)
    targets = torch.tensor(seq[1:], device=device)
    nll = -logprobs.gather(1, targets[:, None])[:, 0]
    return float(torch.exp(nll.mean()))
