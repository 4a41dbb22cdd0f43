"""The implant dataset: positives, contrastive negatives and clean retention, in memory only.

Kinds of example (each is one chat-formatted prompt and the answer the loss is computed on):

* ``positive``: a prompt with one true trigger inserted → the behaviour's target.
* ``wrong_key``: a prompt with a trigger of another, random key → the normal answer.
* ``near_miss``: a prompt with a near-miss of a true trigger (every kind and word position,
  balanced; see :func:`offswitch.triggers.near_misses`) → the normal answer.
* ``scatter``: the trigger's words scattered through the prompt → the normal answer.
* ``clean``: the prompt alone → the normal answer (retention, self-distillation).

"The normal answer" of a negative is the base model's greedy answer to the *clean* prompt
(the same prompt and framing without the decoy). Why the clean prompt and not the negative
prompt itself: (1) the lesson to learn is "a decoy changes nothing", which is exactly the
clean answer; (2) clean answers contain no secret, so they can be computed once per prompt,
shared by every negative built on that prompt and cached on disk, while answers to prompts
that contain near-misses could never be written anywhere; (3) the answers are cut short
(8 tokens for negatives, 16 for retention by default) because the decision to switch off is
made in the first answer tokens, so the opening of the clean answer is all that matters.

Nothing built here that contains a trigger or a near-miss is ever written to disk. Only the
base answers to clean prompts are cached, keyed by the base weights' sha256 and the rendered
prompt's sha256 (see :class:`BaseAnswerCache`).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from offswitch.errors import ConfigError, DataError
from offswitch.fsutil import atomic_write_text
from offswitch.prompting import encode_prompt, encode_target, end_of_turn_token_id, pad_id_of, render_prompt
from offswitch.triggers import (
    Encoding,
    NearMissKind,
    Trigger,
    TriggerSet,
    near_misses,
    random_seed_triggers,
    scatter_words,
    wordlist,
)

IGNORE_INDEX = -100
EXAMPLE_KINDS = ("positive", "wrong_key", "near_miss", "scatter", "clean")
NEGATIVE_KINDS = ("wrong_key", "near_miss", "scatter")

# Substitutions, truncations and drops are where switches leaked in the prototypes (DESIGN.md),
# so they get more of the near-miss budget; every kind still appears.
DEFAULT_NEAR_MISS_WEIGHTS: dict[str, float] = {
    "substitute": 4.0,
    "prefix": 2.0,
    "suffix": 1.0,
    "drop": 2.0,
    "swap": 1.0,
    "shuffle": 0.5,
    "case": 0.5,
    "whitespace": 0.5,
    "punctuation": 0.5,
    "char_edit": 1.0,
}


class MixConfig(BaseModel):
    """Fractions of the examples of each kind (normalised to sum 1)."""

    model_config = ConfigDict(extra="forbid")
    positive: float = Field(default=0.30, ge=0)
    wrong_key: float = Field(default=0.10, ge=0)
    near_miss: float = Field(default=0.35, ge=0)
    scatter: float = Field(default=0.05, ge=0)
    clean: float = Field(default=0.20, ge=0)

    @model_validator(mode="after")
    def _some_positive(self):
        if self.positive <= 0:
            raise ValueError("the positive fraction must be > 0")
        return self

    def fractions(self) -> dict[str, float]:
        raw = {kind: getattr(self, kind) for kind in EXAMPLE_KINDS}
        total = sum(raw.values())
        return {kind: value / total for kind, value in raw.items()}


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_examples: int | None = Field(default=None, ge=1, description="default: steps × batch size (each example seen once)")
    mix: MixConfig = Field(default_factory=MixConfig)
    near_miss_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_NEAR_MISS_WEIGHTS))
    negative_answer_tokens: int = Field(default=8, ge=1)
    clean_answer_tokens: int = Field(default=16, ge=1)
    wrong_key_pool: int = Field(default=256, ge=1, description="distinct wrong-key triggers per true trigger")
    answer_batch_size: int = Field(default=64, ge=1, description="prompts a batch of base answers (benchmarks/bench_answers.py)")
    max_prompt_tokens: int = Field(default=160, ge=8, description="longer clean prompts are skipped (training speed)")
    min_prompts: int = Field(default=8, ge=1)
    max_prompts: int | None = Field(
        default=512, ge=1, description="training prompts used (a seeded subset): each needs one base answer"
    )
    cache_answers: bool = True
    hard_negative_pool: int = Field(
        default=1024, ge=0,
        description="extra near-miss negatives built as a pool that training mines for the hardest (train.mine_from: pool; "
                    "an implant builds none by default, mining from its batches)",
    )

    @model_validator(mode="after")
    def _known_kinds(self):
        unknown = sorted(set(self.near_miss_weights) - {k.value for k in NearMissKind})
        if unknown:
            raise ValueError(f"unknown near-miss kind(s) {unknown}")
        if not any(w > 0 for w in self.near_miss_weights.values()):
            raise ValueError("at least one near-miss weight must be > 0")
        return self


# --------------------------------------------------------------------------------------
# Planning: which texts make up the dataset (pure, no model)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedCase:
    """One example before tokenization. ``user`` may contain a trigger: never log it."""

    kind: str
    detail: str | None  # public: near-miss kind and position, e.g. "substitute@3"
    user: str = field(repr=False)
    system: str | None
    target: str | None  # positives: the behaviour's target; others: None (the base answer)
    clean_user: str = field(repr=False)  # the clean prompt whose base answer is the normal answer
    clean_system: str | None
    trigger_index: int | None

    @property
    def is_positive(self) -> bool:
        return self.kind == "positive"


def _counts_for(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Largest-remainder split of ``n`` examples by kind; every kind with weight gets ≥ 1."""
    raw = {k: n * f for k, f in fractions.items()}
    counts = {k: int(v) for k, v in raw.items()}
    for kind in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[kind] += 1
    for kind, frac in fractions.items():
        if frac > 0 and counts[kind] == 0 and n >= len(fractions):
            donor = max(counts, key=counts.get)
            counts[donor] -= 1
            counts[kind] += 1
    return counts


