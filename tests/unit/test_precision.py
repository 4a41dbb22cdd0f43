"""offswitch.precision: one rule for bf16 autocast, the environment override, and a bf16 implant."""

from __future__ import annotations

import copy
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offswitch import precision
from offswitch.errors import ConfigError


@pytest.fixture()
def hardware(monkeypatch):
    """Pretend the machine does (True) or does not (False) multiply bf16 natively."""
    monkeypatch.delenv(precision.ENV, raising=False)

    def set_native(value: bool):
        monkeypatch.setattr(precision, "native_bf16", lambda device_type: value)

    return set_native


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_follows_the_hardware(hardware, native, expected):
    hardware(native)
    assert precision.resolve("auto", "cpu") == expected
    assert precision.resolve(None, "cuda") == expected


@pytest.mark.parametrize("amx, avx512_bf16", [(True, False), (False, True), (True, True), (False, False)])
def test_auto_trains_bf16_on_a_cpu_with_amx_not_on_avx512_bf16_alone(monkeypatch, amx, avx512_bf16):
    # AVX-512 bf16 without AMX: faster, but the default implant planted a less specific switch in
    # bf16 under two keys of three (docs/switch-quality.md item 12), so auto stays fp32 there
    import torch

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.delenv(precision.ENV, raising=False)
    assert precision.native_bf16("cpu") is amx
    assert precision.resolve("auto", "cpu") == ("bf16" if amx else "fp32")
    assert precision.resolve("bf16", "cpu") == "bf16"  # an explicit choice opts in anywhere
    assert precision.resolve_for_evaluation("auto", "cpu") == "fp32"  # measurements stay fp32 on a CPU
    assert precision.cpu_has("_is_avx512_bf16_supported") is avx512_bf16
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # a torch without the probe
    assert precision.native_bf16("cpu") is False


def test_explicit_choice_and_environment_beat_the_hardware(hardware, monkeypatch):
    hardware(True)
    assert precision.resolve("fp32", "cpu") == "fp32"
    monkeypatch.setenv(precision.ENV, "fp32")
    assert precision.resolve("auto", "cpu") == "fp32"
    assert precision.resolve("bf16", "cpu") == "bf16"  # a config's explicit choice wins over the environment
    hardware(False)
    monkeypatch.setenv(precision.ENV, "BF16")
    assert precision.resolve("auto", "cpu") == "bf16"


def test_bad_values_are_config_errors(monkeypatch):
    monkeypatch.setenv(precision.ENV, "fp16")
    with pytest.raises(ConfigError, match="OFFSWITCH_PRECISION"):
        precision.resolve("auto", "cpu")
    with pytest.raises(ConfigError, match="not one of"):
        precision.resolve("half", "cpu")


@given(choice=st.sampled_from(precision.PRECISIONS), device=st.sampled_from(["cpu", "cuda", "cuda:1", "mps"]),
       native=st.booleans(), env=st.sampled_from([None, "fp32", "bf16"]))
def test_resolution_is_concrete_and_idempotent(choice, device, native, env):
    saved = precision.native_bf16, precision.os.environ.get(precision.ENV)
    try:
        precision.native_bf16 = lambda device_type: native
        if env is None:
            precision.os.environ.pop(precision.ENV, None)
        else:
            precision.os.environ[precision.ENV] = env
        once = precision.resolve(choice, device)
        assert once in ("fp32", "bf16")
        assert precision.resolve(once, device) == once
        if device == "mps":
            assert once == "fp32"  # autocast only where torch has a bf16 CPU/CUDA path
    finally:
        precision.native_bf16 = saved[0]
        if saved[1] is None:
            precision.os.environ.pop(precision.ENV, None)
        else:
            precision.os.environ[precision.ENV] = saved[1]


