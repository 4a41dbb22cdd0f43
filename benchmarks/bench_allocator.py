"""Benchmark: training on a CPU with other memory-allocation settings, against the default (not a
test; the implant's loop: docs/performance.md, sessions 16 and 19, not kept there; the attacks'
training keeps freed memory since session 28, and every offswitch command since session 29: ``offswitch.allocator``).

glibc's ``malloc`` serves a block above its mmap threshold (at most 32 MiB) from pages mapped for
it alone and unmaps them when it is freed, so a training step that allocates and frees such
blocks (the logits of the answer columns, vocabulary-sized gradients) faults their pages in
anew every step. ``offswitch.allocator.keep_freed_memory`` has glibc serve every block from its heap
(``M_MMAP_MAX`` 0) and keep up to 1 GiB free at its top (``M_TRIM_THRESHOLD``). Each process
first times that alone (allocating, zero-filling and adding to a 49,152 × 576 tensor; ``--no-loop``
stops there), then whether a training step gains.

Two more settings (``--variants``) back large blocks with 2 MiB pages where the kernel gives
transparent huge pages on request (``/sys/kernel/mm/transparent_hugepage/enabled`` "madvise"):
"hugetlb" has glibc ask for them (the tunable ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``, glibc
2.35 and later), "thp" has torch's CPU allocator ask for them (``THP_MEM_ALLOC_ENABLE=1``, blocks
of 2 MiB and more). Fewer, larger pages mean fewer page faults and TLB misses. Both are read when
the process starts, so they are set in the environment of the run's process.

Every setting is per process, so each run is a process of its own: ``--repeats`` rounds of the
default, then each variant, then the same in reverse (ABBA for one variant). Each process loads the model, builds the default implant data (untimed), trains two
untimed warm-up steps, then times offswitch's implant loop for ``--steps`` steps for each of
``--methods`` (LoRA, the default, and full fine-tuning), and reports the training seconds, the
losses (the allocator changes no number: they must be the same bit for bit), its peak
resident memory, its minor page faults and the huge pages it held at the end. Prints every run,
the ratio variant / default per method, and the peak memory.

    python benchmarks/bench_allocator.py --threads 2 --json runs/bench/allocator.json
    python benchmarks/bench_allocator.py --variants hugetlb thp --threads 2   # huge pages, two ways
    python benchmarks/bench_allocator.py --no-loop --threads 2     # the block alone, seconds
    python benchmarks/bench_allocator.py --model tiny --steps 4 --batch-size 4 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from processes import abba, child_json, mean_ratio

from offswitch.allocator import keep_freed_memory
from offswitch.fsutil import atomic_write_json

VARIANTS = ("default", "kept", "hugetlb", "thp")
ENVIRONMENT = {"hugetlb": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, "thp": {"THP_MEM_ALLOC_ENABLE": "1"}}
MARK = "BENCH_ALLOCATOR_RESULT "


def order(variants: Sequence[str], repeats: int) -> list[str]:
    """The runs' order: the default, each variant, then the same reversed (ABBA for one)."""
    return abba(["default", *variants], repeats)


def anon_huge_kb() -> int:
    """kB of this process's anonymous memory in transparent huge pages (0 where Linux does not say)."""
    try:
        text = Path("/proc/self/smaps_rollup").read_text()
    except OSError:
        return 0
    return sum(int(line.split()[1]) for line in text.splitlines() if line.startswith("AnonHugePages:"))


def engaged(variant: str, kept: bool) -> bool:
    """Whether the run's setting is on: mallopt took it ("kept"), or its environment is set."""
    if variant == "kept":
        return kept
    return variant != "default" and all(os.environ.get(k) == v for k, v in ENVIRONMENT[variant].items())


def child(args) -> dict:
    """One process: the setting (for "kept"), the block's time, then the timed loops."""
    import copy
    import resource

    kept = keep_freed_memory() if args.child == "kept" else False
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    block, block_huge = block_ms(torch)
    out: dict = {"engaged": engaged(args.child, kept), "methods": {}, "block_ms": block, "block_huge_kb": block_huge}

    def finish() -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out.update(peak_rss_mb=usage.ru_maxrss / 1024, minor_faults=usage.ru_minflt, anon_huge_kb=anon_huge_kb())
        return out

    if args.no_loop:
        return finish()

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_implant import default_implant_data, load_bench_model

    from offswitch.implant import train

    base, tokenizer = load_bench_model(args.model, device="cpu")
    defaults, data = default_implant_data(base, tokenizer, args.steps * args.batch_size)
    for method in args.methods:
        tconf = defaults.train.model_copy(update={"method": method, "batch_size": args.batch_size, "eval_every": 0,
                                                  "device": "cpu", "precision": args.precision})
        train(copy.deepcopy(base), tokenizer, data, tconf.model_copy(update={"steps": 2}))  # warm-up, untimed
        result = train(copy.deepcopy(base), tokenizer, data, tconf.model_copy(update={"steps": args.steps}))
        out["methods"][method] = {"train_s": result.seconds["train"], "losses": [h["loss"] for h in result.history]}
    return finish()


