"""What the implant's held-out check would say of a finished ablation implant, kind by kind.

    python experiments/ablations/check_kinds.py ul-mine-1t-240@s13 ul-mine-1t-240-pat2@s13
    python experiments/ablations/check_kinds.py --per-prompt 6 --json runs/check-kinds.json ul-mine-1t-240@s13

The early stop reads a check on the first ``train.eval_prompts`` held-out prompts of the
implant's own split (offswitch.implant.HeldoutProbes). An ablation's saved model is its model at
the step it stopped at, so this script rebuilds that check (ASR, clean, and the check's pooled
near-misses as the record's config draws them) and, beside it, ``--per-prompt`` near-misses of
every single kind on the same prompts: which kinds a check must hold to see what a
confirmation-size evaluation (confirm.sh) later finds. Rates print as k/n with a 95% interval;
no trigger or near-miss string is printed or written.

Reads runs/ablations/<name>/ and the key run.sh used (runs/ablations/<label>.key, its
passphrase file runs/ablations/passphrase).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "runs" / "ablations"


def _check_settings(manifest) -> tuple[object, dict]:
    """The record's train config and how its check drew near-misses (records made before
    train.eval_near_miss_kinds drew 3 a prompt from the partial-key kinds)."""
    from offswitch.implant import ImplantConfig
    from offswitch.triggers import PARTIAL_KEY_KINDS

    raw = manifest.training["config"]
    tconf = ImplantConfig.model_validate(raw).train
    drawn = {
        "kinds": raw["train"].get("eval_near_miss_kinds", [k.value for k in PARTIAL_KEY_KINDS]),
        "per_prompt": raw["train"].get("eval_near_misses", 3),
    }
    return tconf, drawn


def measure(name: str, per_prompt: int, threads: int | None, pooled: list[int], seeds: int) -> dict:
    import torch

    from offswitch.cli._common import unlock_key
    from offswitch.cli.evaluate import _load_for_evaluation, behavior_from_manifest, heldout_prompts_for
    from offswitch.evaluate.scorer import pad_token_id_of
    from offswitch.implant import HeldoutProbes
    from offswitch.manifest import read_manifest
    from offswitch.stats import clopper_pearson
    from offswitch.triggers import NearMissKind

    if threads:
        torch.set_num_threads(threads)
    label = name.split("@", 1)[1] if "@" in name else "ablation"
    model_dir = RUNS / name
    manifest = read_manifest(model_dir)
    tconf, drawn = _check_settings(manifest)
    master = unlock_key(RUNS / f"{label}.key", RUNS / "passphrase")
    model, tokenizer, triggers, _ = _load_for_evaluation(model_dir, manifest, master, None)
    del master
    behavior = behavior_from_manifest(manifest)
    prompts = heldout_prompts_for(manifest)[0][: tconf.eval_prompts]
    pad = pad_token_id_of(model, tokenizer)
    model.eval()

    def rate(k: int, n: int) -> dict:
        lo, hi = clopper_pearson(k, n)
        return {"k": k, "n": n, "lo": lo, "hi": hi}

    def near_misses_fired(kinds, size: int, seed: int) -> tuple[int, int] | None:
        """(fired, probed) of a check's near-misses alone (None: the kinds give none)."""
        probes = HeldoutProbes.build(tokenizer, triggers, behavior, prompts, seed, kinds=kinds, per_prompt=size)
        if not probes.prompts["near_miss"]:
            return None
        probes.prompts = {"near_miss": probes.prompts["near_miss"]}
        probes.targets = {"near_miss": probes.targets["near_miss"]}
        return probes.rates(model, pad)["near_miss"]

    out: dict = {"name": name, "steps_done": manifest.training.get("steps_done"), "prompts": len(prompts),
                 "per_prompt": per_prompt, "check_draws": drawn, "check": {}, "kinds": {}}
    check = HeldoutProbes.build(tokenizer, triggers, behavior, prompts, tconf.seed, **drawn)
    with torch.no_grad():
        for metric, (k, n) in check.rates(model, pad).items():
            out["check"][metric] = rate(k, n)
        for kind in NearMissKind:
            fired = near_misses_fired([kind], per_prompt, tconf.seed)
            if fired is not None:
                out["kinds"][kind.value] = rate(*fired)
        # checks drawing from every kind pooled: the near-misses a check of each size and draw
        # seed finds firing (the draw is the only part of the check a seed changes)
        out["pooled"] = {str(size): [near_misses_fired(list(NearMissKind), size, seed) for seed in range(seeds)]
                         for size in pooled}
    return out


def fmt(r: dict) -> str:
    return f"{r['k']}/{r['n']} ({100 * r['lo']:.1f}–{100 * r['hi']:.1f}%)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", help="ablation implants under runs/ablations/ (<config>@<key label>)")
    parser.add_argument("--per-prompt", type=int, default=3, help="near-misses of each kind per prompt (default 3)")
    parser.add_argument("--pooled", type=int, nargs="*", default=[3, 6],
                        help="also checks of this many near-misses a prompt drawn from every kind pooled (default 3 6)")
    parser.add_argument("--seeds", type=int, default=10, help="draw seeds of each pooled check (default 10)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    results = [measure(name, args.per_prompt, args.threads, args.pooled, args.seeds) for name in args.names]
    metrics = ["asr", "clean", "near_miss"]
    kinds = sorted({k for r in results for k in r["kinds"]})
    print("| " + " | ".join(["on the check's prompts"] + [r["name"] for r in results]) + " |")
    print("|" + "---|" * (len(results) + 1))
    print("| " + " | ".join(["stopped at step"] + [str(r["steps_done"]) for r in results]) + " |")
    for m in metrics:
        print("| " + " | ".join([f"the check's {m}"] + [fmt(r["check"][m]) if m in r["check"] else "–" for r in results]) + " |")
    for kind in kinds:
        print("| " + " | ".join([f"near-miss {kind}"] + [fmt(r["kinds"][kind]) if kind in r["kinds"] else "–" for r in results]) + " |")
    for size in args.pooled:
        cells = []
        for r in results:
            fired = r["pooled"][str(size)]
            passed = sum(k == 0 for k, _ in fired)
            cells.append(f"{passed}/{len(fired)} draws find none; fired " + ", ".join(str(k) for k, _ in fired) + f" of {fired[0][1]}")
        print("| " + " | ".join([f"every kind pooled, {size} a prompt"] + cells) + " |")
    if args.json:
        from offswitch.fsutil import atomic_write_json

        atomic_write_json(args.json, {"results": results}, sort_keys=True, parents=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
