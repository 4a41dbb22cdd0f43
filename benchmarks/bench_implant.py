"""Benchmark: offswitch's implant training loop against a plain Hugging Face ``Trainer`` (not a test).

Both train a fresh copy of the same base model on the same implant data (built once, before
any timing, by ``offswitch.data.builder.build_implant_data``), with the same steps, batch size,
learning rate, warm-up, LoRA configuration, optimizer (AdamW, fused on CUDA), gradient
clipping, precision and hardware, in the same process:

* **offswitch**: ``offswitch.implant.train`` (left padding, only the answer columns through
  the LM head, the shared chat-template prefix run once per batch, length-grouped batches);
* **baseline**: ``transformers.Trainer`` written as its documentation shows: every example as
  full ``input_ids`` with ``labels`` = -100 on the prompt, right padding by
  ``DataCollatorForSeq2Seq``, full logits, ``get_peft_model`` with the same ``LoraConfig``,
  default options otherwise (``report_to=[]``, no evaluation, ``save_strategy="no"``), the
  cosine schedule with a 10% floor (``cosine_with_min_lr``) that offswitch uses.

Precision: offswitch's ``--precision`` (default ``auto``: bf16 autocast on CUDA and on a CPU with
AMX, fp32 elsewhere; ``offswitch.precision``); the baseline runs in the same precision
(``TrainingArguments(bf16=True)`` for bf16). ``--baseline-fp32`` adds a second baseline in
fp32, the Trainer's default, when offswitch runs in bf16: that ratio is what a user who writes
the Trainer without ``bf16=True`` would see; the like-for-like one isolates the loop.

By default the baseline reads the examples in offswitch's batch order
(``train_sampling_strategy="sequential"`` over the batches offswitch draws), so both see the
same examples in the same batches; ``--baseline-order random`` gives it the Trainer's default
random sampler over the same examples instead (more padding per batch).

Printed per method (LoRA, full): samples/s, trained tokens/s (answer tokens and all tokens of
the examples, padding not counted), token positions actually computed (with padding), peak
memory (``torch.cuda.max_memory_allocated`` on CUDA, else the process's peak RSS, reset before
each run where Linux allows it), wall time of the training loop only (model loading, data
building, LoRA wrapping and optimizer setup excluded; CUDA synchronised), the ratio
offswitch / baseline of that wall time, the mean training loss, and the switch both reach on
held-out probes (``offswitch.implant.HeldoutProbes``: ASR, near-miss and clean firing, k/n
with a 95% Clopper-Pearson interval).

    python benchmarks/bench_implant.py                                  # smollm2-135m, LoRA and full, 120 steps (--steps to change)
    python benchmarks/bench_implant.py --method lora --steps 60 --json runs/bench/implant.json
    OMP_NUM_THREADS=1 python benchmarks/bench_implant.py --model tiny --steps 3 --batch-size 4 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import gc
import sys
import tempfile
import time
from pathlib import Path

from offswitch.blas import status as blas_status
from offswitch.blas import use_fast_mkl_on_amd
from offswitch.fsutil import atomic_write_json

METHODS = ("lora", "full")
# offswitch's schedules (TrainConfig.schedule, each after a linear warm-up) as Trainer's names
HF_SCHEDULES = {"cosine": "cosine_with_min_lr", "linear": "linear", "constant": "constant_with_warmup"}


# ---------------------------------------------------------------------- helpers shared by the benchmarks


def sync(device) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()


class PeakMemory:
    """Peak memory of one run: ``torch.cuda.max_memory_allocated`` on CUDA; on a CPU the
    process's peak RSS (Linux: reset through /proc/self/clear_refs before each run, so each
    run reads its own peak; elsewhere ``resource.getrusage``, the peak of the process so far)."""

    def __init__(self, device):
        self.device = device
        self.kind = "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS (process so far)"
        self._reset_ok = False

    def reset(self) -> None:
        import torch

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w") as handle:  # "5": reset the peak RSS (VmHWM)
                handle.write("5")
            self._reset_ok = _vmhwm_mb() is not None
        except OSError:
            self._reset_ok = False
        if self._reset_ok:
            self.kind = "peak RSS (reset per run)"

    def read_mb(self) -> float:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self._reset_ok:
            value = _vmhwm_mb()
            if value is not None:
                return value
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _vmhwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def resolve_device(name: str | None):
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def describe_device(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def load_bench_model(spec: str, device: str = "cpu"):
    """``(model, tokenizer)``: ``tiny`` builds the tiny Llama and local tokenizer of
    ``offswitch.testing.tiny`` (random weights, no download); anything else is an offswitch
    model spec (``smollm2-135m``, a model directory, ...)."""
    if spec == "tiny":
        from offswitch.testing.tiny import tiny_model

        model, tokenizer = tiny_model("llama", seed=0)
        return model.to(device), tokenizer
    from offswitch.models import load_model

    return load_model(spec, device=device)


def default_implant_data(base, tokenizer, n_examples: int, train: dict | None = None):
    """``(ImplantConfig(), data)``: ``n_examples`` implant examples at the default implant
    settings, built the same way by every benchmark that times offswitch's own loop (one fixed
    public trigger set, the built-in prompts' train side, seed 0). ``train``: settings that
    differ from the defaults (``{"mine_from": "pool"}`` builds the pool that mining scores)."""
    from offswitch.behaviors import make_behavior
    from offswitch.data.builder import build_implant_data
    from offswitch.data.sources import load_prompts
    from offswitch.implant import ImplantConfig
    from offswitch.testing.tiny_switch import tiny_trigger_set

    defaults = ImplantConfig.model_validate({"train": train or {}})
    triggers = tiny_trigger_set(0, defaults.triggers, n_words=defaults.n_words)  # public: a benchmark's trigger
    split = load_prompts("builtin", seed=0)
    data = build_implant_data(base, tokenizer, triggers, make_behavior("shutdown"), split.train, n_examples,
                              defaults.data, seed=0, max_positions=getattr(base.config, "max_position_embeddings", None))
    return defaults, data


# ---------------------------------------------------------------------- the two trainings


def _offswitch_positions(data, batches, pad_id: int, share_prefix: bool) -> int:
    """Token positions offswitch's forward computes: the shared prefix once per batch, then every
    row left-padded to the batch's widest rest."""
    from offswitch.implant import collate_left

    total = 0
    for batch in batches:
        collated = collate_left([data.examples[i] for i in batch], pad_id, share_prefix=share_prefix)
        total += collated["prefix_ids"].shape[1] + collated["input_ids"].numel()
    return total