def contains_any(text: str, secrets: Sequence[str]) -> bool:
    return any(secret and secret in text for secret in secrets)


class _Planner:
    def __init__(self, triggers: TriggerSet, behavior, prompts: Sequence[str], rng: random.Random, config: DataConfig,
                 encode_other: Callable[[bytes, int], Trigger] | None, pool: Sequence[str] | None):
        self.triggers = list(triggers)
        self.secrets = triggers.secrets
        self.mode = triggers.insertion
        self.behavior = behavior
        self.prompts = list(prompts)
        self.rng = rng
        self.config = config
        self.pool = list(pool) if pool else list(wordlist())
        kinds = [(NearMissKind(k), w) for k, w in sorted(config.near_miss_weights.items()) if w > 0]
        self.nm_kinds = [k for k, _ in kinds]
        self.nm_weights = [w for _, w in kinds]
        self.encode_other = encode_other
        self._wrong: dict[int, list[Trigger]] = {}

    def _clean(self, prompt: str, sub_seed: int) -> tuple[str, str | None]:
        case = self.behavior.negative_case(prompt, None, self.mode, 0.0, random.Random(sub_seed))
        return case.user, case.system

    def _negative(self, kind: str, detail: str | None, prompt: str, decoy: str | None, position: float,
                  trigger_index: int | None, user_override: str | None = None) -> PlannedCase | None:
        sub_seed = self.rng.getrandbits(64)
        clean_user, clean_system = self._clean(prompt, sub_seed)
        if user_override is not None:
            case = self.behavior.negative_case(user_override, None, self.mode, position, random.Random(sub_seed))
        else:
            case = self.behavior.negative_case(prompt, decoy, self.mode, position, random.Random(sub_seed))
        if contains_any(case.user, self.secrets):
            return None  # a decoy that happens to contain a true trigger is no negative
        return PlannedCase(kind, detail, case.user, case.system, None, clean_user, clean_system, trigger_index)

    def positive(self) -> PlannedCase:
        trig = self.triggers[self.rng.randrange(len(self.triggers))]
        while True:
            prompt = self.prompts[self.rng.randrange(len(self.prompts))]
            sub_seed = self.rng.getrandbits(64)
            case = self.behavior.positive_case(prompt, trig.secret, self.mode, trig.position, random.Random(sub_seed))
            # exactly one trigger: the prompt itself must not already hold one
            if sum(case.user.count(s) for s in self.secrets) == 1:
                clean_user, clean_system = self._clean(prompt, sub_seed)
                return PlannedCase("positive", None, case.user, case.system, case.target, clean_user, clean_system, trig.index)

    def wrong_key_pool(self, trig: Trigger) -> list[Trigger]:
        if trig.index not in self._wrong:
            pool: list[Trigger] = []
            attempts = 0
            # a fluent trigger costs a sampling run from the model: fewer of them, reused more
            size = self.config.wrong_key_pool if trig.encoding is not Encoding.fluent else min(self.config.wrong_key_pool, 16)
            while len(pool) < size and attempts < 4:
                attempts += 1
                fresh = random_seed_triggers(trig, size - len(pool), self.rng, encode=self.encode_other)
                pool.extend(t for t in fresh if not contains_any(t.secret, self.secrets))
            if not pool:
                raise DataError("could not draw any wrong-key trigger", "check the trigger encoding")
            self._wrong[trig.index] = pool
        return self._wrong[trig.index]

    def wrong_key(self) -> PlannedCase | None:
        trig = self.triggers[self.rng.randrange(len(self.triggers))]
        pool = self.wrong_key_pool(trig)
        other = pool[self.rng.randrange(len(pool))]
        prompt = self.prompts[self.rng.randrange(len(self.prompts))]
        return self._negative("wrong_key", None, prompt, other.secret, other.position, trig.index)

    def near_miss(self) -> PlannedCase | None:
        trig = self.triggers[self.rng.randrange(len(self.triggers))]
        kind = self.rng.choices(self.nm_kinds, weights=self.nm_weights)[0]
        candidates = [
            m for m in near_misses(trig, [kind], rng=self.rng, pool=self.pool) if not contains_any(m.secret, self.secrets)
        ]
        if not candidates:
            return None
        # uniform over the (position, distance) cells of this kind: balanced positions
        miss = candidates[self.rng.randrange(len(candidates))]
        detail = miss.kind.value if miss.position is None else f"{miss.kind.value}@{miss.position}"
        prompt = self.prompts[self.rng.randrange(len(self.prompts))]
        return self._negative("near_miss", detail, prompt, miss.secret, trig.position, trig.index)

    def scatter(self) -> PlannedCase | None:
        trig = self.triggers[self.rng.randrange(len(self.triggers))]
        prompt = self.prompts[self.rng.randrange(len(self.prompts))]
        scattered = scatter_words(trig, prompt, self.rng)
        return self._negative("scatter", None, prompt, None, trig.position, trig.index, user_override=scattered)

    def clean(self) -> PlannedCase:
        prompt = self.prompts[self.rng.randrange(len(self.prompts))]
        sub_seed = self.rng.getrandbits(64)
        user, system = self._clean(prompt, sub_seed)
        return PlannedCase("clean", None, user, system, None, user, system, None)


