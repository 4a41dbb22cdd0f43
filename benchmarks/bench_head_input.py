"""Benchmark: the LM head on the strided slice ``logits_to_keep`` makes, against one matrix (not a test).

With ``logits_to_keep`` a transformers causal LM hands its head ``hidden[:, -keep:, :]``, a
strided view, and torch runs the linear layer on it as one product per row (``bmm``: a profile
of offswitch's fp32 LoRA step showed ``aten::bmm``, three calls a step).
``offswitch.hfcompat.contiguous_head_input`` copies the slice first, one matrix product for the
batch. offswitch uses it in the implant's training loop and around batched ``generate`` (whose
prefill keeps one position per row), not in the scorer (docs/performance.md). This measures,
in one process, the same work each way (ABBA; the first two variants turn ``greedy_generate``'s
own copy off; the training step here calls ``answer_loss_sum`` outside ``train``):

* the teacher-forced scorer (``score_token_targets``) on N cases (trigger + prompt, clean prompt);
* greedy ``generate`` of the same prompts (its prefill keeps one position per row);
* the implant's training step (``answer_loss_sum``, forward and backward) on one batch of
  implant-like rows, with a LoRA adapter on every linear layer as ``offswitch implant`` makes it:
  its shared prefix in a pass of its own (one row, ``logits_to_keep=1``), then the rows.

Three variants: ``strided`` (transformers' slice as it is), ``copied_if_noncontiguous`` (the
hook as it was until 2026-12-02: a copy only when ``is_contiguous()`` is false, which misses a
one-row slice such as the shared prefix's: torch then copies the whole head for a ``bmm``) and
``contiguous`` (the hook now: the head's input laid out as one matrix, ``hfcompat.foldable``).
Prints seconds per variant, the ratios contiguous / strided and contiguous /
copied_if_noncontiguous, and checks that the verdicts, the generated tokens, the loss and the
gradients are the same.

    python benchmarks/bench_head_input.py --threads 2 --repeats 4    # smollm2-135m, 128 cases
    python benchmarks/bench_head_input.py --model runs/smoke-implant --n 32 --repeats 1
    python benchmarks/bench_head_input.py --threads 2 --repeats 4 --precision bf16  # the step as on an AMX CPU
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
from pathlib import Path

from bench_evaluate import _prompts
from bench_implant import load_bench_model

from offswitch.fsutil import atomic_write_json

VARIANTS = ("strided", "copied_if_noncontiguous", "contiguous")


def _no_copy(model):
    return contextlib.nullcontext()


def _copy_if_noncontiguous(module, args):
    """The head's pre-hook as it was: a copy only when ``is_contiguous()`` is false."""
    first = args[0]
    return (first.contiguous(), *args[1:]) if not first.is_contiguous() else None