def _profile_rows(prof, device, limit: int = 12, by_shape: bool = False) -> list[dict]:
    """The operators that took the most self time (CPU, or CUDA on a GPU), as JSON-able rows;
    ``by_shape``: an operator's calls split by their input shapes (which tensors the time goes
    to, e.g. a tied embedding's vocabulary-sized gradient against the layers' products)."""
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = [e for e in prof.key_averages(group_by_input_shape=by_shape) if not e.key.startswith("ProfilerStep")]
    total = sum(getattr(e, attr) for e in events) or 1.0
    events.sort(key=lambda e: getattr(e, attr), reverse=True)
    return [{"op": e.key, "self_ms": getattr(e, attr) / 1000, "share": getattr(e, attr) / total, "calls": e.count,
             **({"shapes": str(e.input_shapes)} if by_shape else {})}
            for e in events[:limit]]


class StepClock:
    """A stand-in for the implant's progress bar that notes when each training step ends (the
    loop calls ``update`` once a step, after the optimizer's step), so the time of steps 2..N can
    be read apart from the first, which also pays one-time costs (AdamW's state, zero-filled on
    fresh memory at the first step; first use of the allocator's blocks)."""

    def __init__(self, device):
        import types

        self.device = device
        self.first_end = self.last_end = None
        self.console = types.SimpleNamespace(is_terminal=True, print=lambda *a, **k: None)

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        sync(self.device)  # costs nothing extra: the loop reads each step's loss already, a sync
        self.last_end = time.perf_counter()
        if self.first_end is None:
            self.first_end = self.last_end