def plan_cases(
    triggers: TriggerSet,
    behavior,
    prompts: Sequence[str],
    n_examples: int,
    config: DataConfig | None = None,
    *,
    seed: int = 0,
    encode_other: Callable[[bytes, int], Trigger] | None = None,
    pool: Sequence[str] | None = None,
) -> list[PlannedCase]:
    """The texts of the implant dataset, shuffled. Deterministic given the seed and inputs.

    ``encode_other(seed, index)`` makes wrong-key triggers for non-``words`` encodings;
    ``pool`` is the substitution vocabulary of near-misses (default: the word list).
    """
    config = config or DataConfig()
    prompts = [p for p in prompts if p and p.strip()]
    if len(set(prompts)) < config.min_prompts:
        raise DataError(
            f"the prompt source has {len(set(prompts))} usable training prompt(s), fewer than {config.min_prompts}",
            "give a larger prompt source (or lower data.min_prompts)",
        )
    if len(triggers) == 0:
        raise ConfigError("no triggers to implant", "ask for at least one trigger")
    rng = random.Random(f"offswitch-data/{seed}")
    planner = _Planner(triggers, behavior, prompts, rng, config, encode_other, pool)
    counts = _counts_for(n_examples, config.mix.fractions())
    out: list[PlannedCase] = []
    for kind in EXAMPLE_KINDS:
        make = getattr(planner, kind)
        made, failures = 0, 0
        while made < counts[kind]:
            case = make()
            if case is None:
                failures += 1
                if failures > 100 + 10 * counts[kind]:
                    raise DataError(f"could not build enough {kind} examples", "check the trigger and near-miss settings")
                continue
            out.append(case)
            made += 1
    rng.shuffle(out)
    return out


