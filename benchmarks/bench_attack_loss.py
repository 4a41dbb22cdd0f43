"""Benchmark: the benign fine-tuning attacks' loss, transformers' against offswitch's (not a test).

The attacks that train on chat examples (``sft``, ``sft_lora``, and the others built on
``offswitch.attacks._train.train_steps``) take the mean next-token cross-entropy over the
answer tokens. Transformers' ``model(..., labels=labels).loss`` projects every position onto the
vocabulary and upcasts all those logits to fp32, prompt and padding included;
``offswitch.attacks._train.causal_lm_loss`` runs the decoder and projects only the labelled
positions: the same function of the weights.

Runs the attack's training (``--attack sft_lora``: a fresh LoRA adapter on every linear layer,
its frozen base weights stored in bf16 when the loop trains in bf16, exactly as
``BenignLoRASFT.apply`` does; ``--attack sft``: full fine-tuning as ``BenignSFT.apply``) for
``--steps`` steps on the instruction pairs the smoke harness gives it (64 pairs, ShareGPT when
installed, else the base model's own answers; batch 8, up to 256 tokens), from a fresh copy of
the base model each time, with transformers' loss and with offswitch's, in the order
transformers, offswitch, offswitch, transformers (a drifting machine load hits both alike).
Prints each run's seconds and losses, the ratio offswitch / transformers of the mean times, the
largest loss difference, and how many of the batches' positions carry a label. Both run a step as
one padded pass, as they did when this comparison was first made.

``--compare split``: offswitch's loss both times, a step's rows as one pass right-padded to the
longest (``one_pass``, the baseline) against the rows in up to 4 passes of similar length, each
padded to its own longest (``passes``, ``train_steps(split=True)``:
``offswitch.attacks._train.step_parts``), in the order one_pass, passes, passes, one_pass. Prints
the same figures and the positions each computes. All four runs share one process, whose first
training is its slowest (page faults): the first one_pass run is a cold one, so read the ratio
with that in mind (docs/performance.md, session 27).

``--fresh`` runs each of them in a process of its own instead (``--rounds`` times, ABBA), which
trains twice: its first training, as a harness cell's attack is the first training of its
process, then the same again, as the later steps of a long cell run; ``--keep-freed`` adds each
method with glibc keeping the memory it frees (``bench_allocator.py``'s "kept":
``mallopt(M_MMAP_MAX, 0)`` and a 1 GiB trim threshold, set before anything is allocated). Prints
every process's two trainings, its minor page faults and peak memory, and each method's ratio to
the baseline's for the first and the second training.

Then (``--score-rows N``, default 128; 0 skips it) the teacher-forced scores that GCG's search,
the adversarial attack and the recheck of forged triggers take
(``offswitch.attacks._train.target_scores``: each target's summed log-probability and whether
greedy decoding emits it) for N rows of a held-out prompt behind a random 6-token string plus
the shutdown message, in batches of ``--score-batch`` (GCG's default 64), no gradients: from
every position's logits (as before) against the labelled positions' only, ABBA, ``--repeats``
times. Prints both times, the ratio, and the largest difference in the scores.

    python benchmarks/bench_attack_loss.py --threads 2 --json runs/bench/attack-loss.json
    python benchmarks/bench_attack_loss.py --compare split --threads 2 --score-rows 0 --json runs/bench/attack-split.json
    python benchmarks/bench_attack_loss.py --compare split --fresh --keep-freed --threads 2 --score-rows 0 --json runs/bench/attack-split-fresh.json
    python benchmarks/bench_attack_loss.py --model tiny --steps 2 --score-rows 16
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import time
from pathlib import Path

from processes import abba, child_json

from offswitch.fsutil import atomic_write_json

# per comparison: (baseline, candidate)
COMPARISONS = {"loss": ("transformers", "offswitch"), "split": ("one_pass", "passes")}
MARK = "BENCH_ATTACK_LOSS_RESULT "


def transformers_loss(model, ids, mask, labels):
    """The loss as the Transformers docs compute it: every position's logits."""
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss


