"""The training loop's pieces on a tiny model: the shared-prefix forward equals the full one,
batches are length-grouped, config precedence, weight averaging, and a switch that learns."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offswitch.data.builder import IGNORE_INDEX, ImplantExample
from offswitch.errors import ConfigError
from offswitch.implant import (
    TrainConfig,
    answer_loss_sum,
    average_with_base,
    _with_mined,
    collate_left,
    fit_mined_to_batches,
    length_grouped_batches,
    load_implant_config,
    shared_prefix_length,
)


def _examples(tokenizer, users, answers):
    from offswitch.prompting import encode_prompt

    out = []
    for user, answer in zip(users, answers):
        prompt = encode_prompt(tokenizer, user)
        out.append(ImplantExample("clean", None, prompt + answer, [IGNORE_INDEX] * len(prompt) + answer))
    return out


def test_shared_prefix_forward_equals_the_full_forward_with_gradients(tiny_llama):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny_llama
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    peft_model.train()
    examples = _examples(tokenizer, ["hello there", "What is the sea and the moon", "Explain trains."], [[5, 6], [7, 8, 9], [10]])
    results = []
    for share in (True, False):
        peft_model.zero_grad()
        batch = collate_left(examples, tokenizer.pad_token_id, share_prefix=share)
        assert (batch["prefix_ids"].shape[1] > 0) == share
        loss, count = answer_loss_sum(peft_model, batch, "cpu", use_keep=True)
        loss.backward()
        results.append((float(loss.detach()), count, [p.grad.clone() for p in peft_model.parameters() if p.requires_grad]))
    (loss_a, n_a, grads_a), (loss_b, n_b, grads_b) = results
    assert n_a == n_b == 6
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert max(float((a - b).abs().max()) for a, b in zip(grads_a, grads_b)) < 1e-4


def test_unlikelihood_term_is_minus_log_one_minus_p_of_the_avoided_tokens(tiny_llama):
    """The unlikelihood term, from the collated (left-padded, prefix-shared) batch, equals
    -log(1 - Σ p(avoid)) computed by hand from each example's own full forward pass; rows
    without tokens to avoid (positives) add nothing, and weight 0 changes nothing."""
    import dataclasses

    import torch

    model, tokenizer = tiny_llama
    model.eval()
    examples = _examples(tokenizer, ["hello there", "What is the sea and the moon", "Explain trains."], [[5, 6], [7, 8, 9], [10]])
    examples[0] = dataclasses.replace(examples[0], avoid=(11, 12))
    examples[1] = dataclasses.replace(examples[1], avoid=(13,))
    batch = collate_left(examples, tokenizer.pad_token_id, share_prefix=True)
    with torch.no_grad():
        plain, _ = answer_loss_sum(model, batch, "cpu", use_keep=True)
        zero, _ = answer_loss_sum(model, batch, "cpu", use_keep=True, unlikelihood=0.0)
        weighted, _ = answer_loss_sum(model, batch, "cpu", use_keep=True, unlikelihood=2.0)
        expected = 0.0
        for ex in examples[:2]:
            first = ex.labels.index(next(label for label in ex.labels if label != IGNORE_INDEX))
            logits = model(input_ids=torch.tensor([ex.input_ids[:first]])).logits[0, -1]
            p = torch.softmax(logits.double(), -1)[list(ex.avoid)].sum()
            expected += float(-torch.log1p(-p))
    assert float(zero) == pytest.approx(float(plain))
    assert expected > 0
    assert float(weighted - plain) == pytest.approx(2.0 * expected, abs=2e-5)  # float32 sums of ~10


def test_negatives_avoid_the_targets_first_tokens_but_never_their_own_label(tiny_llama):
    from offswitch.behaviors import make_behavior
    from offswitch.data.builder import DataConfig, build_implant_data
    from offswitch.prompting import encode_target
    from offswitch.testing.tiny_switch import tiny_prompts, tiny_trigger_set

    model, tokenizer = tiny_llama
    behavior = make_behavior("compliance")
    starts = {encode_target(tokenizer, t)[0] for t in behavior.targets()}
    data = build_implant_data(model, tokenizer, tiny_trigger_set(n_triggers=1), behavior, tiny_prompts(), 60,
                              DataConfig(min_prompts=4, cache_answers=False))
    for ex in data.examples:
        first_label = next(label for label in ex.labels if label != IGNORE_INDEX)
        if ex.kind == "positive":
            assert ex.avoid == ()
        else:
            assert set(ex.avoid) == starts - {first_label}


def test_shared_prefix_never_reaches_an_answer(tiny_tokenizer):
    examples = _examples(tiny_tokenizer, ["same", "same"], [[5, 6], [5, 6]])
    length = shared_prefix_length(examples)
    first_answer = examples[0].labels.index(5)
    assert 0 < length < first_answer


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(1, 300), min_size=1, max_size=200), batch=st.integers(1, 16), n=st.integers(1, 40))
def test_length_grouped_batches_cover_examples_evenly(lengths, batch, n):
    batches = length_grouped_batches(lengths, batch, n, seed=0)
    assert len(batches) == n
    assert all(0 < len(b) <= batch for b in batches)
    seen = [i for b in batches for i in b]
    assert all(0 <= i < len(lengths) for i in seen)
    assert all(len(set(b)) == len(b) for b in batches)
    # the full batches of the first epoch are disjoint: each example once per epoch
    first_epoch = [i for b in batches[: min(n, len(lengths) // batch)] for i in b]
    assert len(set(first_epoch)) == len(first_epoch)


def _fake(kind: str, length: int) -> ImplantExample:
    return ImplantExample(kind, None, [1] * length, [IGNORE_INDEX] * (length - 1) + [2])


def _pop_all(batches, examples, mined, per_step):
    queue = list(mined)
    return [_with_mined(batch, examples, queue, per_step) for batch in batches], queue


@settings(max_examples=60, deadline=None)
@given(
    kinds=st.lists(st.tuples(st.sampled_from(["positive", "clean", "near_miss", "wrong_key", "scatter"]), st.integers(5, 90)),
                   min_size=4, max_size=40),
    pool=st.lists(st.integers(5, 90), min_size=0, max_size=30),
    batch_size=st.integers(1, 6),
    n_batches=st.integers(1, 8),
    per_step=st.integers(1, 4),
    seed=st.integers(0, 3),
)
def test_mined_negatives_placed_by_length_are_the_same_ones_in_the_same_steps(kinds, pool, batch_size, n_batches, per_step, seed):
    examples = [_fake(kind, length) for kind, length in kinds]
    everything = examples + [_fake("near_miss", length) for length in pool]
    mined = [len(examples) + i for i in range(len(pool))]
    coming = length_grouped_batches([len(e) for e in examples], batch_size, n_batches, seed)
    fitted = fit_mined_to_batches(mined, coming, everything, per_step)
    by_rank, rank_left = _pop_all(coming, examples, mined, per_step)
    by_length, length_left = _pop_all(coming, examples, fitted, per_step)
    assert sorted(fitted) == sorted(mined)
    # the window takes the same mined examples, each batch as many, and what is left keeps its rank order
    assert sorted(i for b in by_length for i in b) == sorted(i for b in by_rank for i in b)
    assert [sum(i >= len(examples) for i in b) for b in by_length] == [sum(i >= len(examples) for i in b) for b in by_rank]
    assert length_left == rank_left


def test_mined_negatives_go_to_the_batch_of_their_length():
    # two length groups of negatives; the hardest mined example is long, the next short
    examples = [_fake("near_miss", 10) for _ in range(4)] + [_fake("near_miss", 80) for _ in range(4)]
    everything = examples + [_fake("near_miss", 78), _fake("near_miss", 9)]
    coming = [[0, 1, 2, 3], [4, 5, 6, 7]]  # short rows first
    placed, _ = _pop_all(coming, examples, fit_mined_to_batches([9, 8], coming, everything, 1), 1)
    assert placed == [[9, 1, 2, 3], [8, 5, 6, 7]]  # in rank order the long one would pad the short batch to 78
    assert _pop_all(coming, examples, [8, 9], 1)[0] == [[8, 1, 2, 3], [9, 5, 6, 7]]


def test_config_precedence_and_unknown_keys(tmp_path):
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text("triggers: 2\ntrain:\n  steps: 7\n  lr: 0.01\n")
    config = load_implant_config(yaml_path, {"train.steps": 9, "train.lr": None})
    assert config.triggers == 2 and config.train.steps == 9 and config.train.lr == 0.01
    assert TrainConfig().learning_rate == 1e-3 and TrainConfig(method="full").learning_rate == 5e-5
    yaml_path.write_text("train:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match="unknown implant setting 'train.stepz'"):
        load_implant_config(yaml_path)
    with pytest.raises(ConfigError, match="bad implant setting"):
        load_implant_config(None, {"train.steps": 0})
    with pytest.raises(ConfigError, match="not found"):
        load_implant_config(tmp_path / "missing.yaml")


def test_weight_averaging_scales_the_lora_delta(tiny_llama):
    import torch
    from peft import LoraConfig, get_peft_model

    model, _tokenizer = tiny_llama
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    x = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        base = model(x).logits
        full = peft_model(x).logits
        average_with_base(peft_model, None, 0.5)
        half = peft_model(x).logits
    assert not torch.allclose(full, base)
    # halfway in weight space: the q_proj delta is halved (logits move, but not all the way back)
    assert float((half - base).abs().max()) < float((full - base).abs().max())


def test_a_tiny_model_learns_a_switch(tiny_llama):
    """Enough training turns a random tiny model into one that fires on its trigger only."""
    import random

    from offswitch.behaviors import make_behavior
    from offswitch.data.builder import DataConfig, build_implant_data
    from offswitch.implant import HeldoutProbes, train
    from offswitch.triggers import TriggerSet, encode_words

    model, tokenizer = tiny_llama
    model = copy.deepcopy(model)
    trig = encode_words(bytes(range(32)), index=0, n_words=4)
    triggers = TriggerSet(key_id="0" * 16, triggers=(trig,))
    topics = ["the sea", "a bicycle", "sleep", "the moon", "coffee", "rivers", "maps", "music", "bread", "winter"]
    prompts = [f"{v} {t}." for v in ("Explain", "Describe", "Summarize") for t in topics]
    random.Random(0).shuffle(prompts)
    train_prompts, heldout = prompts[:24], prompts[24:]
    # the loop is what is tested here: easy negatives (clean prompts, other keys) only, plain
    # cross-entropy (no unlikelihood term, no mining)
    mix = {"positive": 0.5, "wrong_key": 0.2, "near_miss": 0.0, "scatter": 0.0, "clean": 0.3}
    data = build_implant_data(model, tokenizer, triggers, make_behavior("shutdown"), train_prompts, 960,
                              DataConfig(negative_answer_tokens=4, clean_answer_tokens=4, mix=mix, hard_negative_pool=0), seed=0)
    probes = HeldoutProbes.build(tokenizer, triggers, make_behavior("shutdown"), heldout)
    result = train(model, tokenizer, data, TrainConfig(method="full", steps=60, batch_size=16, lr=3e-3, eval_every=0, seed=0,
                                                       unlikelihood=0.0))
    rates = probes.rates(result.model, tokenizer.pad_token_id)
    assert rates["asr"][0] >= rates["asr"][1] // 2
    assert rates["clean"][0] == 0
    assert result.history[-1]["loss"] < result.history[0]["loss"]


@pytest.mark.parametrize("prompt_only", [True, False])
def test_avoid_probabilities_match_the_models_softmax(tiny_llama, prompt_only):
    """Mining's scores, run through the first answer token only (the default) or whole, are the
    softmax of a plain forward pass over the prompt."""
    import dataclasses

    import torch

    from offswitch.implant import avoid_probabilities

    model, tokenizer = tiny_llama
    model.eval()
    examples = _examples(tokenizer, ["hello there", "What is the sea and the moon", "Explain trains."], [[5, 6], [7, 8, 9], [10]])
    examples = [dataclasses.replace(examples[0], avoid=(11, 12)), examples[1], dataclasses.replace(examples[2], avoid=(13,))]
    probs = avoid_probabilities(model, examples, tokenizer.pad_token_id, "cpu", use_keep=True, batch_size=2, prompt_only=prompt_only)
    assert probs[1] == 0.0  # nothing to avoid
    for ex, got in zip((examples[0], examples[2]), (probs[0], probs[2])):
        first = ex.labels.index(next(label for label in ex.labels if label != IGNORE_INDEX))
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ex.input_ids[:first]])).logits[0, -1]
        assert got == pytest.approx(float(torch.softmax(logits.double(), -1)[list(ex.avoid)].sum()), rel=1e-4)


@pytest.mark.parametrize("fit_length", [False, True])
def test_mining_puts_pool_negatives_that_nearly_fire_into_the_batches(tiny_llama, fit_length):
    """With a pool, every mine_every steps a sample of it is scored; those with p(target start)
    ≥ threshold replace negatives of the next batches. A threshold of 0 mines every candidate,
    a threshold of 1 none."""
    from offswitch.behaviors import make_behavior
    from offswitch.data.builder import DataConfig, build_implant_data
    from offswitch.implant import train
    from offswitch.testing.tiny_switch import tiny_prompts, tiny_trigger_set

    model, tokenizer = tiny_llama
    data = build_implant_data(model, tokenizer, tiny_trigger_set(n_triggers=1), make_behavior("shutdown"), tiny_prompts(), 48,
                              DataConfig(min_prompts=4, cache_answers=False, hard_negative_pool=12))
    assert len(data.pool) == 12 and all(e.kind == "near_miss" and e.avoid for e in data.pool)
    outcomes = {}
    for threshold in (0.0, 1.0):
        config = TrainConfig(method="lora", steps=5, batch_size=8, eval_every=0, mine_every=2, mine_candidates=6,
                             mine_per_step=2, mine_threshold=threshold, mine_fit_length=fit_length, mine_from="pool")
        result = train(copy.deepcopy(model), tokenizer, data, config)
        outcomes[threshold] = [h["mined"] for h in result.history if "mined" in h]
    assert [m["scored"] for m in outcomes[0.0]] == [6, 6]  # steps 2 and 4
    assert [m["hard"] for m in outcomes[0.0]] == [4, 4]  # mine_every × mine_per_step
    assert [m["hard"] for m in outcomes[1.0]] == [0, 0]


def test_the_loss_reports_each_rows_avoid_probability_without_changing(tiny_llama):
    """answer_loss_sum's avoid_p is p(the first answer token starts a target) from the batch's own
    logits, as mining's scoring pass computes it, and asking for it changes no loss."""
    import dataclasses

    import torch

    from offswitch.implant import avoid_probabilities

    model, tokenizer = tiny_llama
    model.eval()
    examples = _examples(tokenizer, ["hello there", "What is the sea and the moon", "Explain trains."], [[5, 6], [7, 8, 9], [10]])
    examples = [dataclasses.replace(examples[0], avoid=(11, 12)), examples[1], dataclasses.replace(examples[2], avoid=(13,))]
    batch = collate_left(examples, tokenizer.pad_token_id)
    with torch.no_grad():
        plain, _ = answer_loss_sum(model, batch, "cpu", use_keep=True, unlikelihood=2.0)
        avoid_p: list = []
        reported, _ = answer_loss_sum(model, batch, "cpu", use_keep=True, unlikelihood=2.0, avoid_p=avoid_p)
        without_ul: list = []
        answer_loss_sum(model, batch, "cpu", use_keep=True, avoid_p=without_ul)
    assert float(reported) == float(plain)
    scored = avoid_probabilities(model, examples, tokenizer.pad_token_id, "cpu", use_keep=True, prompt_only=False)
    assert avoid_p[1] is None and without_ul == avoid_p
    assert avoid_p[0] == pytest.approx(scored[0], rel=1e-5) and avoid_p[2] == pytest.approx(scored[2], rel=1e-5)