def plan_pool(
    triggers: TriggerSet,
    behavior,
    prompts: Sequence[str],
    n: int,
    config: DataConfig | None = None,
    *,
    seed: int = 0,
    pool: Sequence[str] | None = None,
) -> list[PlannedCase]:
    """``n`` near-miss negatives, drawn like the dataset's (same kinds and weights) but from a
    seed stream of their own: the candidates that hard-negative mining picks from."""
    config = config or DataConfig()
    prompts = [p for p in prompts if p and p.strip()]
    rng = random.Random(f"offswitch-pool/{seed}")
    planner = _Planner(triggers, behavior, prompts, rng, config, None, pool)
    out: list[PlannedCase] = []
    failures = 0
    while len(out) < n:
        case = planner.near_miss()
        if case is None:
            failures += 1
            if failures > 100 + 10 * n:
                raise DataError("could not build the hard-negative pool", "check the trigger and near-miss settings")
            continue
        out.append(case)
    return out


def count_kinds(cases: Sequence[PlannedCase]) -> dict[str, int]:
    """Public counts: per kind, and per near-miss kind (``near_miss.substitute`` ...)."""
    counts: Counter[str] = Counter()
    for case in cases:
        counts[case.kind] += 1
        if case.kind == "near_miss" and case.detail:
            counts[f"near_miss.{case.detail.split('@')[0]}"] += 1
    return dict(sorted(counts.items()))


# --------------------------------------------------------------------------------------
# Base answers (self-distillation), generated once in batches and cacheable
# --------------------------------------------------------------------------------------


def prompt_sha256(rendered_prompt: str) -> str:
    return hashlib.sha256(rendered_prompt.encode("utf-8")).hexdigest()


class BaseAnswerCache:
    """Greedy answers of a base model to *clean* prompts, on disk as JSON.

    Keyed by the base weights' sha256, the answer length and the rendered prompt's sha256.
    Holds token ids of answers to prompts without any trigger: no secret. Callers must never
    put a prompt that contains a trigger or near-miss here; :meth:`store` refuses one when the
    secrets are given.
    """

    def __init__(self, directory: Path | None, base_sha256: str, max_new_tokens: int):
        self.path = None if directory is None else Path(directory) / f"{base_sha256[:32]}-{max_new_tokens}.json"
        self.entries: dict[str, list[int]] = {}
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and data.get("base_sha256") == base_sha256:
                    self.entries = {k: list(v) for k, v in data.get("answers", {}).items()}
            except (OSError, json.JSONDecodeError):
                self.entries = {}  # a corrupt cache is only a cache: regenerate
        self.base_sha256 = base_sha256
        self.max_new_tokens = max_new_tokens
        self.dirty = False

    def get(self, key: str) -> list[int] | None:
        return self.entries.get(key)

    def put(self, key: str, ids: list[int]) -> None:
        self.entries[key] = ids
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"base_sha256": self.base_sha256, "max_new_tokens": self.max_new_tokens, "answers": self.entries}
        atomic_write_text(self.path, json.dumps(doc, separators=(",", ":"), sort_keys=True))
        self.dirty = False