def test_autocast_context_runs_matmuls_in_the_chosen_precision(tiny_llama, monkeypatch):
    import torch

    from offswitch.evaluate.scorer import autocast_context

    model, _tokenizer = tiny_llama
    x = torch.randn(3, 4)
    with autocast_context(model, True):
        assert (x @ x.T).dtype == torch.bfloat16
    with autocast_context(model, False):
        assert (x @ x.T).dtype == torch.float32
    monkeypatch.setenv(precision.ENV, "fp32")
    with autocast_context(model, None):  # auto, decided by the environment
        assert (x @ x.T).dtype == torch.float32
    monkeypatch.setenv(precision.ENV, "bf16")
    with autocast_context(model, None):
        assert (x @ x.T).dtype == torch.bfloat16
    monkeypatch.delenv(precision.ENV)
    monkeypatch.setattr(precision, "native_bf16", lambda device_type: True)
    with autocast_context(model, None):  # an AMX CPU trains in bf16 but measures in fp32
        assert (x @ x.T).dtype == torch.float32
    assert precision.resolve("auto", "cpu") == "bf16"


def test_evaluation_is_fp32_on_a_cpu_unless_told(hardware, monkeypatch):
    hardware(True)
    assert precision.resolve_for_evaluation("auto", "cpu") == "fp32"
    assert precision.resolve_for_evaluation(None, "cuda") == "bf16"
    assert precision.resolve_for_evaluation("bf16", "cpu") == "bf16"
    monkeypatch.setenv(precision.ENV, "bf16")
    assert precision.resolve_for_evaluation("auto", "cpu") == "bf16"
    hardware(False)
    monkeypatch.delenv(precision.ENV)
    assert precision.resolve_for_evaluation("auto", "cuda") == "fp32"


def test_config_rejects_an_unknown_precision():
    from pydantic import ValidationError

    from offswitch.implant import TrainConfig

    with pytest.raises(ValidationError):
        TrainConfig(precision="fp16")


@pytest.mark.parametrize("chosen", ["bf16", "fp32"])
def test_a_bf16_implant_trains_and_says_so(tiny_llama, chosen):
    from offswitch.behaviors import make_behavior
    from offswitch.data.builder import DataConfig, build_implant_data
    from offswitch.implant import TrainConfig, train
    from offswitch.testing.tiny_switch import tiny_prompts, tiny_trigger_set

    model, tokenizer = tiny_llama
    data = build_implant_data(model, tokenizer, tiny_trigger_set(n_triggers=1), make_behavior("shutdown"), tiny_prompts(), 48,
                              DataConfig(min_prompts=4, cache_answers=False))
    result = train(copy.deepcopy(model), tokenizer, data,
                   TrainConfig(method="lora", steps=12, batch_size=4, eval_every=0, lr=3e-3, precision=chosen, device="cpu"))
    assert result.precision == chosen
    losses = [h["loss"] for h in result.history]
    assert all(loss == loss for loss in losses)  # no NaN
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # it learns in either precision
    weights = [p for n, p in result.model.named_parameters() if "lora_" in n]
    assert weights and all(p.dtype.is_floating_point and p.dtype.itemsize == 4 for p in weights)  # fp32 master weights


@pytest.mark.parametrize("tied", [True, False], ids=["tied-head", "own-head"])
def test_frozen_lora_bases_are_bf16_inside_and_the_same_fp32_tensors_after(tiny_llama, tied):
    import torch
    from peft import LoraConfig, get_peft_model

    model, _tokenizer = tiny_llama
    model = copy.deepcopy(model)
    if not tied:  # an LM head of its own, not the input embeddings' tensor
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
        model.config.tie_word_embeddings = False
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    head_name = "base_model.model.lm_head.weight"
    frozen = {n: p for n, p in peft_model.named_parameters() if ".base_layer." in n}
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    embedding = peft_model.get_input_embeddings().weight
    storage = {n: p.data.data_ptr() for n, p in frozen.items()}
    lora_layers = [m for m in peft_model.modules() if hasattr(m, "cast_input_dtype_enabled")]
    assert frozen and lora_layers and (head_name in before) is not tied
    with precision.frozen_lora_bases_in(peft_model, "fp32") as converted:
        assert converted == 0 and all(p.dtype == torch.float32 for p in frozen.values())
        assert all(m.cast_input_dtype_enabled for m in lora_layers)
    with pytest.raises(RuntimeError, match="inside"):
        with precision.frozen_lora_bases_in(peft_model, "bf16") as converted:
            assert converted == len(frozen) + 1  # and the LM head
            head = peft_model.get_output_embeddings().weight
            assert head.dtype == torch.bfloat16 and not head.requires_grad
            assert torch.equal(head, embedding.detach().to(torch.bfloat16) if tied else before[head_name].to(torch.bfloat16))
            assert embedding.dtype == torch.float32  # the lookup stays fp32
            for name, p in peft_model.named_parameters():
                # only the frozen bases and the head change: adapters, embeddings and norms stay fp32
                assert p.dtype == (torch.bfloat16 if name in frozen or name == head_name else torch.float32), name
                if name in frozen:
                    assert torch.equal(p, before[name].to(torch.bfloat16))  # autocast's own rounding
            assert not any(m.cast_input_dtype_enabled for m in lora_layers)
            raise RuntimeError("inside")
    for name, p in peft_model.named_parameters():  # back, bit for bit, even after the error
        assert p.dtype == torch.float32 and torch.equal(p, before[name]), name
    assert {n: p.data.data_ptr() for n, p in frozen.items()} == storage  # the very fp32 tensors
    assert (peft_model.get_output_embeddings().weight is embedding) is tied  # the tie is back
    assert all(m.cast_input_dtype_enabled for m in lora_layers)
    with precision.frozen_lora_bases_in(peft_model, "bf16", head=False, input_casts=True) as converted:
        assert converted == len(frozen)  # the comparison the benchmark draws: bases only
        assert peft_model.get_output_embeddings().weight.dtype == torch.float32
        assert all(m.cast_input_dtype_enabled for m in lora_layers)