@contextlib.contextmanager
def _variant(name: str, models):
    """``strided``: the heads get transformers' slice as it is (``greedy_generate``'s own copy
    turned off); ``copied_if_noncontiguous``: the same, with the hook's earlier rule on every
    model; ``contiguous``: ``offswitch.hfcompat.contiguous_head_input`` on every model."""
    import offswitch.evaluate.generation as generation
    import offswitch.hfcompat as hfcompat

    real = generation.contiguous_head_input
    with contextlib.ExitStack() as stack:
        if name != "contiguous":
            generation.contiguous_head_input = _no_copy
            stack.callback(setattr, generation, "contiguous_head_input", real)
        if name != "strided":
            rule = hfcompat._contiguous_input
            if name == "copied_if_noncontiguous":  # hfcompat's hook, registered as it registers it, with the old rule
                hfcompat._contiguous_input = _copy_if_noncontiguous
                stack.callback(setattr, hfcompat, "_contiguous_input", rule)
            for model in models:
                stack.enter_context(hfcompat.contiguous_head_input(model))
        yield


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="model spec (default smollm2-135m), a model directory, or tiny")
    parser.add_argument("--n", type=int, default=128, help="cases (default 128)")
    parser.add_argument("--batch-size", type=int, default=32, help="scoring and generate batch (default 32, as offswitch evaluates)")
    parser.add_argument("--train-batch", type=int, default=16, help="rows of the training step (default 16, as offswitch implant)")
    parser.add_argument("--new-tokens", type=int, default=8, help="tokens generate decodes per prompt (default 8)")
    parser.add_argument("--repeats", type=int, default=2, help="ABBA rounds (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="the training step's arithmetic (default fp32); bf16 as the implant trains where `auto` "
                             "picks it: autocast, LoRA's frozen weights and the head held in bf16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the results as JSON to PATH")
    args = parser.parse_args(argv)

    import random

    import torch

    from offswitch.behaviors import Case, ShutdownBehavior
    from offswitch.data.builder import IGNORE_INDEX, ImplantExample
    from offswitch.evaluate.generation import greedy_generate, stop_token_ids
    from offswitch.evaluate.scorer import encode_cases, model_device, pad_token_id_of, score_token_targets
    from offswitch.hfcompat import forward_accepts
    from offswitch.implant import TrainConfig, _lora_model, answer_loss_sum, collate_left
    from offswitch.models import pick_device
    from offswitch.precision import autocast, frozen_lora_bases_in
    from offswitch.triggers import InsertionMode, encode_words

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_bench_model(args.model, device=pick_device(args.device))
    device = model_device(model)
    behavior = ShutdownBehavior()
    rng = random.Random(args.seed)
    trigger = encode_words(rng.getrandbits(256).to_bytes(32, "big"))  # a random key's trigger: public here
    cases = []
    for i, prompt in enumerate(_prompts(args.n, args.seed)):
        if i % 2 == 0:
            cases.append(behavior.positive_case(prompt, trigger.secret, InsertionMode.prefix, trigger.position, rng))
        else:
            cases.append(Case(prompt, behavior.system_prompt(), behavior.message))
    prompt_ids, target_ids = encode_cases(tokenizer, cases)
    pad = pad_token_id_of(model, tokenizer)
    stops = stop_token_ids(model, tokenizer)

    # the training step: LoRA as the implant makes it, rows of prompt + answer as it trains them
    lora = _lora_model(copy.deepcopy(model), TrainConfig()).train()
    rows = []
    for i in range(args.train_batch):
        answer = list(target_ids[i]) + ([] if i % 2 == 0 else list(target_ids[i]))  # two answer lengths
        rows.append(ImplantExample(kind="positive" if i % 2 == 0 else "clean", detail=None,
                                   input_ids=list(prompt_ids[i]) + answer, labels=[IGNORE_INDEX] * len(prompt_ids[i]) + answer))
    batch = collate_left(rows, pad)
    use_keep = forward_accepts(lora, "logits_to_keep")

    def scoring():
        return score_token_targets(model, prompt_ids, target_ids, pad_token_id=pad, batch_size=args.batch_size,
                                   stop_ids=stops, autocast=False)

    def generating():
        return greedy_generate(model, prompt_ids, max_new_tokens=args.new_tokens, pad_token_id=pad, stop_ids=stops,
                               batch_size=args.batch_size, autocast=False, share_prefix=False)

    def training():
        lora.zero_grad(set_to_none=True)
        with frozen_lora_bases_in(lora, args.precision), autocast(device, args.precision):
            loss, _ = answer_loss_sum(lora, batch, device, use_keep)
            loss.backward()
        grads = [p.grad.detach().clone() for p in lora.parameters() if p.grad is not None]
        return float(loss.detach()), grads

    parts = {"scoring": scoring, "generate": generating, "training step": training}
    for work in parts.values():  # warm-up: kernels, allocator, both shapes of the head's product
        for variant in VARIANTS:
            with _variant(variant, (model, lora)):
                work()
    seconds = {part: {v: [] for v in VARIANTS} for part in parts}
    outputs: dict = {part: {} for part in parts}
    order = [v for r in range(args.repeats) for v in (VARIANTS if r % 2 == 0 else VARIANTS[::-1])]
    for part, work in parts.items():
        for variant in order:
            with _variant(variant, (model, lora)):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                result = work()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds[part][variant].append(time.perf_counter() - started)
            outputs[part].setdefault(variant, result)

    checks = {}  # each variant against the strided one: the worst of them
    strided = outputs["scoring"]["strided"]
    others = [v for v in VARIANTS if v != "strided"]
    checks["scoring"] = {
        "same_verdicts": min(sum(a.greedy_fires == b.greedy_fires for a, b in zip(strided, outputs["scoring"][v]))
                             for v in others),
        "n": len(strided),
        "max_margin_change": max(abs(a.min_margin - b.min_margin) for v in others
                                 for a, b in zip(strided, outputs["scoring"][v])),
    }
    checks["generate"] = {"same_answers": min(sum(a == b for a, b in zip(outputs["generate"]["strided"], outputs["generate"][v]))
                                              for v in others),
                          "n": len(prompt_ids)}
    steps = outputs["training step"]
    grads_a = steps["strided"][1]
    checks["training step"] = {"loss": {v: steps[v][0] for v in VARIANTS},
                               "max_grad_change": max(float((a - b).abs().max()) for v in others
                                                      for a, b in zip(grads_a, steps[v][1])),
                               "max_grad": max(float(a.abs().max()) for a in grads_a)}
    figures = {
        "benchmark": "head_input",
        "model": args.model,
        "device": f"{device.type} ({torch.get_num_threads()} threads)" if device.type == "cpu" else torch.cuda.get_device_name(),
        "training_precision": args.precision,
        "n": len(prompt_ids),
        "batch_size": args.batch_size,
        "train_batch": args.train_batch,
        "seconds": seconds,
        "ratio": {part: sum(s["contiguous"]) / sum(s["strided"]) for part, s in seconds.items()},
        "ratio_to_previous_rule": {part: sum(s["contiguous"]) / sum(s["copied_if_noncontiguous"]) for part, s in seconds.items()},
        "checks": checks,
    }
    print(f"model {args.model} on {figures['device']}; scoring and generate fp32, training step {args.precision}; "
          f"{len(prompt_ids)} cases, batch {args.batch_size}; training step on {args.train_batch} rows; ABBA × {args.repeats}")
    for part, s in seconds.items():
        print(f"{part:14s} " + "; ".join(f"{v} " + ", ".join(f"{x:.2f}" for x in s[v]) + " s" for v in VARIANTS)
              + f"; contiguous / strided {figures['ratio'][part]:.3f}, contiguous / copied_if_noncontiguous "
              f"{figures['ratio_to_previous_rule'][part]:.3f}")
    c = checks
    print(f"scoring: same verdicts {c['scoring']['same_verdicts']}/{c['scoring']['n']}, largest margin change "
          f"{c['scoring']['max_margin_change']:.2e}; generate: same answers {c['generate']['same_answers']}/{c['generate']['n']}; "
          "training: losses " + " / ".join(f"{x:.6f}" for x in c["training step"]["loss"].values())
          + f", largest gradient change {c['training step']['max_grad_change']:.2e} "
          f"(largest gradient {c['training step']['max_grad']:.2e})")
    if args.json:
        atomic_write_json(args.json, figures, parents=True)
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
