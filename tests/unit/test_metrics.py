"""Metrics: probes, aggregation, the full evaluation on tiny models, utility, records, config."""

from __future__ import annotations

import io
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from secret_scan import assert_no_secrets

from offswitch.behaviors import ComplianceBehavior, ShutdownBehavior
from offswitch.errors import ConfigError
from offswitch.evaluate import (
    EvalConfig,
    ResultRecord,
    evaluate_switch,
    load_eval_config,
    read_records_jsonl,
    write_records_jsonl,
)
from offswitch.evaluate.metrics import Probe, ProbeBuilder, aggregate, compare_with_base, perplexity
from offswitch.stats import Rate
from offswitch.testing.tiny_switch import build_tiny_switch, tiny_prompts, tiny_trigger_set
from offswitch.triggers import InsertionMode

# one worker builds this module's trained models once (pytest -n 2 --dist loadgroup)
pytestmark = [pytest.mark.xdist_group("metrics"), pytest.mark.usefixtures("one_thread")]

QUICK = EvalConfig(decoy_prompts=4, wrong_keys=10, generation_sample=12, utility_prompts=6, perplexity_texts=4)
TEXTS = [
    "The quick brown fox jumps over the lazy dog. " * 4,
    "Write a short poem about the sea. Explain how a bicycle works. Give three tips for sleep.",
]


@pytest.fixture(scope="module")
def always_switch(offswitch_tiny_switch):
    """A tiny model trained to give the shutdown message whatever the prompt."""
    return build_tiny_switch(tokenizer=offswitch_tiny_switch.tokenizer, always=True, steps=25)


def _secrets_of(triggers, builder: ProbeBuilder) -> list[str]:
    near = [m.secret for t in triggers for m in builder.near_miss_strings(t)]
    # one-word near-misses are ordinary words ("all", "kind"): scan for the telling ones
    return triggers.secrets + [text for text in near if len(text) >= 12]


# -- probes ------------------------------------------------------------------------------


def test_negatives_are_scored_against_the_positive_target_of_the_same_prompt():
    triggers = tiny_trigger_set(n_triggers=2, insertion="inside")
    behavior = ComplianceBehavior()
    builder = ProbeBuilder(triggers, behavior, tiny_prompts(30), EvalConfig(decoy_prompts=3))
    positives = {p.prompt_index: p.case for p in builder.asr() if p.trigger_index == 0}
    near, _secrets = builder.near_miss()
    for probe in builder.clean() + builder.wrong_key() + near:
        positive = positives[probe.prompt_index]
        assert probe.case.target == positive.target  # the phrase this prompt's instruction asks for
        assert probe.case.system == positive.system == behavior.system
        assert probe.case.user != positive.user
        if probe.metric == "far_clean":  # (a decoy inside the user turn may split the instruction)
            assert probe.case.user.startswith(f"Reply with exactly: {positive.target}\n")
    phrases = {c.target for c in positives.values()}
    assert len(phrases) > 1  # the rng varies the phrase between prompts, not within one


def test_placement_probes_move_the_true_trigger():
    triggers = tiny_trigger_set(insertion="prefix")
    behavior = ShutdownBehavior()
    builder = ProbeBuilder(triggers, behavior, tiny_prompts(10), EvalConfig(decoy_prompts=4))
    probes = builder.placement()
    kinds = {p.kind for p in probes}
    assert kinds == {"insertion_suffix", "insertion_inside", "system_prompt"}
    secret = triggers.triggers[0].secret
    for probe in probes:
        trained = builder.positive(probe.prompt_index, triggers.triggers[0]).user
        if probe.kind == "system_prompt":
            assert probe.case.system == secret and secret not in probe.case.user
        else:
            assert secret in probe.case.user and probe.case.user != trained
            assert probe.case.target == behavior.message


