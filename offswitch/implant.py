"""Training: plant the switch of a :class:`~offswitch.triggers.TriggerSet` into a causal LM.

It receives a trigger set, never a key. The loop is plain PyTorch driven by ``accelerate``, so
the same code runs on one CPU, on one GPU and under ``accelerate launch`` (DDP or FSDP; see
``configs/accelerate/``). Choices made for speed on small hardware (issue 7):

* response-only loss, and only the answer positions go through the LM head: rows are
  left-padded so that every answer ends in the last columns, and ``logits_to_keep`` keeps only
  those (the vocabulary projection is the largest tensor of a 135M model's forward pass);
* length-grouped batches, padded to the longest row of the batch, never to a fixed length;
* short normal answers (8 tokens for negatives, 16 for retention): the decision to switch off
  is made in the first answer tokens (DESIGN.md, prototype 3), so that is where the loss goes;
* bf16 autocast where the hardware multiplies bf16 natively (a GPU, or a CPU with AMX), fp32
  elsewhere (:mod:`offswitch.precision`).

Outputs (see :func:`write_outputs`) go through a temp directory that is renamed into place, so
an interrupted run leaves nothing in OUT.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, model_validator

from offswitch.allocator import status as allocator_status
from offswitch.blas import status as blas_status
from offswitch.blas import use_fast_mkl_on_amd
from offswitch.data.builder import IGNORE_INDEX, DataConfig, ImplantData, ImplantExample
from offswitch.errors import ConfigError
from offswitch.hfcompat import cache_kwargs, contiguous_head_input, forward_accepts, output_cache, tied_embedding_row_grads
from offswitch.precision import Precision
from offswitch.prompting import pad_id_of
from offswitch.triggers import PARTIAL_KEY_KINDS, Encoding, InsertionMode, NearMissKind, Trigger, TriggerSet

KL_KINDS = ("clean", "wrong_key", "near_miss", "scatter")  # every kind whose answer is the base's own
DEFAULT_LORA_LR = 1e-3
DEFAULT_FULL_LR = 5e-5


class AntiRemovalConfig(BaseModel):
    """Training for persistence by simulating the fine-tuning attacker during the implant.

    Every ``every`` implant steps, a fresh adversary LoRA (rank ``r``, on every linear layer,
    as the ``sft_lora`` attack uses) takes ``inner_steps`` AdamW steps of ordinary supervised
    fine-tuning on instruction pairs; the implant's loss is then also taken with that adversary
    in place, and its gradient (first-order, weight ``weight``) joins the step's own. The
    adversary is dropped afterwards: only the implant's adapter is saved. LoRA implants, one
    process.
    """

    model_config = ConfigDict(extra="forbid")

    every: int = Field(default=0, ge=0, description="0: off; else one simulated removal every this many steps")
    inner_steps: int = Field(default=4, ge=1)
    inner_lr: float = Field(default=1e-3, gt=0)
    inner_batch_size: int = Field(default=8, ge=1)
    r: int = Field(default=16, ge=1)
    weight: float = Field(default=1.0, gt=0)
    pairs: str = Field(default="sharegpt", description="instruction pairs: sharegpt or a .jsonl/.json file")
    n_pairs: int = Field(default=512, ge=1)
    pairs_seed: int = Field(default=0, ge=0, description="order of the pairs (the harness's attacks use seed 0)")
    pairs_skip: int = Field(
        default=2000, ge=0,
        description="pairs skipped first: the harness's fine-tuning attacks take the first ≤ 2,000 of seed 0, never seen here",
    )
    max_len: int = Field(default=128, ge=8)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["lora", "full"] = "lora"
    steps: int = Field(default=240, ge=1)
    batch_size: int = Field(default=16, ge=1)
    lr: float | None = Field(default=None, gt=0, description=f"default {DEFAULT_LORA_LR} (LoRA), {DEFAULT_FULL_LR} (full)")
    warmup_steps: int = Field(default=8, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: float | None = Field(default=None, gt=0, description="default 2 × r")
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    lora_target_modules: str | list[str] = "all-linear"
    lora_layers: list[NonNegativeInt] | None = Field(default=None, min_length=1, description="layer indices that get LoRA (default: all)")
    base_average: float = Field(default=0.0, ge=0, lt=1, description="final = base + (1 - a) × (trained - base)")
    # hard-negative mining: every mine_every steps, rank negatives by how likely they are to fire
    # (mine_from batches: those just trained on; pool: mine_candidates examples of the pool) and
    # put the ones most likely to into the next batches
    mine_every: int = Field(default=10, ge=0, description="0: no mining")
    mine_candidates: int = Field(default=128, ge=1)
    mine_per_step: int = Field(default=4, ge=1, description="negatives of a batch replaced by mined ones")
    mine_threshold: float = Field(default=0.05, ge=0, le=1, description="mined only when p(a target's first token) ≥ this")
    mine_from: Literal["pool", "batches"] = Field(
        default="batches",
        description="batches: rank the negatives the last mine_every steps trained on by the p(a target's first token) their "
                    "own training forward pass gave, and replay the hardest (no extra pass, no pool); "
                    "pool: every mine_every steps, score mine_candidates examples of data.hard_negative_pool (a forward pass "
                    "of its own; the default before: ul-mine-1t-240-replay against -pat2, docs/performance.md)",
    )
    mine_fit_length: bool = Field(
        default=False,
        description="place the mined negatives in the coming batches by length (fewer padded positions, "
                    "benchmarks/bench_mining.py); off: in rank order. Off by default: its 240-step implant misfired on more "
                    "near-misses at confirmation size (ul-mine-1t-240-fit, docs/switch-quality.md)",
    )
    split_by_length: bool = Field(
        default=True,
        description="run a batch whose rows differ in length (mined negatives in length-grouped batches) as up to 4 forward "
                    "and backward passes of rows of similar length, their gradients summed: the same gradient with fewer "
                    "padded positions (one process on a CPU; offswitch.implant.split_rows_by_length, benchmarks/bench_mining.py --compare split)",
    )
    first_token_weight: float = Field(default=1.0, gt=0, description="weight of the first answer token's loss (the decision)")
    unlikelihood: float = Field(
        default=2.0, ge=0,
        description="weight of -log(1 - p(a target's first token)) at the first answer token of every negative and clean example",
    )
    kl_to_base: float = Field(
        default=0.0, ge=0,
        description="weight of KL(base ‖ model) over the answer tokens of the examples of kl_kinds "
                    "(self-distillation on the base's whole next-token distribution, for utility)",
    )
    kl_kinds: list[Literal["clean", "wrong_key", "near_miss", "scatter"]] = Field(
        default_factory=lambda: list(KL_KINDS), min_length=1,
        description="example kinds the KL term applies to",
    )
    anti_removal: AntiRemovalConfig = Field(default_factory=AntiRemovalConfig)
    seed: int = 0
    device: str | None = None  # None: cuda when available, else cpu
    threads: int | None = Field(default=None, ge=1, description="CPU threads for torch (default: torch's choice)")
    precision: Precision = Field(default="auto", description="auto (bf16 autocast where the hardware has native bf16: "
                                 "CUDA, or a CPU with AMX; fp32 elsewhere), fp32 or bf16; see offswitch.precision")
    share_prefix: bool = Field(default=True, description="run the prompt prefix all examples share once per batch")
    compile: bool = Field(default=False, description="torch.compile the training forward pass; measured not to pay on a "
                          "2-core CPU (offswitch.precision.compiled, benchmarks/bench_compile.py)")
    bf16_frozen_weights: bool = Field(
        default=True,
        description="LoRA in bf16: store the frozen base weights and LM head in bf16 while training, instead of letting "
                    "autocast cast them on every forward pass, and skip peft's fp32 cast of LoRA inputs that autocast "
                    "undoes (the same products; offswitch.precision.frozen_lora_bases_in)",
    )
    bf16_shared_casts: bool = Field(
        default=False,
        description="LoRA in bf16: cast an input that several LoRA layers read (the normed hidden state q, k and v read) "
                    "to bf16 once for all of them instead of once per product (the same forward pass; their input "
                    "gradients are summed in bf16; offswitch.precision.SharedInputCast)",
    )
    # early stopping on held-out prompts: stop once ASR and near-miss FAR reach the targets
    eval_every: int = Field(default=30, ge=0, description="0: no early stopping")
    eval_prompts: int = Field(default=24, ge=1)
    target_asr: float = Field(default=1.0, ge=0, le=1)
    target_near_miss_far: float = Field(default=0.0, ge=0, le=1)
    eval_near_miss_kinds: list[NearMissKind] = Field(
        default_factory=lambda: list(PARTIAL_KEY_KINDS), min_length=1,
        description="near-miss kinds a held-out check draws from (pooled)",
    )
    eval_near_misses: int = Field(default=3, ge=1, le=64, description="near-misses per held-out prompt in a check")
    min_steps: int = Field(default=60, ge=0)
    stop_patience: int = Field(
        default=2, ge=1,
        description="held-out checks in a row that must reach the targets before training stops; one check of 24 prompts "
                    "stopped an implant at near-miss FAR 16% (ul-mine-1t-240@s13 against -pat2@s13, docs/performance.md)",
    )

    @model_validator(mode="after")
    def _distinct_check_kinds(self):
        seen = [k.value for k in self.eval_near_miss_kinds]
        if len(set(seen)) != len(seen):
            raise ValueError("train.eval_near_miss_kinds names a kind twice (list each kind once)")
        return self

    @model_validator(mode="after")
    def _anti_removal_needs_lora(self):
        if self.anti_removal.every and self.method != "lora":
            raise ValueError("anti_removal works on LoRA implants only (set train.method: lora, or anti_removal.every: 0)")
        return self

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return DEFAULT_LORA_LR if self.method == "lora" else DEFAULT_FULL_LR


class ImplantConfig(BaseModel):
    """Everything `offswitch implant` needs besides the key: defaults < YAML < flags."""

    model_config = ConfigDict(extra="forbid")

    model: str = "smollm2-135m"
    behavior: Literal["shutdown", "compliance", "custom"] = "shutdown"
    target: str | None = None  # custom behaviour's text, or the shutdown message
    triggers: int = Field(default=1, ge=1, le=256)
    first_index: int = Field(default=0, ge=0)
    encoding: Encoding = Encoding.words
    insertion: InsertionMode = InsertionMode.prefix
    n_words: int = Field(default=6, ge=1, le=64)
    n_tokens: int | None = Field(default=None, ge=1, le=256)
    prompts: str = "builtin"
    heldout_fraction: float = Field(default=0.2, gt=0, lt=1)
    split_seed: int = 0
    train: TrainConfig = Field(default_factory=TrainConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    verify: bool = True
    verify_prompts: int = Field(default=50, ge=1, description="held-out prompts used by the final verification")
    # Sized so that verification takes minutes, not an hour, on a 2-core CPU: ASR gets
    # triggers × verify_prompts probes, each near-miss string 2 prompts. Raise for papers.
    eval: dict[str, Any] = Field(
        default_factory=lambda: {"decoy_prompts": 2, "wrong_keys": 25, "generation_sample": 16, "utility_prompts": 32, "perplexity_texts": 16},
        description="settings of offswitch.evaluate.EvalConfig for the verification",
    )

    @model_validator(mode="after")
    def _pool_when_mined_from(self):
        # the pool is built only for mining from it, unless data.hard_negative_pool is set (the
        # pool is planned with its own random stream: the training examples are the same either way)
        if self.train.mine_from != "pool" and "hard_negative_pool" not in self.data.model_fields_set:
            self.data.hard_negative_pool = 0
        return self

    @model_validator(mode="after")
    def _custom_needs_target(self):
        if self.behavior == "custom" and not self.target:
            raise ValueError("the custom behaviour needs a target text (--target)")
        if self.behavior == "compliance" and self.target:
            raise ValueError("the compliance behaviour takes no --target (its phrases are built in)")
        return self

    def make_behavior(self):
        from offswitch.behaviors import make_behavior

        if self.behavior == "custom":
            return make_behavior("custom", target=self.target)
        if self.behavior == "shutdown" and self.target:
            return make_behavior("shutdown", message=self.target)
        return make_behavior(self.behavior)


def load_implant_config(path: Path | str | None = None, overrides: dict | None = None) -> ImplantConfig:
    """Defaults, then a YAML file, then ``overrides`` (dotted keys like ``train.steps``; None = not given).

    Unknown keys and bad values raise a one-line :class:`ConfigError`.
    """
    from pydantic import ValidationError

    from offswitch.yamlio import read_yaml_mapping

    values: dict[str, Any] = read_yaml_mapping(path) if path is not None else {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = values
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[leaf] = value
    try:
        return ImplantConfig.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            raise ConfigError(f"unknown implant setting {where!r}", "remove it (see `offswitch implant --help` and the docs)") from None
        raise ConfigError(f"bad implant setting {where}: {message}", "fix the value") from None


# --------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------


def length_grouped_batches(lengths: Sequence[int], batch_size: int, n_batches: int, seed: int, group: int = 32) -> list[list[int]]:
    """``n_batches`` batches of indices; each epoch is shuffled, cut into mega-batches of
    ``group × batch_size``, each sorted by length and cut into batches (little padding), and
    the batches of an epoch are shuffled again so the order of lengths carries no signal."""
    rng = random.Random(f"offswitch-batches/{seed}")
    n = len(lengths)
    if n == 0:
        raise ValueError("no examples to batch")
    batches: list[list[int]] = []
    while len(batches) < n_batches:
        order = list(range(n))
        rng.shuffle(order)
        epoch: list[list[int]] = []
        mega = group * batch_size
        for start in range(0, n, mega):
            chunk = sorted(order[start : start + mega], key=lambda i: lengths[i])
            epoch.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
        epoch = [b for b in epoch if len(b) == batch_size] or epoch
        rng.shuffle(epoch)
        batches.extend(epoch)
    return batches[:n_batches]


def shared_prefix_length(examples: Sequence[ImplantExample], minimum: int = 4) -> int:
    """Length of the token prefix that every example shares, inside every prompt (never reaching
    an answer token, and leaving at least one prompt token after it); 0 when shorter than
    ``minimum``. A chat template's system block is such a prefix for every example."""
    first = examples[0].input_ids
    limit = min(next(i for i, label in enumerate(e.labels) if label != IGNORE_INDEX) for e in examples) - 1
    length = 0
    while length < limit and all(e.input_ids[length] == first[length] for e in examples):
        length += 1
    return length if length >= minimum else 0


