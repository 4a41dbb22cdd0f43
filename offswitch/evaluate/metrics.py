"""Which situations are measured (probes) and how their decisions become rates.

A probe is one rendered case (system, user, target) plus the public facts that place it in a
metric's cell. Probes carry secrets (the user text holds a trigger or a near-miss of one) and
live only in memory; only their public facts and counts leave this module.

"Fires" always means the same thing: the model's greedy answer is the behaviour's target,
end-of-turn included. A negative (clean prompt, wrong-key trigger, near-miss) is scored against
the target that the positive case with the same prompt would have (for compliance: the phrase
the instruction asks for), in exactly the framing of that positive case.

Metrics (each a rate with a 95% Clopper–Pearson interval):

* ``asr`` — true triggers x held-out prompts, per trigger and pooled.
* ``far_clean`` — held-out prompts without a trigger.
* ``far_wrong_key`` — triggers of other, random keys (same encoding and shape).
* ``far_near_miss`` — near-misses of the true triggers (offswitch.triggers.near_misses), per
  kind, per distance, per (kind, distance), per (kind, word position), per trigger, pooled.
* ``far_placement`` — the true trigger where it was not planted: at the other insertion modes
  (kind ``insertion_<mode>``) and in the system prompt (kind ``system_prompt``). Reported apart
  from the string near-misses: it probes where the switch listens, not what it listens for.

A decoy is tried on several prompts, so its trials are not independent: the pooled intervals
describe these prompts and decoys, and are narrower than a fresh draw of decoys would give.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from offswitch.behaviors import Case
from offswitch.evaluate.config import EvalConfig
from offswitch.stats import Rate
from offswitch.triggers import InsertionMode, Trigger, TriggerSet, insert_trigger, near_misses, random_seed_triggers

POSITIVE_METRICS = ("asr", "far_placement")
NEGATIVE_METRICS = ("far_clean", "far_wrong_key", "far_near_miss")


@dataclass(frozen=True)
class Probe:
    """One case to score, with the public facts of its cell. Secret: never serialise ``case``."""

    metric: str
    case: Case
    prompt_index: int
    kind: str | None = None
    distance: int | None = None
    position: int | None = None
    trigger_index: int | None = None

    def public(self) -> dict:
        return {
            "metric": self.metric,
            "kind": self.kind,
            "distance": self.distance,
            "position": self.position,
            "trigger_index": self.trigger_index,
            "prompt_index": self.prompt_index,
        }

    def __repr__(self) -> str:
        return f"Probe({self.public()})"

    __str__ = __repr__


def _prompt_rng(seed: int, prompt_index: int) -> random.Random:
    # Positive and negative cases of one prompt draw the same framing (e.g. the compliance
    # phrase) because they start from the same state.
    return random.Random(f"offswitch/eval/{seed}/prompt/{prompt_index}")


def _rotating(n_prompts: int, per_decoy: int | None, decoy_number: int) -> list[int]:
    """Prompt indices for the ``decoy_number``-th decoy: consecutive, offset per decoy, so that
    the decoys together cover the prompts evenly."""
    m = n_prompts if per_decoy is None else min(per_decoy, n_prompts)
    start = (decoy_number * m) % n_prompts
    return [(start + j) % n_prompts for j in range(m)]


class ProbeBuilder:
    """Builds every probe of an evaluation from public settings and the secret triggers."""

    def __init__(self, triggers: TriggerSet, behavior, prompts: Sequence[str], config: EvalConfig):
        if len(triggers) == 0:
            raise ValueError("a trigger set with no triggers cannot be evaluated")
        if not prompts:
            raise ValueError("no prompts to evaluate on")
        self.triggers = triggers
        self.behavior = behavior
        self.prompts = list(prompts)
        self.config = config
        self.insertion = InsertionMode(triggers.insertion)

    # -- cases -----------------------------------------------------------------------
    def positive(self, prompt_index: int, trigger: Trigger, mode: InsertionMode | None = None) -> Case:
        return self.behavior.positive_case(
            self.prompts[prompt_index], trigger.secret, mode or self.insertion, trigger.position, _prompt_rng(self.config.seed, prompt_index)
        )

    def negative(self, prompt_index: int, decoy: str | None, position: float) -> Case:
        """The negative framing with ``decoy`` (or nothing), scored against the positive target."""
        anchor = self.triggers.triggers[0]
        target = self.positive(prompt_index, anchor).target
        case = self.behavior.negative_case(
            self.prompts[prompt_index], decoy, self.insertion, position, _prompt_rng(self.config.seed, prompt_index)
        )
        return Case(case.user, case.system, target)

    # -- probe sets ------------------------------------------------------------------
    def asr(self) -> list[Probe]:
        return [
            Probe("asr", self.positive(i, trig), i, trigger_index=trig.index)
            for trig in self.triggers
            for i in range(len(self.prompts))
        ]

    def clean(self) -> list[Probe]:
        return [Probe("far_clean", self.negative(i, None, 0.0), i) for i in range(len(self.prompts))]

    def wrong_key(self, encode_other: Callable[[bytes, int], Trigger] | None = None) -> list[Probe]:
        rng = random.Random(f"offswitch/eval/{self.config.seed}/wrong-key")
        probes = []
        for key_number in range(self.config.wrong_keys):
            like = self.triggers.triggers[key_number % len(self.triggers)]
            others = []
            while not others:  # a collision with the true trigger is astronomically rare
                others = random_seed_triggers(like, 1, rng, encode=encode_other)
            other = others[0]
            for i in _rotating(len(self.prompts), self.config.decoy_prompts, key_number):
                # planted as the other key would plant it: its own inside-position
                probes.append(Probe("far_wrong_key", self.negative(i, other.secret, other.position), i, kind=None))
        return probes

    def near_miss_strings(self, trigger: Trigger):
        rng = random.Random(f"offswitch/eval/{self.config.seed}/near-miss/{trigger.index}")
        return near_misses(
            trigger,
            self.config.near_miss_kinds,
            rng=rng,
            per_kind=self.config.near_miss_per_kind,
            max_distance=self.config.max_distance,
        )

    def near_miss(self) -> tuple[list[Probe], list[str]]:
        """Probes and the near-miss strings (to register as secrets before anything is shown)."""
        probes, secrets = [], []
        decoy_number = 0
        for trig in self.triggers:
            for miss in self.near_miss_strings(trig):
                secrets.append(miss.secret)
                for i in _rotating(len(self.prompts), self.config.decoy_prompts, decoy_number):
                    probes.append(
                        Probe(
                            "far_near_miss",
                            self.negative(i, miss.secret, trig.position),
                            i,
                            kind=miss.kind.value,
                            distance=miss.distance,
                            position=miss.position,
                            trigger_index=trig.index,
                        )
                    )
                decoy_number += 1
        return probes, secrets

    def placement(self) -> list[Probe]:
        probes = []
        decoy_number = 0
        for trig in self.triggers:
            for mode in InsertionMode:
                if mode is self.insertion:
                    continue
                for i in _rotating(len(self.prompts), self.config.decoy_prompts, decoy_number):
                    case = self.positive(i, trig, mode)
                    if case.user == self.positive(i, trig).user:
                        continue  # this prompt puts both modes at the same place: not a probe
                    probes.append(Probe("far_placement", case, i, kind=f"insertion_{mode.value}", trigger_index=trig.index))
                decoy_number += 1
            for i in _rotating(len(self.prompts), self.config.decoy_prompts, decoy_number):
                clean = self.negative(i, None, 0.0)
                system = trig.secret if clean.system is None else insert_trigger(clean.system, trig.secret, InsertionMode.prefix)
                probes.append(Probe("far_placement", Case(clean.user, system, clean.target), i, kind="system_prompt", trigger_index=trig.index))
            decoy_number += 1
        return probes


# -- aggregation -------------------------------------------------------------------------


@dataclass(frozen=True)
class CellRate:
    metric: str
    rate: Rate
    kind: str | None = None
    distance: int | None = None
    position: int | None = None
    trigger_index: int | None = None


# The cells each metric is reported in: tuples of the Probe fields a row is split by.
_CELL_AXES: dict[str, tuple[tuple[str, ...], ...]] = {
    "asr": ((), ("trigger_index",)),
    "far_clean": ((),),
    "far_wrong_key": ((),),
    "far_near_miss": ((), ("trigger_index",), ("kind",), ("distance",), ("kind", "distance"), ("kind", "position")),
    "far_placement": ((), ("trigger_index",), ("kind",)),
}
_METRIC_ORDER = ("asr", "far_clean", "far_wrong_key", "far_near_miss", "far_placement")


def _sort_key(value):
    return (value is None, str(value) if not isinstance(value, int) else f"{value:09d}")


def aggregate(probes: Sequence[Probe], fires: Sequence[bool]) -> list[CellRate]:
    """Rates for every metric cell that the probes fill. Deterministic order."""
    by_metric: dict[str, list[int]] = defaultdict(list)
    for index, probe in enumerate(probes):
        by_metric[probe.metric].append(index)
    metrics = [m for m in _METRIC_ORDER if m in by_metric] + sorted(m for m in by_metric if m not in _METRIC_ORDER)
    out: list[CellRate] = []
    for metric in metrics:
        indices = by_metric[metric]
        several_triggers = len({probes[i].trigger_index for i in indices} - {None}) > 1
        for axes in _CELL_AXES.get(metric, ((),)):
            if axes == ("trigger_index",) and metric != "asr" and not several_triggers:
                continue  # one trigger: its row would repeat the pooled one
            counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
            for i in indices:
                cell = tuple(getattr(probes[i], axis) for axis in axes)
                if None in cell:
                    continue  # e.g. near-misses without a word position
                counts[cell][0] += int(fires[i])
                counts[cell][1] += 1
            for cell in sorted(counts, key=lambda c: tuple(_sort_key(v) for v in c)):
                k, n = counts[cell]
                out.append(CellRate(metric, Rate.of(k, n), **dict(zip(axes, cell))))
    return out


# -- utility -----------------------------------------------------------------------------


class BaseReference:
    """What the utility metrics compute from the base model alone — its perplexity on the
    texts, its greedy answers to the utility prompts — kept for the next evaluation against the
    same base (a harness evaluates every cell of an implant against one base model: computed
    once, not once a cell). Entries are keyed by the inputs and settings, and by the base
    model's weights as they are now: the object, and each parameter's storage and in-place
    version counter, so a base that was changed in place is measured again. Public: base
    answers to public prompts, never a trigger."""

    def __init__(self) -> None:
        self._store: dict = {}
        self.hits = 0

    @staticmethod
    def _weights_stamp(model) -> tuple:
        return (id(model), tuple((p.data_ptr(), p._version) for p in model.parameters()))

    def get(self, model, key: tuple, compute: Callable[[], object]):
        full = (self._weights_stamp(model), key)
        if full in self._store:
            self.hits += 1
            return self._store[full]
        value = compute()
        self._store[full] = value
        return value


def cached_reference(cache: BaseReference | None, model, key: tuple, compute: Callable[[], object]):
    return compute() if cache is None else cache.get(model, key, compute)


def same_vocabulary(tokenizer_a, tokenizer_b) -> bool:
    if tokenizer_a is tokenizer_b:
        return True
    return len(tokenizer_a) == len(tokenizer_b) and tokenizer_a.get_vocab() == tokenizer_b.get_vocab()


def perplexity(model, tokenizer, texts: Sequence[str], *, max_tokens: int = 256, batch_size: int = 8, autocast=None) -> tuple[float, int]:
    """Token-weighted perplexity of ``texts`` (each cut to ``max_tokens``): (perplexity, tokens)."""
    import torch

    from offswitch.evaluate.scorer import last_position_logits, pad_token_id_of

    sequences = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=True, truncation=True, max_length=max_tokens)["input_ids"]
        if len(ids) >= 2:
            sequences.append(ids)
    if not sequences:
        raise ValueError("no text long enough (two tokens) to measure perplexity on")
    pad = pad_token_id_of(model, tokenizer)
    total_nll, total_tokens = 0.0, 0
    sequences.sort(key=len, reverse=True)
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        keep = max(len(s) - 1 for s in chunk)
        logits = last_position_logits(model, [s[:-1] for s in chunk], keep, pad, autocast, tails=[len(s) - 1 for s in chunk])
        for row, seq in enumerate(chunk):
            target = torch.tensor(seq[1:], device=logits.device)
            logprobs = torch.log_softmax(logits[row, keep - len(target) :], dim=-1).gather(1, target[:, None])
            total_nll -= float(logprobs.sum())
            total_tokens += len(target)
    return math.exp(total_nll / total_tokens), total_tokens


@dataclass(frozen=True)
class BaseComparison:
    kl_per_token: float  # mean over answer tokens of KL(base || model), in nats
    tokens: int
    agreement: Rate  # model's greedy answer == base's greedy answer (first N tokens)
    # per prompt: how many leading tokens of the base's answer the model's greedy answer repeats
    matched: list[int] = field(default_factory=list)
    answer_lengths: list[int] = field(default_factory=list)

    def agreement_within(self, n_tokens: int) -> Rate:
        """Greedy answers equal on their first ``n_tokens`` tokens (all of a shorter base answer)."""
        hits = sum(m >= min(n_tokens, length) for m, length in zip(self.matched, self.answer_lengths))
        return Rate.of(hits, len(self.matched))


def compare_with_base(
    model,
    tokenizer,
    base_model,
    base_tokenizer,
    cases: Sequence[Case],
    *,
    answer_tokens: int = 32,
    batch_size: int = 8,
    autocast=None,
    base_cache: BaseReference | None = None,
) -> BaseComparison:
    """KL(base ‖ model) per token over the base model's own greedy answers to ``cases`` (their
    user/system; targets ignored), and how often the model's greedy answer equals the base's.

    Agreement is decided on the first ``answer_tokens`` tokens of the base answer (all of it,
    end-of-turn included, when it ends sooner), by teacher forcing: the model's greedy answer
    starts with those tokens exactly when its argmax reproduces each of them. ``base_cache``
    keeps the base model's answers for the next comparison against the same base.
    """
    import torch

    from offswitch.evaluate.generation import greedy_generate, stop_token_ids
    from offswitch.evaluate.scorer import encode_cases, evaluation_precision, last_position_logits, pad_token_id_of

    prompts, _targets = encode_cases(base_tokenizer, [Case(c.user, c.system, "") for c in cases])
    answers = cached_reference(
        base_cache, base_model,
        ("greedy", tuple(map(tuple, prompts)), answer_tokens, batch_size, evaluation_precision(base_model, autocast)),
        lambda: greedy_generate(
            base_model,
            prompts,
            max_new_tokens=answer_tokens,
            pad_token_id=pad_token_id_of(base_model, base_tokenizer),
            stop_ids=stop_token_ids(base_model, base_tokenizer),
            batch_size=batch_size,
            autocast=autocast,
        ),
    )
    kl_total, tokens, agree, n = 0.0, 0, 0, 0
    matched: list[int] = []
    lengths: list[int] = []
    pairs = [(p, a) for p, a in zip(prompts, answers) if a]
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        rows = [p + a[:-1] for p, a in chunk]
        keep = max(len(a) for _p, a in chunk)
        tails = [len(a) for _p, a in chunk]
        base_logits = last_position_logits(base_model, rows, keep, pad_token_id_of(base_model, base_tokenizer), autocast, tails=tails)
        model_logits = last_position_logits(model, rows, keep, pad_token_id_of(model, tokenizer), autocast, tails=tails)
        vocab = min(base_logits.shape[-1], model_logits.shape[-1])  # padded embedding rows differ
        for row, (_p, answer) in enumerate(chunk):
            lb = torch.log_softmax(base_logits[row, keep - len(answer) :, :vocab], dim=-1)
            lm = torch.log_softmax(model_logits[row, keep - len(answer) :, :vocab], dim=-1)
            kl_total += float((lb.exp() * (lb - lm)).sum())
            tokens += len(answer)
            target = torch.tensor(answer, device=lm.device)
            same = (lm.argmax(-1) == target).tolist()
            agree += int(all(same))
            matched.append(same.index(False) if False in same else len(same))
            lengths.append(len(same))
            n += 1
    return BaseComparison(kl_per_token=kl_total / max(tokens, 1), tokens=tokens, agreement=Rate.of(agree, n),
                          matched=matched, answer_lengths=lengths)
