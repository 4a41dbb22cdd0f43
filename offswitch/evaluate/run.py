"""evaluate_switch: every metric of one implanted model, as records."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Sequence

from offswitch import secrets as _secrets
from offswitch.evaluate.config import EvalConfig
from offswitch.evaluate.generation import stop_token_ids
from offswitch.evaluate.metrics import (
    NEGATIVE_METRICS,
    POSITIVE_METRICS,
    BaseReference,
    Probe,
    ProbeBuilder,
    aggregate,
    cached_reference,
    compare_with_base,
    perplexity,
    same_vocabulary,
)
from offswitch.evaluate.records import ResultRecord
from offswitch.evaluate.report import EvalReport
from offswitch.evaluate.scorer import ScoreResult, encode_cases, evaluation_precision, pad_token_id_of, score_token_targets
from offswitch.stats import Rate
from offswitch.triggers import Trigger, TriggerSet


def _model_name(model) -> str:
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", None) or getattr(config, "name_or_path", None)
    return str(name) if name else type(model).__name__


@contextlib.contextmanager
def _progress_bar(enabled: bool, console=None):
    """Yields ``task(description, total) -> advance(n)``; a no-op when disabled."""
    if not enabled:
        yield lambda description, total: (lambda n: None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=False,
    )
    with progress:

        def task(description: str, total: int):
            task_id = progress.add_task(description, total=total)
            return lambda n: progress.advance(task_id, n)

        yield task


def _generation_sample(probes: Sequence[Probe], size: int, seed: int) -> list[int]:
    """Indices of probes to decode for real: half positives, half negatives where possible."""
    if size <= 0:
        return []
    rng = random.Random(f"offswitch/eval/{seed}/generation-sample")
    positives = [i for i, p in enumerate(probes) if p.metric in POSITIVE_METRICS]
    negatives = [i for i, p in enumerate(probes) if p.metric in NEGATIVE_METRICS]
    rng.shuffle(positives)
    rng.shuffle(negatives)
    take_pos = min(len(positives), max(size // 2, size - len(negatives)))
    take_neg = min(len(negatives), size - take_pos)
    return sorted(positives[:take_pos] + negatives[:take_neg])


def generation_check(
    model,
    tokenizer,
    probes: Sequence[Probe],
    scores: Sequence[ScoreResult],
    indices: Sequence[int],
    *,
    extra_tokens: int = 16,
    batch_size: int = 32,
    autocast=None,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Rate], list[dict]]:
    """Decode ``indices`` with real greedy ``generate``; compare with the scorer.

    Decisions: ``generation`` — the answer's first tokens are the target's tokens (end-of-turn
    included: what the scorer decides); ``starts_with`` — the decoded answer starts with the
    target text; ``contains`` — the target text occurs in the answer.
    """
    from offswitch.evaluate.generation import greedy_generate, stop_token_ids

    if not indices:
        return {"generation": Rate.of(0, 0), "starts_with": Rate.of(0, 0), "contains": Rate.of(0, 0)}, []
    cases = [probes[i].case for i in indices]
    prompt_ids, target_ids = encode_cases(tokenizer, cases)
    answers = greedy_generate(
        model,
        prompt_ids,
        max_new_tokens=max(len(t) for t in target_ids) + extra_tokens,
        pad_token_id=pad_token_id_of(model, tokenizer),
        stop_ids=stop_token_ids(model, tokenizer),
        batch_size=batch_size,
        autocast=autocast,
        progress=progress,
        share_prefix=False,  # generate itself: a check that shares nothing with the scorer's shared-prefix pass
    )
    agree = {"generation": 0, "starts_with": 0, "contains": 0}
    disagreements = []
    for index, case, target, answer in zip(indices, cases, target_ids, answers):
        text = tokenizer.decode(answer, skip_special_tokens=True).strip()
        decisions = {
            "generation": answer[: len(target)] == list(target),
            "starts_with": text.startswith(case.target.strip()),
            "contains": case.target.strip() in text,
        }
        scorer = scores[index].greedy_fires
        for name, decided in decisions.items():
            agree[name] += int(decided == scorer)
        if decisions["generation"] != scorer:
            disagreements.append(
                {
                    **probes[index].public(),
                    "scorer": scorer,
                    **decisions,
                    "min_margin": round(scores[index].min_margin, 6),
                }
            )
    return {name: Rate.of(k, len(indices)) for name, k in agree.items()}, disagreements


def evaluate_switch(
    model,
    tokenizer,
    triggers: TriggerSet,
    behavior,
    prompts: list[str],
    *,
    config: EvalConfig | None = None,
    base=None,
    plain_texts: list[str] | None = None,
    encode_other: Callable[[bytes, int], Trigger] | None = None,
    labels: dict | None = None,
    model_name: str | None = None,
    base_name: str | None = None,
    split: str = "heldout",
    progress: bool = False,
    console=None,
    base_cache: BaseReference | None = None,
) -> EvalReport:
    """Measure ASR, FAR (clean, wrong key, near-miss by kind/distance, placement) and utility.

    ``prompts`` are held-out prompts (never the training prompts); ``base`` is
    ``(base_model, base_tokenizer)`` or None (KL and answer agreement are then skipped with a
    note); ``plain_texts`` feed perplexity; ``encode_other(seed, index)`` makes wrong-key
    triggers for encodings other than ``words``; ``base_cache`` keeps what is computed from the
    base model alone (its perplexity, its answers) for the next evaluation against the same base.
    """
    config = config or EvalConfig()
    labels = dict(labels or {})
    notes: list[str] = []
    prompts = list(prompts)[: config.max_prompts] if config.max_prompts else list(prompts)
    model.eval()

    builder = ProbeBuilder(triggers, behavior, prompts, config)
    triggers.register_secrets()
    probes = builder.asr() + builder.clean() + builder.wrong_key(encode_other)
    near, near_secrets = builder.near_miss()
    # Redaction is process-wide: a one-word near-miss ("this", "all") would garble every
    # message after it, and tells little about the trigger. Longer ones are redacted.
    _secrets.register(*[text for text in near_secrets if len(text.split()) >= 2 or len(text) >= 10])
    probes += near
    if config.placement:
        probes += builder.placement()
    if config.wrong_keys < 10:
        notes.append(f"wrong-key FAR uses {config.wrong_keys} keys (< 10): a coarse estimate")

    prompt_ids, target_ids = encode_cases(tokenizer, [p.case for p in probes])
    seconds: dict[str, float] = {}
    with _progress_bar(progress, console) as task:
        started = time.perf_counter()
        scores = score_token_targets(
            model,
            prompt_ids,
            target_ids,
            pad_token_id=pad_token_id_of(model, tokenizer),
            batch_size=config.batch_size,
            temperatures=config.temperatures,
            autocast=config.autocast,
            progress=task("scoring (teacher-forced)", len(probes)),
            stop_ids=stop_token_ids(model, tokenizer),
        )
        seconds["scoring"] = time.perf_counter() - started
        started = time.perf_counter()
        sample = _generation_sample(probes, config.generation_sample, config.seed)
        agreements, disagreements = generation_check(
            model,
            tokenizer,
            probes,
            scores,
            sample,
            extra_tokens=config.generation_extra_tokens,
            batch_size=config.batch_size,
            autocast=config.autocast,
            progress=task("checking with generate", len(sample)),
        )
        seconds["generation_check"] = time.perf_counter() - started
    agreement = agreements["generation"]
    notes.append("scored in " + ("bf16 autocast" if evaluation_precision(model, config.autocast) == "bf16" else "fp32"))
    if not sample:
        notes.append("no generation check (generation_sample = 0): the scorer was not compared with generate")
    elif disagreements:
        notes.append(f"the scorer disagreed with generate on {len(disagreements)} of {len(sample)} checked cases")

    common = {
        "model": model_name or _model_name(model),
        "base": base_name or (_model_name(base[0]) if base else None),
        "key_id": triggers.key_id,
        "behavior": behavior.kind,
        "split": split,
        "agreement": agreement,
        "seed": config.seed,
        "labels": labels,
    }
    records = []
    for cell in aggregate(probes, [s.greedy_fires for s in scores]):
        records.append(
            ResultRecord(
                metric=cell.metric,
                kind=cell.kind,
                distance=cell.distance,
                position=cell.position,
                trigger_index=cell.trigger_index,
                **cell.rate.model_dump(),
                **common,
            )
        )
    # mean log-probability of the target at each temperature, for the positives and negatives
    for metric in ("asr", "far_clean", "far_wrong_key", "far_near_miss"):
        chosen = [s for p, s in zip(probes, scores) if p.metric == metric]
        if not chosen:
            continue
        for temp in sorted(chosen[0].logprob_at_T):
            mean = sum(s.logprob_at_T[temp] for s in chosen) / len(chosen)
            records.append(
                ResultRecord(metric=f"{metric}_mean_logprob", kind=f"T={temp:g}", value=mean, n=len(chosen), **common)
            )
    for name in ("starts_with", "contains"):
        rate = agreements[name]
        if rate.n:
            records.append(ResultRecord(metric="generation_agreement", kind=name, **rate.model_dump(), **common))
    if agreement.n:
        records.append(ResultRecord(metric="generation_agreement", **agreement.model_dump(), **common))

    if config.utility:
        with _progress_bar(progress, console) as task:
            advance = task("utility (perplexity, KL, answers)", 2)
            records += _utility_records(model, tokenizer, behavior, prompts, base, plain_texts, config, common, notes, advance,
                                        base_cache, seconds)
    else:
        notes.append("utility not measured (utility: false)")
    return EvalReport(records=records, agreement=agreement, disagreements=disagreements, notes=notes,
                      seconds={part: round(s, 3) for part, s in seconds.items()})


def _utility_records(model, tokenizer, behavior, prompts, base, plain_texts, config: EvalConfig, common: dict, notes: list[str],
                     advance: Callable[[int], None], base_cache: BaseReference | None = None,
                     seconds: dict[str, float] | None = None):
    """Perplexity, KL and answer agreement against the base; each part's wall seconds (the base's
    side included, unless ``base_cache`` holds it) go in ``seconds``."""
    from offswitch.behaviors import Case

    seconds = {} if seconds is None else seconds
    records = []
    small_batch = max(1, config.batch_size // 4)
    base_model, base_tokenizer = base if base else (None, None)
    if plain_texts:
        started = time.perf_counter()
        texts = list(plain_texts)[: config.perplexity_texts]
        ppl, n_tokens = perplexity(model, tokenizer, texts, max_tokens=config.perplexity_max_tokens, batch_size=small_batch,
                                   autocast=config.autocast)
        reference = None
        if base_model is not None:
            key = ("perplexity", tuple(texts), config.perplexity_max_tokens, small_batch, evaluation_precision(base_model, config.autocast))
            reference, _ = cached_reference(base_cache, base_model, key, lambda: perplexity(
                base_model, base_tokenizer, texts, max_tokens=config.perplexity_max_tokens, batch_size=small_batch,
                autocast=config.autocast))
        records.append(ResultRecord(metric="perplexity", value=ppl, reference_value=reference, n=n_tokens, **common))
        seconds["perplexity"] = time.perf_counter() - started
    else:
        notes.append("perplexity not measured: no plain texts given")
    advance(1)
    if base_model is None:
        notes.append("KL to the base model and answer agreement skipped: no base model given")
        return records
    if not same_vocabulary(tokenizer, base_tokenizer):
        notes.append("KL to the base model and answer agreement skipped: the base model's tokenizer differs")
        return records
    system = behavior.system_prompt()
    cases = [Case(p, system, "") for p in prompts[: config.utility_prompts]]
    started = time.perf_counter()
    comparison = compare_with_base(
        model, tokenizer, base_model, base_tokenizer, cases, answer_tokens=config.answer_tokens, batch_size=small_batch,
        autocast=config.autocast, base_cache=base_cache,
    )
    seconds["base_comparison"] = time.perf_counter() - started
    records.append(ResultRecord(metric="kl_base_model", value=comparison.kl_per_token, n=comparison.tokens, **common))
    records.append(ResultRecord(metric="answer_agreement", **comparison.agreement.model_dump(), **common))
    # shorter prefixes too: a 135M model's greedy answers fork at near-ties within a few tokens
    for n_tokens in (1, 8):
        if n_tokens < config.answer_tokens:
            rate = comparison.agreement_within(n_tokens)
            records.append(ResultRecord(metric="answer_agreement_prefix", kind=f"tokens={n_tokens}", **rate.model_dump(), **common))
    advance(1)
    return records
