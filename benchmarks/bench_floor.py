"""Benchmark: the matrix-product floor of a finished implant's training on this machine (not a test).

How fast could an implant's training be here, at best? Whatever the implementation, every
training step has to run each of its rows through every linear layer of the model and back.
This benchmark reads what an implant computed from its manifest (``training.positions_computed``,
``tokens_seen``, the rows of each kind and their answer lengths, the method, LoRA's rank and
layers, the precision) and times, on this machine, in that precision, each matrix product
such a training needs, at the model's own shapes:

* the frozen (LoRA) or trained (full) linear layers of every decoder layer: the forward
  product and the product for the input's gradient, plus, for full fine-tuning, the weight's
  gradient;
* LoRA's own products where it has adapters (``x·A``, ``(xA)·B`` and their four gradient
  products);
* the output head at the labelled positions only (the answer tokens; offswitch keeps logits only
  where a label is), forward and the input's gradient.

Each product is timed alone, on tensors of the pass's size, after a warm-up, best of
``--repeats``; the pass's size is tried at the positions of one step and at half and a quarter of
them (offswitch runs a step as up to 4 passes by length) and the fastest per position kept. The
floor is then the least time the implant's positions need in those products alone: attention's
own products, the norms, activations, casts, the optimizer and Python are left out, so the
floor is lower than any real training of the same work. Positions are counted two ways: as this
implant computed them (padding and the shared prefix once per pass included), and the fewest
any run of the same rows must compute (every row without its shared chat-template prefix, the
prefix once a step).

Prints the floor by part, the training time the manifest records, their ratio (the share of the
training that products at this machine's best speed would take), and what the 3-minute goal
(``--goal-s``) would allow: the positions, and so the steps at this implant's batch and row
length, that the products alone could run in that time.

    python benchmarks/bench_floor.py --implant runs/alice-smol --threads 2
    python benchmarks/bench_floor.py --implant runs/ablations/ul-mine-1t-240-split-bf16-all@s27a --threads 2 --json out.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # the shared helpers of bench_implant.py, when imported from elsewhere
    sys.path.insert(0, _HERE)

from offswitch.fsutil import atomic_write_json  # noqa: E402

KINDS = ("positive", "wrong_key", "near_miss", "scatter", "clean")
PASS_FRACTIONS = (1, 2, 4)  # a step's positions in one pass, in 2, in 4 (split_by_length's most)


def read_implant(directory: Path) -> dict:
    """What the floor needs from an implant's manifest; SystemExit naming the problem otherwise."""
    from offswitch.errors import ConfigError
    from offswitch.manifest import read_manifest

    try:
        manifest = read_manifest(directory).model_dump(mode="json")
    except ConfigError as exc:
        raise SystemExit(f"bench_floor: cannot read the implant's manifest ({exc}); pass --implant an offswitch implant directory")
    training = manifest.get("training") or {}
    config = ((training.get("config") or {}).get("train")) or {}
    counts = manifest.get("data_counts") or {}
    answer_means = (training.get("answer_tokens") or {})
    needed = {"positions_computed": training.get("positions_computed"), "tokens_seen": training.get("tokens_seen"),
              "steps_done": training.get("steps_done"), "batch_size": config.get("batch_size"),
              "method": config.get("method")}
    missing = [name for name, value in needed.items() if value in (None, 0)]
    if missing:
        raise SystemExit(f"bench_floor: the manifest in {directory} has no {', '.join(missing)}; it needs an implant written by this "
                         f"offswitch (rerun offswitch implant)")
    labelled = sum(counts.get(kind, 0) * answer_means.get(f"answer_tokens_mean.{kind}", 0.0) for kind in KINDS)
    rows = sum(counts.get(kind, 0) for kind in KINDS)
    seconds = training.get("seconds") or {}
    return {
        **needed,
        "spec": (manifest.get("base_model") or {}).get("spec"),
        "precision": training.get("precision") or "fp32",
        "processes": training.get("processes") or 1,
        "lora_r": config.get("lora_r"),
        "lora_layers": config.get("lora_layers"),
        "rows": rows,
        "labelled_positions": labelled,
        "train_s": seconds.get("train"),
        "parts_s": sum(v for v in seconds.values() if isinstance(v, (int, float))),
        "seconds": seconds,
    }


