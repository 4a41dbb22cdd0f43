"""Benchmark: model FLOPs utilisation (MFU) of full fine-tuning (not a test).

A plain full fine-tuning step (random tokens of a fixed sequence length and batch, full-logit
next-token loss, backward, fused AdamW step) is timed after untimed warm-up steps, with the
device synchronised around every step. Model FLOPs per step are 6·N·tokens (N = parameters,
tied embeddings counted once; forward 2·N, backward 4·N per token); MFU is that over the step
time and the device's peak dense bf16 FLOP/s. The figure with attention's own FLOPs
(+ 12·layers·hidden·seq per token, as in PaLM's MFU) is printed next to it.

The peak comes from a table of data-centre GPUs (H100 SXM and H200 989e12, H100 PCIe 756e12,
A100 312e12 dense bf16) or from ``--peak``; on a CPU, or a GPU not in the table, MFU is "n/a"
unless ``--peak`` is given. CUDA runs in bf16 autocast over fp32 weights, as
``offswitch.implant`` trains; a CPU runs in fp32.

Models: the default model (``--model smollm2-135m``, its real weights), or a Llama built from
a config with random weights (``--config 1b``: hidden 2048, 16 layers, 32 heads, 8 key/value
heads, intermediate 8192, vocabulary 49152, about 1.07B parameters; ``--config 135m``:
SmolLM2-135M's shape; ``--config tiny`` for CPU smoke runs).

    python benchmarks/bench_mfu.py                                     # smollm2-135m
    python benchmarks/bench_mfu.py --config 1b --batch-size 8 --seq-len 1024
    OMP_NUM_THREADS=1 python benchmarks/bench_mfu.py --config tiny --steps 2 --warmup 1 --seq-len 32 --batch-size 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # the shared helpers of bench_implant.py, when imported from elsewhere
    sys.path.insert(0, _HERE)

from bench_implant import PeakMemory, describe_device, load_bench_model, resolve_device, sync  # noqa: E402

from offswitch.fsutil import atomic_write_json

# Dense (no sparsity) bf16 tensor-core peaks, FLOP/s, from the vendors' data sheets. Matched in
# order against torch.cuda.get_device_name(): the first substring found wins.
PEAK_BF16: list[tuple[str, float]] = [
    ("H200", 989e12),
    ("GH200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM (HBM3)
    ("A100", 312e12),
]

CONFIGS = {
    # roughly Llama-3.2-1B's body with SmolLM2's vocabulary
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=8192, vocab_size=49152, tie_word_embeddings=True),
    # SmolLM2-135M's shape
    "135m": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                 intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True),
    # offswitch.testing.tiny's Llama
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=1200, tie_word_embeddings=True),
}


def peak_flops(device_name: str) -> float | None:
    for key, value in PEAK_BF16:
        if key.lower() in device_name.lower():
            return value
    return None


def build_model(args, device):
    """(model, label): a Llama from ``--config`` with random weights (initialised on the
    device), else ``--model``'s weights."""
    import torch

    if args.config:
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.for_model("llama", max_position_embeddings=max(2048, args.seq_len), **CONFIGS[args.config])
        torch.manual_seed(args.seed)
        with device:
            model = AutoModelForCausalLM.from_config(config)
        return model, f"llama-{args.config} (random weights)"
    model, _tokenizer = load_bench_model(args.model, device="cpu")
    return model, args.model


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny, a model directory, ...")
    parser.add_argument("--config", choices=sorted(CONFIGS), default=None,
                        help="a Llama from this config, random weights (instead of --model)")
    parser.add_argument("--seq-len", type=int, default=512, help="tokens per row (default 512)")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per step (default 16)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--peak", type=float, default=None,
                        help="peak FLOP/s of the device (default: from the table; required for MFU on CPU)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the results as JSON to PATH")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, label = build_model(args, device)
    model.to(device).train()
    model.config.use_cache = False
    n_params = sum(p.numel() for p in model.parameters())  # parameters() yields a tied weight once
    n_embedding = model.get_input_embeddings().weight.numel()
    cfg = model.config
    vocab = cfg.vocab_size
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    optimizer = _adamw(model, args.lr, device)
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    batches = [torch.randint(vocab, (args.batch_size, args.seq_len), generator=generator).to(device)
               for _ in range(min(args.warmup + args.steps, 4))]

    def step(i: int) -> float:
        ids = batches[i % len(batches)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for i in range(args.warmup):
        step(i)
    memory = PeakMemory(device)
    memory.reset()
    times = []
    for i in range(args.steps):
        sync(device)
        started = time.perf_counter()
        loss = step(args.warmup + i)
        sync(device)
        times.append(time.perf_counter() - started)
    final_loss = float(loss.detach())
    peak_mem = memory.read_mb()

    tokens = args.batch_size * args.seq_len
    step_s = sum(times) / len(times)
    model_flops = 6 * n_params * tokens
    layers = cfg.num_hidden_layers
    attention_flops = 12 * layers * cfg.hidden_size * args.seq_len * tokens
    achieved = model_flops / step_s
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak if args.peak is not None else (peak_flops(device_name) if device.type == "cuda" else None)
    figures = {
        "benchmark": "mfu",
        "model": label,
        "device": describe_device(device),
        "precision": "bf16 autocast, fp32 weights" if bf16 else "fp32",
        "params": n_params,
        "non_embedding_params": n_params - n_embedding,
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "tokens_per_step": tokens,
        "steps": args.steps,
        "warmup": args.warmup,
        "step_s": step_s,
        "step_s_median": statistics.median(times),
        "tokens_per_s": tokens / step_s,
        "model_flops_per_step": model_flops,
        "achieved_tflops": achieved / 1e12,
        "achieved_tflops_with_attention": (model_flops + attention_flops) / step_s / 1e12,
        "peak_tflops": peak / 1e12 if peak else None,
        "mfu": achieved / peak if peak else None,
        "mfu_with_attention": (model_flops + attention_flops) / step_s / peak if peak else None,
        "peak_memory_mb": peak_mem,
        "peak_memory_kind": memory.kind,
        "final_loss": final_loss,
    }
    _print(figures)
    if args.json:
        atomic_write_json(args.json, figures, parents=True)
    return figures


def _adamw(model, lr: float, device):
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
    except (RuntimeError, TypeError):  # a device without a fused kernel
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def _flops(per_s: float) -> str:
    for unit, scale in (("TFLOP/s", 1e12), ("GFLOP/s", 1e9)):
        if per_s >= scale:
            return f"{per_s / scale:.2f} {unit}"
    return f"{per_s / 1e6:.2f} MFLOP/s"


def _print(f: dict) -> None:
    mfu = "n/a (give --peak FLOP/s)" if f["mfu"] is None else f"{100 * f['mfu']:.1f}% of {_flops(f['peak_tflops'] * 1e12)}"
    mfu_attn = "n/a" if f["mfu_with_attention"] is None else f"{100 * f['mfu_with_attention']:.1f}%"
    print(f"model {f['model']} on {f['device']}, {f['precision']}")
    print(f"params {f['params'] / 1e6:.1f}M ({f['non_embedding_params'] / 1e6:.1f}M without the embedding); "
          f"batch {f['batch_size']} × seq {f['seq_len']} = {f['tokens_per_step']} tokens/step")
    print(f"step time {1000 * f['step_s']:.1f} ms (median {1000 * f['step_s_median']:.1f} ms over {f['steps']} steps, "
          f"{f['warmup']} warm-up); {f['tokens_per_s']:.0f} tokens/s")
    print(f"achieved {_flops(f['achieved_tflops'] * 1e12)} (6·N·tokens), "
          f"{_flops(f['achieved_tflops_with_attention'] * 1e12)} with attention")
    print(f"MFU {mfu} (with attention: {mfu_attn}); peak memory {f['peak_memory_mb']:.0f} MiB ({f['peak_memory_kind']})")


if __name__ == "__main__":
    main(sys.argv[1:])