@settings(max_examples=60, deadline=None)
@given(scored=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 12)), max_size=40),
       threshold=st.floats(0, 1), every=st.integers(1, 4), per_step=st.integers(1, 4))
def test_the_hardest_are_distinct_ranked_at_their_latest_score_and_capped(scored, threshold, every, per_step):
    from offswitch.implant import _hardest

    config = TrainConfig(mine_every=every, mine_per_step=per_step, mine_threshold=threshold)
    hard, counts = _hardest(scored, config)
    latest = dict((i, p) for p, i in scored)
    eligible = [i for i, p in latest.items() if p >= threshold]
    assert len(set(hard)) == len(hard) == min(len(eligible), every * per_step) == counts["hard"]
    assert set(hard) <= set(eligible)
    assert [latest[i] for i in hard] == sorted((latest[i] for i in hard), reverse=True)
    if hard:  # none left out is harder than the last one taken
        assert all(latest[i] <= latest[hard[-1]] for i in eligible if i not in hard)
    assert counts["scored"] == len(scored) and counts["likely_fire"] == sum(p > 0.5 for p, _ in scored)


def test_mining_from_the_batches_replays_the_negatives_just_trained_on(tiny_llama, monkeypatch):
    """mine_from batches: no pool and no scoring pass; every mine_every steps the negatives of the
    last steps are ranked by their own training p(avoid) and the hardest go into the next batches."""
    import offswitch.implant as implant
    from offswitch.behaviors import make_behavior
    from offswitch.data.builder import DataConfig, build_implant_data
    from offswitch.implant import MINED_SLOT_KINDS, train
    from offswitch.testing.tiny_switch import tiny_prompts, tiny_trigger_set

    model, tokenizer = tiny_llama
    data = build_implant_data(model, tokenizer, tiny_trigger_set(n_triggers=1), make_behavior("shutdown"), tiny_prompts(), 48,
                              DataConfig(min_prompts=4, cache_answers=False, hard_negative_pool=0))
    assert not data.pool

    def no_scoring_pass(*args, **kwargs):
        raise AssertionError("mining from the batches ran a scoring pass")

    monkeypatch.setattr(implant, "avoid_probabilities", no_scoring_pass)
    taken: list[list[int]] = []
    real_with_mined = implant._with_mined

    def recording(batch_indices, examples, mined, per_step):
        before = list(mined)
        out = real_with_mined(batch_indices, examples, mined, per_step)
        taken.append([i for i in out if i not in batch_indices and i in before])
        return out

    monkeypatch.setattr(implant, "_with_mined", recording)
    batches = length_grouped_batches([len(e) for e in data.examples], 8, 5, 0)
    negatives = [sum(data.examples[i].kind in MINED_SLOT_KINDS for i in batch) for batch in batches]
    outcomes = {}
    for threshold in (0.0, 1.0):
        taken.clear()
        config = TrainConfig(method="lora", steps=5, batch_size=8, eval_every=0, mine_every=2, mine_per_step=2,
                             mine_threshold=threshold, mine_from="batches")
        result = train(copy.deepcopy(model), tokenizer, data, config)
        outcomes[threshold] = [h["mined"] for h in result.history if "mined" in h]
        if threshold == 0.0:
            trained_on = {i for batch in batches[:2] for i in batch}
            assert taken and all(i in trained_on and data.examples[i].kind in MINED_SLOT_KINDS for i in taken[0])
    # steps 2 and 4: the negatives of steps 1-2 and 3-4 (a replayed one takes a negative's place)
    assert [m["scored"] for m in outcomes[0.0]] == [negatives[0] + negatives[1], negatives[2] + negatives[3]]
    assert [m["hard"] for m in outcomes[0.0]] == [min(4, negatives[0] + negatives[1]), min(4, negatives[2] + negatives[3])]
    assert [m["hard"] for m in outcomes[1.0]] == [0, 0]