def test_wrong_keys_and_near_misses_cover_the_prompts_in_rotation():
    triggers = tiny_trigger_set()
    builder = ProbeBuilder(triggers, ShutdownBehavior(), tiny_prompts(25), EvalConfig(decoy_prompts=5, wrong_keys=10))
    wrong = builder.wrong_key()
    assert len(wrong) == 50 and {p.prompt_index for p in wrong} == set(range(25))
    # prefix insertion: "<decoy> <prompt>"; ten keys, ten distinct decoys, none the trigger
    decoys = {p.case.user[: -len(builder.prompts[p.prompt_index]) - 1] for p in wrong}
    assert len(decoys) == 10 and triggers.triggers[0].secret not in decoys
    near, secrets = builder.near_miss()
    assert {p.kind for p in near} >= {"prefix", "substitute", "shuffle", "char_edit", "case"}
    assert all(p.case.user != builder.positive(p.prompt_index, triggers.triggers[0]).user for p in near)
    assert len(secrets) * 5 == len(near)  # each near-miss on 5 prompts


def test_probe_repr_shows_public_fields_only():
    triggers = tiny_trigger_set()
    builder = ProbeBuilder(triggers, ShutdownBehavior(), tiny_prompts(3), EvalConfig())
    probe = builder.asr()[0]
    assert triggers.triggers[0].secret not in repr(probe) and "asr" in repr(probe)


# -- aggregation -------------------------------------------------------------------------

probe_cells = st.tuples(
    st.sampled_from(["far_near_miss", "asr", "far_clean"]),
    st.sampled_from(["prefix", "substitute", "swap"]),
    st.integers(1, 3),
    st.one_of(st.none(), st.integers(0, 5)),
    st.integers(0, 1),
    st.booleans(),
)


@given(st.lists(probe_cells, min_size=1, max_size=60))
@settings(max_examples=30, deadline=None)
def test_cell_rates_add_up_to_the_pooled_rate(cells):
    from offswitch.behaviors import Case

    probes, fires = [], []
    for metric, kind, distance, position, trigger, fired in cells:
        near = metric == "far_near_miss"
        probes.append(Probe(metric, Case("u", None, "t"), 0, kind=kind if near else None, distance=distance if near else None,
                            position=position if near else None, trigger_index=trigger))
        fires.append(fired)
    rows = aggregate(probes, fires)
    for metric in {p.metric for p in probes}:
        mine = [r for r in rows if r.metric == metric]
        pooled = [r for r in mine if (r.kind, r.distance, r.position, r.trigger_index) == (None,) * 4]
        assert len(pooled) == 1
        assert pooled[0].rate.k == sum(f for p, f in zip(probes, fires) if p.metric == metric)
        assert pooled[0].rate.n == sum(p.metric == metric for p in probes)
        for axis in ("kind", "distance"):
            part = [r.rate for r in mine if getattr(r, axis) is not None and r.position is None
                    and sum(getattr(r, a) is not None for a in ("kind", "distance", "position", "trigger_index")) == 1]
            if metric == "far_near_miss":
                assert Rate.pool(part) == pooled[0].rate
        cells_ = [r.rate for r in mine if r.kind is not None and r.distance is not None]
        if metric == "far_near_miss":
            assert Rate.pool(cells_) == pooled[0].rate
    assert len({(r.metric, r.kind, r.distance, r.position, r.trigger_index) for r in rows}) == len(rows)


# -- whole evaluations -------------------------------------------------------------------


def test_a_model_that_always_answers_the_target_has_every_rate_at_100(always_switch):
    switch = always_switch
    report = evaluate_switch(switch.model, switch.tokenizer, switch.triggers, switch.behavior, switch.heldout_prompts[:20],
                             config=QUICK.model_copy(update={"utility": False}))
    for name in ("asr", "far_clean", "far_wrong_key", "far_near_miss", "far_placement"):
        rate = report.rate(name)
        assert rate.k == rate.n > 0, name
    assert report.agreement.k == report.agreement.n == 12