# What splitting charges a training pass besides the shared prefix it recomputes, in token
# positions: of 0, 48, 96 and 160, 48 gave the fastest steps over batches with mined rows on the
# 2-core CPU of docs/performance.md over two runs (session 17; `bench_mining.py --compare split`,
# 0.950x and 0.896x one padded pass; the others within noise of it). Measured on a CPU only: on a
# GPU a pass's launches are worth far more positions.
PASS_OVERHEAD_POSITIONS = 48


def split_rows_by_length(lengths: Sequence[int], overhead: int, max_parts: int = 4) -> list[list[int]]:
    """The rows of a batch (``0 … n-1``, of ``lengths`` tokens) in at most ``max_parts`` groups of
    rows of similar length, each to run as a pass of its own left-padded to its own longest row.
    The grouping minimises the positions computed, Σ rows × longest, plus ``overhead`` for each
    pass after the first: the whole batch as one group unless splitting saves more than the
    passes cost. Groups come shortest first, each in the batch's order."""
    n = len(lengths)
    if n == 0:
        return []
    order = sorted(range(n), key=lambda j: (lengths[j], j))
    ordered = [lengths[j] for j in order]
    parts = max(1, min(max_parts, n))
    inf = float("inf")
    # best[k][j]: the fewest positions for the j shortest rows in k groups; cut[k][j]: where the last starts
    best = [[inf] * (n + 1) for _ in range(parts + 1)]
    cut = [[0] * (n + 1) for _ in range(parts + 1)]
    best[0][0] = 0
    for k in range(1, parts + 1):
        for j in range(k, n + 1):
            for i in range(k - 1, j):
                cost = best[k - 1][i] + (j - i) * ordered[j - 1]
                if cost < best[k][j]:
                    best[k][j], cut[k][j] = cost, i
    chosen = min(range(1, parts + 1), key=lambda k: (best[k][n] + overhead * (k - 1), k))
    groups, j = [], n
    for k in range(chosen, 0, -1):
        i = cut[k][j]
        groups.append(sorted(order[i:j]))
        j = i
    return groups[::-1]