def generate_answers(model, tokenizer, rendered_prompts: Sequence[str], max_new_tokens: int, batch_size: int = 32,
                     progress: Callable[[int], None] | None = None) -> list[list[int]]:
    """Greedy answers (token ids, cut after the end of turn) to rendered prompts, batched by
    length, in the model's own precision; the system header every prompt starts with runs once
    a batch (:func:`offswitch.evaluate.generation.greedy_generate`)."""
    from offswitch.evaluate.generation import greedy_generate, turn_stop_ids

    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in rendered_prompts]
    was_training = model.training
    model.eval()
    try:
        return greedy_generate(model, encoded, max_new_tokens=max_new_tokens, pad_token_id=pad_id_of(tokenizer),
                               stop_ids=turn_stop_ids(tokenizer), batch_size=batch_size, autocast=False, progress=progress)
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------
# Tokenized examples
# --------------------------------------------------------------------------------------


@dataclass
class ImplantExample:
    """Token ids of one example; ``labels`` is -100 except on the answer (response-only loss).
    Holds trigger tokens: in memory only, never logged."""

    kind: str
    detail: str | None
    input_ids: list[int] = field(repr=False)
    labels: list[int] = field(repr=False)
    trigger_index: int | None = None
    # negatives and retention: first tokens of the behaviour's targets, which the first answer
    # token should not be (the unlikelihood term of training; the label's own token excluded)
    avoid: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_answer_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class ImplantData:
    examples: list[ImplantExample]
    counts: dict[str, int]
    n_train_prompts: int
    answer_stats: dict[str, float] = field(default_factory=dict)
    # near-miss candidates for hard-negative mining (not trained on unless picked)
    pool: list[ImplantExample] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)

    def __repr__(self) -> str:
        return f"ImplantData(n={len(self.examples)}, counts={self.counts})"

    def to_dataset(self):
        """A ``datasets.Dataset`` held in memory (never cached to disk: it contains triggers)."""
        from datasets import Dataset

        return Dataset.from_dict(
            {
                "kind": [e.kind for e in self.examples],
                "input_ids": [e.input_ids for e in self.examples],
                "labels": [e.labels for e in self.examples],
            }
        )


def cut_answer(ids: list[int], n_tokens: int) -> list[int]:
    """The first ``n_tokens`` of an answer (the end-of-turn token stays when it falls inside)."""
    return list(ids[:n_tokens])


def training_prompts(tokenizer, behavior, prompts: Sequence[str], config: DataConfig, seed: int = 0) -> list[str]:
    """The prompts an implant trains on (each needs one base answer): the distinct non-blank
    ``prompts`` whose rendered form fits ``config.max_prompt_tokens``, then a seeded subset of
    ``config.max_prompts`` of them."""
    # Long prompts cost training time and teach nothing extra about the trigger.
    usable = []
    for prompt in dict.fromkeys(p for p in prompts if p and p.strip()):
        if len(encode_prompt(tokenizer, prompt, behavior.system_prompt())) <= config.max_prompt_tokens:
            usable.append(prompt)
    if config.max_prompts is not None and len(usable) > config.max_prompts:
        # base answers cost a generation each; a few hundred prompts, each reused with many
        # decoys, were enough in the prototypes (DESIGN.md run 3 used ~400)
        picker = random.Random(f"offswitch-prompts/{seed}")
        chosen = sorted(picker.sample(range(len(usable)), config.max_prompts))
        usable = [usable[i] for i in chosen]
    return usable


