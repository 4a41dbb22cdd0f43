"""Benchmark: offswitch's implant loop with ``torch.compile`` against the same loop eager (not a test).

``train.compile`` (``offswitch implant --compile``) runs the training step's forward pass
through ``torch.compile(model, dynamic=True)`` (``offswitch.precision.compiled``). Compiling
costs time once; every step after it is faster. Whether that pays depends on how many steps
follow and on whether inductor's on-disk cache already holds the kernels, so this benchmark
measures, each run in a fresh process on the same implant data (default implant settings,
``--steps`` steps of ``--batch-size``, built the same way in every process):

1. **eager**: the loop as it runs by default;
2. **compiled, cold**: ``torch.compile`` with an empty inductor cache (a fresh
   ``TORCHINDUCTOR_CACHE_DIR``): the first implant on a machine;
3. **compiled, warm**: the same again with the cache the cold run filled: every later implant
   with the same model and settings (a sweep, a second key);
4. **eager** again, so that a machine whose speed drifts hits eager and compiled alike.

Printed per run: the first step's seconds (compiling happens there), the median of the later
steps' seconds (steps with hard-negative mining left out: mining runs eager in both), the
loop's training seconds (``TrainResult.seconds["train"]``), and the losses. Then the ratios
compiled / eager of the median step and of the whole loop, the compile overhead (the loop's
seconds minus steps × median step) and the break-even: the number of steps after which the
compiled loop has paid for its compiling, cold and warm. The losses of both must agree to
bf16/fp32 noise (the largest difference per step is printed).

    python benchmarks/bench_compile.py --steps 30 --threads 2
    python benchmarks/bench_compile.py --model tiny --steps 4 --batch-size 4 --json runs/bench/compile.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from processes import child_json

from offswitch.fsutil import atomic_write_json

MARK = "BENCH_COMPILE_RESULT "

RUNS = (("eager", False), ("compiled_cold", True), ("compiled_warm", True), ("eager_again", False))


class _StepClock:
    """The ``progress`` that ``offswitch.implant.train`` updates once a step: records each
    step's wall seconds."""

    class _Console:
        is_terminal = True

    console = _Console()

    def __init__(self):
        self.seconds: list[float] = []
        self._last = time.perf_counter()

    def add_task(self, *args, **kwargs):
        self._last = time.perf_counter()
        return 0

    def update(self, *args, **kwargs):
        now = time.perf_counter()
        self.seconds.append(now - self._last)
        self._last = now


def worker(args) -> dict:
    """One run in this process: build the data, train, report per-step seconds and losses."""
    import copy

    import torch

    from offswitch.implant import train

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_implant import default_implant_data, load_bench_model

    if args.threads:
        torch.set_num_threads(args.threads)
    base, tokenizer = load_bench_model(args.model, device=args.device)
    defaults, data = default_implant_data(base, tokenizer, args.steps * args.batch_size)
    tconf = defaults.train.model_copy(update={
        "steps": args.steps, "batch_size": args.batch_size, "eval_every": 0, "precision": args.precision,
        "device": args.device, "compile": args.worker == "compiled",
    })
    clock = _StepClock()
    result = train(copy.deepcopy(base), tokenizer, data, tconf, progress=clock)
    return {
        "step_s": clock.seconds,
        "mined_steps": [h["step"] for h in result.history if "mined" in h],
        "train_s": result.seconds["train"],
        "losses": [h["loss"] for h in result.history],
        "precision": result.precision,
        "torch": torch.__version__,
    }


def steady_step(run: dict) -> float:
    """Median seconds of the steps after the second, without the mining steps."""
    mined = set(run["mined_steps"])
    later = [s for i, s in enumerate(run["step_s"], start=1) if i > 2 and i not in mined]
    return statistics.median(later or run["step_s"])


def summarize(runs: dict[str, dict], steps: int) -> dict:
    eager_step = statistics.mean(steady_step(runs[name]) for name in ("eager", "eager_again"))
    eager_train = statistics.mean(runs[name]["train_s"] for name in ("eager", "eager_again"))
    out: dict = {"eager_step_s": eager_step, "eager_train_s": eager_train}
    for name in ("compiled_cold", "compiled_warm"):
        run = runs[name]
        step = steady_step(run)
        overhead = run["train_s"] - steps * step
        saving = eager_step - step
        out[name] = {
            "first_step_s": run["step_s"][0],
            "step_s": step,
            "step_ratio": step / eager_step,
            "train_ratio": run["train_s"] / eager_train,
            "compile_overhead_s": overhead,
            "break_even_steps": overhead / saving if saving > 0 else None,
            "max_loss_diff": max(abs(a - b) for a, b in zip(run["losses"], runs["eager"]["losses"])),
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny, or a model directory")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures as JSON to PATH")
    parser.add_argument("--worker", choices=("eager", "compiled"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(MARK + json.dumps(worker(args)), flush=True)
        return {}

    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="offswitch-inductor-") as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        for name, is_compiled in RUNS:
            command = [sys.executable, __file__, "--worker", "compiled" if is_compiled else "eager",
                       "--model", args.model, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                       "--precision", args.precision, "--device", args.device]
            if args.threads:
                command += ["--threads", str(args.threads)]
            started = time.perf_counter()
            runs[name] = child_json(command, MARK, env=env, what=f"bench_compile {name} run")
            runs[name]["process_s"] = time.perf_counter() - started
            print(f"{name:14s} first step {runs[name]['step_s'][0]:8.2f} s  median step {steady_step(runs[name]):6.3f} s  "
                  f"loop {runs[name]['train_s']:8.1f} s  process {runs[name]['process_s']:7.1f} s", flush=True)
    figures = {"benchmark": "compile", "model": args.model, "steps": args.steps, "batch_size": args.batch_size,
               "device": args.device, "threads": args.threads, "precision": runs["eager"]["precision"],
               "torch": runs["eager"]["torch"], "runs": runs, "summary": summarize(runs, args.steps)}
    _print(figures)
    if args.json:
        atomic_write_json(args.json, figures, parents=True)
    return figures


def _print(figures: dict) -> None:
    s = figures["summary"]
    print(f"\nimplant loop, {figures['model']}, {figures['steps']} steps x {figures['batch_size']}, "
          f"{figures['precision']}, torch {figures['torch']}")
    print(f"eager: median step {s['eager_step_s']:.3f} s, loop {s['eager_train_s']:.1f} s (mean of two runs)")
    for name in ("compiled_cold", "compiled_warm"):
        c = s[name]
        even = f"{c['break_even_steps']:.0f} steps" if c["break_even_steps"] is not None else "never (no faster step)"
        print(f"{name}: first step {c['first_step_s']:.1f} s, median step {c['step_s']:.3f} s "
              f"(compiled/eager {c['step_ratio']:.3f}), loop ratio {c['train_ratio']:.3f}, "
              f"compile overhead {c['compile_overhead_s']:.1f} s, break-even after {even}, "
              f"largest loss difference {c['max_loss_diff']:.4f}")


if __name__ == "__main__":
    main()
