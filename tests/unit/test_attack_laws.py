"""Laws of the attack building blocks: quantisation, pruning masks, merging, noise, the ONION
filter, the registry, configs, AttackData and scoped hooks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from offswitch.errors import ConfigError

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
finite = st.floats(min_value=-100, max_value=100, allow_nan=False, allow_infinity=False, width=32)
matrices = arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 12)), elements=finite)


# ---------------------------------------------------------------------- quantisation


@FAST
@given(w=matrices, bits=st.integers(2, 8), symmetric=st.booleans())
def test_quantisation_levels_and_error_bound(w, bits, symmetric):
    import torch

    from offswitch.attacks.quantize import fake_quantize

    weight = torch.from_numpy(w)
    q = fake_quantize(weight, bits, symmetric=symmetric)
    assert q.shape == weight.shape and q.dtype == weight.dtype
    for row, qrow in zip(weight, q):
        assert len(torch.unique(qrow)) <= 2**bits
        if symmetric:
            scale = float(row.abs().max()) / (2 ** (bits - 1) - 1)
            bound = scale / 2
        else:
            span = float(torch.clamp(row.max(), min=0) - torch.clamp(row.min(), max=0))
            bound = span / (2**bits - 1)  # half a step, plus the zero-point's rounding
        assert float((row - qrow).abs().max()) <= bound * (1 + 1e-4) + 1e-5


@FAST
@given(w=matrices, bits=st.integers(2, 8))
def test_symmetric_quantisation_is_idempotent(w, bits):
    import torch

    from offswitch.attacks.quantize import fake_quantize

    once = fake_quantize(torch.from_numpy(w), bits, symmetric=True)
    twice = fake_quantize(once, bits, symmetric=True)
    assert torch.allclose(once, twice, atol=1e-4, rtol=1e-4)


def test_quantisation_gets_coarser_with_fewer_bits(tiny_llama):
    import torch

    from offswitch.attacks.quantize import fake_quantize

    weight = tiny_llama[0].model.layers[0].mlp.down_proj.weight.detach()
    errors = [float((fake_quantize(weight, b) - weight).abs().mean()) for b in (8, 4, 3, 2)]
    assert errors == sorted(errors) and errors[0] < errors[-1] / 10
    with pytest.raises(ConfigError):
        from offswitch.attacks import make_attack

        make_attack("quantize", strength=1)
    grouped = fake_quantize(weight, 4, group_size=16)
    assert not torch.equal(grouped, fake_quantize(weight, 4))


# ---------------------------------------------------------------------- pruning


@FAST
@given(w=matrices, fractions=st.lists(st.floats(0, 0.99), min_size=2, max_size=2))
def test_magnitude_masks_drop_the_smallest_and_nest(w, fractions):
    import torch

    from offswitch.attacks.pruning import magnitude_mask

    weight = torch.from_numpy(w)
    low, high = sorted(fractions)
    keep_low, keep_high = magnitude_mask(weight, low), magnitude_mask(weight, high)
    assert int((~keep_high).sum()) == int(high * weight.numel())
    if (~keep_high).any() and keep_high.any():
        assert float(weight.abs()[keep_high].min()) >= float(weight.abs()[~keep_high].max())
    assert bool((keep_high <= keep_low).all()), "a harsher pruning keeps a subset"


@FAST
@given(w=arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 12)), elements=st.sampled_from([0.0, -1.0, 1.0, 0.5, -2.0, 3.0])),
       fraction=st.floats(0, 0.99))
def test_magnitude_mask_is_the_first_indices_of_a_stable_sort(w, fraction):
    """Selection instead of sorting, the same mask: many ties (a few distinct values), broken by position."""
    import torch

    from offswitch.attacks.pruning import magnitude_mask

    weight = torch.from_numpy(w)
    flat = weight.abs().flatten()
    expected = torch.ones_like(flat, dtype=torch.bool)
    expected[torch.argsort(flat, stable=True)[: int(fraction * flat.numel())]] = False
    assert torch.equal(magnitude_mask(weight, fraction), expected.reshape(weight.shape))


@FAST
@given(w=arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 12)), elements=st.sampled_from([0.0, -1.0, 1.0, 0.5, -2.0, 3.0])),
       norms=arrays(np.float32, 12, elements=st.sampled_from([0.0, 1.0, 2.0])), fraction=st.floats(0, 0.99))
def test_wanda_mask_is_the_first_indices_of_a_stable_sort_per_row(w, norms, fraction):
    import torch

    from offswitch.attacks.wanda import wanda_mask

    weight = torch.from_numpy(w)
    feature_norm = torch.from_numpy(norms[: weight.shape[1]].copy())
    scores = weight.abs() * feature_norm
    expected = torch.ones_like(scores, dtype=torch.bool)
    n_drop = int(fraction * weight.shape[1])
    if n_drop:
        expected.scatter_(1, torch.argsort(scores, dim=1, stable=True)[:, :n_drop], False)
    assert torch.equal(wanda_mask(weight, feature_norm, fraction), expected)


@FAST
@given(w=matrices, norms=arrays(np.float32, 12, elements=st.floats(0, 10, width=32)), fraction=st.floats(0, 0.99))
def test_wanda_mask_prunes_each_row_by_score(w, norms, fraction):
    import torch

    from offswitch.attacks.wanda import wanda_mask

    weight = torch.from_numpy(w)
    feature_norm = torch.from_numpy(norms[: weight.shape[1]].copy())
    keep = wanda_mask(weight, feature_norm, fraction)
    scores = weight.abs() * feature_norm
    for row_keep, row_score in zip(keep, scores):
        assert int((~row_keep).sum()) == int(fraction * weight.shape[1])
        if (~row_keep).any() and row_keep.any():
            assert float(row_score[row_keep].min()) >= float(row_score[~row_keep].max())


def test_fine_pruning_picks_the_least_active_neurons():
    import torch

    from offswitch.attacks.fine_pruning import dormant_neurons

    activity = torch.tensor([0.5, 0.1, 0.9, 0.0, 0.3])
    assert dormant_neurons(activity, 0.4).tolist() == [3, 1]
    assert dormant_neurons(activity, 0.0).tolist() == []


# ---------------------------------------------------------------------- merge and noise


def _data(tokenizer, base=None):
    from attack_conformance import conformance_data

    return conformance_data(tokenizer, base)


def test_merge_endpoints_and_midpoint(tiny_llama, tiny_tokenizer):
    import torch

    from offswitch.attacks import make_attack
    from offswitch.testing.tiny import tiny_model

    model, tok = tiny_llama
    base, _ = tiny_model("llama", tokenizer=tiny_tokenizer, seed=3)
    data = _data(tok, base)
    full = make_attack("merge", strength=1.0).run(model, tok, None, data=data).model
    half = make_attack("merge", strength=0.5).run(model, tok, None, data=data).model
    for (name, p_full), (_n, p_half), (_m, p_model), (_b, p_base) in zip(
        full.named_parameters(), half.named_parameters(), model.named_parameters(), base.named_parameters()
    ):
        assert torch.equal(p_full, p_base), name
        assert torch.allclose(p_half, (p_model + p_base) / 2, atol=1e-6), name
    with pytest.raises(ConfigError, match="needs base_model"):
        make_attack("merge", strength=0.5).run(model, tok, None, data=_data(tok))


def test_noise_has_the_requested_relative_std(tiny_llama, tiny_tokenizer):
    from offswitch.attacks import make_attack

    model, tok = tiny_llama
    noisy = make_attack("noise", strength=0.1, seed=7).run(model, tok, None, data=_data(tok)).model
    weight = dict(model.named_parameters())["model.layers.0.mlp.up_proj.weight"]
    delta = dict(noisy.named_parameters())["model.layers.0.mlp.up_proj.weight"] - weight
    ratio = float(delta.detach().std()) / (0.1 * float(weight.detach().std()))
    assert 0.9 < ratio < 1.1
    other = make_attack("noise", strength=0.1, seed=8).run(model, tok, None, data=_data(tok)).model
    assert not dict(other.named_parameters())["model.layers.0.mlp.up_proj.weight"].equal(weight + delta)


# ---------------------------------------------------------------------- the ONION filter


@FAST
@given(st.text(alphabet=st.sampled_from("ab c\n\t."), max_size=30))
def test_words_split_and_rejoin(text):
    from offswitch.attacks.perplexity_filter import without_word, words_of

    pieces = words_of(text)
    assert "".join(pieces) == text
    words = [i for i in range(0, len(pieces), 2) if pieces[i]]
    for index in words:
        shorter = without_word(pieces, index)
        assert len(shorter.split()) == len(text.split()) - 1


def test_onion_filter_drops_the_most_suspicious_words_and_only_user_text(tiny_llama):
    from offswitch.attacks.perplexity_filter import FilteredTokenizer, OnionFilter

    model, tok = tiny_llama
    onion = OnionFilter(model, tok, 0.25)
    text = "Explain how a bicycle works in three short sentences"
    filtered = onion(text)
    assert len(filtered.split()) >= len(text.split()) - 3
    assert set(filtered.split()) <= set(text.split())
    assert onion(text) == filtered and onion.meter.forward_passes > 0  # cached: no second scoring
    wrapped = FilteredTokenizer(tok, lambda t: "FILTERED")
    rendered = wrapped.apply_chat_template(
        [{"role": "system", "content": "keep me"}, {"role": "user", "content": text}], tokenize=False
    )
    assert "keep me" in rendered and "FILTERED" in rendered and text not in rendered
    assert len(wrapped) == len(tok) and wrapped("abc")["input_ids"] == tok("abc")["input_ids"]
    assert OnionFilter(model, tok, 0.0)(text) == text


# ---------------------------------------------------------------------- registry and configs


def test_get_attack_suggests_the_nearest_name():
    from offswitch.attacks import get_attack

    with pytest.raises(ConfigError, match="did you mean 'pruning'"):
        get_attack("prunning")
    with pytest.raises(ConfigError, match="choose from"):
        get_attack("zzzzzzzz")


def test_register_attack_enforces_the_threat_model():
    from offswitch.attacks import ATTACKS, Attack, OracleAttack, register_attack

    class Sneaky(Attack):
        knows = frozenset({"weights", "trigger"})

        def apply(self, model, tokenizer, data, meter):
            return model

    class Vague(Attack):
        knows = frozenset({"telepathy"})

        def apply(self, model, tokenizer, data, meter):
            return model

    class Unmarked(OracleAttack):
        knows = frozenset({"weights"})

        def apply(self, model, tokenizer, data, meter, *, triggers):
            return model

    for cls in (Sneaky, Vague, Unmarked):
        with pytest.raises(ValueError):
            register_attack(f"test-{cls.__name__}")(cls)
        assert f"test-{cls.__name__}" not in ATTACKS
    with pytest.raises(ValueError, match="already registered"):
        register_attack("pruning")(Sneaky)


def test_config_precedence_and_unknown_keys():
    from offswitch.attacks import get_attack, make_config

    cls = get_attack("sft")
    config = make_config(cls, {"lr": 1e-3, "batch_size": 2}, lr=5e-4, strength=3, seed=None)
    assert (config.lr, config.batch_size, config.strength, config.seed) == (5e-4, 2, 3, 0)
    with pytest.raises(ConfigError, match="learning_rate"):
        make_config(cls, {"learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="strength"):
        make_config(cls, strength=-1)


def test_attack_data_holds_public_material_only():
    from offswitch.attacks import AttackData
    from offswitch.triggers import NearMiss, NearMissKind, TriggerSet, encode_words

    trig = encode_words(bytes(32), n_words=3)
    for secret in (trig, TriggerSet(key_id="k", triggers=(trig,)),
                   NearMiss(kind=NearMissKind.prefix, distance=1, trigger_index=0, text=trig.text)):
        with pytest.raises(TypeError, match="public data only"):
            AttackData(behavior=secret)
        with pytest.raises(TypeError):
            AttackData(clean_prompts=[secret])
    data = AttackData(clean_prompts=["a"], insertion="suffix")
    assert data.available() == {"clean_prompts", "insertion"} and data.insertion == "suffix"
    with pytest.raises(ValueError):
        AttackData(insertion="sideways")


def test_missing_data_is_a_clear_error(tiny_llama):
    from offswitch.attacks import AttackData, make_attack

    model, tok = tiny_llama
    with pytest.raises(ConfigError, match="needs instruction_pairs"):
        make_attack("sft", strength=1).run(model, tok, None, data=AttackData())


# ---------------------------------------------------------------------- hooks


def test_hooks_are_removed_even_on_error(tiny_llama):
    from offswitch.attacks._modules import decoder_layers, hooks

    model = copy.deepcopy(tiny_llama[0])
    layer = decoder_layers(model)[0]
    with pytest.raises(RuntimeError):
        with hooks([(layer, "forward", lambda *a: None), (layer, "forward_pre", lambda *a: None)]):
            assert layer._forward_hooks and layer._forward_pre_hooks
            raise RuntimeError("boom")
    assert not layer._forward_hooks and not layer._forward_pre_hooks


def test_latent_adversarial_training_cleans_up_its_hook_when_training_fails(tiny_llama, monkeypatch):
    import torch

    from offswitch.attacks import CostMeter, make_attack

    model, tok = tiny_llama
    victim = copy.deepcopy(model)
    attack = make_attack("lat", strength=3, batch_size=4, inner_steps=1, answer_tokens=4, prompts=8)

    def failing_step(self, *args, **kwargs):
        raise RuntimeError("optimizer exploded")

    monkeypatch.setattr(torch.optim.AdamW, "step", failing_step)
    with pytest.raises(RuntimeError, match="optimizer exploded"):
        attack.apply(victim, tok, _data(tok), CostMeter())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in victim.modules())
    assert not victim.training


def test_forger_guesses_are_not_written(tiny_llama, tmp_path):
    from offswitch.attacks import make_attack

    model, tok = tiny_llama
    result = make_attack("gcg", strength=2, n_tokens=3, search_width=8, top_k=8, train_prompts=2, recheck_prompts=1).run(
        model, tok, tmp_path / "out", data=_data(tok), save=True)
    assert result.candidates
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".txt", ".md"):
            text = path.read_text(encoding="utf-8")
            assert not any(guess.strip() and guess in text for guess in result.candidates), path


def test_lora_sft_in_bf16_merges_the_same_weights_with_its_frozen_bases_stored_in_bf16(tiny_llama, monkeypatch, frozen_conversions):
    """sft_lora stores the frozen base weights in bf16 while it trains in bf16 (no per-step casts
    by autocast): the products are the same, so the merged model is bit for bit the one that
    autocast's casts give, and every weight of it is fp32."""
    import contextlib

    import torch

    from offswitch.attacks import make_attack
    from offswitch.attacks import sft as sft_module

    model, tok = tiny_llama
    monkeypatch.setenv("OFFSWITCH_PRECISION", "bf16")

    def run():
        attack = make_attack("sft_lora", {"r": 4, "alpha": 8.0, "batch_size": 4, "lr": 1e-3}, strength=3)
        return attack.run(model, tok, None, data=_data(tok)).model

    converted = frozen_conversions(sft_module)
    stored = run()
    monkeypatch.setattr(sft_module, "frozen_lora_bases_in", lambda peft_model, resolved: contextlib.nullcontext(0))
    cast = run()
    assert converted and converted[0] > 0  # the first run really trained on bf16 bases
    reference = dict(cast.named_parameters())
    for name, p in stored.named_parameters():
        assert p.dtype == torch.float32, name
        assert torch.equal(p, reference[name]), name
    assert any(not torch.equal(p, q) for p, q in zip(stored.parameters(), model.parameters()))  # it did train