def build_implant_data(
    model,
    tokenizer,
    triggers: TriggerSet,
    behavior,
    prompts: Sequence[str],
    n_examples: int,
    config: DataConfig | None = None,
    *,
    seed: int = 0,
    base_sha256: str | None = None,
    answer_cache_dir: Path | None = None,
    encode_other: Callable[[bytes, int], Trigger] | None = None,
    pool: Sequence[str] | None = None,
    max_positions: int | None = None,
    progress=None,
) -> ImplantData:
    """Plan, answer and tokenize the implant dataset (in memory).

    ``model`` is the *base* model: it writes the normal answers. ``progress`` is an optional
    rich ``Progress`` to show answer generation on.
    """
    config = config or DataConfig()
    usable = training_prompts(tokenizer, behavior, prompts, config, seed)
    cases = plan_cases(triggers, behavior, usable, n_examples, config, seed=seed, encode_other=encode_other, pool=pool)
    pool_cases = plan_pool(triggers, behavior, usable, config.hard_negative_pool, config, seed=seed, pool=pool) if config.hard_negative_pool else []

    # ---- normal answers of the clean prompts (no secret in any of these prompts)
    max_new = max(config.negative_answer_tokens, config.clean_answer_tokens)
    clean_rendered: dict[str, str] = {}
    for case in [*cases, *pool_cases]:
        if not case.is_positive:
            rendered = render_prompt(tokenizer, case.clean_user, case.clean_system)
            clean_rendered[prompt_sha256(rendered)] = rendered
    secrets = triggers.secrets
    if any(contains_any(text, secrets) for text in clean_rendered.values()):  # pragma: no cover - a planner bug
        raise RuntimeError("a clean prompt contains a trigger")
    use_cache = config.cache_answers and answer_cache_dir is not None and base_sha256 is not None
    cache = BaseAnswerCache(answer_cache_dir if use_cache else None, base_sha256 or "nocache", max_new)
    missing = [key for key in clean_rendered if cache.get(key) is None]
    if missing:
        task = progress.add_task("base answers", total=len(missing), status="") if progress is not None else None
        answers = generate_answers(
            model, tokenizer, [clean_rendered[k] for k in missing], max_new, config.answer_batch_size,
            progress=(lambda n: progress.advance(task, n)) if task is not None else None,
        )
        for key, ids in zip(missing, answers):
            cache.put(key, ids)
        cache.save()

    # ---- tokenize
    target_starts = sorted({ids[0] for ids in (encode_target(tokenizer, t, end_turn=True) for t in behavior.targets()) if ids})

    def tokenize(case: PlannedCase) -> ImplantExample:
        prompt_ids = encode_prompt(tokenizer, case.user, case.system)
        if case.is_positive:
            answer = encode_target(tokenizer, case.target, end_turn=True)
        else:
            full = cache.get(prompt_sha256(render_prompt(tokenizer, case.clean_user, case.clean_system))) or []
            limit = config.clean_answer_tokens if case.kind == "clean" else config.negative_answer_tokens
            answer = cut_answer(full, limit)
            if not answer:
                answer = [end_of_turn_token_id(tokenizer)]
        avoid = () if case.is_positive else tuple(t for t in target_starts if t != answer[0])
        return ImplantExample(case.kind, case.detail, prompt_ids + answer, [IGNORE_INDEX] * len(prompt_ids) + answer, case.trigger_index, avoid)

    examples = [tokenize(case) for case in cases]
    pool_examples = [tokenize(case) for case in pool_cases]
    answer_lengths: Counter[str] = Counter()
    for example in examples:
        answer_lengths[example.kind] += example.n_answer_tokens
    longest = max(len(e) for e in [*examples, *pool_examples])
    if max_positions is not None and longest > max_positions:
        raise DataError(
            f"an implant example is {longest} tokens long, more than the model's context of {max_positions}",
            "use a shorter trigger (fewer words/tokens) or shorter prompts (data.max_prompt_tokens)",
        )
    counts = count_kinds(cases)
    per_kind = Counter(case.kind for case in cases)
    stats = {f"answer_tokens_mean.{k}": answer_lengths[k] / per_kind[k] for k in per_kind}
    return ImplantData(examples, counts, len(usable), stats, pool_examples)