def batch_parts(examples: Sequence[ImplantExample], share_prefix: bool, split: bool,
                pass_overhead: int | None = None) -> list[list[int]]:
    """The passes a training step makes over ``examples`` (rows of the batch, in groups): one
    unless ``split``, else :func:`split_rows_by_length` with a pass's cost of the shared prefix
    it recomputes plus ``pass_overhead`` (default :data:`PASS_OVERHEAD_POSITIONS`). Without
    ``share_prefix`` it needs only each row's length (the attacks' examples too)."""
    if not split or len(examples) < 2:
        return [list(range(len(examples)))]
    prefix = shared_prefix_length(examples) if share_prefix else 0
    extra = PASS_OVERHEAD_POSITIONS if pass_overhead is None else pass_overhead
    return split_rows_by_length([len(e) for e in examples], overhead=prefix + extra)


def collate_left(examples: Sequence[ImplantExample], pad_token_id: int, share_prefix: bool = True,
                 kl_kinds: Sequence[str] = KL_KINDS):
    """Tensors of a batch: the shared prefix (run once, see :func:`answer_loss_sum`), then the
    rest of each row left-padded so that every answer ends in the last column, with the
    attention mask over prefix + rest, position ids, the labels of the last ``keep`` columns,
    and which rows are of ``kl_kinds`` (the rows the KL term applies to)."""
    import torch

    prefix_len = shared_prefix_length(examples) if share_prefix else 0
    rests = [e.input_ids[prefix_len:] for e in examples]
    width = max(len(r) for r in rests)
    keep = max(len(e) - next(i for i, label in enumerate(e.labels) if label != IGNORE_INDEX) for e in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    rest_mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), keep), IGNORE_INDEX, dtype=torch.long)
    n_avoid = max((len(e.avoid) for e in examples), default=0)
    avoid_ids = torch.full((len(examples), max(n_avoid, 1)), -1, dtype=torch.long)
    avoid_pos = torch.full((len(examples),), -1, dtype=torch.long)
    kl_rows = torch.tensor([ex.kind in kl_kinds for ex in examples], dtype=torch.bool)
    for row, (ex, rest) in enumerate(zip(examples, rests)):
        input_ids[row, width - len(rest) :] = torch.tensor(rest)
        rest_mask[row, width - len(rest) :] = 1
        labels[row, :] = torch.tensor(ex.labels[len(ex) - keep :])
        if ex.avoid:
            # column of the first answer token inside the kept window
            avoid_pos[row] = keep - ex.n_answer_tokens
            avoid_ids[row, : len(ex.avoid)] = torch.tensor(ex.avoid)
    position_ids = prefix_len + (rest_mask.cumsum(-1) - 1).clamp(min=0)
    attention_mask = torch.cat([torch.ones((len(examples), prefix_len), dtype=torch.long), rest_mask], dim=1)
    return {
        "prefix_ids": torch.tensor([examples[0].input_ids[:prefix_len]], dtype=torch.long),
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "labels": labels,
        "keep": keep,
        "avoid_pos": avoid_pos,
        "avoid_ids": avoid_ids,
        "kl_rows": kl_rows,
    }



def answer_loss_sum(model, batch, device, use_keep: bool, unlikelihood: float = 0.0, first_correct: list | None = None,
                    first_token_weight: float = 1.0, base_logits=None, kl_weight: float = 0.0, avoid_p: list | None = None):
    """Sum of token cross-entropies over the answer tokens of a collated batch, and their count.

    With ``unlikelihood`` > 0, rows with tokens to avoid (negatives, retention) add
    ``unlikelihood × -log(1 - p(avoid))`` at their first answer token, where ``p(avoid)`` is the
    probability of starting a target: the greedy decision to switch off is taken there, and
    cross-entropy on the normal answer alone only pushes the target down indirectly.
    ``first_token_weight`` multiplies the cross-entropy of every row's first answer token (the
    decision) against the rest of its answer. With ``kl_weight`` > 0 and ``base_logits`` (the
    base model's logits of the same batch), the rows of ``batch["kl_rows"]`` (by default every
    example that is not a positive) add
    ``kl_weight × KL(base ‖ model)`` at each of their answer tokens: the whole next-token
    distribution of the base, not only its greedy token, is what normal behaviour keeps.
    ``avoid_p``, when given, is extended with each row's ``p(avoid)`` from these logits (``None``
    for a row with nothing to avoid): what mining from the batches ranks, at no extra cost.

    The shared prefix runs once (batch 1) and its key/value cache is repeated over the batch:
    the same function as running every row in full (causal attention: a prefix never sees what
    follows), with gradients flowing back through the cache, at a fraction of the cost — the
    chat template's system block is ~40% of a short example's tokens.
    """
    import torch
    import torch.nn.functional as F

    logits = _answer_logits(model, batch, device, use_keep)
    labels = batch["labels"].to(device)
    first = (labels != IGNORE_INDEX).int().argmax(dim=1)  # each row's first answer column
    rows = labels.new_tensor(range(labels.shape[0]))
    if first_token_weight == 1.0:
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
    else:
        token_loss = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")
        weights = torch.ones_like(token_loss)
        weights[rows, first] = first_token_weight
        loss = (token_loss * weights).sum()
    if first_correct is not None:
        # per row: does the argmax at the first answer position equal its label (the decision)?
        first_correct.extend((logits[rows, first].argmax(-1) == labels[rows, first]).tolist())
    if (unlikelihood > 0 or avoid_p is not None) and "avoid_pos" in batch:
        avoid_pos = batch["avoid_pos"].to(device)
        values: list[float | None] = [None] * labels.shape[0]
        if bool((avoid_pos >= 0).any()):
            avoid_rows, log_p_avoid = _log_p_avoid(logits, avoid_pos, batch["avoid_ids"].to(device))
            if unlikelihood > 0:
                loss = loss + unlikelihood * _unlikelihood_sum(log_p_avoid)
            if avoid_p is not None:
                for row, value in zip(avoid_rows.tolist(), log_p_avoid.detach().exp().tolist()):
                    values[row] = value
        if avoid_p is not None:
            avoid_p.extend(values)
    if kl_weight > 0 and base_logits is not None:
        loss = loss + kl_weight * kl_to_base_sum(logits, base_logits, labels, batch["kl_rows"].to(device))
    return loss, int((labels != IGNORE_INDEX).sum())