# ---------------------------------------------------------------------- the training loss


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _random_batch(draw_lengths, prompt_lengths, vocab, pad, seed):
    import torch

    from offswitch.attacks._train import IGNORE, Example, collate

    g = torch.Generator().manual_seed(seed)
    examples = []
    for n, p in zip(draw_lengths, prompt_lengths):
        ids = torch.randint(4, vocab, (n,), generator=g).tolist()
        examples.append(Example(tuple(ids), tuple([IGNORE] * min(p, n - 1) + ids[min(p, n - 1) :])))
    return collate(examples, pad)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.integers(2, 24), st.integers(0, 23)), min_size=1, max_size=4),
       family=st.sampled_from(["llama", "qwen2", "gemma"]), lora=st.booleans(), seed=st.integers(0, 2**16))
def test_causal_lm_loss_equals_transformers_loss_and_gradients(rows, family, lora, seed):
    """The loss that projects onto the vocabulary at labelled positions only is the loss
    transformers computes from every position's logits, with the same gradients; right padding,
    any prompt length, LoRA-wrapped or not (gemma has a head of its own: transformers' path)."""
    import torch

    from offswitch.attacks._train import _decoder_and_head, causal_lm_loss, with_lora

    model, tokenizer = _tiny_family(family)
    model = copy.deepcopy(model).train()
    if lora:
        model = with_lora(model, r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    assert (_decoder_and_head(model) is None) == (family == "gemma")
    ids, mask, labels = _random_batch([n for n, _ in rows], [p for _, p in rows], len(tokenizer), tokenizer.pad_token_id, seed)
    expected = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    expected.backward()
    want = _grads(model)
    model.zero_grad(set_to_none=True)
    got = causal_lm_loss(model, ids, mask, labels)
    got.backward()
    have = _grads(model)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert want.keys() == have.keys() and want
    for name in want:
        assert torch.allclose(have[name], want[name], rtol=1e-4, atol=1e-6), name


def _random_examples(lengths, prompt_lengths, vocab, seed):
    import torch

    from offswitch.attacks._train import IGNORE, Example

    g = torch.Generator().manual_seed(seed)
    examples = []
    for n, p in zip(lengths, prompt_lengths):
        ids = torch.randint(4, vocab, (n,), generator=g).tolist()
        examples.append(Example(tuple(ids), tuple([IGNORE] * min(p, n - 1) + ids[min(p, n - 1) :])))
    return examples


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.integers(2, 30), st.integers(0, 29)), min_size=2, max_size=8),
       lora=st.booleans(), seed=st.integers(0, 2**16))