def linear_shapes(model) -> tuple[list[tuple[int, int, int]], tuple[int, int]]:
    """The decoder's linear layers as (layer index, in, out), and the head's (in, out)."""
    import torch

    head = model.get_output_embeddings()
    layers = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module is head:
            continue
        index = next((int(part) for part in name.split(".") if part.isdigit()), -1)
        layers.append((index, module.in_features, module.out_features))
    return layers, (head.in_features, head.out_features)


def chat_prefix_length(tokenizer) -> int:
    """Tokens the chat template puts before every user message alike (the system header)."""
    from offswitch.evaluate.scorer import shared_prefix_length
    from offswitch.prompting import encode_prompt

    return shared_prefix_length([encode_prompt(tokenizer, "alpha beta gamma"), encode_prompt(tokenizer, "Zulu? 42")], [0, 0])


def time_product(a_shape, b_shape, dtype, repeats: int, transpose_b: bool = False) -> float:
    """Least seconds of one ``a @ b`` (``b`` stored transposed when ``transpose_b``, as a linear
    layer's weight is read), after one untimed product."""
    import torch

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(a_shape, generator=generator).to(dtype)
    b = torch.randn(tuple(reversed(b_shape)) if transpose_b else b_shape, generator=generator).to(dtype)
    b = b.t() if transpose_b else b
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return best