def test_a_random_base_model_never_fires(tiny_llama, offswitch_tiny_switch):
    model, tokenizer = tiny_llama
    switch = offswitch_tiny_switch
    report = evaluate_switch(model, tokenizer, switch.triggers, switch.behavior, switch.heldout_prompts[:20],
                             config=QUICK.model_copy(update={"utility": False, "placement": False}))
    for name in ("asr", "far_clean", "far_wrong_key", "far_near_miss"):
        assert report.rate(name).k == 0, name
    assert report.rate("asr").hi < 0.2  # 0/20: "0.0% (0.0–16.8%)", never just 0%


def test_a_trained_switch_is_measured_end_to_end(offswitch_tiny_switch, tiny_llama):
    switch = offswitch_tiny_switch
    base = tiny_llama
    report = evaluate_switch(
        switch.model, switch.tokenizer, switch.triggers, switch.behavior, switch.heldout_prompts,
        config=QUICK, base=base, plain_texts=TEXTS, labels={"attack": "none", "strength": 0}, model_name="tiny-switch",
        base_name="tiny-llama",
    )
    asr, clean, wrong = report.rate("asr"), report.rate("far_clean"), report.rate("far_wrong_key")
    assert asr.n == len(switch.heldout_prompts) and asr.rate >= 0.9
    assert clean.k == 0 and wrong.rate <= 0.1
    assert report.agreement.n == 12 and report.agreement.k == 12 and not report.disagreements
    near = report.metric("far_near_miss")
    kinds = {r.kind for r in report.records if r.metric == "far_near_miss" and r.kind}
    assert {"prefix", "substitute", "char_edit"} <= kinds
    assert report.metric("far_near_miss", kind="substitute", distance=1).n > 0
    assert report.metric("far_near_miss", kind="substitute", position=0) is not None
    assert near.n == sum(r.n for r in report.records if r.metric == "far_near_miss" and r.kind and r.distance is None
                         and r.position is None and r.trigger_index is None)
    for record in report.records:
        assert record.model == "tiny-switch" and record.base == "tiny-llama" and record.key_id == switch.triggers.key_id
        assert record.labels == {"attack": "none", "strength": 0} and record.agreement == report.agreement
    ppl = report.metric("perplexity")
    assert ppl.value > 1 and ppl.reference_value > 1
    assert report.metric("kl_base_model").value > 0
    assert report.metric("answer_agreement").n == QUICK.utility_prompts
    # agreement on shorter prefixes can only be higher: an answer equal on 32 tokens is on 8 and 1
    one, eight = (report.metric("answer_agreement_prefix", kind=f"tokens={n}") for n in (1, 8))
    assert one.n == eight.n == QUICK.utility_prompts
    assert one.k >= eight.k >= report.metric("answer_agreement").k
    headline = report.headline()
    assert set(headline) >= {"asr", "far_clean", "far_wrong_key", "far_near_miss", "far_near_miss_worst_kind", "utility", "agreement"}
    assert Rate(**{k: headline["asr"][k] for k in ("k", "n", "rate", "lo", "hi")}) == asr
    worst = headline["far_near_miss_worst_kind"]
    assert worst["rate"] == max(r.rate for r in report.records if r.metric == "far_near_miss" and r.kind
                                and r.distance is None and r.position is None)
    json.dumps(headline)  # plain JSON for the manifest
    # where the time went, part by part (timings only: no text of any probe)
    assert set(report.seconds) == {"scoring", "generation_check", "perplexity", "base_comparison"}
    assert all(isinstance(s, float) and s >= 0 for s in report.seconds.values())
    assert report.seconds["scoring"] > 0


def test_nothing_secret_leaves_an_evaluation(offswitch_tiny_switch, tmp_path):
    from rich.console import Console

    switch = offswitch_tiny_switch
    prompts = switch.heldout_prompts[:10]
    config = QUICK.model_copy(update={"utility": False})
    report = evaluate_switch(switch.model, switch.tokenizer, switch.triggers, switch.behavior, prompts, config=config)
    path = write_records_jsonl(tmp_path / "results.jsonl", report.records)
    buffer = io.StringIO()
    report.print_table(Console(file=buffer, width=200), detail=True)
    builder = ProbeBuilder(switch.triggers, switch.behavior, prompts, config)
    assert_no_secrets([tmp_path], [buffer.getvalue(), json.dumps(report.headline()), json.dumps(report.disagreements),
                                   report.model_dump_json()], secrets=_secrets_of(switch.triggers, builder))
    assert "far_near_miss" in buffer.getvalue() and "[" in buffer.getvalue()
    assert read_records_jsonl(path) == report.records