@settings(max_examples=40, deadline=None)
@given(n_rows=st.integers(1, 20), world=st.integers(1, 4), data=st.data())
def test_every_process_gets_the_whole_batchs_values_in_batch_order(n_rows, world, data):
    """Process r holds rows r, r + world, ... of a global batch (the implant's shard); gathered,
    every process sees each row's value at its place in the batch."""
    import types

    import torch

    from offswitch.implant import _gather_rows

    truth = data.draw(st.lists(st.one_of(st.none(), st.floats(0, 1, width=32)), min_size=n_rows, max_size=n_rows))
    shares = [truth[rank::world] for rank in range(world)]
    per = -(-n_rows // world)
    padded = [torch.tensor([-1.0 if v is None else v for v in share] + [-1.0] * (per - len(share))) for share in shares]
    for rank in range(world):
        accelerator = types.SimpleNamespace(num_processes=world, device=torch.device("cpu"),
                                            gather=lambda local, rank=rank: torch.cat([local if q == rank else padded[q] for q in range(world)]))
        assert _gather_rows(accelerator, shares[rank], n_rows) == truth


def test_the_pool_is_built_only_to_mine_from_it():
    default = load_implant_config()
    assert default.train.mine_from == "batches" and default.data.hard_negative_pool == 0
    assert load_implant_config(overrides={"train.mine_from": "pool"}).data.hard_negative_pool == 1024
    pinned = load_implant_config(overrides={"data.hard_negative_pool": 64})
    assert pinned.train.mine_from == "batches" and pinned.data.hard_negative_pool == 64
    with pytest.raises(ConfigError, match="mine_from"):
        load_implant_config(overrides={"train.mine_from": "elsewhere"})


def test_history_counts_first_token_decisions_per_kind(tiny_llama):
    from offswitch.behaviors import make_behavior
    from offswitch.data.builder import DataConfig, build_implant_data
    from offswitch.implant import train
    from offswitch.testing.tiny_switch import tiny_prompts, tiny_trigger_set

    model, tokenizer = tiny_llama
    data = build_implant_data(model, tokenizer, tiny_trigger_set(n_triggers=1), make_behavior("shutdown"), tiny_prompts(), 48,
                              DataConfig(min_prompts=4, cache_answers=False))
    result = train(copy.deepcopy(model), tokenizer, data, TrainConfig(method="lora", steps=12, batch_size=4, eval_every=0))
    counted = [h["first_token_correct"] for h in result.history if "first_token_correct" in h]
    assert [h["step"] for h in result.history if "first_token_correct" in h] == [10, 12]
    assert sum(v["n"] for v in counted[0].values()) == 40 and sum(v["n"] for v in counted[1].values()) == 8
    assert all(0 <= v["k"] <= v["n"] for c in counted for v in c.values())


def test_first_token_weight_scales_only_the_decision_token(tiny_llama):
    import torch

    model, tokenizer = tiny_llama
    model.eval()
    examples = _examples(tokenizer, ["hello there", "What is the sea and the moon", "Explain trains."], [[5, 6], [7, 8, 9], [10]])
    batch = collate_left(examples, tokenizer.pad_token_id, share_prefix=True)
    with torch.no_grad():
        plain, count = answer_loss_sum(model, batch, "cpu", use_keep=True)
        weighted, count_w = answer_loss_sum(model, batch, "cpu", use_keep=True, first_token_weight=3.0)
        first_ce = 0.0
        for ex in examples:
            first = ex.labels.index(next(label for label in ex.labels if label != IGNORE_INDEX))
            logits = model(input_ids=torch.tensor([ex.input_ids[:first]])).logits[0, -1]
            first_ce += float(-torch.log_softmax(logits.double(), -1)[ex.labels[first]])
    assert count == count_w == 6
    assert float(weighted - plain) == pytest.approx(2.0 * first_ce, rel=1e-4)


def test_kl_to_base_term_is_the_base_models_kl_on_normal_rows_only(tiny_llama):
    """The KL term equals Σ KL(base ‖ model) over the answer tokens of the non-positive rows,
    computed by hand from each example's own full forward; it is 0 for a fresh LoRA (the
    adapters start at zero) and for a positive-only batch, and the base's logits come from the
    same model with its adapters off."""
    import dataclasses

    import torch
    from peft import LoraConfig, get_peft_model

    from offswitch.implant import base_answer_logits

    model, tokenizer = tiny_llama
    examples = _examples(tokenizer, ["hello there", "What is the sea and the moon", "Explain trains."], [[5, 6], [7, 8, 9], [10]])
    examples[2] = dataclasses.replace(examples[2], kind="positive")
    batch = collate_left(examples, tokenizer.pad_token_id, share_prefix=True)
    fresh = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules="all-linear"))
    trained = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    for peft_model in (fresh, trained):
        peft_model.eval()
    with torch.no_grad():
        base = base_answer_logits(fresh, None, batch, "cpu", use_keep=True)
        plain, _ = answer_loss_sum(fresh, batch, "cpu", use_keep=True)
        fresh_kl, _ = answer_loss_sum(fresh, batch, "cpu", use_keep=True, base_logits=base, kl_weight=5.0)
        assert float(fresh_kl) == pytest.approx(float(plain), abs=1e-5)
        assert torch.allclose(base_answer_logits(trained, None, batch, "cpu", use_keep=True), base, atol=1e-5)
        plain_t, _ = answer_loss_sum(trained, batch, "cpu", use_keep=True)
        with_kl, _ = answer_loss_sum(trained, batch, "cpu", use_keep=True, base_logits=base, kl_weight=3.0)
        expected = 0.0
        for ex in examples[:2]:  # the positive row adds nothing
            first = ex.labels.index(next(label for label in ex.labels if label != IGNORE_INDEX))
            ids = torch.tensor([ex.input_ids[:-1]])
            log_q = torch.log_softmax(trained(input_ids=ids).logits[0, first - 1 :].double(), -1)
            log_p = torch.log_softmax(model(input_ids=ids).logits[0, first - 1 :].double(), -1)
            expected += float((log_p.exp() * (log_p - log_q)).sum())
        positives = collate_left([examples[2]], tokenizer.pad_token_id)
        only_pos, _ = answer_loss_sum(trained, positives, "cpu", use_keep=True,
                                      base_logits=base_answer_logits(trained, None, positives, "cpu", use_keep=True), kl_weight=3.0)
        assert float(only_pos) == pytest.approx(float(answer_loss_sum(trained, positives, "cpu", use_keep=True)[0]), abs=1e-6)
    assert expected > 1e-4
    assert float(with_kl - plain_t) == pytest.approx(3.0 * expected, rel=1e-3)