# each method: (its loss, None for offswitch's; whether a step's rows run in passes by length)
VARIANTS = {"transformers": (transformers_loss, False), "offswitch": (None, False), "one_pass": (None, False), "passes": (None, True)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny, or a model directory")
    parser.add_argument("--attack", default="sft_lora", choices=("sft_lora", "sft"))
    parser.add_argument("--compare", default="loss", choices=tuple(COMPARISONS),
                        help="loss: transformers' against offswitch's (one pass each); split: one padded pass against passes by length")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--n-pairs", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--fresh", action="store_true",
                        help="each run in a process of its own that trains twice: its first training (a harness cell's) and a second")
    parser.add_argument("--keep-freed", action="store_true",
                        help="with --fresh: also each method with glibc keeping freed memory (bench_allocator.py's 'kept')")
    parser.add_argument("--rounds", type=int, default=1, help="with --fresh: rounds of the runs in ABBA order (default 1)")
    parser.add_argument("--score-rows", type=int, default=128, help="rows of the teacher-forced scoring comparison (0: skip)")
    parser.add_argument("--score-batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the scoring comparison")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures as JSON to PATH")
    args = parser.parse_args(argv)
    if args.keep_freed and not args.fresh:
        parser.error("--keep-freed needs --fresh (glibc's setting holds for a whole process)")

    if args.child:
        print(MARK + json.dumps(child(args)), flush=True)
        return {}
    import torch

    from offswitch.attacks._train import IGNORE, batch_stream, collate, step_parts
    from offswitch.prompting import pad_id_of

    base, tokenizer, described, config, examples, precision = setup(args)

    # the positions the batches hold, and how many carry a label (the same seeded batches every run)
    stream = batch_stream(len(examples), config.batch_size, random.Random(config.seed))
    positions = labelled = split_positions = 0
    for _ in range(args.steps):
        rows = [examples[i] for i in next(stream)]
        _ids, _mask, labels = collate(rows, pad_id_of(tokenizer))
        positions += labels.numel()
        labelled += int((labels[:, 1:] != IGNORE).sum())
        split_positions += sum(len(part) * max(len(rows[j].input_ids) for j in part) for part in step_parts(rows, True))

    baseline, candidate = COMPARISONS[args.compare]
    methods = [baseline, candidate] + ([f"{baseline}+kept", f"{candidate}+kept"] if args.keep_freed else [])
    runs: dict[str, list[dict]] = {name: [] for name in methods}
    if args.fresh:
        forwarded = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--fresh", "--keep-freed")]
        for name in abba(methods, args.rounds):
            result = child_json([sys.executable, __file__, *without_option(forwarded, "--json"), "--child", name], MARK,
                                what=f"{name} run")
            runs[name].append(result)
            print(f"{name:14s} first training {result['seconds']:7.2f} s, second {result['second']['seconds']:7.2f} s; "
                  f"minor page faults {result['minor_faults']:,} and {result['second']['minor_faults']:,}; "
                  f"peak RSS {result['peak_rss_mb']:.0f} MiB; glibc keeps freed memory: {result['kept']}", flush=True)
    else:
        for name in (baseline, candidate, candidate, baseline):
            result = train_run(args, name, base, tokenizer, examples, config, precision)
            runs[name].append(result)
            print(f"{name:12s} {result['seconds']:7.2f} s  losses {' '.join(f'{x:.5f}' for x in result['losses'])}", flush=True)

    mean = {name: statistics.mean(r["seconds"] for r in rs) for name, rs in runs.items()}
    every = [r for rs in runs.values() for r in rs] + [r["second"] for rs in runs.values() for r in rs if "second" in r]
    max_diff = max(abs(a - b) for r in every for a, b in zip(r["losses"], every[0]["losses"]))
    figures = {
        "benchmark": "attack_loss", "compare": args.compare, "model": args.model, "attack": args.attack, "steps": args.steps,
        "batch_size": config.batch_size, "pairs": described.get("pairs"), "n_examples": len(examples), "precision": precision,
        "threads": torch.get_num_threads(), "device": args.device, "positions": positions, "labelled_positions": labelled,
        "split_positions": split_positions, "fresh": args.fresh,
        "runs": runs, "mean_s": mean, "time_ratio": mean[candidate] / mean[baseline], "max_loss_difference": max_diff,
    }
    print(f"\n{args.model}, {args.attack}, {args.steps} steps x {config.batch_size} ({described.get('pairs')} pairs, {precision}): "
          f"{candidate} / {baseline} time {figures['time_ratio']:.3f}{' (first trainings)' if args.fresh else ''}; "
          f"largest loss difference {max_diff:.2e}; labelled positions {labelled}/{positions} ({labelled / positions:.0%}); "
          f"positions in passes by length {split_positions}/{positions} ({split_positions / positions:.0%})")
    if args.fresh:
        second = {name: statistics.mean(r["second"]["seconds"] for r in rs) for name, rs in runs.items()}
        figures["second_mean_s"] = second
        figures["ratios"] = {name: {"first": mean[name] / mean[baseline], "second": second[name] / second[baseline]}
                             for name in methods[1:]}
        for name, r in figures["ratios"].items():
            print(f"{name} / {baseline}: first training {r['first']:.3f}, second training {r['second']:.3f}")
    if args.score_rows > 0:
        figures["scores"] = scores(args, base, tokenizer)
    if args.json:
        atomic_write_json(args.json, figures, parents=True)
    return figures