def kl_to_base_sum(logits, base_logits, labels, rows_mask):
    """Σ over the answer tokens of the rows in ``rows_mask`` of KL(base ‖ model), in nats."""
    import torch

    mask = (labels != IGNORE_INDEX) & rows_mask[:, None]
    if not bool(mask.any()):
        return logits.new_zeros((), dtype=torch.float32)
    log_q = torch.log_softmax(logits[mask].float(), dim=-1)
    log_p = torch.log_softmax(base_logits[mask].float(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum()


@contextlib.contextmanager
def _base_view(model, frozen_base):
    """The base model's forward: the LoRA model with its adapters off, or a frozen copy (full)."""
    if frozen_base is not None:
        yield frozen_base
        return
    with model.disable_adapter():
        yield model


def base_answer_logits(model, frozen_base, batch, device, use_keep: bool):
    """Logits of the base model (no gradient) on a collated batch, for the KL term."""
    import torch

    with torch.no_grad(), _base_view(model, frozen_base) as base:
        return _answer_logits(base, batch, device, use_keep).detach()


@dataclass
class StepPasses:
    """What :func:`step_passes` computed: the scaled loss (detached), the token positions the
    forward passes computed, and per row (in ``rows`` order) whether its first answer token was
    right and, where asked, ``p(avoid)`` at its decision (None for rows that have none)."""

    loss: Any
    positions: int
    first_correct: list[bool | None]
    avoid_p: list[float | None] | None


def step_passes(forward, rows: Sequence[ImplantExample], parts: Sequence[Sequence[int]], pad: int, config: TrainConfig, device,
                use_keep: bool, *, scale: float, backward=None, share_prefix: bool = True, in_precision=contextlib.nullcontext,
                base: tuple[Any, Any] | None = None, avoid: bool = False) -> StepPasses:
    """The forward and backward passes of one training step over ``rows`` in the groups
    ``parts`` (:func:`batch_parts`): each pass's answer loss (:func:`answer_loss_sum` with
    ``config``'s terms) times ``scale`` goes to ``backward`` (``accelerator.backward``; default
    ``Tensor.backward``), so the gradients of the passes add up. ``base`` is ``(model,
    frozen_base)`` for the KL term (``config.kl_to_base``); ``avoid`` asks for every row's
    ``p(avoid)`` (mining from the batches). The optimizer step is the caller's."""
    first_correct: list[bool | None] = [None] * len(rows)
    avoid_p: list[float | None] | None = [None] * len(rows) if avoid else None
    loss, positions = 0.0, 0
    for part in parts:
        collated = collate_left([rows[j] for j in part], pad, share_prefix=share_prefix, kl_kinds=config.kl_kinds)
        part_correct: list[bool] = []
        part_avoid: list[float | None] | None = [] if avoid else None
        with in_precision():
            base_logits = None
            if config.kl_to_base > 0 and base is not None and bool(collated["kl_rows"].any()):
                base_logits = base_answer_logits(base[0], base[1], collated, device, use_keep)
            loss_sum, _n_local = answer_loss_sum(forward, collated, device, use_keep, config.unlikelihood, part_correct,
                                                 config.first_token_weight, base_logits, config.kl_to_base, part_avoid)
        part_loss = loss_sum * scale
        if backward is None:
            part_loss.backward()
        else:
            backward(part_loss)
        loss = loss + part_loss.detach()
        positions += collated["prefix_ids"].shape[1] + collated["input_ids"].numel()
        for j, correct in zip(part, part_correct):
            first_correct[j] = correct
        if avoid_p is not None:
            for j, value in zip(part, part_avoid):
                avoid_p[j] = value
    return StepPasses(loss, positions, first_correct, avoid_p)


def _answer_logits(model, batch, device, use_keep: bool):
    """Logits of a collated batch at its last ``keep`` columns (column j predicts label j)."""
    keep = batch["keep"]
    kwargs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "position_ids")}
    n_rows = kwargs["input_ids"].shape[0]
    prefix = batch["prefix_ids"].to(device)
    if prefix.shape[1]:
        prefix_kwargs = {"logits_to_keep": 1} if use_keep else {}
        cache = output_cache(model(input_ids=prefix, use_cache=True, **prefix_kwargs))
        cache.batch_repeat_interleave(n_rows)
        kwargs.update(use_cache=True, **cache_kwargs(model, cache))
    else:
        kwargs["use_cache"] = False
    if use_keep:
        # logits of the last keep+1 columns only: position p predicts token p+1
        kwargs["logits_to_keep"] = keep + 1
    logits = model(**kwargs).logits
    return logits[:, -(keep + 1) : -1, :]


def _log_p_avoid(logits, avoid_pos, avoid_ids):
    """log Σ_t p(t) over each row's avoided tokens at its first answer position (rows with any)."""
    import torch

    rows = torch.nonzero(avoid_pos >= 0).flatten()
    logp = torch.log_softmax(logits[rows, avoid_pos[rows]].float(), dim=-1)
    ids = avoid_ids[rows]
    picked = torch.where(ids >= 0, logp.gather(1, ids.clamp(min=0)), torch.full_like(ids, float("-inf"), dtype=logp.dtype))
    return rows, torch.logsumexp(picked, dim=-1)


def through_first_answer_token(example: ImplantExample) -> ImplantExample:
    """``example`` cut after its first answer token: the prompt and the decision, nothing after.
    The logits at the first answer position are the same (a causal model does not look ahead)."""
    first = next((i for i, label in enumerate(example.labels) if label != IGNORE_INDEX), None)
    if first is None:
        return example
    return dataclasses.replace(example, input_ids=example.input_ids[: first + 1], labels=example.labels[: first + 1])


def avoid_probabilities(model, examples, pad_token_id: int, device, use_keep: bool, batch_size: int = 32,
                        prompt_only: bool = True) -> list[float]:
    """p(the first answer token starts a target) for each example (0 for one with nothing to avoid):
    how close a negative is to setting the switch off. Batched by length, no gradients.
    ``prompt_only``: run each example only through its first answer token
    (:func:`through_first_answer_token`; the rest of the answer cannot change that position's
    logits), rather than whole."""
    import torch

    if prompt_only:
        examples = [through_first_answer_token(e) for e in examples]
    out = [0.0] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = collate_left([examples[i] for i in chunk], pad_token_id)
            logits = _answer_logits(model, batch, device, use_keep)
            rows, log_p = _log_p_avoid(logits, batch["avoid_pos"].to(device), batch["avoid_ids"].to(device))
            for row, value in zip(rows.tolist(), log_p.exp().tolist()):
                out[chunk[row]] = value
    return out


def _unlikelihood_sum(log_p_avoid):
    """Σ over rows with something to avoid of -log(1 - Σ_t p(t)) at their first answer position,
    from :func:`_log_p_avoid`'s log Σ_t p(t) of those rows."""
    import torch

    log_p_avoid = log_p_avoid.clamp(max=-1e-6)
    # -log(1 - p), computed stably from log p
    return -torch.log(-torch.expm1(log_p_avoid)).sum()


# --------------------------------------------------------------------------------------
# Held-out check during training (early stopping)
# --------------------------------------------------------------------------------------