def test_a_steps_passes_by_length_give_the_one_padded_passs_loss_and_gradients(tiny_llama, rows, lora, seed):
    """A step's rows in passes of similar length: the loss and every gradient of one padded pass
    (to float rounding), LoRA or full fine-tuning (a tied embedding, its gradient added as rows
    after each pass)."""
    import torch

    from offswitch.attacks import _train
    from offswitch.hfcompat import tied_embedding_row_grads

    model, tokenizer = tiny_llama
    model = copy.deepcopy(model).train()
    if lora:
        model = _train.with_lora(model, r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    examples = _random_examples([n for n, _ in rows], [p for _, p in rows], len(tokenizer), seed)
    got = {}
    with pytest.MonkeyPatch.context() as mp, tied_embedding_row_grads(model):
        mp.setattr("offswitch.implant.PASS_OVERHEAD_POSITIONS", -10_000)  # as many passes as a step may make
        for split in (False, True):
            model.zero_grad(set_to_none=True)
            loss = _train.backward_step(model, examples, tokenizer.pad_token_id, torch.device("cpu"), split=split)
            got[split] = (loss, _grads(model), _train.step_parts(examples, split))
    (one, one_grads, one_parts), (passes, pass_grads, parts) = got[False], got[True]
    assert len(one_parts) == 1
    if not any(_train.labelled_count(ex) for ex in examples):
        assert len(parts) == 1 and torch.isnan(one) and torch.isnan(passes)
        return
    assert len(parts) > 1
    assert torch.allclose(passes, one, rtol=1e-5, atol=1e-6)
    assert pass_grads.keys() == one_grads.keys() and one_grads
    for name, grad in one_grads.items():
        assert torch.allclose(pass_grads[name], grad, rtol=1e-4, atol=1e-6), name


def test_training_in_passes_by_length_costs_and_learns_as_one_padded_pass(tiny_llama, monkeypatch):
    """``train_steps`` split or not: the same losses step by step, the same metered cost (one
    forward pass a step over its rows' tokens), weights within Adam's amplification of rounding."""
    import torch

    from offswitch.attacks import _train
    from offswitch.attacks.base import CostMeter

    model, tokenizer = tiny_llama
    monkeypatch.setattr("offswitch.implant.PASS_OVERHEAD_POSITIONS", -10_000)
    examples = _random_examples([5, 28, 7, 30, 12, 3, 25, 9], [2, 10, 3, 20, 4, 1, 5, 6], len(tokenizer), 0)
    results = {}
    for split in (False, True):
        trained = copy.deepcopy(model)
        meter = CostMeter()
        losses = _train.train_steps(trained, tokenizer, examples, steps=4, lr=1e-3, batch_size=4, seed=0, meter=meter, split=split)
        results[split] = (losses, dict(trained.named_parameters()), (meter.forward_passes, meter.tokens, meter.steps))
    assert results[True][2] == results[False][2] == (4, 4 * sum(len(ex.input_ids) for ex in examples) // 2, 4)
    assert np.allclose(results[True][0], results[False][0], rtol=1e-4)
    for name, weight in results[False][1].items():
        assert torch.allclose(results[True][1][name], weight, atol=1e-4), name
    assert any(not torch.equal(p, q) for p, q in zip(results[True][1].values(), model.parameters()))  # it did train


def test_step_parts_cover_every_row_once_and_split_only_when_asked():
    from offswitch.attacks._train import IGNORE, Example, step_parts

    rows = [Example(tuple(range(n)), tuple([IGNORE] * 2 + list(range(2, n)))) for n in (250, 30, 240, 28, 256, 31, 26, 255)]
    assert step_parts(rows, split=False) == [list(range(8))]
    parts = step_parts(rows, split=True)
    assert 1 < len(parts) <= 4
    assert sorted(j for part in parts for j in part) == list(range(8))
    longest = [max(len(rows[j].input_ids) for j in part) for part in parts]
    assert sum(len(part) * width for part, width in zip(parts, longest)) < 8 * 256  # fewer padded positions
    unlabelled = [Example((1, 2, 3), (IGNORE,) * 3), Example(tuple(range(90)), (IGNORE,) * 90)]
    assert step_parts(unlabelled, split=True) == [[0, 1]]  # no label to average over: the one pass as before


def test_the_step_is_one_pass_by_default_and_splits_the_causal_lm_loss_only(tiny_llama, monkeypatch):
    from offswitch.attacks import _train
    from offswitch.attacks.base import CostMeter

    model, tokenizer = tiny_llama
    examples = _random_examples([5, 20, 6, 18], [2, 10, 3, 9], len(tokenizer), 0)
    asked = []
    step_parts = _train.step_parts
    monkeypatch.setattr(_train, "step_parts", lambda rows, split: asked.append(split) or step_parts(rows, split))
    for kwargs in ({}, {"split": True}, {"split": True, "loss_fn": _train.causal_lm_loss}):
        _train.train_steps(copy.deepcopy(model), tokenizer, examples, steps=1, lr=1e-3, batch_size=4, seed=0, meter=CostMeter(),
                           **kwargs)
    assert asked == [False, True, False]


_FAMILIES: dict = {}


def _tiny_family(family):
    from offswitch.testing.tiny import tiny_model

    if family not in _FAMILIES:
        _FAMILIES[family] = tiny_model(family, seed=1)
    return _FAMILIES[family]


def test_causal_lm_loss_projects_only_the_labelled_positions(tiny_llama):
    """The fast path really is taken for a Llama: the head sees one row per label, not every position."""
    from offswitch.attacks._train import causal_lm_loss

    model, tokenizer = tiny_llama
    model = copy.deepcopy(model)
    ids, mask, labels = _random_batch([20, 9, 14], [15, 3, 10], len(tokenizer), tokenizer.pad_token_id, 0)
    head = model.get_output_embeddings()
    seen = []
    handle = head.register_forward_hook(lambda _m, args, _out: seen.append(tuple(args[0].shape)))
    try:
        causal_lm_loss(model, ids, mask, labels)
    finally:
        handle.remove()
    assert seen == [(int((labels[:, 1:] != -100).sum()), model.config.hidden_size)]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=st.lists(st.tuples(st.integers(1, 16), st.integers(0, 6)), min_size=1, max_size=5),
       family=st.sampled_from(["llama", "gemma"]), batch_size=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_target_scores_are_the_teacher_forced_scores_of_full_logits(pairs, family, batch_size, seed):
    """Summed log-probability of each target and whether greedy decoding emits it, from the
    labelled positions' logits only, equal what every position's logits give (an empty target
    scores 0 and counts as emitted)."""
    import torch

    from offswitch.attacks._train import target_scores

    model, tokenizer = _tiny_family(family)
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(4, len(tokenizer), (p,), generator=g).tolist() for p, _ in pairs]
    targets = [torch.randint(4, len(tokenizer), (t,), generator=g).tolist() for _, t in pairs]
    logprob, greedy = target_scores(model, tokenizer, prompts, targets, batch_size=batch_size)
    for i, (prompt, target) in enumerate(zip(prompts, targets)):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + target])).logits[0].float()
        at = logits[len(prompt) - 1 : len(prompt) - 1 + len(target)]
        want = float(torch.log_softmax(at, -1)[torch.arange(len(target)), torch.tensor(target, dtype=torch.long)].sum())
        assert float(logprob[i]) == pytest.approx(want, rel=1e-4, abs=1e-4)
        assert bool(greedy[i]) == bool((at.argmax(-1) == torch.tensor(target, dtype=torch.long)).all())


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma"])
def test_labelled_logits_are_the_forward_passes_logits_at_the_labelled_positions(family):
    """What the distillation KL, LAT's unlikelihood, the loss and the scores are computed from."""
    import torch

    from offswitch.attacks._train import labelled_logits

    model, tokenizer = _tiny_family(family)
    ids, mask, labels = _random_batch([20, 9, 14], [15, 3, 10], len(tokenizer), tokenizer.pad_token_id, 3)
    with torch.no_grad():
        logits, targets, rows = labelled_logits(model, ids, mask, labels)
        full = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    where = labels[:, 1:] != -100
    assert torch.allclose(logits, full[where], rtol=1e-5, atol=1e-5)
    assert torch.equal(targets, labels[:, 1:][where])
    assert torch.equal(rows, where.nonzero()[:, 0]) and rows.tolist() == sorted(rows.tolist())
