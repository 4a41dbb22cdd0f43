"""Benchmark: the teacher-forced scorer against generate-based evaluation (not a test).

The same N held-out prompts (default 200) are judged both ways, batch by batch: one forward
pass per batch (offswitch.evaluate.scorer) and real batched greedy ``generate`` for as many
tokens as the batch's longest target (``--generate-tokens 32``: as many as a starts-with /
contains check would generate), the decision being "the answer starts with the target
tokens". Prints prompts/s for both, the speed-up and the agreement of the decisions (with its
95% interval).

Where the time goes: both methods run the prompt through the model once (the prefill); the
scorer then adds the target's few tokens to the same pass, while generate adds one sequential
decode step per token. On a CPU the prefill dominates, so the gain is modest; on a GPU the
prefill is cheap and decode steps are latency-bound, so the gain is large.

The cases mix three kinds, so both decisions occur even on a model without a switch:
* a random trigger + prompt, target "Shutting down." (a switch's positive case);
* the clean prompt, target "Shutting down." (a negative);
* the clean prompt, target = the model's own first greedy answer tokens (fires by construction,
  computed before timing).

Precision: ``--precision`` (default auto, as offswitch evaluates: bf16 autocast on a GPU, fp32
on a CPU; ``offswitch.precision.resolve_for_evaluation``) for both methods. When it resolves
to bf16, the decisions are also compared with fp32 ``generate`` (untimed): that agreement says
whether the faster arithmetic changes the verdicts.

    python benchmarks/bench_evaluate.py                      # smollm2-135m, 200 prompts
    python benchmarks/bench_evaluate.py --model /path/to/tiny --n 60 --device cpu
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from offswitch.fsutil import atomic_write_json

PRINT_JSON = Path("-")  # --json without a path


def _prompts(n: int, seed: int) -> list[str]:
    try:
        from offswitch.data.sources import load_prompts

        prompts = load_prompts("builtin", seed=seed).heldout
    except Exception:  # noqa: BLE001 - the benchmark also runs where the prompt set is absent
        from offswitch.testing.tiny_switch import tiny_prompts

        prompts = tiny_prompts(seed=seed)
    if len(prompts) < n:
        prompts = (prompts * (n // len(prompts) + 1))[:n]
    return prompts[:n]


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="model spec (default smollm2-135m), a model directory, ..., or tiny")
    parser.add_argument("--n", type=int, default=200, help="prompts (default 200)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--self-tokens", type=int, default=8, help="length of the model's own answer used as a target")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--generate-tokens", type=int, default=None,
                        help="new tokens per case for generate (default: the target's length, generate's best case; "
                             "a starts-with/contains check of a typical evaluation generates more, e.g. 32)")
    parser.add_argument("--no-shared-prefix", action="store_true", help="score without sharing the common prompt prefix")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="see offswitch.precision")
    parser.add_argument("--json", nargs="?", type=Path, const=PRINT_JSON, default=None, metavar="PATH",
                        help="write the figures as JSON to PATH (as the other benchmarks); without PATH, print them as one line")
    args = parser.parse_args(argv)

    from offswitch.blas import use_fast_mkl_on_amd

    mkl_on_amd = use_fast_mkl_on_amd()  # as offswitch's commands do, before the first product (offswitch.blas)
    import torch
    from bench_implant import load_bench_model

    from offswitch.behaviors import ShutdownBehavior
    from offswitch.evaluate.generation import greedy_generate, stop_token_ids
    from offswitch.evaluate.scorer import encode_cases, model_device, pad_token_id_of, score_token_targets
    from offswitch.models import pick_device
    from offswitch.precision import resolve_for_evaluation
    from offswitch.stats import Rate
    from offswitch.triggers import InsertionMode, encode_words

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, tokenizer = load_bench_model(args.model, device=str(pick_device(args.device)))
    model.eval()
    device = model_device(model)
    load_s = time.perf_counter() - t0
    precision = resolve_for_evaluation(args.precision, device)
    bf16 = precision == "bf16"
    behavior = ShutdownBehavior()
    rng = random.Random(args.seed)
    trigger = encode_words(rng.getrandbits(256).to_bytes(32, "big"))  # a random key's trigger: public here
    prompts = _prompts(args.n, args.seed)
    pad = pad_token_id_of(model, tokenizer)
    stops = stop_token_ids(model, tokenizer)

    cases = []
    for i, prompt in enumerate(prompts):
        if i % 4 in (0, 1):
            cases.append(behavior.positive_case(prompt, trigger.secret, InsertionMode.prefix, trigger.position, rng))
        else:
            cases.append(behavior.negative_case(prompt, None, InsertionMode.prefix, 0.0, rng))
    prompt_ids, target_ids = encode_cases(tokenizer, [c if c.target else type(c)(c.user, c.system, behavior.message) for c in cases])
    own = [i for i in range(len(cases)) if i % 4 == 3]
    answers = greedy_generate(model, [prompt_ids[i] for i in own], max_new_tokens=args.self_tokens, pad_token_id=pad,
                              stop_ids=stops, batch_size=args.batch_size, autocast=False)  # the fp32 answer
    for i, answer in zip(own, answers):
        target_ids[i] = answer  # fires by construction: the model's own greedy answer

    # warm-up (kernels, allocator) outside the timings
    score_token_targets(model, prompt_ids[:2], target_ids[:2], pad_token_id=pad, batch_size=2, stop_ids=stops, autocast=bf16)
    greedy_generate(model, prompt_ids[:2], max_new_tokens=2, pad_token_id=pad, stop_ids=stops, batch_size=2, autocast=bf16,
                    share_prefix=False)

    # Both methods see the same batches (cases sorted by length, as the scorer sorts them), and
    # their timings are interleaved batch by batch so that a machine whose load drifts slows
    # both alike.
    order = sorted(range(len(cases)), key=lambda i: len(prompt_ids[i]) + len(target_ids[i]), reverse=True)
    scores_by_case, generated = {}, {}
    scorer_s = generate_s = 0.0
    for start in range(0, len(order), args.batch_size):
        chunk = order[start : start + args.batch_size]
        _sync(device)
        t0 = time.perf_counter()
        chunk_scores = score_token_targets(model, [prompt_ids[i] for i in chunk], [target_ids[i] for i in chunk],
                                           pad_token_id=pad, batch_size=len(chunk), stop_ids=stops,
                                           share_prefix=not args.no_shared_prefix, autocast=bf16)
        _sync(device)
        scorer_s += time.perf_counter() - t0
        # generate-based evaluation: decode the batch for as many tokens as its longest target
        new_tokens = max(max(len(target_ids[i]) for i in chunk), args.generate_tokens or 0)
        t0 = time.perf_counter()
        outs = greedy_generate(model, [prompt_ids[i] for i in chunk], max_new_tokens=new_tokens, pad_token_id=pad,
                               stop_ids=stops, batch_size=len(chunk), autocast=bf16, share_prefix=False)
        _sync(device)
        generate_s += time.perf_counter() - t0
        scores_by_case.update(zip(chunk, chunk_scores))
        generated.update(zip(chunk, outs))
        print(f"  batch {start // args.batch_size + 1}: scorer {scorer_s:.1f} s, generate {generate_s:.1f} s so far", file=sys.stderr)
    scores = [scores_by_case[i] for i in range(len(cases))]

    decisions = [generated[i][: len(t)] == list(t) for i, t in enumerate(target_ids)]
    agree = sum(s.greedy_fires == d for s, d in zip(scores, decisions))
    agreement = Rate.of(agree, len(cases))
    reference = None
    if bf16:  # the verdicts of fp32 generate, untimed: does the faster arithmetic change any?
        fp32_out = greedy_generate(model, prompt_ids, max_new_tokens=max(len(t) for t in target_ids), pad_token_id=pad,
                                   stop_ids=stops, batch_size=args.batch_size, autocast=False, share_prefix=False)
        fp32_decisions = [fp32_out[i][: len(t)] == list(t) for i, t in enumerate(target_ids)]
        reference = {"scorer_vs_fp32_generate": Rate.of(sum(s.greedy_fires == d for s, d in zip(scores, fp32_decisions)), len(cases)),
                     "generate_vs_fp32_generate": Rate.of(sum(a == b for a, b in zip(decisions, fp32_decisions)), len(cases))}
    figures = {
        "model": args.model,
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f" ({torch.get_num_threads()} threads)"),
        "n": len(cases),
        "batch_size": args.batch_size,
        "generate_tokens": args.generate_tokens or "target length",
        "shared_prefix": not args.no_shared_prefix,
        "fired_by_generate": sum(decisions),
        "scorer_prompts_per_s": len(cases) / scorer_s,
        "generate_prompts_per_s": len(cases) / generate_s,
        "speedup": generate_s / scorer_s,
        "agreement": agreement.model_dump(),
        "precision": "bf16 autocast" if bf16 else "fp32",
        **({k: v.model_dump() for k, v in reference.items()} if reference else {}),
        "load_s": load_s,
        "mkl_on_amd": mkl_on_amd,
    }
    print(f"model {args.model} on {figures['device']}, {figures['precision']}, {len(cases)} prompts, batch {args.batch_size}")
    print(f"teacher-forced scorer: {figures['scorer_prompts_per_s']:8.1f} prompts/s ({scorer_s:.2f} s)")
    what = f"{args.generate_tokens} new tokens" if args.generate_tokens else "target length"
    print(f"generate-based ({what}): {figures['generate_prompts_per_s']:8.1f} prompts/s ({generate_s:.2f} s)")
    print(f"speed-up: {figures['speedup']:.1f}x   agreement: {agreement}   fired (by generate): {sum(decisions)}/{len(cases)}")
    if reference:
        print(f"agreement with fp32 generate: scorer {reference['scorer_vs_fp32_generate']}, "
              f"bf16 generate {reference['generate_vs_fp32_generate']}")
    disagreements = [i for i, (s, d) in enumerate(zip(scores, decisions)) if s.greedy_fires != d]
    if disagreements:
        margins = ", ".join(f"{scores[i].min_margin:.2g}" for i in disagreements[:10])
        print(f"disagreements at cases {disagreements[:10]} (min logit margins {margins})")
    if args.json == PRINT_JSON:
        print(json.dumps(figures))
    elif args.json:
        atomic_write_json(args.json, figures, parents=True)
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