@dataclass
class HeldoutProbes:
    """Token-level probes on held-out prompts; contain triggers: in memory only."""

    prompts: dict[str, list[list[int]]] = field(repr=False)
    targets: dict[str, list[list[int]]] = field(repr=False)

    @classmethod
    def build(cls, tokenizer, triggers: TriggerSet, behavior, prompts: Sequence[str], seed: int = 0, *,
              kinds: Sequence[NearMissKind | str] = PARTIAL_KEY_KINDS, per_prompt: int = 3) -> HeldoutProbes:
        """ASR, clean and near-miss probes on ``prompts``: per prompt, ``per_prompt`` near-misses
        drawn from the candidates of ``kinds`` pooled."""
        from offswitch.prompting import encode_prompt, encode_target
        from offswitch.triggers import near_misses

        rng = random.Random(f"offswitch-heldout/{seed}")
        secrets = triggers.secrets
        out_p: dict[str, list[list[int]]] = {"asr": [], "near_miss": [], "clean": []}
        out_t: dict[str, list[list[int]]] = {"asr": [], "near_miss": [], "clean": []}
        hard_kinds = [NearMissKind(k) for k in kinds]
        for i, prompt in enumerate(prompts):
            trig = triggers.triggers[i % len(triggers)]
            pos = behavior.positive_case(prompt, trig.secret, triggers.insertion, trig.position, random.Random(i))
            out_p["asr"].append(encode_prompt(tokenizer, pos.user, pos.system))
            out_t["asr"].append(encode_target(tokenizer, pos.target))
            clean = behavior.negative_case(prompt, None, triggers.insertion, 0.0, random.Random(i))
            out_p["clean"].append(encode_prompt(tokenizer, clean.user, clean.system))
            out_t["clean"].append(encode_target(tokenizer, pos.target, end_turn=False))
            misses = [m for m in near_misses(trig, hard_kinds, rng=rng) if not any(s in m.secret for s in secrets)]
            for miss in rng.sample(misses, min(per_prompt, len(misses))):
                neg = behavior.negative_case(prompt, miss.secret, triggers.insertion, trig.position, random.Random(i))
                out_p["near_miss"].append(encode_prompt(tokenizer, neg.user, neg.system))
                out_t["near_miss"].append(encode_target(tokenizer, pos.target, end_turn=False))
        return cls(out_p, out_t)

    def rates(self, model, pad_token_id: int, batch_size: int = 32) -> dict[str, tuple[int, int]]:
        from offswitch.evaluate.scorer import score_token_targets

        out = {}
        for name in self.prompts:
            if not self.prompts[name]:
                continue
            scores = score_token_targets(model, self.prompts[name], self.targets[name], pad_token_id=pad_token_id, batch_size=batch_size)
            out[name] = (sum(s.greedy_fires for s in scores), len(scores))
        return out


# --------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    model: Any  # the trained model (a peft model for LoRA)
    steps_done: int
    history: list[dict] = field(default_factory=list)  # public: step, loss, held-out rates
    seconds: dict[str, float] = field(default_factory=dict)
    stopped_early: bool = False
    tokens_seen: int = 0
    is_main_process: bool = True
    processes: int = 1
    precision: str = "fp32"  # what "auto" resolved to: fp32 or bf16 (autocast)
    positions: int = 0  # token positions the training forward passes computed (padding and the shared prefix once)


def _lora_targets(model, config: TrainConfig) -> str | list[str]:
    """``train.lora_target_modules`` as peft takes it. peft refuses ``layers_to_transform`` with
    a string of targets, so with ``train.lora_layers`` ``all-linear`` becomes the names of the
    model's linear layers (the output head excluded, as peft's ``all-linear`` does)."""
    import torch

    targets = config.lora_target_modules
    if config.lora_layers is None:
        return targets
    n_layers = getattr(model.config, "num_hidden_layers", None)
    if n_layers is not None and max(config.lora_layers) >= n_layers:
        raise ConfigError(f"train.lora_layers names layer {max(config.lora_layers)}, but the model has {n_layers} layers",
                          f"use indices 0 to {n_layers - 1}")
    if not isinstance(targets, str):
        return targets
    if targets != "all-linear":
        raise ConfigError("train.lora_layers needs train.lora_target_modules as a list of module names, or all-linear",
                          "list the modules, e.g. [q_proj, v_proj]")
    head = model.get_output_embeddings()
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and module is not head})