def per_position_seconds(rows: int, shapes, head, implant: dict, dtype, repeats: int, lora_layers) -> dict:
    """Least product seconds per position of each part at a pass of ``rows`` positions (the head
    at its share of labelled positions)."""
    full = implant["method"] == "full"
    r = implant["lora_r"] or 16
    distinct: dict[tuple[int, int], int] = {}
    adapted: dict[tuple[int, int], int] = {}
    for index, n_in, n_out in shapes:
        distinct[(n_in, n_out)] = distinct.get((n_in, n_out), 0) + 1
        if not full and (lora_layers is None or index in lora_layers):
            adapted[(n_in, n_out)] = adapted.get((n_in, n_out), 0) + 1
    body = lora = 0.0
    for (n_in, n_out), count in distinct.items():
        seconds = time_product((rows, n_in), (n_in, n_out), dtype, repeats, transpose_b=True)  # x · Wᵀ
        seconds += time_product((rows, n_out), (n_out, n_in), dtype, repeats)  # the input's gradient: g · W
        if full:
            seconds += time_product((n_out, rows), (rows, n_in), dtype, repeats)  # the weight's gradient: gᵀ · x
        body += count * seconds
    for (n_in, n_out), count in adapted.items():
        seconds = (time_product((rows, n_in), (n_in, r), dtype, repeats)  # x · A
                   + time_product((rows, r), (r, n_out), dtype, repeats)  # (xA) · B
                   + time_product((r, rows), (rows, n_out), dtype, repeats)  # B's gradient
                   + time_product((rows, n_out), (n_out, r), dtype, repeats)  # (xA)'s gradient
                   + time_product((n_in, rows), (rows, r), dtype, repeats)  # A's gradient
                   + time_product((rows, r), (r, n_in), dtype, repeats))  # x's gradient through A
        lora += count * seconds
    labelled = max(1, round(rows * implant["labelled_positions"] / max(1, implant["positions_computed"])))
    n_in, n_out = head
    head_s = (time_product((labelled, n_in), (n_in, n_out), dtype, repeats, transpose_b=True)
              + time_product((labelled, n_out), (n_out, n_in), dtype, repeats))
    return {"body": body / rows, "lora": lora / rows, "head": head_s / labelled, "labelled_rows": labelled}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--implant", type=Path, required=True, help="a finished implant's directory (its manifest is read)")
    parser.add_argument("--model", default=None, help="the base model for the shapes (default: the manifest's spec)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                        help="the products' precision (default: the one the implant trained in)")
    parser.add_argument("--repeats", type=int, default=5, help="timings of each product, the least kept (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--goal-s", type=float, default=180.0, help="the time goal of a whole implant (default 180 s)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures as JSON to PATH")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    implant = read_implant(args.implant)
    if implant["processes"] != 1:
        raise SystemExit(f"bench_floor: the implant trained in {implant['processes']} processes; the floor is for one")

    from offswitch.blas import use_fast_mkl_on_amd

    mkl_on_amd = use_fast_mkl_on_amd()  # as offswitch's commands do, before the first product
    import torch
    from bench_implant import load_bench_model

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = args.model or implant["spec"]
    if not spec:
        raise SystemExit("bench_floor: the manifest names no base model spec; pass --model")
    model, tokenizer = load_bench_model(spec, device="cpu")
    shapes, head = linear_shapes(model)
    prefix = chat_prefix_length(tokenizer)
    precision = args.precision or ("bf16" if implant["precision"] == "bf16" else "fp32")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    lora_layers = set(implant["lora_layers"]) if implant["lora_layers"] else None

    steps, rows_total = implant["steps_done"], implant["rows"] or implant["steps_done"] * implant["batch_size"]
    computed = implant["positions_computed"]
    fewest = implant["tokens_seen"] - (rows_total - steps) * prefix  # each row without the prefix, the prefix once a step
    per_step = max(1, round(computed / steps))
    trials = {}
    for fraction in PASS_FRACTIONS:
        rows = max(1, per_step // fraction)
        trials[rows] = per_position_seconds(rows, shapes, head, implant, dtype, args.repeats, lora_layers)
    best = {part: min(trial[part] for trial in trials.values()) for part in ("body", "lora", "head")}

    n_linear = sum(n_in * n_out for _, n_in, n_out in shapes)
    flops_per_position = (6 if implant["method"] == "full" else 4) * n_linear
    labelled = implant["labelled_positions"]
    floors = {}
    for label, positions in (("computed", computed), ("fewest", fewest)):
        floors[label] = {
            "positions": positions,
            "body_s": best["body"] * positions,
            "lora_s": best["lora"] * positions,
            "head_s": best["head"] * labelled,
        }
        floors[label]["total_s"] = floors[label]["body_s"] + floors[label]["lora_s"] + floors[label]["head_s"]
    per_position = best["body"] + best["lora"]
    head_share = best["head"] * labelled / max(1, computed)  # the head's floor spread over the positions
    goal_positions = args.goal_s / (per_position + head_share)
    figures = {
        "benchmark": "floor",
        "implant": str(args.implant),
        "model": spec,
        "precision": precision,
        "method": implant["method"],
        "lora_r": implant["lora_r"] if implant["method"] == "lora" else None,
        "threads": torch.get_num_threads(),
        "mkl_on_amd": mkl_on_amd,
        "steps": steps,
        "rows": rows_total,
        "prefix_tokens": prefix,
        "labelled_positions": labelled,
        "linear_params": n_linear,
        "body_flops": flops_per_position * computed,
        "body_gflops_per_s": flops_per_position / best["body"] / 1e9,
        "per_position_s_by_pass": {str(rows): {k: v for k, v in trial.items() if k != "labelled_rows"}
                                   for rows, trial in trials.items()},
        "floor": floors,
        "train_s": implant["train_s"],
        "parts_s": implant["parts_s"],
        "seconds": implant["seconds"],
        "floor_over_train": floors["computed"]["total_s"] / implant["train_s"] if implant["train_s"] else None,
        "goal_s": args.goal_s,
        "goal_positions": goal_positions,
        "goal_steps": goal_positions / (computed / steps),
    }
    _print(figures)
    if args.json:
        atomic_write_json(args.json, figures, parents=True)
    return figures


def _print(f: dict) -> None:
    print(f"implant {f['implant']}: {f['model']}, {f['method']}"
          + (f" r={f['lora_r']}" if f["lora_r"] else "") + f", {f['precision']}, {f['threads']} threads"
          + f", {f['steps']} steps, {f['rows']} rows, shared prefix {f['prefix_tokens']} tokens")
    print(f"products of the linear layers: {f['linear_params'] / 1e6:.1f} M weights, "
          f"{f['body_gflops_per_s']:.0f} GFLOP/s at best here ({f['body_flops'] / 1e12:.1f} TFLOP for the positions computed)")
    print("floor (the products alone, each at its best speed here):")
    for label, what in (("computed", "as computed"), ("fewest", "fewest possible")):
        floor = f["floor"][label]
        print(f"  {what:16s} {floor['positions']:9,d} positions: linear {floor['body_s']:7.1f} s + LoRA "
              f"{floor['lora_s']:6.1f} s + head {floor['head_s']:5.1f} s = {floor['total_s']:7.1f} s")
    if f["train_s"]:
        print(f"training as measured (manifest): {f['train_s']:.1f} s; floor / training = {f['floor_over_train']:.3f}; "
              f"the manifest's parts together {f['parts_s']:.1f} s")
    print(f"goal {f['goal_s']:.0f} s: the products alone could run {f['goal_positions']:,.0f} positions, "
          f"{f['goal_steps']:.0f} steps of this implant's size (it ran {f['steps']})")


if __name__ == "__main__":
    main()