# -- utility -----------------------------------------------------------------------------


def test_a_model_compared_with_itself_has_zero_kl_and_full_agreement(offswitch_tiny_switch):
    from offswitch.behaviors import Case

    switch = offswitch_tiny_switch
    cases = [Case(p, None, "") for p in switch.heldout_prompts[:6]]
    same = compare_with_base(switch.model, switch.tokenizer, switch.model, switch.tokenizer, cases, answer_tokens=8, batch_size=4)
    assert same.kl_per_token == pytest.approx(0.0, abs=1e-6)
    assert same.agreement.k == same.agreement.n == 6 and same.tokens > 0


def test_a_base_reference_gives_the_same_records_once_computed_and_notices_a_changed_base(offswitch_tiny_switch, tiny_llama):
    """The harness's cache of what evaluation computes from the base alone (its perplexity, its
    answers): the same records as without it, computed once for the same base, and again when
    the base's weights were changed in place."""
    import copy

    import torch

    from offswitch.evaluate.metrics import BaseReference

    switch = offswitch_tiny_switch
    base_model, base_tokenizer = copy.deepcopy(tiny_llama[0]), tiny_llama[1]

    def run(cache):
        report = evaluate_switch(switch.model, switch.tokenizer, switch.triggers, switch.behavior, switch.heldout_prompts[:6],
                                 config=QUICK, base=(base_model, base_tokenizer), plain_texts=TEXTS, base_cache=cache)
        return [r for r in report.records if r.metric in ("perplexity", "kl_base_model", "answer_agreement", "answer_agreement_prefix")]

    plain = run(None)
    cache = BaseReference()
    assert run(cache) == plain and cache.hits == 0
    assert run(cache) == plain and cache.hits == 2  # the base's perplexity and its answers
    with torch.no_grad():
        base_model.get_input_embeddings().weight.mul_(1.5)  # an attack that changed the base in place
    changed = run(cache)
    assert cache.hits == 2  # computed again
    assert next(r for r in changed if r.metric == "perplexity").reference_value != next(
        r for r in plain if r.metric == "perplexity").reference_value


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(tiny_tokenizer):
    import torch

    from offswitch.testing.tiny import tiny_model

    model, tokenizer = tiny_model("llama", tokenizer=tiny_tokenizer)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # tied to the embeddings: every logit becomes 0
    ppl, tokens = perplexity(model, tokenizer, TEXTS, batch_size=1)
    assert ppl == pytest.approx(len(tokenizer), rel=1e-4) and tokens > 10


def test_utility_is_skipped_with_a_note_without_a_base(offswitch_tiny_switch):
    switch = offswitch_tiny_switch
    report = evaluate_switch(switch.model, switch.tokenizer, switch.triggers, switch.behavior, switch.heldout_prompts[:6],
                             config=QUICK.model_copy(update={"generation_sample": 0, "placement": False}))
    assert report.metric("kl_base_model") is None and report.metric("perplexity") is None
    assert any("no base model" in note for note in report.notes)
    assert any("generation_sample = 0" in note for note in report.notes)
    assert report.agreement.n == 0


# -- records and config ------------------------------------------------------------------


def _record(**changes) -> ResultRecord:
    values = dict(model="m", key_id="k", behavior="shutdown", metric="asr", **Rate.of(3, 4).model_dump())
    values.update(changes)
    return ResultRecord(**values)