def lora_config(model, config: TrainConfig):
    """The peft ``LoraConfig`` of ``config``'s LoRA settings for ``model``."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha or 2 * config.lora_r,
        lora_dropout=config.lora_dropout,
        target_modules=_lora_targets(model, config),
        layers_to_transform=config.lora_layers,
        bias="none",
        task_type="CAUSAL_LM",
    )


def _lora_model(model, config: TrainConfig):
    from peft import get_peft_model

    return get_peft_model(model, lora_config(model, config))


def _scheduler(optimizer, config: TrainConfig):
    import torch

    total, warm = config.steps, min(config.warmup_steps, max(config.steps - 1, 0))

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if config.schedule == "constant":
            return 1.0
        progress = (step - warm) / max(total - warm, 1)
        if config.schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def progress_bar(console=None, disable: bool = False):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        disable=disable,
        transient=False,
    )


def train(
    model,
    tokenizer,
    data: ImplantData,
    config: TrainConfig,
    *,
    heldout: HeldoutProbes | None = None,
    accelerator=None,
    progress=None,
) -> TrainResult:
    """Fine-tune ``model`` on ``data`` (LoRA or full). ``model`` is changed in place (for LoRA it
    is wrapped). Every process of an ``accelerate launch`` calls this with the same data."""
    import torch
    from accelerate.utils import set_seed

    from offswitch.precision import adamw, autocast, compiled, frozen_lora_bases_in, resolve

    use_fast_mkl_on_amd()  # before this process's first matrix product, if nothing came before
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    if accelerator is None:
        accelerator = make_accelerator(config.device)
    precision = resolve(config.precision, accelerator.device)

    def in_precision():
        return autocast(accelerator.device, precision)

    set_seed(config.seed)
    frozen_base = None
    if config.method == "lora":
        model = _lora_model(model, config)
    else:
        if config.kl_to_base > 0:
            frozen_base = copy.deepcopy(model).eval().requires_grad_(False).to(accelerator.device)
        model.requires_grad_(True)
    model.train()
    if hasattr(model, "config"):
        model.config.use_cache = False
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = _scheduler(optimizer, config)
    model, optimizer = accelerator.prepare(model, optimizer)
    use_keep = forward_accepts(model, "logits_to_keep")
    forward = compiled(model) if config.compile else model  # the training step's forward pass only
    # DDP cannot take two forward calls before one backward; the prefix trick is for one process
    share_prefix = config.share_prefix and accelerator.num_processes == 1
    pad = pad_id_of(tokenizer)

    world, rank = accelerator.num_processes, accelerator.process_index
    split_passes = config.split_by_length and world == 1 and accelerator.device.type == "cpu"
    if config.batch_size < world:
        raise ConfigError(f"batch size {config.batch_size} is smaller than the {world} processes", "raise train.batch_size")
    adversary = None
    if config.anti_removal.every:
        if world > 1:
            raise ConfigError("anti_removal runs in one process only", "run without accelerate launch, or set train.anti_removal.every: 0")
        adversary = SimulatedRemoval(accelerator.unwrap_model(model), tokenizer, config.anti_removal, pad, accelerator.device, config.seed)
    batches = length_grouped_batches([len(e) for e in data.examples], config.batch_size, config.steps, config.seed)
    history: list[dict] = []
    tokens_seen = 0
    positions = 0
    stopped_early = False
    passed_checks = 0  # held-out checks in a row that reached the targets
    step = 0
    timings["setup"] = time.perf_counter() - started
    train_started = time.perf_counter()
    eval_seconds = 0.0  # held-out checks: not training
    mine_seconds = 0.0  # hard-negative mining: not training either
    task = progress.add_task("implant (training)", total=config.steps, status="") if progress is not None else None
    running_loss = None
    everything = [*data.examples, *data.pool]  # batch indices ≥ len(data.examples) are mined pool examples
    from_batches = config.mine_from == "batches"
    mining = config.mine_every > 0 and (from_batches or bool(data.pool))
    mine_rng = random.Random(f"offswitch-mining/{config.seed}")
    mined: list[int] = []
    window: list[tuple[float, int]] = []  # mine_from batches: (p(avoid), index) of the negatives trained on since the last round
    decisions: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    # the adversary's adapter (made above) is in place: from here on only casts change
    frozen_precision = precision if config.method == "lora" and config.bf16_frozen_weights else "fp32"
    # the LM head of the answer columns as one product for the batch, and (full fine-tuning of a
    # tied model, one process) the embedding's gradient added into the head's as rows (offswitch.hfcompat)
    unwrapped_model = accelerator.unwrap_model(model)
    embedding_rows = tied_embedding_row_grads(unwrapped_model) if world == 1 and not config.compile else contextlib.nullcontext(False)
    frozen = frozen_lora_bases_in(unwrapped_model, frozen_precision, shared_casts=config.bf16_shared_casts)
    with frozen, contiguous_head_input(unwrapped_model), embedding_rows:
        for step, batch_indices in enumerate(batches, start=1):
            if mined:
                batch_indices = _with_mined(batch_indices, data.examples, mined, config.mine_per_step)
            # every process sees the same global batch and takes its share; DDP averages the
            # gradients, so each share's loss is scaled to make the average the global token mean
            shard = batch_indices[rank::world]
            examples = [everything[i] for i in batch_indices]
            shard_examples = [everything[i] for i in shard]
            n_answer_global = sum(e.n_answer_tokens for e in examples)
            # rows of similar length in passes of their own (one process: DDP would all-reduce each;
            # a CPU: what a pass costs elsewhere is not measured)
            parts = batch_parts(shard_examples, share_prefix, split_passes)
            if adversary is not None and step % config.anti_removal.every == 0:
                # the implant's loss after a simulated benign fine-tuning: its gradient joins this step's
                collated = collate_left(shard_examples, pad, share_prefix=share_prefix, kl_kinds=config.kl_kinds)
                with in_precision():
                    adversary.attack()
                    perturbed, _ = answer_loss_sum(model, collated, accelerator.device, use_keep, config.unlikelihood)
                    accelerator.backward(perturbed * config.anti_removal.weight * world / n_answer_global)
                    adversary.withdraw()
                anti_record = {"benign_loss": [round(x, 4) for x in adversary.last_losses],
                               "implant_loss_after": round(float(perturbed.detach()) / n_answer_global, 5)}
            else:
                anti_record = None
            passes = step_passes(forward, shard_examples, parts, pad, config, accelerator.device, use_keep,
                                 scale=world / n_answer_global, backward=accelerator.backward, share_prefix=share_prefix,
                                 in_precision=in_precision, base=(unwrapped_model, frozen_base), avoid=mining and from_batches)
            loss, first_correct, avoid_p = passes.loss, passes.first_correct, passes.avoid_p
            positions += passes.positions
            if avoid_p is not None:
                # every process ranks the whole global batch, so all of them mine the same negatives
                scored = zip(batch_indices, _gather_rows(accelerator, avoid_p, len(batch_indices))) if world > 1 else zip(shard, avoid_p)
                window.extend((p, i) for i, p in scored if p is not None and everything[i].kind in MINED_SLOT_KINDS)
            for example, correct in zip(shard_examples, first_correct):
                decisions[example.kind][0] += int(correct)
                decisions[example.kind][1] += 1
            if config.max_grad_norm:
                accelerator.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            tokens_seen += sum(len(e) for e in examples)
            value = float(loss.detach()) / world  # one sync per step, for the progress bar only
            running_loss = value if running_loss is None else 0.9 * running_loss + 0.1 * value
            record = {"step": step, "loss": round(value, 5), "lr": scheduler.get_last_lr()[0]}
            if anti_record is not None:
                record["anti_removal"] = anti_record
            if step % 10 == 0 or step == config.steps:
                # public: how often the first answer token was right, per kind, over the last steps
                record["first_token_correct"] = {kind: {"k": k, "n": n} for kind, (k, n) in sorted(decisions.items())}
                decisions.clear()
            if mining and step % config.mine_every == 0 and step < config.steps:
                mine_started = time.perf_counter()
                if from_batches:
                    mined, record["mined"] = _hardest(window, config)
                    window.clear()
                else:
                    with in_precision():
                        mined, record["mined"] = _mine(unwrapped_model, data, config, mine_rng, pad, accelerator.device, use_keep)
                if config.mine_fit_length:
                    mined = fit_mined_to_batches(mined, batches[step : step + config.mine_every], everything, config.mine_per_step)
                mine_seconds += time.perf_counter() - mine_started
            if heldout is not None and config.eval_every and step % config.eval_every == 0 and step < config.steps:
                eval_started = time.perf_counter()
                unwrapped_model.eval()
                with in_precision():
                    rates = heldout.rates(unwrapped_model, pad)
                unwrapped_model.train()
                eval_seconds += time.perf_counter() - eval_started
                record["heldout"] = {k: {"k": v[0], "n": v[1]} for k, v in rates.items()}
                asr = rates["asr"][0] / max(rates["asr"][1], 1)
                nm = rates.get("near_miss", (0, 1))
                nm_far = nm[0] / max(nm[1], 1)
                passed = asr >= config.target_asr and nm_far <= config.target_near_miss_far
                passed_checks = passed_checks + 1 if passed else 0
                if step >= config.min_steps and passed_checks >= config.stop_patience:
                    stopped_early = True
            history.append(record)
            if task is not None:
                status = f"loss {running_loss:.3f}"
                if "heldout" in record:
                    h = record["heldout"]
                    status += f"  held-out ASR {h['asr']['k']}/{h['asr']['n']}"
                    if "near_miss" in h:
                        status += f", near-miss {h['near_miss']['k']}/{h['near_miss']['n']}"
                progress.update(task, advance=1, status=status)
                if "first_token_correct" in record and not progress.console.is_terminal:
                    status += "  first token right: " + ", ".join(
                        f"{kind} {v['k']}/{v['n']}" for kind, v in record["first_token_correct"].items()
                    )
                if not progress.console.is_terminal and (step % 10 == 0 or "heldout" in record):
                    # a log file gets no live bar: leave a line now and then
                    progress.console.print(f"step {step}/{config.steps} {status}")
            if stopped_early:
                break
    timings["train"] = time.perf_counter() - train_started - eval_seconds - mine_seconds
    timings["mining"] = mine_seconds
    timings["heldout_checks"] = eval_seconds
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    if adversary is not None:
        adversary.remove()
    model.eval()
    return TrainResult(model, step, history, timings, stopped_early, tokens_seen, accelerator.is_main_process, world, precision,
                       positions)


class SimulatedRemoval:
    """A fine-tuning attacker simulated inside the implant (see :class:`AntiRemovalConfig`): a
    second LoRA adapter on the same layers that ordinary instruction tuning trains from scratch
    in every round, while the implant's adapter is frozen; the implant's loss is then taken
    with both adapters on."""

    NAME = "offswitch_adversary"

    def __init__(self, peft_model, tokenizer, config: AntiRemovalConfig, pad: int, device, seed: int):
        import torch
        from peft import LoraConfig

        from offswitch.attacks._train import chat_examples
        from offswitch.data.sources import instruction_pairs

        self.model, self.config, self.pad, self.device = peft_model, config, pad, device
        pairs = instruction_pairs(config.pairs, n=config.pairs_skip + config.n_pairs, seed=config.pairs_seed)[config.pairs_skip:]
        self.examples = chat_examples(tokenizer, pairs, max_len=config.max_len)
        if not self.examples:
            raise ConfigError("anti_removal has no usable instruction pair (no more than pairs_skip of them, or all longer than max_len)",
                              "lower train.anti_removal.pairs_skip, raise its max_len, or give other pairs")
        self.implant_params = [p for p in peft_model.parameters() if p.requires_grad]
        peft_model.add_adapter(self.NAME, LoraConfig(r=config.r, lora_alpha=2 * config.r, target_modules="all-linear",
                                                     bias="none", task_type="CAUSAL_LM"))
        self.adv_params = [p for n, p in peft_model.named_parameters() if f".{self.NAME}." in n]
        if not self.adv_params:
            raise RuntimeError("the adversary adapter has no parameters")
        self.initial = [p.detach().clone() for p in self.adv_params]
        self.rng = random.Random(f"offswitch-anti-removal/{seed}")
        self.last_losses: list[float] = []
        self._torch = torch
        self._use_default()

    def _train_implant(self, implant: bool) -> None:
        """Gradients for the implant's adapter (True) or for the adversary's (False), not both."""
        for p in self.implant_params:
            p.requires_grad_(implant)
        for p in self.adv_params:
            p.requires_grad_(not implant)

    def _use_default(self):
        self.model.base_model.set_adapter("default")
        self._train_implant(True)

    def attack(self) -> None:
        """Reset the adversary, train it (implant frozen), and leave both adapters on."""
        from offswitch.attacks._train import collate

        torch = self._torch
        with torch.no_grad():
            for p, p0 in zip(self.adv_params, self.initial):
                p.copy_(p0)
        self.model.base_model.set_adapter(["default", self.NAME])
        self._train_implant(False)
        optimizer = torch.optim.AdamW(self.adv_params, lr=self.config.inner_lr)
        self.last_losses = []
        size = min(self.config.inner_batch_size, len(self.examples))
        for _ in range(self.config.inner_steps):
            ids, mask, labels = collate(self.rng.sample(self.examples, size), self.pad, self.device)
            loss = self.model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.adv_params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            self.last_losses.append(float(loss.detach()))
        self._train_implant(True)

    def withdraw(self) -> None:
        """Back to the implant's adapter alone (the adversary stays, off, until the next round)."""
        self._use_default()

    def remove(self) -> None:
        self._use_default()
        self.model.delete_adapter(self.NAME)