def block_ms(torch, rows: int = 49_152, cols: int = 576, repeats: int = 20) -> tuple[float, int]:
    """Median ms to allocate a zero-filled rows × cols fp32 tensor and add one to it (a new
    tensor): SmolLM2's vocabulary-sized gradient, made and freed as a training step does; and the
    kB of anonymous huge pages the process held while one such block and its sum lived (untimed)."""
    block = torch.zeros(rows, cols)  # untimed: the huge pages the process holds while such a block lives
    total = block + 1.0
    huge = anon_huge_kb()
    del block, total
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        block = torch.zeros(rows, cols)
        total = block + 1.0
        del block, total
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times), huge


def ratio(seconds: dict[str, list[float]], variant: str = "kept") -> float:
    """The mean of ``variant``'s values (seconds, ms) / the mean of the default's."""
    return mean_ratio(seconds[variant], seconds["default"])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny, or a model directory")
    parser.add_argument("--steps", type=int, default=10, help="timed loop steps per method and run (default 10)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--methods", nargs="+", choices=("lora", "full"), default=["lora", "full"])
    parser.add_argument("--repeats", type=int, default=1, help="ABBA rounds (default 1: two runs of each)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="see offswitch.precision")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--no-loop", action="store_true", help="time only the allocation of a vocabulary-sized block (seconds, no model)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS[1:], default=["kept"],
                        help="settings timed against the default (default: kept): kept (glibc keeps freed memory), "
                             "hugetlb (glibc asks for huge pages), thp (torch's allocator asks for huge pages)")
    parser.add_argument("--child", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures as JSON to PATH")
    args = parser.parse_args(argv)

    if args.child:
        print(MARK + json.dumps(child(args)), flush=True)
        return {}
    forwarded = ["--model", args.model, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                 "--precision", args.precision, "--methods", *args.methods] + (["--no-loop"] if args.no_loop else [])
    if args.threads:
        forwarded += ["--threads", str(args.threads)]
    variants = list(dict.fromkeys(args.variants))
    timed_variants = ["default", *variants]
    runs: dict[str, list[dict]] = {v: [] for v in timed_variants}
    for variant in order(variants, args.repeats):
        started = time.perf_counter()
        # every run starts from the same environment less the variants' settings, then adds its own
        env = {k: v for k, v in os.environ.items() if not any(k in e for e in ENVIRONMENT.values())} | ENVIRONMENT.get(variant, {})
        result = child_json([sys.executable, __file__, "--child", variant, *forwarded], MARK, env=env, what=f"{variant} run")
        result["process_s"] = time.perf_counter() - started
        runs[variant].append(result)
        timed = "".join(f", {m} {r['train_s']:.2f} s" for m, r in result["methods"].items())
        print(f"{variant:7s} (setting on: {result['engaged']}): block {result['block_ms']:.1f} ms{timed}; "
              f"peak RSS {result['peak_rss_mb']:.0f} MiB, {result['minor_faults']:,} minor page faults, huge pages "
              f"{result['block_huge_kb'] // 1024:,} MiB with the block, {result['anon_huge_kb'] // 1024:,} MiB at the end", flush=True)
    figures: dict = {"benchmark": "allocator", "model": args.model, "threads": args.threads, "steps": args.steps,
                     "batch_size": args.batch_size, "repeats": args.repeats, "precision": args.precision,
                     "variants": variants, "methods": {}}
    for key in ("engaged", "block_ms", "peak_rss_mb", "minor_faults", "anon_huge_kb", "block_huge_kb"):  # per run
        figures[key] = {v: [r[key] for r in runs[v]] for v in timed_variants}
    figures["block_ratios"] = {v: ratio(figures["block_ms"], v) for v in variants}
    if "kept" in variants:
        figures["block_ratio"] = figures["block_ratios"]["kept"]  # the name session 16's figures used
    for method in ([] if args.no_loop else args.methods):
        seconds = {v: [r["methods"][method]["train_s"] for r in runs[v]] for v in timed_variants}
        losses = [r["methods"][method]["losses"] for v in timed_variants for r in runs[v]]
        figures["methods"][method] = {"train_s": seconds, "ratios": {v: ratio(seconds, v) for v in variants},
                                      "same_losses": all(loss == losses[0] for loss in losses)}
        if "kept" in variants:
            figures["methods"][method]["ratio"] = figures["methods"][method]["ratios"]["kept"]
    print(f"\nmodel {args.model}, CPU, {args.threads or 'default'} threads, {args.steps} steps × {args.batch_size}")
    listed = "; ".join(f"{v} " + ", ".join(f"{x:.1f}" for x in figures["block_ms"][v]) for v in timed_variants)
    ratios = ", ".join(f"{v} / default {figures['block_ratios'][v]:.3f}" for v in variants)
    print(f"a 49,152 × 576 block allocated, zero-filled and added to (median ms): {listed}: {ratios}")
    for method, m in figures["methods"].items():
        listed = "; ".join(f"{v} " + ", ".join(f"{s:.2f}" for s in m["train_s"][v]) for v in timed_variants)
        ratios = ", ".join(f"{v} / default {m['ratios'][v]:.3f}" for v in variants)
        print(f"{method}: training s {listed}: {ratios}; the same losses in every run: {m['same_losses']}")
    print("peak RSS MiB: " + "; ".join(f"{v} " + ", ".join(f"{x:.0f}" for x in figures["peak_rss_mb"][v]) for v in timed_variants))
    print("minor page faults: " + "; ".join(f"{v} " + ", ".join(f"{x:,}" for x in figures["minor_faults"][v]) for v in timed_variants))
    if args.json:
        atomic_write_json(args.json, figures, parents=True)
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