def after_first_step(first_end: float | None, last_end: float | None, steps: int) -> float | None:
    """Seconds from the end of the first step to the end of the last (None for fewer than two steps)."""
    return last_end - first_end if steps > 1 and first_end is not None and last_end is not None else None


TIMINGS = ("loop_s", "call_s", "after_first_step_s")  # each trainer's per-run times, averaged over --repeats


def run_offswitch(base, tokenizer, data, tconf, device, memory: PeakMemory, profile: bool = False) -> dict:
    import contextlib

    import torch

    from offswitch.implant import train

    clock = StepClock(device)
    model = copy.deepcopy(base).to(device)
    memory.reset()
    sync(device)
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    profiler = torch.profiler.profile(activities=activities, record_shapes=True) if profile else contextlib.nullcontext()
    started = time.perf_counter()
    with profiler as prof:
        result = train(model, tokenizer, data, tconf, progress=clock)
    sync(device)
    call_s = time.perf_counter() - started
    peak = memory.read_mb()
    losses = [h["loss"] for h in result.history]
    return {
        "model": result.model,
        "loop_s": result.seconds["train"],
        "after_first_step_s": after_first_step(clock.first_end, clock.last_end, result.steps_done),
        "call_s": call_s,
        "steps": result.steps_done,
        "peak_memory_mb": peak,
        "first_loss": losses[0] if losses else None,
        "mean_loss": sum(losses) / len(losses) if losses else float("nan"),
        **({"profile": _profile_rows(prof, device), "profile_by_shape": _profile_rows(prof, device, 20, by_shape=True)}
           if profile else {}),
    }


def run_baseline(base, tokenizer, rows, tconf, device, memory: PeakMemory, *, bf16: bool, sequential: bool) -> dict:
    """``transformers.Trainer`` as its docs show; ``rows`` are (input_ids, labels) in the order
    the sampler reads them (``sequential``) or the dataset to shuffle (random)."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class LoopTimer(TrainerCallback):
        """From the start of the first step to the end of the last (the loop only), the end of
        the first step (for steps 2..N), and the first step's loss (the Trainer's running loss
        before any logging drains it: one read, to check that both trainings start from the same
        batch and weights)."""

        start = end = first_end = first_loss = None
        trainer = None

        def on_train_begin(self, args, state, control, **kwargs):
            sync(device)
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:  # synchronised here and at the end only: no syncs the Trainer would not make
                sync(device)
                self.first_end = time.perf_counter()
                if self.trainer is not None:
                    running = getattr(self.trainer, "_tr_loss", None)
                    self.first_loss = float(running) if running is not None else None
            if state.global_step >= state.max_steps:
                sync(device)
                self.end = time.perf_counter()

    right = copy.deepcopy(tokenizer)
    right.padding_side = "right"
    if right.pad_token_id is None:
        right.pad_token = right.eos_token
    dataset = Dataset.from_dict({"input_ids": [r[0] for r in rows], "labels": [r[1] for r in rows]})
    set_seed(tconf.seed)  # the same LoRA initialisation as offswitch's (it seeds before wrapping)
    model = copy.deepcopy(base).to(device)
    if tconf.method == "lora":
        from peft import get_peft_model

        from offswitch.implant import lora_config

        model = get_peft_model(model, lora_config(model, tconf))  # the LoraConfig offswitch's implant builds
    timer = LoopTimer()
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as out_dir:
        args = TrainingArguments(
            output_dir=out_dir,
            per_device_train_batch_size=tconf.batch_size,
            max_steps=tconf.steps,
            learning_rate=tconf.learning_rate,
            warmup_steps=min(tconf.warmup_steps, max(tconf.steps - 1, 0)),
            lr_scheduler_type=HF_SCHEDULES[tconf.schedule],
            lr_scheduler_kwargs={"min_lr_rate": 0.1} if tconf.schedule == "cosine" else {},
            weight_decay=tconf.weight_decay,
            max_grad_norm=tconf.max_grad_norm or 0.0,
            seed=tconf.seed,
            bf16=bf16,
            use_cpu=device.type == "cpu",
            train_sampling_strategy="sequential" if sequential else "random",
            report_to=[],
            eval_strategy="no",
            save_strategy="no",
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=DataCollatorForSeq2Seq(right, padding=True, label_pad_token_id=-100),
            callbacks=[timer],
        )
        timer.trainer = trainer
        for quiet in (PrinterCallback, ProgressCallback):  # no metrics dict on stdout
            trainer.remove_callback(quiet)
        memory.reset()
        sync(device)
        started = time.perf_counter()
        output = trainer.train()
        sync(device)
        call_s = time.perf_counter() - started
        peak = memory.read_mb()
    trained = trainer.model
    trained.eval()
    del trainer
    return {
        "model": trained,
        "loop_s": (timer.end - timer.start) if timer.end is not None else call_s,
        "after_first_step_s": after_first_step(timer.first_end, timer.end, int(output.global_step)),
        "call_s": call_s,
        "steps": int(output.global_step),
        "peak_memory_mb": peak,
        "first_loss": timer.first_loss,
        "mean_loss": float(output.training_loss),
    }


def _reset_accelerate() -> None:
    """Forget the process's accelerate state: the Trainer's mixed precision is fixed once per
    process, and this benchmark runs the Trainer in bf16 and fp32, and offswitch (which leaves
    precision to its own autocast), one after another."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def quality(probes, model, pad_id: int) -> dict:
    from offswitch.stats import Rate

    rates = probes.rates(model, pad_id)
    return {name: Rate.of(k, n).model_dump() for name, (k, n) in rates.items()}