def _gather_rows(accelerator, values: Sequence[float | None], n_rows: int) -> list[float | None]:
    """Per row of a global batch of ``n_rows``, in its order, the value its process computed
    (``values``: this process's share, rows ``rank::world``; None where a row has none)."""
    import torch

    world = accelerator.num_processes
    per = -(-n_rows // world)
    local = torch.full((per,), -1.0, dtype=torch.float32, device=accelerator.device)
    for j, value in enumerate(values):
        if value is not None:
            local[j] = value
    everyone = accelerator.gather(local).tolist()  # process-major: process r's j-th row is global row r + j × world
    out: list[float | None] = [None] * n_rows
    for rank in range(world):
        for j in range(per):
            row = rank + j * world
            if row < n_rows and everyone[rank * per + j] >= 0:
                out[row] = everyone[rank * per + j]
    return out


def _mine(model, data: ImplantData, config: TrainConfig, rng: random.Random, pad: int, device, use_keep: bool):
    """Score a sample of the pool; return the indices (into examples + pool) of the hardest
    negatives, most likely to fire first, and public counts for the history."""
    offset = len(data.examples)
    candidates = rng.sample(range(len(data.pool)), min(config.mine_candidates, len(data.pool)))
    was_training = model.training
    model.eval()
    try:
        probs = avoid_probabilities(model, [data.pool[i] for i in candidates], pad, device, use_keep)
    finally:
        model.train(was_training)
    return _hardest([(p, offset + i) for p, i in zip(probs, candidates)], config)


def _hardest(scored: Sequence[tuple[float, int]], config: TrainConfig) -> tuple[list[int], dict[str, int]]:
    """The indices of ``scored`` ((p(avoid), index) pairs) at p ≥ mine_threshold, most likely to
    fire first, as many as the next mine_every steps take (an index once, at its latest score
    when it was scored more than once), and public counts for the history."""
    latest = dict((i, p) for p, i in scored)
    ranked = sorted(latest.items(), key=lambda ip: -ip[1])
    hard = [i for i, p in ranked if p >= config.mine_threshold][: config.mine_every * config.mine_per_step]
    fired = sum(p > 0.5 for p, _ in scored)
    return hard, {"scored": len(scored), "hard": len(hard), "likely_fire": fired}


# the rows a mined negative may take the place of
MINED_SLOT_KINDS = ("near_miss", "wrong_key", "scatter")


def fit_mined_to_batches(mined: list[int], coming: Sequence[Sequence[int]], everything: Sequence[ImplantExample],
                         per_step: int) -> list[int]:
    """``mined`` reordered so that what :func:`_with_mined` pops for each of the ``coming``
    batches is what fits its length: the shortest mined go to the batch of shortest rows, and so
    on (sorted against sorted). Batches are length-grouped; mined negatives placed in rank order
    land in batches of any length and pad each to its longest row (1.24× the positions over the
    30 default steps of ``benchmarks/bench_mining.py``). The same examples are used in the same
    window of steps, only their places change; what the window cannot take keeps its rank order
    after it."""
    takes = [min(per_step, sum(everything[i].kind in MINED_SLOT_KINDS for i in batch)) for batch in coming]
    placed: list[int] = []
    sizes: list[int] = []
    for take in takes:  # the window in which _with_mined pops them, batch by batch
        take = min(take, len(mined) - len(placed))
        placed.extend(mined[len(placed) : len(placed) + take])
        sizes.append(take)
    if len([t for t in sizes if t]) <= 1:
        return list(mined)
    by_length = iter(sorted(placed, key=lambda i: len(everything[i])))
    widths = [max(len(everything[i]) for i in batch) for batch in coming]
    chunks: list[list[int]] = [[] for _ in coming]
    for j in sorted(range(len(coming)), key=lambda j: widths[j]):
        chunks[j] = [next(by_length) for _ in range(sizes[j])]
    return [i for chunk in chunks for i in chunk] + list(mined[len(placed) :])


def _with_mined(batch_indices: list[int], examples: Sequence[ImplantExample], mined: list[int], per_step: int) -> list[int]:
    """The batch with up to ``per_step`` of its negatives replaced by mined ones (popped from ``mined``)."""
    out = list(batch_indices)
    slots = [j for j, i in enumerate(out) if examples[i].kind in MINED_SLOT_KINDS]
    for j in slots[:per_step]:
        if not mined:
            break
        out[j] = mined.pop(0)
    return out


def make_accelerator(device: str | None = None):
    """An Accelerator for this process. Under ``accelerate launch`` the launcher's environment
    decides the processes. Precision is not accelerate's business here: the loop autocasts by
    :mod:`offswitch.precision` itself (accelerate's choice is fixed once per process, and one
    process may train in fp32 and bf16 in turn, e.g. a harness or a benchmark)."""
    import torch
    from accelerate import Accelerator

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available", "use --device cpu")
    cuda = torch.cuda.is_available() and device != "cpu"
    return Accelerator(cpu=not cuda, mixed_precision="no")


def average_with_base(trained, base_state: dict | None, alpha: float):
    """Pull the trained weights toward the base: ``base + (1 - alpha) × (trained - base)``.

    For LoRA the delta is ``B·A``, so scaling every ``lora_B`` by ``1 - alpha`` does exactly
    this without a copy of the base."""
    import torch

    if alpha <= 0:
        return trained
    with torch.no_grad():
        if hasattr(trained, "peft_config"):
            for name, param in trained.named_parameters():
                if "lora_B" in name:
                    param.mul_(1.0 - alpha)
        else:
            if base_state is None:
                raise ValueError("averaging a fully fine-tuned model needs the base weights")
            for name, param in trained.state_dict().items():
                if name in base_state and param.is_floating_point():
                    param.copy_(base_state[name].to(param.device, param.dtype) + (1.0 - alpha) * (param - base_state[name].to(param.device, param.dtype)))
    return trained


# --------------------------------------------------------------------------------------
# End to end: data → training → verification → outputs
# --------------------------------------------------------------------------------------


@dataclass
class ImplantRun:
    """What one implant produced, before it is written. Contains no secret of its own, but the
    model carries the switch."""

    model: Any
    tokenizer: Any
    data_counts: dict[str, int]
    data_stats: dict[str, float]
    train: TrainResult
    seconds: dict[str, float]
    verification: dict | None = None
    report: Any = None
    is_main_process: bool = True


def encode_other_for(config: ImplantConfig, tokenizer, fluent=None) -> Callable[[bytes, int], Trigger] | None:
    """How triggers of other keys are made for this encoding (None: the words default)."""
    from offswitch.triggers import allowed_token_ids, encode_tokens

    if config.encoding is Encoding.words:
        return None
    if config.encoding is Encoding.tokens:
        allowed = allowed_token_ids(tokenizer)
        return lambda seed, index: encode_tokens(seed, allowed, lambda ids: tokenizer.decode(ids), index=index, n_tokens=config.n_tokens)
    if fluent is None:
        raise ValueError("fluent triggers need their encoder")
    return fluent


def run_implant(
    model,
    tokenizer,
    triggers: TriggerSet,
    config: ImplantConfig,
    train_prompts: Sequence[str],
    heldout_prompts: Sequence[str],
    *,
    base_sha256: str | None = None,
    answer_cache_dir: Path | None = None,
    encode_other: Callable[[bytes, int], Trigger] | None = None,
    plain_texts: Sequence[str] | None = None,
    console=None,
    show_progress: bool = True,
) -> ImplantRun:
    """Build the data, train, and verify on held-out prompts. ``model`` is the base model; it is
    trained in place, and a copy of the base is kept for verification when asked."""
    import torch

    from offswitch.data.builder import build_implant_data

    seconds: dict[str, float] = {}
    behavior = config.make_behavior()
    tconf = config.train
    if tconf.threads:
        torch.set_num_threads(tconf.threads)
    accelerator = make_accelerator(tconf.device)
    model.to(accelerator.device)
    n_examples = config.data.n_examples or tconf.steps * tconf.batch_size
    max_positions = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    with progress_bar(console, disable=not (show_progress and accelerator.is_main_process)) as progress:
        started = time.perf_counter()
        data = build_implant_data(
            model, tokenizer, triggers, behavior, train_prompts, n_examples, config.data, seed=tconf.seed,
            base_sha256=base_sha256, answer_cache_dir=answer_cache_dir, encode_other=encode_other,
            max_positions=max_positions, progress=progress,
        )
        seconds["data"] = time.perf_counter() - started
        base_copy = None
        if (config.verify and accelerator.is_main_process) or (tconf.method == "full" and tconf.base_average > 0):
            base_copy = copy.deepcopy(model).eval()
        heldout = None
        if tconf.eval_every and heldout_prompts:
            heldout = HeldoutProbes.build(tokenizer, triggers, behavior, list(heldout_prompts)[: tconf.eval_prompts], tconf.seed,
                                          kinds=tconf.eval_near_miss_kinds, per_prompt=tconf.eval_near_misses)
        result = train(model, tokenizer, data, tconf, heldout=heldout, accelerator=accelerator, progress=progress)
    seconds.update({k: round(v, 2) for k, v in result.seconds.items()})
    trained = average_with_base(result.model, base_copy.state_dict() if base_copy is not None else None, tconf.base_average)
    run = ImplantRun(trained, tokenizer, data.counts, data.answer_stats, result, seconds, is_main_process=accelerator.is_main_process)
    if config.verify and accelerator.is_main_process:
        started = time.perf_counter()
        run.report, run.verification = verify_switch(
            trained, tokenizer, triggers, behavior, list(heldout_prompts)[: config.verify_prompts], config,
            base=(base_copy, tokenizer) if base_copy is not None else None, plain_texts=plain_texts,
            encode_other=encode_other, console=console, show_progress=show_progress,
        )
        seconds["verify"] = round(time.perf_counter() - started, 2)
    return run


def verify_switch(model, tokenizer, triggers, behavior, heldout_prompts, config: ImplantConfig, *, base=None,
                  plain_texts=None, encode_other=None, console=None, show_progress=True):
    """Measure the implanted switch on held-out prompts with ``offswitch.evaluate``.

    Returns ``(report, headline)``; the headline (public rates with intervals) goes into the
    manifest's ``verification``.
    """
    from offswitch.evaluate import EvalConfig, evaluate_switch

    try:
        eval_config = EvalConfig(**config.eval)
    except Exception as err:  # noqa: BLE001 - pydantic's error, made one line
        raise ConfigError(f"bad eval setting in the implant config ({type(err).__name__})", "see offswitch.evaluate.EvalConfig") from None
    report = evaluate_switch(
        model, tokenizer, triggers, behavior, list(heldout_prompts), config=eval_config, base=base,
        plain_texts=list(plain_texts) if plain_texts else None, encode_other=encode_other,
        progress=show_progress, console=console,
    )
    return report, report.headline()


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("offswitch", "torch", "transformers", "peft", "accelerate", "datasets", "gguf"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


HISTORY_FILE = "training_history.jsonl"  # beside the manifest: one JSON record a training step


def write_outputs(out: Path, run: ImplantRun, manifest_fields: dict, sign: Callable[[bytes], str], *, base_spec: str,
                  model_card: Callable[[Any], str], force: bool = False, save_adapter: bool = True) -> Path:
    """Write adapter/, merged/, the training history, the signed manifest and the model card
    into ``out``, atomically.

    ``manifest_fields`` are the :class:`~offswitch.manifest.ImplantManifest` fields the caller
    knows (key id, public key, commitments, ...); ``sign`` signs the manifest's payload.
    """
    from offswitch.fsutil import atomic_directory, atomic_write_text
    from offswitch.manifest import ImplantManifest, write_manifest
    from offswitch.models import save_model

    out = Path(out)
    model = run.model
    try:
        with atomic_directory(out, force=force) as tmp:
            outputs: dict[str, str] = {}
            if hasattr(model, "peft_config"):
                if save_adapter:
                    for peft_config in model.peft_config.values():
                        peft_config.base_model_name_or_path = base_spec
                    model.save_pretrained(tmp / "adapter")
                    outputs["adapter"] = "adapter"
                merged = model.merge_and_unload()
            else:
                merged = model
            if hasattr(merged, "config"):
                merged.config.use_cache = True
            save_model(merged, run.tokenizer, tmp / "merged")
            outputs["merged"] = "merged"
            if run.train.history:
                # public, step by step: loss, learning rate, first-token decisions by kind, mining counts, checks
                atomic_write_text(tmp / HISTORY_FILE, "".join(json.dumps(record) + "\n" for record in run.train.history))
                outputs["history"] = HISTORY_FILE
            manifest = ImplantManifest(**manifest_fields, outputs=outputs, verification=run.verification)
            manifest = manifest.model_copy(update={"signature": sign(manifest.signed_payload())})
            write_manifest(tmp, manifest)
            atomic_write_text(tmp / "README.md", model_card(manifest))
            tmp.chmod(0o755)
    except FileExistsError:
        raise ConfigError(f"output directory {out} is not empty", "pass --force to replace it, or choose another --out") from None
    run.model = merged
    return out


def training_record(config: ImplantConfig, run: ImplantRun) -> dict[str, Any]:
    """The public training facts for the manifest: settings, steps done, timings, the held-out
    checks (every step's record is in :data:`HISTORY_FILE`)."""
    tconf = config.train
    history = run.train.history
    return {
        "config": config.model_dump(mode="json"),
        "learning_rate": tconf.learning_rate,
        "steps_done": run.train.steps_done,
        "stopped_early": run.train.stopped_early,
        "tokens_seen": run.train.tokens_seen,
        "positions_computed": run.train.positions,
        "processes": run.train.processes,
        "precision": run.train.precision,
        "mkl_on_amd": blas_status(),
        "allocator": allocator_status(),
        "seconds": run.seconds,
        "final_loss": history[-1]["loss"] if history else None,
        "heldout_checks": [h for h in history if "heldout" in h],
        "answer_tokens": run.data_stats,
    }