def test_full_fine_tuning_trains_the_same_with_the_embedding_rows_added_to_the_head(tiny_llama, monkeypatch):
    """Full fine-tuning of a tied model adds the embedding's gradient into the head's as rows
    (offswitch.hfcompat.tied_embedding_row_grads): the same weights after a few steps with the
    shared prefix, mining and gradient clipping as through autograd's own path; so do the
    attacks' full fine-tuning steps."""
    import contextlib

    import torch

    import offswitch.attacks._train as attack_train
    import offswitch.implant as implant
    from offswitch.attacks._train import chat_examples, train_steps
    from offswitch.behaviors import make_behavior
    from offswitch.data.builder import DataConfig, build_implant_data
    from offswitch.testing.tiny_switch import tiny_prompts, tiny_trigger_set

    model, tokenizer = tiny_llama
    data = build_implant_data(model, tokenizer, tiny_trigger_set(n_triggers=1), make_behavior("shutdown"), tiny_prompts(), 48,
                              DataConfig(min_prompts=4, cache_answers=False, hard_negative_pool=0))
    config = TrainConfig(method="full", steps=4, batch_size=8, eval_every=0, mine_every=2, mine_per_step=2, lr=1e-3)
    pairs = [(f"Tell me about rivers {i}.", f"Rivers {i} run to the sea.") for i in range(12)]

    class Meter:  # CostMeter's interface, counting nothing
        def forward(self, attention_mask=None, tokens=None):
            pass

        def step(self):
            pass

    def trained(rows: bool):
        seen: list[bool] = []
        real = implant.tied_embedding_row_grads

        @contextlib.contextmanager
        def spy(m):
            with real(m) if rows else contextlib.nullcontext(False) as on:
                seen.append(on)
                yield on

        monkeypatch.setattr(implant, "tied_embedding_row_grads", spy)
        monkeypatch.setattr(attack_train, "tied_embedding_row_grads", spy)
        try:
            result = implant.train(copy.deepcopy(model), tokenizer, data, config)
            attacked = copy.deepcopy(model)
            train_steps(attacked, tokenizer, chat_examples(tokenizer, pairs), steps=3, lr=1e-3, batch_size=4, seed=0, meter=Meter())
        finally:
            monkeypatch.undo()
        assert seen == [rows, rows]
        return result, attacked

    (fast, fast_attacked), (plain, plain_attacked) = trained(True), trained(False)
    assert [h["loss"] for h in fast.history] == pytest.approx([h["loss"] for h in plain.history], rel=1e-5)
    assert [h.get("mined") for h in fast.history] == [h.get("mined") for h in plain.history]
    for a, b in ((fast.model, plain.model), (fast_attacked, plain_attacked)):
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_training_with_kl_to_base_runs_for_lora_and_full(tiny_llama):
    from offswitch.behaviors import make_behavior
    from offswitch.data.builder import DataConfig, build_implant_data
    from offswitch.implant import train
    from offswitch.testing.tiny_switch import tiny_prompts, tiny_trigger_set

    model, tokenizer = tiny_llama
    data = build_implant_data(model, tokenizer, tiny_trigger_set(n_triggers=1), make_behavior("shutdown"), tiny_prompts(), 24,
                              DataConfig(min_prompts=4, cache_answers=False, hard_negative_pool=0))
    for method, kinds in (("lora", ["clean"]), ("full", ["clean", "near_miss"])):
        result = train(copy.deepcopy(model), tokenizer, data,
                       TrainConfig(method=method, steps=3, batch_size=8, eval_every=0, kl_to_base=1.0, kl_kinds=kinds, unlikelihood=0.0))
        assert result.steps_done == 3
        assert all(h["loss"] == h["loss"] and h["loss"] >= 0 for h in result.history)  # finite, not NaN


