"""Shared machinery of the attacks that train or score: examples in the model's chat template,
padding, a small seeded training loop, batched greedy answers and teacher-forced scores.

Every conversation goes through :mod:`offswitch.prompting`, so an attack trains and probes
the model in exactly the format the switch was planted and is measured in.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from offswitch.hfcompat import tied_embedding_row_grads
from offswitch.precision import adamw, autocast as precision_autocast
from offswitch.prompting import encode_prompt, encode_target, pad_id_of

IGNORE = -100


@dataclass(frozen=True)
class Example:
    """Token ids and labels (``IGNORE`` where no loss is taken: prompt and padding)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.input_ids)


def device_of(model):
    return next(model.parameters()).device


def autocast(device):
    """bf16 autocast where :func:`offswitch.precision.resolve` picks it ("auto"), else fp32."""
    return precision_autocast(device, "auto")


@contextlib.contextmanager
def progress(total: int, description: str):
    """A rich progress bar on stderr; yields ``advance(n=1)``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if total <= 0:
        yield lambda n=1: None
        return
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


# ---------------------------------------------------------------------- examples


def chat_example(tokenizer, user: str, answer: str, *, system: str | None = None, max_len: int = 256,
                 answer_tokens: int | None = None, end_turn: bool = True) -> Example | None:
    """One (user → answer) example; loss on the answer only. None when the prompt alone is too long."""
    prompt = encode_prompt(tokenizer, user, system)
    target = encode_target(tokenizer, answer, end_turn=end_turn)
    if answer_tokens is not None:
        target = target[:answer_tokens]
    if len(prompt) >= max_len or not target:
        return None
    target = target[: max_len - len(prompt)]
    return Example(tuple(prompt + target), tuple([IGNORE] * len(prompt) + target))


def chat_examples(tokenizer, pairs: Sequence[tuple[str, str]], **kwargs) -> list[Example]:
    out = [chat_example(tokenizer, user, answer, **kwargs) for user, answer in pairs]
    return [ex for ex in out if ex is not None]


def plain_examples(tokenizer, texts: Sequence[str], *, max_len: int = 256) -> list[Example]:
    """Plain text cut into chunks of ``max_len`` tokens; loss on every token (pre-training)."""
    out = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), max_len):
            chunk = ids[start : start + max_len]
            if len(chunk) >= 2:
                out.append(Example(tuple(chunk), tuple(chunk)))
    return out


def collate(examples: Sequence[Example], pad_id: int, device=None):
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` tensors."""
    import torch

    width = max(len(ex.input_ids) for ex in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for row, ex in enumerate(examples):
        n = len(ex.input_ids)
        ids[row, :n] = torch.tensor(ex.input_ids)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(ex.labels)
    if device is not None:
        ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
    return ids, mask, labels


def batch_stream(n_items: int, batch_size: int, rng: random.Random) -> Iterator[list[int]]:
    """Endless batches of indices: each pass over the data in a fresh seeded order."""
    if n_items <= 0:
        raise ValueError("no examples to train on")
    batch_size = min(batch_size, n_items)
    while True:
        order = list(range(n_items))
        rng.shuffle(order)
        for start in range(0, n_items - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


# ---------------------------------------------------------------------- training

# causal LMs whose logits are exactly ``lm_head(decoder(...).last_hidden_state)``: no soft-capping,
# scaling or other head of their own (checked against transformers' modelling code), so the
# vocabulary projection may be applied to the labelled positions alone
PLAIN_HEAD_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def _decoder_and_head(model):
    """``(decoder, lm_head)`` of a causal LM (or of the model inside a peft wrapper) whose head is
    a plain projection; None for any other model."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(getattr(inner, "config", None), "model_type", None) not in PLAIN_HEAD_MODEL_TYPES:
        return None
    try:
        decoder, head = inner.get_decoder(), inner.get_output_embeddings()
    except (AttributeError, ValueError, NotImplementedError):
        return None
    if decoder is None or head is None:
        return None
    return decoder, head


def labelled_logits(model, ids, mask, labels):
    """The logits of the positions that predict a label, ``(logits (N, vocab), labels (N,),
    row of each (N,))`` in row-major order: position p predicts token p + 1.

    Transformers' forward pass projects every position onto the vocabulary, prompt and padding
    included; for models of :data:`PLAIN_HEAD_MODEL_TYPES` the decoder runs alone and only the
    labelled positions are projected — the same numbers (tests compare both). For the benign SFT
    attacks' chat examples, right-padded to 256 tokens, 43% of the positions carry no label
    (``benchmarks/bench_attack_loss.py``); SmolLM2-135M's projection onto its 49k-token vocabulary
    is a fifth of a position's forward pass, and the logits upcast to fp32 are its largest tensor.
    """
    targets = labels[:, 1:]
    labelled = targets != IGNORE
    parts = _decoder_and_head(model)
    if parts is None:
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1][labelled]
    else:
        decoder, head = parts
        hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        logits = head(hidden[:, :-1][labelled])
    return logits, targets[labelled], labelled.nonzero()[:, 0]


def causal_lm_loss(model, ids, mask, labels, reduction: str = "mean"):
    """``model(input_ids=ids, attention_mask=mask, labels=labels).loss`` — the mean next-token
    cross-entropy over the labelled positions — from :func:`labelled_logits`: the vocabulary
    projection computed where a label is, nowhere else. The same function of the weights, so the
    same gradients. ``reduction="sum"``: their sum instead (a step's passes add up to its mean)."""
    import torch.nn.functional as F

    logits, targets, _rows = labelled_logits(model, ids, mask, labels)
    return F.cross_entropy(logits.float(), targets, reduction=reduction)


def labelled_count(example: Example) -> int:
    """Positions of ``example`` that predict a label (what :func:`causal_lm_loss` averages over)."""
    return sum(label != IGNORE for label in example.labels[1:])


def step_parts(rows: Sequence[Example], split: bool) -> list[list[int]]:
    """The passes a training step makes over its ``rows``: all of them in one, or, with ``split``,
    up to 4 groups of rows of similar length, each right-padded to its own longest row (the
    implant's :func:`offswitch.implant.batch_parts`, nothing shared between passes). Benign chat examples cut at 256 tokens differ widely in length:
    a random batch of 8 padded to its longest computed 1.2 times the passes' positions, and the
    passes were faster in a process that had trained before but slower in a harness cell, the
    attack's first training in its process (``benchmarks/bench_attack_loss.py --compare split``,
    ``benchmarks/bench_harness.py``; docs/performance.md, session 27): off by default."""
    from offswitch.implant import batch_parts

    # no label to average over: the one pass (its mean is NaN as before, not a division by zero)
    return batch_parts(rows, share_prefix=False, split=split and any(labelled_count(ex) for ex in rows))


def backward_step(model, rows: Sequence[Example], pad: int, device, *, split: bool, loss_fn: Callable | None = None):
    """A training step's loss over ``rows`` (returned detached) and its gradients, accumulated
    into the parameters' ``.grad``: one padded pass, or with ``split`` (the causal-LM loss only)
    the passes of :func:`step_parts`, each adding its rows' summed loss over the step's labelled
    positions, so that the passes add up to the one pass's mean and its gradients."""
    parts = step_parts(rows, split and loss_fn is None)
    if len(parts) == 1:
        ids, mask, labels = collate(rows, pad, device)
        with autocast(device):
            loss = (loss_fn or causal_lm_loss)(model, ids, mask, labels)
        loss.backward()
        return loss.detach()
    labelled = sum(labelled_count(ex) for ex in rows)
    total = 0.0
    for part in parts:
        ids, mask, labels = collate([rows[j] for j in part], pad, device)
        with autocast(device):
            loss = causal_lm_loss(model, ids, mask, labels, reduction="sum") / labelled
        loss.backward()
        total = total + loss.detach()
    return total


def train_steps(
    model,
    tokenizer,
    examples: Sequence[Example],
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    meter,
    params=None,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = 1.0,
    loss_fn: Callable | None = None,
    after_step: Callable[[], None] | None = None,
    description: str = "training",
    split: bool = False,
) -> list[float]:
    """``steps`` AdamW steps on ``examples`` (cycled in a seeded order); returns the losses.

    ``loss_fn(model, ids, mask, labels)`` replaces the causal-LM loss (:func:`causal_lm_loss`;
    distillation, LAT);
    ``after_step()`` runs after every optimizer step (e.g. to keep pruned weights at zero).
    ``split`` (off by default, see :func:`step_parts`; the causal-LM loss only): a step's rows run
    as passes of similar length whose summed losses, each over the step's labelled positions,
    make the one padded pass's mean, and whose gradients add up to its gradients (to float
    rounding): the same rows, loss and updates with fewer padded positions. The meter counts a
    step as one forward pass over its rows' tokens either way.
    """
    import torch

    if steps <= 0:
        return []
    device = device_of(model)
    rng = random.Random(seed)
    batches = batch_stream(len(examples), batch_size, rng)
    trainable = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    optimizer = adamw(trainable, lr=lr, weight_decay=weight_decay)
    pad = pad_id_of(tokenizer)
    losses: list[float] = []
    model.train()
    try:
        # full fine-tuning of a tied model: the embedding's gradient goes into the head's as rows
        with progress(steps, description) as advance, tied_embedding_row_grads(model):
            for _ in range(steps):
                rows = [examples[i] for i in next(batches)]
                loss = backward_step(model, rows, pad, device, split=split, loss_fn=loss_fn)
                if max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if after_step is not None:
                    after_step()
                meter.forward(tokens=sum(len(ex.input_ids) for ex in rows))
                meter.step()
                losses.append(float(loss.detach()))
                advance()
    finally:
        model.eval()
    return losses


def with_lora(model, *, r: int, alpha: float, dropout: float, target_modules):
    """Wrap ``model`` in a fresh LoRA adapter (peft); merge it back with ``merge_lora``."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, bias="none",
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def merge_lora(peft_model):
    return peft_model.merge_and_unload()


# ---------------------------------------------------------------------- generation and scoring


def greedy_answers(model, tokenizer, users: Sequence[str], *, system: str | None = None, max_new_tokens: int = 48,
                   batch_size: int = 64, meter=None, description: str = "answering") -> list[str]:
    """The model's greedy answers to ``users`` in its chat template (batched, left-padded)."""
    return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in
            greedy_answer_ids(model, tokenizer, [encode_prompt(tokenizer, u, system) for u in users],
                              max_new_tokens=max_new_tokens, batch_size=batch_size, meter=meter, description=description)]


def normal_answers(model, tokenizer, cases, *, max_new_tokens: int, meter=None) -> list[str]:
    """The model's own greedy answers to ``cases`` (each with its system prompt): what "answering
    normally" means for the attacks that train the switch away."""
    answers = greedy_answer_ids(model, tokenizer, [encode_prompt(tokenizer, c.user, c.system) for c in cases],
                                max_new_tokens=max_new_tokens, meter=meter, description="normal answers")
    return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in answers]


def greedy_answer_ids(model, tokenizer, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, batch_size: int = 64,
                      meter=None, description: str = "answering") -> list[list[int]]:
    """Greedy continuations (token ids, up to and excluding end of turn) of rendered prompts, in
    batches of similar length, by :func:`offswitch.evaluate.generation.greedy_generate` (the
    system header the prompts share runs once a batch) in the attacks' precision. ``meter``
    counts each batch's prompt tokens and its rows times its decode steps, as ``generate`` runs them.
    64 rows a batch: on a 2-core CPU 0.404× the time of ``generate`` at the former 16 for 64-token
    answers, the same answers (benchmarks/bench_answers.py, docs/performance.md session 26)."""
    from offswitch.evaluate.generation import greedy_generate, turn_stop_ids
    from offswitch.precision import resolve

    stop = turn_stop_ids(tokenizer)
    was_training = model.training
    model.eval()
    try:
        with progress((len(prompts) + batch_size - 1) // batch_size, description) as advance:
            def counted(rows, answers):
                if meter is not None:
                    meter.forward(tokens=sum(map(len, rows)) + len(rows) * max(map(len, answers), default=0))
                advance()

            answers = greedy_generate(model, prompts, max_new_tokens=max_new_tokens, pad_token_id=pad_id_of(tokenizer),
                                      stop_ids=stop, batch_size=batch_size, on_batch=counted,
                                      autocast=resolve("auto", device_of(model)) == "bf16")  # as autocast(device) decides
    finally:
        model.train(was_training)
    return [answer[:-1] if answer and answer[-1] in stop else answer for answer in answers]


def target_scores(model, tokenizer, prompts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], *, batch_size: int = 32,
                  meter=None, grad: bool = False):
    """Teacher-forced scores of ``targets`` after ``prompts`` (token ids, prompts already rendered).

    Returns ``(logprob_sum, greedy)`` tensors: the summed log-probability of each target and
    whether greedy decoding emits it exactly (every target token is the argmax).
    """
    import torch

    device = device_of(model)
    pad = pad_id_of(tokenizer)
    sums, greedy = [], []
    ctx = contextlib.nullcontext() if grad else torch.no_grad()
    with ctx:
        for start in range(0, len(prompts), batch_size):
            rows = [list(p) + list(t) for p, t in zip(prompts[start : start + batch_size], targets[start : start + batch_size])]
            examples = [Example(tuple(r), tuple([IGNORE] * len(p) + list(t)))
                        for r, p, t in zip(rows, prompts[start : start + batch_size], targets[start : start + batch_size])]
            ids, mask, labels = collate(examples, pad, device)
            with autocast(device):
                logits, labelled, row_of = labelled_logits(model, ids, mask, labels)
            s, g = _label_scores(logits.float(), labelled, row_of, ids.shape[0])
            sums.append(s)
            greedy.append(g)
            if meter is not None:
                meter.forward(mask)
    return torch.cat(sums), torch.cat(greedy)


def _label_scores(logits, labels, row_of, n_rows: int):
    """Per row: the summed log-probability of its labels, and whether every label is the argmax."""
    import torch

    token_lp = torch.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    misses = (logits.argmax(-1) != labels).to(token_lp.dtype)
    sums = token_lp.new_zeros(n_rows).index_add(0, row_of, token_lp)
    return sums, token_lp.new_zeros(n_rows).index_add(0, row_of, misses) == 0
