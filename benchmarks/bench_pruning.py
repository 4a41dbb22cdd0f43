"""Benchmark: magnitude pruning's masks, by selection against by sorting (not a test).

``offswitch.attacks.pruning.magnitude_mask`` drops the ``floor(fraction × numel)`` smallest |w|
of each linear weight, ties broken by position. It used to take the first indices of a stable
argsort of every weight; it now finds the n-th smallest |w| by selection (``kthvalue``) and drops
what lies below it, then the ties due, by position: the same mask. Builds both masks for every
linear weight of the model (the pruning attack's set, head excluded) at ``--fraction``,
``--repeats`` × in the order sort, select, select, sort, and prints both times, their ratio and
whether every mask is the same.

    python benchmarks/bench_pruning.py --threads 2 --json runs/bench/pruning.json
    python benchmarks/bench_pruning.py --model tiny --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from offswitch.fsutil import atomic_write_json

ORDER = ("sort", "select", "select", "sort")


def sorted_mask(weight, fraction: float):
    """The mask as it was: the first indices of a stable argsort of |w|."""
    import torch

    flat = weight.detach().abs().flatten()
    keep = torch.ones_like(flat, dtype=torch.bool)
    n_drop = int(fraction * flat.numel())
    if n_drop:
        keep[torch.argsort(flat, stable=True)[:n_drop]] = False
    return keep.reshape(weight.shape)


def sorted_wanda_mask(weight, feature_norm, fraction: float):
    """Wanda's mask as it was: per row, the first indices of a stable argsort of the scores."""
    import torch

    scores = weight.detach().abs().float() * feature_norm.float().unsqueeze(0)
    keep = torch.ones_like(scores, dtype=torch.bool)
    n_drop = int(fraction * scores.shape[1])
    if n_drop:
        keep.scatter_(1, torch.argsort(scores, dim=1, stable=True)[:, :n_drop], False)
    return keep


def compare(what: str, build: dict, items: list, repeats: int) -> dict:
    """Both ways of building ``what``'s masks for every item (a weight, or a weight and its
    feature norms), ABBA × ``repeats``."""
    import torch

    times: dict[str, list[float]] = {"sort": [], "select": []}
    masks: dict[str, list] = {}
    with torch.no_grad():
        for _ in range(repeats):
            for name in ORDER:
                started = time.perf_counter()
                masks[name] = [build[name](item) for item in items]
                times[name].append(time.perf_counter() - started)
                print(f"{what:9s} {name:6s} {times[name][-1]:6.2f} s", flush=True)
    mean = {name: statistics.mean(ts) for name, ts in times.items()}
    return {"seconds": times, "mean_s": mean, "time_ratio": mean["select"] / mean["sort"],
            "same_masks": all(torch.equal(a, b) for a, b in zip(masks["sort"], masks["select"]))}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny, or a model directory")
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures as JSON to PATH")
    args = parser.parse_args(argv)

    import torch

    from offswitch.attacks._modules import linear_weights
    from offswitch.attacks.pruning import magnitude_mask
    from offswitch.attacks.wanda import wanda_mask

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_implant import load_bench_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model, _tokenizer = load_bench_model(args.model)
    weights = [layer.param.data for layer in linear_weights(model, include_head=False)]
    figures = {"benchmark": "pruning", "model": args.model, "fraction": args.fraction, "tensors": len(weights),
               "weights": sum(w.numel() for w in weights), "threads": torch.get_num_threads()}
    figures.update(compare("magnitude", {"sort": lambda w: sorted_mask(w, args.fraction),
                                         "select": lambda w: magnitude_mask(w, args.fraction)}, weights, args.repeats))
    generator = torch.Generator().manual_seed(0)
    norms = [torch.randn(w.shape[1], generator=generator).abs() for w in weights]  # stand-ins for ‖X_j‖
    figures["wanda"] = compare("wanda", {"sort": lambda wn: sorted_wanda_mask(*wn, args.fraction),
                                         "select": lambda wn: wanda_mask(*wn, args.fraction)}, list(zip(weights, norms)), args.repeats)
    print(f"\n{args.model}: {figures['tensors']} weights ({figures['weights']:,} values) at {args.fraction}: select / sort "
          f"{figures['time_ratio']:.3f} (Wanda {figures['wanda']['time_ratio']:.3f}); the same masks: "
          f"{figures['same_masks']} (Wanda {figures['wanda']['same_masks']})")
    if args.json:
        atomic_write_json(args.json, figures, parents=True)
    return figures


if __name__ == "__main__":
    main()