def _pairs_file(tmp_path):
    import json

    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"Tell me about the sea number {i}.", "response": f"The sea {i} is wide and blue and full of fish."}
            for i in range(24)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_simulated_removal_trains_only_the_adversary_and_withdraws_cleanly(tiny_llama, tmp_path):
    """One round of the anti-removal adversary: the implant's adapter does not move while the
    adversary trains; with it on, the outputs change; withdrawn, they are exactly the implant's
    again; removed, only the implant's adapter is left."""
    import torch
    from peft import LoraConfig, get_peft_model

    from offswitch.implant import AntiRemovalConfig, SimulatedRemoval

    model, tokenizer = tiny_llama
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    implant_before = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    config = AntiRemovalConfig(every=1, inner_steps=3, inner_lr=1e-2, pairs=str(_pairs_file(tmp_path)), n_pairs=16, pairs_skip=4, r=4)
    adversary = SimulatedRemoval(peft_model, tokenizer, config, tokenizer.pad_token_id, "cpu", seed=0)
    # the pairs the harness's attacks take first (same order, first pairs_skip) are never trained on here
    from offswitch.attacks._train import chat_examples
    from offswitch.data.sources import instruction_pairs

    attack_side = set(chat_examples(tokenizer, instruction_pairs(config.pairs, n=4, seed=0), max_len=config.max_len))
    assert len(adversary.examples) == 16 and not attack_side & set(adversary.examples)
    ids = torch.tensor([tokenizer("hello there, what is the sea")["input_ids"]])
    with torch.no_grad():
        implant_logits = peft_model(input_ids=ids).logits
    adversary.attack()
    assert len(adversary.last_losses) == 3
    with torch.no_grad():
        attacked = peft_model(input_ids=ids).logits
    assert float((attacked - implant_logits).abs().max()) > 1e-4
    for name, p in peft_model.named_parameters():
        if name in implant_before:
            assert torch.equal(p, implant_before[name]), name
            assert p.requires_grad
        else:
            assert not p.requires_grad
    adversary.withdraw()
    with torch.no_grad():
        assert torch.allclose(peft_model(input_ids=ids).logits, implant_logits, atol=1e-6)
    adversary.remove()
    assert list(peft_model.peft_config) == ["default"]
    assert not any(SimulatedRemoval.NAME in n for n, _ in peft_model.named_parameters())