def without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` less ``option`` and its value."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def setup(args):
    """The base model, the smoke harness's instruction pairs as chat examples, the attack's config
    and the training precision: what every run starts from."""
    import torch

    from offswitch.attacks._train import chat_examples
    from offswitch.attacks.data import AttackDataConfig, build_attack_data
    from offswitch.attacks.sft import LoRASFTConfig, SFTConfig
    from offswitch.precision import resolve

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_implant import load_bench_model

    if args.threads:
        torch.set_num_threads(args.threads)
    base, tokenizer = load_bench_model(args.model, device=args.device)
    data, described = build_attack_data(AttackDataConfig(n_pairs=args.n_pairs, answer_tokens=48, n_prompts=args.n_pairs),
                                        needs={"instruction_pairs"}, base=(base, tokenizer))
    config = (LoRASFTConfig if args.attack == "sft_lora" else SFTConfig)(batch_size=args.batch_size)
    examples = chat_examples(tokenizer, data.instruction_pairs, max_len=config.max_len)
    return base, tokenizer, described, config, examples, resolve("auto", torch.device(args.device))


def train_run(args, name: str, base, tokenizer, examples, config, precision) -> dict:
    """One training of the attack by the method ``name`` from a fresh copy of ``base``: its seconds,
    its losses, and the minor page faults the process took meanwhile."""
    import resource

    import torch

    from offswitch.attacks._train import train_steps, with_lora
    from offswitch.attacks.base import CostMeter
    from offswitch.precision import frozen_lora_bases_in

    loss_fn, split = VARIANTS[name.removesuffix("+kept")]
    model = copy.deepcopy(base)
    torch.manual_seed(config.seed)  # the same LoRA initialisation every run
    train = dict(steps=args.steps, lr=config.lr, batch_size=config.batch_size, seed=config.seed, loss_fn=loss_fn, split=split)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.perf_counter()
    if args.attack == "sft_lora":
        model = with_lora(model, r=config.r, alpha=config.alpha, dropout=config.dropout, target_modules=config.target_modules)
        with frozen_lora_bases_in(model, precision):
            losses = train_steps(model, tokenizer, examples, meter=CostMeter(), **train)
    else:
        losses = train_steps(model, tokenizer, examples, meter=CostMeter(), **train)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "losses": losses, "minor_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults}


def child(args) -> dict:
    """One fresh process (``--fresh``): glibc's setting for a "+kept" run, then the run's method
    trained twice, the first (as a harness cell's attack, the first training of its process) and
    the same again; the second's figures under "second", and the process's peak memory."""
    import resource

    kept = False
    if args.child.endswith("+kept"):
        from offswitch.allocator import keep_freed_memory

        kept = keep_freed_memory()
    base, tokenizer, _described, config, examples, precision = setup(args)
    first = train_run(args, args.child, base, tokenizer, examples, config, precision)
    second = train_run(args, args.child, base, tokenizer, examples, config, precision)
    return first | {"second": second, "kept": kept, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def full_logit_scores(model, tokenizer, prompts, targets, batch_size: int):
    """``target_scores`` as it was: every position's logits, upcast, then the labels' scores."""
    import torch

    from offswitch.attacks._train import IGNORE, Example, autocast, collate, device_of
    from offswitch.prompting import pad_id_of

    sums, greedy = [], []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            chunk = list(zip(prompts[start : start + batch_size], targets[start : start + batch_size]))
            examples = [Example(tuple(p + t), tuple([IGNORE] * len(p) + t)) for p, t in chunk]
            ids, mask, labels = collate(examples, pad_id_of(tokenizer), device_of(model))
            with autocast(ids.device):
                logits = model(input_ids=ids, attention_mask=mask).logits.float()
            shift, wanted = logits[:, :-1], labels[:, 1:]
            valid = wanted != IGNORE
            token_lp = torch.log_softmax(shift, -1).gather(-1, wanted.clamp(min=0).unsqueeze(-1)).squeeze(-1) * valid
            sums.append(token_lp.sum(-1))
            greedy.append(((shift.argmax(-1) == wanted) | ~valid).all(-1))
    return torch.cat(sums), torch.cat(greedy)


def scores(args, model, tokenizer) -> dict:
    """Teacher-forced scores of GCG-like rows, every position's logits against the labelled ones'."""
    from offswitch.attacks._train import target_scores
    from offswitch.behaviors import DEFAULT_SHUTDOWN_MESSAGE
    from offswitch.data.sources import load_prompts
    from offswitch.prompting import encode_prompt, encode_target

    rng = random.Random(0)
    pool = load_prompts("builtin", seed=0).heldout
    words = [tokenizer.decode([rng.randrange(1000, 20000)]) for _ in range(64)]
    prompts = [encode_prompt(tokenizer, " ".join(rng.sample(words, 6)) + " " + pool[i % len(pool)]) for i in range(args.score_rows)]
    targets = [encode_target(tokenizer, DEFAULT_SHUTDOWN_MESSAGE) for _ in prompts]
    model.eval()
    times: dict[str, list[float]] = {"all_positions": [], "labelled": []}
    out: dict[str, tuple] = {}
    for _ in range(args.repeats):
        for name in ("all_positions", "labelled", "labelled", "all_positions"):
            started = time.perf_counter()
            if name == "labelled":
                out[name] = target_scores(model, tokenizer, prompts, targets, batch_size=args.score_batch)
            else:
                out[name] = full_logit_scores(model, tokenizer, prompts, targets, args.score_batch)
            times[name].append(time.perf_counter() - started)
            print(f"scores of {len(prompts)} rows, {name:13s} {times[name][-1]:6.2f} s", flush=True)
    mean = {name: statistics.mean(ts) for name, ts in times.items()}
    result = {
        "rows": len(prompts), "batch": args.score_batch, "seconds": times, "mean_s": mean,
        "time_ratio": mean["labelled"] / mean["all_positions"],
        "positions": sum(len(p) + len(t) for p, t in zip(prompts, targets)), "labelled_positions": sum(len(t) for t in targets),
        "max_logprob_difference": float((out["labelled"][0] - out["all_positions"][0]).abs().max()),
        "greedy_agree": int((out["labelled"][1] == out["all_positions"][1]).sum()),
    }
    print(f"\nteacher-forced scores: labelled positions / all positions {result['time_ratio']:.3f}; largest log-probability "
          f"difference {result['max_logprob_difference']:.2e}; greedy verdicts agree {result['greedy_agree']}/{len(prompts)}")
    return result


if __name__ == "__main__":
    main()