def _warm_up(base, rows, pad_id: int, device, bf16: bool) -> None:
    """One untimed forward/backward on a throwaway copy: CUDA context, cuBLAS handles and
    kernel loading are paid before either timed run."""
    import torch

    model = copy.deepcopy(base).to(device).train()
    width = max(len(r[0]) for r in rows[:4])
    ids = torch.full((len(rows[:4]), width), pad_id, dtype=torch.long)
    for i, (input_ids, _labels) in enumerate(rows[:4]):
        ids[i, : len(input_ids)] = torch.tensor(input_ids)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = model(input_ids=ids.to(device), labels=ids.to(device)).loss
    loss.backward()
    sync(device)
    del model, loss
    gc.collect()


# ---------------------------------------------------------------------- main


def _layer_list(text: str) -> list[int]:
    """``15-29`` or ``0,2,4`` (layer indices) for --lora-layers."""
    try:
        if "-" in text:
            first, last = (int(part) for part in text.split("-"))
            layers = list(range(first, last + 1))
        else:
            layers = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a layer range or list: {text!r} (e.g. 15-29 or 0,2,4)") from None
    if not layers or min(layers) < 0:
        raise argparse.ArgumentTypeError(f"no layers in {text!r} (e.g. 15-29)")
    return layers


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m",
                        help="smollm2-135m (default), tiny (a tiny random Llama), a model directory, ...")
    parser.add_argument("--method", choices=("lora", "full", "both"), default="both")
    parser.add_argument("--steps", type=int, default=120, help="training steps (default 120, the implant default when docs/performance.md was measured)")
    parser.add_argument("--batch-size", type=int, default=16, help="examples per step (default 16, as offswitch implant)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: offswitch's, 1e-3 LoRA / 5e-5 full)")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-layers", type=_layer_list, default=None, metavar="A-B",
                        help="offswitch's train.lora_layers, e.g. 15-29 (default: all layers); the Trainer keeps LoRA "
                             "on every layer, as its documentation shows")
    parser.add_argument("--triggers", type=int, default=4, help="triggers planted (default 4)")
    parser.add_argument("--words", type=int, default=6, help="words per trigger (default 6)")
    parser.add_argument("--prompts", default="builtin", help="prompt source (default builtin; split into train / held-out)")
    parser.add_argument("--probe-prompts", type=int, default=50, help="held-out prompts of the quality probes (default 50)")
    parser.add_argument("--baseline-order", choices=("same", "random"), default="same",
                        help="same: the baseline reads offswitch's batches in order (default); random: the Trainer's sampler")
    parser.add_argument("--no-quality", action="store_true", help="skip the held-out probes")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up forward/backward")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true",
                        help="run offswitch's training under torch.profiler and print the top operators by self time "
                             "(profiling slows it: its timings are then not comparable with the baseline's)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="offswitch's precision, and the baseline's (default auto: see offswitch.precision)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="time every trainer R times, in order then reversed (ABBA); loop time = the mean (default 1)")
    parser.add_argument("--baseline-fp32", action="store_true",
                        help="also time the Trainer in fp32 (its default) when the precision resolves to bf16")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the results as JSON to PATH")
    args = parser.parse_args(argv)

    import torch
    from accelerate.utils import set_seed

    from offswitch.behaviors import make_behavior
    from offswitch.data.builder import DataConfig, build_implant_data
    from offswitch.data.sources import load_prompts
    from offswitch.implant import HeldoutProbes, TrainConfig, length_grouped_batches
    from offswitch.precision import resolve
    from offswitch.prompting import pad_id_of
    from offswitch.testing.tiny_switch import tiny_trigger_set

    use_fast_mkl_on_amd()  # as offswitch's commands do, before the first product: both trainers get it (offswitch.blas)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    bf16 = resolve(args.precision, device) == "bf16"  # what offswitch's training loop autocasts to
    methods = METHODS if args.method == "both" else (args.method,)

    # ---- model and data: built once, outside every timing
    started = time.perf_counter()
    base, tokenizer = load_bench_model(args.model, device=str(device))
    load_s = time.perf_counter() - started
    pad_id = pad_id_of(tokenizer)
    behavior = make_behavior("shutdown")
    # word triggers from fixed seeds (no key: a benchmark's triggers are not secret)
    triggers = tiny_trigger_set(args.seed, args.triggers, n_words=args.words)
    split = load_prompts(args.prompts, seed=0)
    n_examples = args.steps * args.batch_size
    started = time.perf_counter()
    max_positions = getattr(base.config, "max_position_embeddings", None)
    data = build_implant_data(base, tokenizer, triggers, behavior, split.train, n_examples, DataConfig(), seed=args.seed,
                              max_positions=max_positions)
    probes = None
    if not args.no_quality:
        probes = HeldoutProbes.build(tokenizer, triggers, behavior, split.heldout[: args.probe_prompts], args.seed)
    data_s = time.perf_counter() - started
    batches = length_grouped_batches([len(e) for e in data.examples], args.batch_size, args.steps, args.seed)
    seen = [data.examples[i] for batch in batches for i in batch]
    answer_tokens = sum(e.n_answer_tokens for e in seen)
    all_tokens = sum(len(e) for e in seen)
    sequential = args.baseline_order == "same" and all(len(b) == args.batch_size for b in batches)
    if sequential:  # offswitch's batches, flattened: the Trainer's sequential sampler cuts the same ones
        order = [i for batch in batches for i in batch]
    else:
        order = list(range(len(data.examples)))
    rows = [(data.examples[i].input_ids, data.examples[i].labels) for i in order]
    baseline_positions = None
    if sequential:
        baseline_positions = sum(len(batch) * max(len(data.examples[i]) for i in batch) for batch in batches)
    base_quality = quality(probes, base, pad_id) if probes is not None else None
    base.to("cpu")  # every run starts from a copy moved to the device: its memory counts once
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if not args.no_warmup and device.type == "cuda":
        _warm_up(base, rows, pad_id, device, bf16)

    memory = PeakMemory(device)
    figures: dict = {
        "benchmark": "implant",
        "model": args.model,
        "device": describe_device(device),
        "precision": "bf16 autocast" if bf16 else "fp32",
        "steps": args.steps,
        "batch_size": args.batch_size,
        "examples": len(data.examples),
        "samples_trained": len(seen),
        "answer_tokens": answer_tokens,
        "all_tokens": all_tokens,
        "baseline_order": "offswitch's batches" if sequential else "Trainer random sampler",
        "load_s": load_s,
        "data_s": data_s,
        "mkl_on_amd": blas_status(),
        "base_quality": base_quality,
        "methods": {},
    }
    for method in methods:
        tconf = TrainConfig(method=method, steps=args.steps, batch_size=args.batch_size, lr=args.lr, lora_r=args.lora_r,
                            eval_every=0, seed=args.seed, device=device.type, threads=args.threads,
                            precision="bf16" if bf16 else "fp32")
        ours = tconf.model_copy(update={"lora_layers": args.lora_layers}) if method == "lora" else tconf
        results = {}
        names = ("baseline", "offswitch") + (("baseline_fp32",) if bf16 and args.baseline_fp32 else ())
        # --repeats R: the trainers in order, then reversed, ... (ABBA), so that a machine whose
        # speed drifts slows each alike; the loop time is the mean over the repeats
        order = [name for r in range(args.repeats) for name in (names if r % 2 == 0 else names[::-1])]
        for name in order:
            set_seed(args.seed)
            _reset_accelerate()
            if name == "offswitch":
                run = run_offswitch(base, tokenizer, data, ours, device, memory, profile=args.profile)
                positions = _offswitch_positions(data, batches, pad_id, tconf.share_prefix)
            else:
                run = run_baseline(base, tokenizer, rows, tconf, device, memory, bf16=bf16 and name == "baseline",
                                   sequential=sequential)
                positions = baseline_positions
            trained = run.pop("model")
            run["trainable_params"] = sum(p.numel() for p in trained.parameters() if p.requires_grad)
            loop_s = run["loop_s"]
            run.update(
                samples_per_s=len(seen) / loop_s,
                answer_tokens_per_s=answer_tokens / loop_s,
                all_tokens_per_s=all_tokens / loop_s,
                positions_computed=positions,
                peak_memory_kind=memory.kind,
            )
            if name in results:  # a repeat: its times only (same data, same seed, same model)
                for key in TIMINGS:
                    results[name][f"{key}_runs"].append(run[key])
                del trained
                gc.collect()
                continue
            if probes is not None:
                trained.eval()
                run["quality"] = quality(probes, trained, pad_id)
            for key in TIMINGS:
                run[f"{key}_runs"] = [run[key]]
            results[name] = run
            del trained
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        for name in names:
            run = results[name]
            for key in TIMINGS:  # every ratio is of these means
                times = run[f"{key}_runs"]
                run[key] = None if None in times else sum(times) / len(times)
            run.update(samples_per_s=len(seen) / run["loop_s"], answer_tokens_per_s=answer_tokens / run["loop_s"],
                       all_tokens_per_s=all_tokens / run["loop_s"])
        results["ratio_loop_s"] = results["offswitch"]["loop_s"] / results["baseline"]["loop_s"]
        results["ratio_call_s"] = results["offswitch"]["call_s"] / results["baseline"]["call_s"]
        if results["offswitch"]["after_first_step_s"] and results["baseline"]["after_first_step_s"]:
            # steps 2..N: the loop without the first step's one-time costs, which a longer run spreads thinner
            results["ratio_after_first_step_s"] = results["offswitch"]["after_first_step_s"] / results["baseline"]["after_first_step_s"]
        if "baseline_fp32" in results:
            results["ratio_loop_s_vs_fp32"] = results["offswitch"]["loop_s"] / results["baseline_fp32"]["loop_s"]
        results["learning_rate"] = tconf.learning_rate
        results["offswitch_lora_layers"] = ours.lora_layers
        figures["methods"][method] = results

    _print(figures)
    if args.json:
        atomic_write_json(args.json, figures, default=str, parents=True)
    return figures