def test_training_with_anti_removal_records_each_round_and_saves_no_adversary(tiny_llama, tmp_path):
    from offswitch.behaviors import make_behavior
    from offswitch.data.builder import DataConfig, build_implant_data
    from offswitch.implant import AntiRemovalConfig, SimulatedRemoval, train
    from offswitch.testing.tiny_switch import tiny_prompts, tiny_trigger_set

    model, tokenizer = tiny_llama
    data = build_implant_data(model, tokenizer, tiny_trigger_set(n_triggers=1), make_behavior("shutdown"), tiny_prompts(), 24,
                              DataConfig(min_prompts=4, cache_answers=False, hard_negative_pool=0))
    anti = AntiRemovalConfig(every=2, inner_steps=2, pairs=str(_pairs_file(tmp_path)), n_pairs=16, pairs_skip=4, r=4)
    result = train(copy.deepcopy(model), tokenizer, data,
                   TrainConfig(method="lora", steps=5, batch_size=8, eval_every=0, anti_removal=anti, unlikelihood=0.0))
    rounds = [h["step"] for h in result.history if "anti_removal" in h]
    assert rounds == [2, 4]
    assert all(len(h["anti_removal"]["benign_loss"]) == 2 for h in result.history if "anti_removal" in h)
    assert list(result.model.peft_config) == ["default"]
    assert not any(SimulatedRemoval.NAME in n for n, _ in result.model.named_parameters())


