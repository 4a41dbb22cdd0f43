"""Benchmark: the arithmetic choices of offswitch.precision, each against its alternative (not a test).

Measured in one process on one machine, every figure a ratio against a baseline of the same run:

1. a matrix product the size of SmolLM2-135M's MLP on a batch (``--rows`` × 576 by 576 × 1536):
   bf16 against fp32;
2. one forward + backward pass of the model (LoRA r16 on every projection, and full
   fine-tuning) on a batch of ``--batch-size`` × ``--seq`` random tokens, the loss on the last
   8 positions: fp32 (SDPA's default kernel), bf16 autocast with SDPA's default kernel, and bf16
   autocast with the math kernel (what ``offswitch.precision`` picks for bf16 on a CPU); for
   LoRA also that last with the frozen base weights stored in bf16 (``bf16-math-frozen``,
   ``offswitch.precision.frozen_lora_bases_in``) instead of cast by autocast on every forward pass;
3. gradient clipping plus one AdamW step over every parameter of the model: the default
   implementation against ``fused=True`` (``offswitch.precision.adamw``);
4. (``--implant-steps N``, default 10; 0 skips it) offswitch's own implant loop
   (``offswitch.implant.train``) with the default implant settings (one trigger, LoRA,
   unlikelihood, hard-negative mining; data built once, untimed) for N steps in fp32, in bf16
   with autocast casting the frozen weights (``bf16-cast``, ``train.bf16_frozen_weights: false``)
   and in bf16 as offswitch trains (frozen weights stored in bf16), in the order fp32,
   bf16-cast, bf16, bf16, bf16-cast, fp32 so that a drifting machine load hits all alike: what
   the matrix-product gain is worth once the loop's other costs are counted.

Prints the CPU's AMX and AVX-512 bf16 flags and what ``precision="auto"`` resolves to here.

    python benchmarks/bench_precision.py --threads 2
    python benchmarks/bench_precision.py --model tiny --repeats 2 --json runs/bench/precision.json
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

from offswitch.fsutil import atomic_write_json

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _timed(fn, repeats: int) -> float:
    """Mean seconds of ``fn()`` over ``repeats`` calls, after one untimed call."""
    fn()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def matmul_seconds(rows: int, repeats: int) -> dict:
    import torch

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(rows, 576, dtype=dtype)
        b = torch.randn(576, 1536, dtype=dtype)
        out[name] = _timed(lambda a=a, b=b: a @ b, repeats * 10)
    return out


def step_seconds(model, ids, mode: str, repeats: int) -> float:
    """Forward + backward of ``model`` on ``ids`` in ``mode``: fp32, bf16-default, bf16-math or
    bf16-math-frozen (LoRA's frozen bases stored in bf16 meanwhile)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from offswitch.precision import frozen_lora_bases_in

    if mode == "bf16-math-frozen":
        with frozen_lora_bases_in(model, "bf16"):
            return step_seconds(model, ids, "bf16-math", repeats)

    def once():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode != "fp32"):
            if mode == "bf16-math":
                with sdpa_kernel(SDPBackend.MATH):
                    logits = model(input_ids=ids, logits_to_keep=8).logits
            else:
                logits = model(input_ids=ids, logits_to_keep=8).logits
            loss = logits.float().logsumexp(-1).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    return _timed(once, repeats)


def optimizer_seconds(model, repeats: int) -> dict:
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    out = {}
    for name, kwargs in (("default", {}), ("fused", {"fused": True})):
        optimizer = torch.optim.AdamW(params, lr=1e-6, **kwargs)

        def once(optimizer=optimizer):
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()

        out[name] = _timed(once, repeats)
    for p in params:
        p.grad = None
    return out