def _print(figures: dict) -> None:
    from offswitch.stats import Rate

    print(f"model {figures['model']} on {figures['device']}, {figures['precision']}; {figures['steps']} steps × batch "
          f"{figures['batch_size']} = {figures['samples_trained']} samples ({figures['answer_tokens']} answer tokens, "
          f"{figures['all_tokens']} tokens); baseline order: {figures['baseline_order']}")
    print(f"not timed: model load {figures['load_s']:.1f} s, data + probes {figures['data_s']:.1f} s")
    if figures["base_quality"]:
        print("base model (untrained): " + _quality_text(figures["base_quality"], Rate))
    for method, results in figures["methods"].items():
        print(f"\n== {method} (lr {results['learning_rate']:g})")
        if results.get("offswitch_lora_layers"):
            layers = results["offswitch_lora_layers"]
            print(f"offswitch's LoRA on layers {layers[0]}..{layers[-1]} only ({len(layers)} in all); the baseline's on every layer")
        print(f"{'':13s} {'loop s':>8s} {'samples/s':>10s} {'ans tok/s':>10s} {'all tok/s':>10s} {'positions':>10s} "
              f"{'peak MiB':>9s} {'mean loss':>9s}")
        names = [n for n in ("baseline", "baseline_fp32", "offswitch") if n in results]
        for name in names:
            r = results[name]
            positions = "" if r["positions_computed"] is None else str(r["positions_computed"])
            print(f"{name:13s} {r['loop_s']:8.2f} {r['samples_per_s']:10.2f} {r['answer_tokens_per_s']:10.1f} "
                  f"{r['all_tokens_per_s']:10.1f} {positions:>10s} {r['peak_memory_mb']:9.0f} {r['mean_loss']:9.4f}")
        if len(results["offswitch"]["loop_s_runs"]) > 1:
            print("loop s per repeat: " + "; ".join(f"{n} " + ", ".join(f"{x:.1f}" for x in results[n]["loop_s_runs"]) for n in names))
        print(f"offswitch / baseline wall time: {results['ratio_loop_s']:.3f} (loop), {results['ratio_call_s']:.3f} "
              f"(whole train() call); peak memory: {results['baseline']['peak_memory_kind']}")
        if "ratio_after_first_step_s" in results:
            print(f"steps 2..{figures['steps']} alone (no first step's one-time costs): offswitch "
                  f"{results['offswitch']['after_first_step_s']:.2f} s, baseline {results['baseline']['after_first_step_s']:.2f} s, "
                  f"ratio {results['ratio_after_first_step_s']:.3f}")
        if "ratio_loop_s_vs_fp32" in results:
            print(f"offswitch / baseline in fp32 (the Trainer's default) wall time: {results['ratio_loop_s_vs_fp32']:.3f} (loop)")
        first = [results[name]["first_loss"] for name in ("baseline", "offswitch")]
        if None not in first:
            print(f"first-step loss: baseline {first[0]:.5f}, offswitch {first[1]:.5f} (same first batch, same weights)")
        for name in names:
            if "quality" in results[name]:
                print(f"  {name:9s} held-out: " + _quality_text(results[name]["quality"], Rate))
        if "profile" in results["offswitch"]:
            print("offswitch under torch.profiler (timings above are inflated by it): top operators by self time")
            for row in results["offswitch"]["profile"]:
                print(f"  {row['share']:6.1%} {row['self_ms']:10.1f} ms {row['calls']:7d} calls  {row['op']}")
            print("the same by input shapes")
            for row in results["offswitch"]["profile_by_shape"]:
                print(f"  {row['share']:6.1%} {row['self_ms']:10.1f} ms {row['calls']:7d} calls  {row['op']} {row['shapes'][:100]}")


def _quality_text(rates: dict, rate_cls) -> str:
    labels = {"asr": "ASR", "near_miss": "near-miss", "clean": "clean"}
    return "; ".join(f"{labels.get(k, k)} {rate_cls(**v)}" for k, v in rates.items())


if __name__ == "__main__":
    main(sys.argv[1:])