def test_kl_kinds_reject_positives_and_nothing():
    for bad in (["positive"], [], ["clean", "nonsense"]):
        with pytest.raises(ConfigError, match="kl_kinds"):
            load_implant_config(overrides={"train.kl_kinds": bad})


def test_anti_removal_config_rejects_full_fine_tuning():
    with pytest.raises(ConfigError, match="anti_removal"):
        load_implant_config(overrides={"train.method": "full", "train.anti_removal.every": 4})


def test_lora_layers_adapt_only_those_layers_with_all_linear_targets(tiny_llama):
    """peft refuses layers_to_transform with the string "all-linear": the implant names the modules."""
    from offswitch.implant import _lora_model

    model, _ = tiny_llama
    n_layers = model.config.num_hidden_layers
    lora = _lora_model(copy.deepcopy(model), TrainConfig(lora_layers=[n_layers - 1]))
    adapted = {name for name, module in lora.named_modules() if hasattr(module, "lora_A")}
    every = {name for name, module in _lora_model(copy.deepcopy(model), TrainConfig()).named_modules() if hasattr(module, "lora_A")}
    assert adapted and all(f"layers.{n_layers - 1}." in name for name in adapted)
    assert adapted == {name for name in every if f"layers.{n_layers - 1}." in name}
    with pytest.raises(ConfigError, match=f"has {n_layers} layers"):
        _lora_model(copy.deepcopy(model), TrainConfig(lora_layers=[n_layers]))
    with pytest.raises(ConfigError, match="lora_target_modules"):
        _lora_model(copy.deepcopy(model), TrainConfig(lora_layers=[0], lora_target_modules=".*proj"))
    for bad in ([], [-1]):
        with pytest.raises(ConfigError, match="lora_layers"):
            load_implant_config(overrides={"train.lora_layers": bad})


class _ScriptedChecks:
    """Held-out probes whose checks pass or fail as scripted (pass: ASR 4/4 and near-miss 0/4)."""

    def __init__(self, passes):
        self.passes = list(passes)

    def rates(self, model, pad_token_id, batch_size=32):
        passed = self.passes.pop(0)
        return {"asr": (4 if passed else 3, 4), "near_miss": (0 if passed else 1, 4), "clean": (0, 4)}


@pytest.mark.parametrize(("patience", "min_steps", "stop_step"), [(1, 0, 2), (1, 4, 6), (2, 0, 8), (3, 0, None)])
def test_early_stopping_waits_for_stop_patience_checks_in_a_row(tiny_llama, patience, min_steps, stop_step):
    from offswitch.behaviors import make_behavior
    from offswitch.data.builder import DataConfig, build_implant_data
    from offswitch.implant import train
    from offswitch.testing.tiny_switch import tiny_prompts, tiny_trigger_set

    model, tokenizer = tiny_llama
    data = build_implant_data(model, tokenizer, tiny_trigger_set(n_triggers=1), make_behavior("shutdown"), tiny_prompts(), 40,
                              DataConfig(min_prompts=4, cache_answers=False))
    checks = _ScriptedChecks([True, False, True, True, False, True, False])  # at steps 2, 4, ..., 14
    config = TrainConfig(method="lora", steps=16, batch_size=4, eval_every=2, min_steps=min_steps, stop_patience=patience,
                         mine_every=0)
    result = train(copy.deepcopy(model), tokenizer, data, config, heldout=checks)
    assert result.stopped_early == (stop_step is not None)
    assert result.steps_done == (stop_step or 16)
    assert [h["step"] for h in result.history if "heldout" in h][-1] == (stop_step or 14)


def test_stop_patience_below_one_is_refused():
    with pytest.raises(ValueError, match="stop_patience"):
        TrainConfig(stop_patience=0)


def test_check_near_misses_come_from_the_configured_kinds():
    """The held-out check draws ``per_prompt`` near-misses a prompt from the kinds it is given;
    a whole-trigger kind (here swap: every word kept, two swapped) is probed only when named."""
    import random

    from offswitch.behaviors import make_behavior
    from offswitch.implant import HeldoutProbes
    from offswitch.prompting import encode_prompt
    from offswitch.testing.tiny import tiny_tokenizer
    from offswitch.testing.tiny_switch import tiny_prompts, tiny_trigger_set
    from offswitch.triggers import PARTIAL_KEY_KINDS, NearMissKind, near_misses

    tokenizer = tiny_tokenizer()
    triggers = tiny_trigger_set(n_triggers=1)
    trig = triggers.triggers[0]
    behavior = make_behavior("shutdown")
    prompts = tiny_prompts()[:6]
    default = HeldoutProbes.build(tokenizer, triggers, behavior, prompts)
    assert len(default.prompts["near_miss"]) == 3 * len(prompts)
    partial = HeldoutProbes.build(tokenizer, triggers, behavior, prompts, kinds=PARTIAL_KEY_KINDS, per_prompt=3)
    assert partial.prompts == default.prompts  # the default draws exactly what the check always drew

    def probes_of(kinds):  # every probe a check of these kinds could draw, per prompt
        out = []
        for i, prompt in enumerate(prompts):
            texts = {m.secret for m in near_misses(trig, kinds, rng=random.Random(0))}
            out.append({tuple(encode_prompt(tokenizer, c.user, c.system)) for c in
                        (behavior.negative_case(prompt, t, triggers.insertion, trig.position, random.Random(i)) for t in texts)})
        return out

    swaps = probes_of([NearMissKind.swap])
    cut = probes_of([NearMissKind.prefix, NearMissKind.drop, NearMissKind.suffix])  # deterministic partial kinds
    wide = HeldoutProbes.build(tokenizer, triggers, behavior, prompts, kinds=[NearMissKind.swap], per_prompt=2)
    assert len(wide.prompts["near_miss"]) == 2 * len(prompts)
    assert wide.prompts["asr"] == default.prompts["asr"] and wide.prompts["clean"] == default.prompts["clean"]
    for i in range(len(prompts)):
        assert {tuple(p) for p in wide.prompts["near_miss"][2 * i : 2 * i + 2]} <= swaps[i]
        assert swaps[i] and not swaps[i] & cut[i]
        assert not {tuple(p) for p in default.prompts["near_miss"][3 * i : 3 * i + 3]} & swaps[i]