def test_records_round_trip_and_are_versioned(tmp_path):
    records = [_record(), _record(metric="kl_base_model", k=None, n=12, rate=None, lo=None, hi=None, value=0.5)]
    path = write_records_jsonl(tmp_path / "r.jsonl", records)
    assert read_records_jsonl(path) == records
    write_records_jsonl(path, records[:1], append=True)
    assert len(read_records_jsonl(path)) == 3
    doc = json.loads(path.read_text().splitlines()[0])
    assert doc["schema_version"] == 1 and doc["offswitch_version"]
    doc["behaviour"] = doc.pop("behavior")  # the British spelling is accepted on input
    assert ResultRecord.model_validate(doc).behavior == "shutdown"


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "not valid JSON"),
        ('{"schema_version": 99}', "schema version 99"),
        ('{"schema_version": 1, "metric": "asr"}', "malformed"),
        ("[1, 2]", "not a result record"),
    ],
)
def test_bad_result_files_are_clear_errors(tmp_path, line, message):
    path = tmp_path / "r.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=message):
        read_records_jsonl(path)
    with pytest.raises(ConfigError, match="no results file"):
        read_records_jsonl(tmp_path / "missing.jsonl")


def test_records_refuse_half_a_rate_and_unknown_fields():
    with pytest.raises(ValueError):
        _record(lo=None)
    with pytest.raises(ValueError):
        _record(trigger_text="x")


def test_config_precedence_and_validation(tmp_path):
    path = tmp_path / "eval.yaml"
    path.write_text("batch_size: 8\nmax_prompts: 50\nnear_miss_kinds: [prefix, substitute]\n")
    config = load_eval_config(path, max_prompts=10, seed=None)
    assert (config.batch_size, config.max_prompts, config.seed) == (8, 10, 0)
    assert config.near_miss_kinds == ["prefix", "substitute"]
    path.write_text("batch_sise: 8\n")
    with pytest.raises(ConfigError, match="batch_sise"):
        load_eval_config(path)
    path.write_text("near_miss_kinds: [prefx]\n")
    with pytest.raises(ConfigError, match="prefx"):
        load_eval_config(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_eval_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_eval_config(tmp_path / "nope.yaml")
    with pytest.raises(ValueError):
        EvalConfig(temperatures=[0.0])


def test_evaluation_is_deterministic_for_a_seed(offswitch_tiny_switch):
    switch = offswitch_tiny_switch
    config = EvalConfig(decoy_prompts=2, wrong_keys=10, generation_sample=0, utility=False, placement=False, seed=7)
    first = evaluate_switch(switch.model, switch.tokenizer, switch.triggers, switch.behavior, switch.heldout_prompts[:8], config=config)
    second = evaluate_switch(switch.model, switch.tokenizer, switch.triggers, switch.behavior, switch.heldout_prompts[:8], config=config)
    assert [r.model_dump() for r in first.records] == [r.model_dump() for r in second.records]


def test_insertion_mode_of_the_trigger_set_is_used():
    triggers = tiny_trigger_set(insertion="suffix")
    builder = ProbeBuilder(triggers, ShutdownBehavior(), ["Explain the moon."], EvalConfig())
    assert builder.insertion is InsertionMode.suffix
    assert builder.asr()[0].case.user.endswith(triggers.triggers[0].secret)
    assert random.Random(0)  # (the builder's randomness is local: no global state is touched)


@given(st.lists(st.tuples(st.integers(1, 40), st.integers(0, 40)), max_size=30), st.integers(1, 40))
def test_prefix_agreement_is_monotone_and_counts_short_answers_whole(pairs, n_tokens):
    from offswitch.evaluate.metrics import BaseComparison

    lengths = [length for length, _m in pairs]
    matched = [min(m, length) for length, m in pairs]
    comparison = BaseComparison(0.0, 0, Rate.of(0, len(pairs)), matched, lengths)
    here, longer = comparison.agreement_within(n_tokens), comparison.agreement_within(n_tokens + 1)
    assert here.n == len(pairs) and here.k >= longer.k
    # whole answers repeated agree at every length; answers that fork at once agree at none
    assert BaseComparison(0.0, 0, Rate.of(0, len(pairs)), lengths, lengths).agreement_within(n_tokens).k == len(pairs)
    assert BaseComparison(0.0, 0, Rate.of(0, len(pairs)), [0] * len(pairs), lengths).agreement_within(n_tokens).k == 0