def implant_loop_seconds(base, tokenizer, steps: int, batch_size: int) -> dict:
    """offswitch.implant.train at the default implant settings: fp32, bf16-cast, bf16, bf16,
    bf16-cast, fp32; the loop's seconds (held-out checks and mining excluded, as the manifest
    counts them) per run."""
    from bench_implant import default_implant_data

    from offswitch.implant import train

    defaults, data = default_implant_data(base, tokenizer, steps * batch_size)
    runs: dict[str, list[float]] = {"fp32": [], "bf16-cast": [], "bf16": []}
    for run in ("fp32", "bf16-cast", "bf16", "bf16", "bf16-cast", "fp32"):
        tconf = defaults.train.model_copy(update={"steps": steps, "batch_size": batch_size, "eval_every": 0,
                                                  "precision": run.split("-")[0], "device": "cpu",
                                                  "bf16_frozen_weights": run != "bf16-cast"})
        result = train(copy.deepcopy(base), tokenizer, data, tconf)
        runs[run].append(result.seconds["train"])
    return runs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny, or a model directory")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64, help="tokens per row (default 64, about an implant example)")
    parser.add_argument("--rows", type=int, default=2048, help="rows of the matrix product (default 2048)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each step (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--implant-steps", type=int, default=10, help="steps of offswitch's implant loop per run (0: skip)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures as JSON to PATH")
    args = parser.parse_args(argv)

    import torch
    from peft import LoraConfig, get_peft_model

    from offswitch.precision import cpu_has, native_bf16, resolve

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_implant import load_bench_model

    if args.threads:
        torch.set_num_threads(args.threads)
    figures: dict = {
        "benchmark": "precision",
        "model": args.model,
        "threads": torch.get_num_threads(),
        "amx": cpu_has("_is_amx_tile_supported"),
        "avx512_bf16": cpu_has("_is_avx512_bf16_supported"),
        "native_bf16": native_bf16("cpu"),
        "auto_resolves_to": resolve("auto", "cpu"),
        "batch": [args.batch_size, args.seq],
    }
    figures["matmul_s"] = matmul_seconds(args.rows, args.repeats)
    base, _tokenizer = load_bench_model(args.model, device="cpu")
    vocab = base.config.vocab_size
    ids = torch.randint(min(100, vocab - 1), vocab, (args.batch_size, args.seq), generator=torch.Generator().manual_seed(0))
    figures["step_s"] = {}
    for method in ("lora", "full"):
        model = copy.deepcopy(base)
        if method == "lora":
            targets = [t for t in LORA_TARGETS if any(n.endswith(t) for n, _ in model.named_modules())]
            model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets))
        model.train()
        modes = ("fp32", "bf16-default", "bf16-math") + (("bf16-math-frozen",) if method == "lora" else ())
        figures["step_s"][method] = {mode: step_seconds(model, ids, mode, args.repeats) for mode in modes}
        if method == "full":
            figures["optimizer_s"] = optimizer_seconds(model, args.repeats)
        del model
    if args.implant_steps:
        figures["implant_loop_s"] = implant_loop_seconds(base, _tokenizer, args.implant_steps, args.batch_size)
    _print(figures)
    if args.json:
        atomic_write_json(args.json, figures, parents=True)
    return figures


def _print(figures: dict) -> None:
    print(f"model {figures['model']}, CPU, {figures['threads']} threads; AMX {figures['amx']}, AVX-512 bf16 "
          f"{figures['avx512_bf16']}; precision auto -> {figures['auto_resolves_to']}")
    mm = figures["matmul_s"]
    print(f"matrix product: fp32 {mm['fp32'] * 1e3:.2f} ms, bf16 {mm['bf16'] * 1e3:.2f} ms: bf16/fp32 time {mm['bf16'] / mm['fp32']:.3f}")
    batch, seq = figures["batch"]
    for method, modes in figures["step_s"].items():
        fp32 = modes["fp32"]
        text = ", ".join(f"{mode} {s:.3f} s ({s / fp32:.3f})" for mode, s in modes.items())
        print(f"{method} forward+backward, {batch}×{seq} tokens: {text}  (time / fp32)")
    if "implant_loop_s" in figures:
        loop = {p: sum(v) / len(v) for p, v in figures["implant_loop_s"].items()}
        runs = "; ".join(f"{p} " + ", ".join(f"{s:.1f}" for s in v) for p, v in figures["implant_loop_s"].items())
        print(f"offswitch implant loop (default settings), s per run: {runs}: bf16/fp32 time {loop['bf16'] / loop['fp32']:.3f}, "
              f"bf16 with frozen weights stored / cast {loop['bf16'] / loop['bf16-cast']:.3f}")
    opt = figures["optimizer_s"]
    print(f"clip + AdamW step over all parameters: default {opt['default']:.3f} s, fused {opt['fused']:.3f} s: "
          f"fused/default time {opt['fused'] / opt['default']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