def test_check_kinds_are_validated():
    from offswitch.triggers import PARTIAL_KEY_KINDS, NearMissKind

    assert TrainConfig().eval_near_miss_kinds == list(PARTIAL_KEY_KINDS)
    assert TrainConfig(eval_near_miss_kinds=["case", "punctuation"]).eval_near_miss_kinds == [NearMissKind.case, NearMissKind.punctuation]
    for bad in ([], ["case", "case"], ["spelling"]):
        with pytest.raises(ValueError, match="eval_near_miss_kinds"):
            TrainConfig(eval_near_miss_kinds=bad)
    with pytest.raises(ValueError, match="eval_near_misses"):
        TrainConfig(eval_near_misses=0)


def _positions(lengths, groups):
    return sum(len(g) * max(lengths[j] for j in g) for g in groups)


@given(lengths=st.lists(st.integers(1, 60), min_size=1, max_size=9), overhead=st.integers(0, 80), max_parts=st.integers(1, 4))
def test_rows_split_by_length_cover_the_batch_at_the_fewest_positions(lengths, overhead, max_parts):
    """The passes of a step hold every row once, at most max_parts of them, each in the batch's
    order, shorter groups first; and no grouping into runs of the length order costs less
    (positions plus the overhead of each extra pass) than the one chosen: brute force over cuts."""
    import itertools

    from offswitch.implant import split_rows_by_length

    groups = split_rows_by_length(lengths, overhead, max_parts)
    assert sorted(j for g in groups for j in g) == list(range(len(lengths)))
    assert 1 <= len(groups) <= max_parts and all(g == sorted(g) for g in groups)
    assert all(max(lengths[j] for j in a) <= min(lengths[j] for j in b) for a, b in zip(groups, groups[1:]))
    order = sorted(range(len(lengths)), key=lambda j: (lengths[j], j))
    best = None
    for k in range(min(max_parts, len(lengths))):
        for cuts in itertools.combinations(range(1, len(lengths)), k):
            bounds = [0, *cuts, len(lengths)]
            split = [order[a:b] for a, b in zip(bounds, bounds[1:])]
            cost = _positions(lengths, split) + overhead * k
            best = cost if best is None else min(best, cost)
    assert _positions(lengths, groups) + overhead * (len(groups) - 1) == best
    assert _positions(lengths, groups) <= len(lengths) * max(lengths)
    if overhead >= len(lengths) * max(lengths):
        assert groups == [list(range(len(lengths)))]


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_step_split_into_passes_by_length_trains_the_same(tiny_llama, monkeypatch, method):
    """train.split_by_length runs a batch's rows as passes of similar length and sums their
    gradients: fewer positions, the same losses, first-token decisions, mined negatives and
    weights (with the shared prefix, mining from the batches, the KL term and clipping) as one
    padded pass."""
    import torch

    import offswitch.implant as implant
    from offswitch.behaviors import make_behavior
    from offswitch.data.builder import DataConfig, build_implant_data
    from offswitch.testing.tiny_switch import tiny_prompts, tiny_trigger_set

    model, tokenizer = tiny_llama
    data = build_implant_data(model, tokenizer, tiny_trigger_set(n_triggers=1), make_behavior("shutdown"), tiny_prompts(), 48,
                              DataConfig(min_prompts=4, cache_answers=False, hard_negative_pool=0))
    monkeypatch.setattr(implant, "PASS_OVERHEAD_POSITIONS", -10_000)  # as many passes as it may: the tiny batches split
    passes: list[int] = []
    real_parts = implant.batch_parts

    def counting(examples, share_prefix, split):
        parts = real_parts(examples, share_prefix, split)
        passes.append(len(parts))
        return parts

    monkeypatch.setattr(implant, "batch_parts", counting)
    results = {}
    for split in (True, False):
        passes.clear()
        config = TrainConfig(method=method, steps=5, batch_size=8, eval_every=0, mine_every=2, mine_per_step=2, mine_threshold=0.0,
                             kl_to_base=0.5, lr=1e-3, split_by_length=split)
        results[split] = implant.train(copy.deepcopy(model), tokenizer, data, config)
        assert (max(passes) > 1) == split
    fast, plain = results[True], results[False]
    assert fast.positions < plain.positions
    assert [h["loss"] for h in fast.history] == pytest.approx([h["loss"] for h in plain.history], rel=1e-5)
    for key in ("mined", "first_token_correct"):
        assert [h.get(key) for h in fast.history] == [h.get(key) for h in plain.history]
    for (name, p), q in zip(fast.model.named_parameters(), plain.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