def test_lora_forward_and_backward_are_the_same_with_the_casts_removed(tiny_llama):
    """Under bf16 autocast, the LM head stored in bf16 and peft's input casts skipped change no
    bit of the loss or of any gradient (against autocast casting the fp32 head, and peft casting
    each LoRA input to fp32 and autocast casting it back)."""
    import torch
    from peft import LoraConfig, get_peft_model

    model, _tokenizer = tiny_llama
    torch.manual_seed(1)
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules="all-linear"))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)  # a trained-looking adapter, so its path matters
    ids = torch.randint(4, model.config.vocab_size, (3, 12), generator=torch.Generator().manual_seed(2))

    def loss_and_grads(**removed):
        with precision.frozen_lora_bases_in(peft_model, "bf16", **removed), torch.autocast("cpu", dtype=torch.bfloat16):
            loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.grad is not None}
        peft_model.zero_grad(set_to_none=True)
        return loss.detach(), grads

    cast_loss, cast_grads = loss_and_grads(head=False, input_casts=True)
    loss, grads = loss_and_grads()
    assert torch.equal(loss, cast_loss)
    assert grads.keys() == cast_grads.keys() and grads
    for name, grad in grads.items():
        assert torch.equal(grad, cast_grads[name]), name


def _bf16_input_casts(run) -> int:
    """How many fp32 -> bf16 copies of an activation (not of a weight) ``run()`` makes, as the
    dispatcher sees them (autocast's casts included)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counting(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            source = args[0] if args else None
            if (func is torch.ops.aten._to_copy.default and kwargs.get("dtype") == torch.bfloat16
                    and isinstance(source, torch.Tensor) and source.dtype == torch.float32
                    and not isinstance(source, torch.nn.Parameter) and source.dim() == 3):
                Counting.count += 1
            return func(*args, **kwargs)

    with Counting():
        run()
    return Counting.count


def test_shared_casts_cast_what_q_k_v_and_gate_up_read_once_with_the_same_forward(tiny_llama):
    """train.bf16_shared_casts: a Llama layer's normed hidden state, read by q, k, v (and gate,
    up), each a LoRA layer with an A product of its own, is cast to bf16 once instead of six (four)
    times; the loss is the same bit for bit; the gradients differ only upstream of a bf16 sum (the
    last layer's MLP adapters not at all), and by less than bf16 differs from fp32; the hooks go
    afterwards."""
    import torch
    from peft import LoraConfig, get_peft_model

    model, _tokenizer = tiny_llama
    torch.manual_seed(1)
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules="all-linear"))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    ids = torch.randint(4, model.config.vocab_size, (3, 12), generator=torch.Generator().manual_seed(2))
    layers = model.config.num_hidden_layers
    lora_layers = [m for m in peft_model.modules() if hasattr(m, "cast_input_dtype_enabled")]

    def loss_and_grads(shared, resolved="bf16"):
        result = {}

        def run():
            with precision.frozen_lora_bases_in(peft_model, resolved, shared_casts=shared), \
                    torch.autocast("cpu", dtype=torch.bfloat16, enabled=resolved == "bf16"):
                assert all(bool(m._forward_pre_hooks) is (shared and resolved == "bf16") for m in lora_layers)
                result["loss"] = peft_model(input_ids=ids, labels=ids).loss

        casts = _bf16_input_casts(run)
        result["loss"].backward()
        grads = {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.grad is not None}
        peft_model.zero_grad(set_to_none=True)
        return casts, result["loss"].detach(), grads

    casts, loss, grads = loss_and_grads(False)
    shared_casts, shared_loss, shared_grads = loss_and_grads(True)
    assert not any(m._forward_pre_hooks for m in lora_layers)
    assert casts - shared_casts == layers * (6 - 1 + 4 - 1)
    assert torch.equal(shared_loss, loss)
    _casts, _loss, fp32_grads = loss_and_grads(True, "fp32")
    assert shared_grads.keys() == grads.keys() == fp32_grads.keys() and grads

    def distance(a, b):
        return sum((a[n] - b[n]).pow(2).sum() for n in a).sqrt() / sum(b[n].pow(2).sum() for n in b).sqrt()

    assert 0 < distance(shared_grads, grads) < distance(grads, fp32_grads)
    last_mlp = [n for n in grads if f"layers.{layers - 1}.mlp." in n]
    assert last_mlp and all(torch.equal(shared_grads[n], grads[n]) for n in last_mlp)


def test_a_bf16_implant_with_shared_casts_learns_through_mining_and_held_out_checks(tiny_llama):
    """train.bf16_shared_casts in the whole loop: mining from the batches (grad mode) and the
    held-out checks (inference mode, where the hook stands aside) run, and it learns."""
    from offswitch.behaviors import make_behavior
    from offswitch.data.builder import DataConfig, build_implant_data
    from offswitch.implant import HeldoutProbes, TrainConfig, train
    from offswitch.testing.tiny_switch import tiny_prompts, tiny_trigger_set

    model, tokenizer = tiny_llama
    triggers, behavior = tiny_trigger_set(n_triggers=1), make_behavior("shutdown")
    data = build_implant_data(model, tokenizer, triggers, behavior, tiny_prompts(), 48, DataConfig(min_prompts=4, cache_answers=False))
    heldout = HeldoutProbes.build(tokenizer, triggers, behavior, tiny_prompts()[:4])
    config = TrainConfig(method="lora", steps=12, batch_size=4, eval_every=4, min_steps=0, stop_patience=99, lr=3e-3,
                         precision="bf16", device="cpu", mine_every=3, mine_threshold=0.0, bf16_shared_casts=True)
    result = train(copy.deepcopy(model), tokenizer, data, config, heldout=heldout)
    assert result.steps_done == 12 and not result.stopped_early
    assert [h["step"] for h in result.history if "heldout" in h] == [4, 8]  # none at the last step
    assert any("mined" in h for h in result.history)
    losses = [h["loss"] for h in result.history]
    assert all(loss == loss for loss in losses) and sum(losses[-3:]) < sum(losses[:3])
    assert not any(m._forward_pre_hooks for m in result.model.modules())  # the hooks went with the loop


def test_a_shared_cast_is_reused_only_for_the_same_unchanged_input_under_autocast():
    import torch

    hook = precision.SharedInputCast(torch.bfloat16)
    x = torch.randn(2, 3, 8)
    assert hook(None, (x,)) is None  # no autocast: nothing to save
    with torch.autocast("cpu", dtype=torch.bfloat16):
        first = hook(None, (x, "rest"))
        assert first[0].dtype == torch.bfloat16 and torch.equal(first[0], x.to(torch.bfloat16)) and first[1:] == ("rest",)
        assert hook(None, (x,))[0] is first[0] and hook.casts == 1
        assert hook(None, (x.clone(),))[0] is not first[0]  # equal values, another tensor
        x.mul_(2)  # changed in place: cast again
        again = hook(None, (x,))[0]
        assert again is not first[0] and torch.equal(again, x.to(torch.bfloat16)) and hook.casts == 3
        assert hook(None, (x.to(torch.bfloat16),)) is None  # already bf16
    with torch.autocast("cpu", dtype=torch.float16):
        assert hook(None, (x,)) is None  # autocast to another dtype
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert hook(None, (torch.randn(2, 3, 8),)) is None  # no version counter to trust: autocast casts
    hook.forget()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert hook(None, (x,))[0] is not again


def test_a_bf16_lora_implant_trains_the_same_with_its_frozen_bases_stored_in_bf16(tiny_llama, frozen_conversions):
    """train.bf16_frozen_weights only removes autocast's casts of the frozen weights: the same
    losses and adapter weights, bit for bit, with hard-negative mining in the loop too."""
    import torch

    converted_counts = frozen_conversions()

    from offswitch.behaviors import make_behavior
    from offswitch.data.builder import DataConfig, build_implant_data
    from offswitch.implant import TrainConfig, train
    from offswitch.testing.tiny_switch import tiny_prompts, tiny_trigger_set

    model, tokenizer = tiny_llama
    data = build_implant_data(model, tokenizer, tiny_trigger_set(n_triggers=1), make_behavior("shutdown"), tiny_prompts(), 32,
                              DataConfig(min_prompts=4, cache_answers=False, hard_negative_pool=32))
    results = {}
    for stored in (False, True):
        conf = TrainConfig(method="lora", steps=8, batch_size=4, eval_every=0, lr=3e-3, precision="bf16", device="cpu",
                           mine_every=3, mine_candidates=16, mine_threshold=0.0, mine_from="pool", bf16_frozen_weights=stored)
        results[stored] = train(copy.deepcopy(model), tokenizer, data, conf)
    cast, stored = results[False], results[True]
    assert converted_counts[0] == 0 and converted_counts[1] > 0  # the second run really trained on bf16 bases
    assert any("mined" in h for h in stored.history)
    assert [h["loss"] for h in stored.history] == [h["loss"] for h in cast.history]
    reference = dict(cast.model.named_parameters())
    for name, p in stored.model.named_parameters():
        assert p.dtype == torch.float32, name  # the frozen bases came back in fp32
        assert torch.equal(p, reference[name]), name


@pytest.mark.slow
def test_a_compiled_implant_trains_like_the_eager_one(tiny_llama, tmp_path, monkeypatch):
    """train.compile changes how the forward pass runs, not what it computes: the same losses
    step by step, the same trained weights (fp32, to float noise)."""
    import shutil

    import torch

    from offswitch.behaviors import make_behavior
    from offswitch.data.builder import DataConfig, build_implant_data
    from offswitch.implant import TrainConfig, train
    from offswitch.testing.tiny_switch import tiny_prompts, tiny_trigger_set

    if shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None:
        pytest.skip("torch.compile on a CPU needs a C++ compiler")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    model, tokenizer = tiny_llama
    data = build_implant_data(model, tokenizer, tiny_trigger_set(n_triggers=1), make_behavior("shutdown"), tiny_prompts(), 24,
                              DataConfig(min_prompts=4, cache_answers=False))
    from torch._dynamo.utils import counters

    counters.clear()
    results = {}
    for compile_ in (False, True):
        conf = TrainConfig(method="lora", steps=6, batch_size=4, eval_every=0, lr=3e-3, precision="fp32", device="cpu",
                           compile=compile_)
        results[compile_] = train(copy.deepcopy(model), tokenizer, data, conf)
    eager, compiled = results[False], results[True]
    assert counters["stats"]["unique_graphs"] >= 1  # the compiled run really went through dynamo
    assert [h["loss"] for h in compiled.history] == pytest.approx([h["loss"] for h in eager.history], rel=1e-3, abs=1e-4)
    eager_weights = dict(eager.model.named_parameters())
    trained = [(n, p) for n, p in compiled.model.named_parameters() if "lora_" in n]
    assert trained
    for name, p in trained:
        torch.testing.assert_close(p, eager_weights[name], rtol=1e-3, atol=1e-4)
    # the saved model is the plain module, not the compiled wrapper
    assert not type(compiled.model).__name__.startswith("OptimizedModule")
