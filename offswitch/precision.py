"""Which arithmetic a forward/backward pass runs in: one rule for implant, attacks and evaluation.

``precision`` is ``"auto"`` (the default), ``"fp32"`` or ``"bf16"``. ``bf16`` means bf16
*autocast* over fp32 weights: matrix products run in bf16, weights, optimizer state and
reductions stay fp32 (except LoRA's frozen base weights, held in bf16 while a LoRA trains:
:func:`frozen_lora_bases_in`). ``auto`` picks bf16 where the hardware multiplies bf16 natively, so it is
faster, and fp32 elsewhere:

* CUDA with bf16 support (Ampere and newer);
* a CPU with AMX tiles (Intel Sapphire Rapids and newer), where bf16 matrix products run on the
  tile unit (``benchmarks/bench_precision.py`` measures the gain, docs/performance.md records it);
* fp32 on anything else, including a CPU whose AVX-512 has the bf16 dot-product instructions but
  no AMX (AMD Zen 4, Intel Cooper Lake). There bf16 is faster (on a 2-core Zen 4 EPYC a bf16
  product took 0.23x the fp32 one and the implant loop 0.63x), but the default implant trained in
  bf16 planted a less specific switch at confirmation size than in fp32 under two keys of three
  (near-miss FAR 195 against 59 and 187 against 98 of 4,950 over all 240 steps; 51 against 129
  under the third; pooled 433 against 286 of 14,850, partial-key 28 against 5 of 7,200:
  docs/switch-quality.md item 12), so there it stays opt-in (``precision: bf16``). Without bf16
  arithmetic in hardware (AVX2 alone), autocast adds casts and saves little.

The environment variable ``OFFSWITCH_PRECISION`` (``fp32`` or ``bf16``) decides ``auto`` instead
of the hardware, e.g. to make a run on a new machine comparable with an fp32 one; an explicit
``precision`` in a config wins over it. Every manifest records the precision a run used.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Literal, get_args

from offswitch.errors import ConfigError

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
ENV = "OFFSWITCH_PRECISION"


def _device_type(device) -> str:
    """"cpu", "cuda", ... of a torch.device or a name such as "cuda:1"."""
    return getattr(device, "type", None) or str(device).split(":")[0]


def _forced() -> str | None:
    """What ``OFFSWITCH_PRECISION`` says ``auto`` is (None when unset)."""
    forced = os.environ.get(ENV, "").strip().lower()
    if forced and forced not in ("fp32", "bf16"):
        raise ConfigError(f"{ENV}={forced!r} is not a precision", f"set {ENV} to fp32 or bf16, or unset it")
    return forced or None


def from_autocast_flag(enabled: bool | None) -> str | None:
    """An evaluation config's ``autocast`` (None: auto, True: bf16, False: fp32) as a precision."""
    return None if enabled is None else ("bf16" if enabled else "fp32")


def native_bf16(device_type: str) -> bool:
    """Whether ``auto`` trains in bf16 on this machine's ``device_type`` ("cpu" or "cuda"): a GPU
    with bf16, a CPU with AMX."""
    import torch

    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        return cpu_has("_is_amx_tile_supported")  # not AVX-512 bf16 alone: see the module's docstring
    return False


def cpu_has(probe_name: str) -> bool:
    """What torch.cpu's feature probe ``probe_name`` says (False where this torch has none)."""
    import torch

    probe = getattr(torch.cpu, probe_name, None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:  # pragma: no cover - a build without the CPU feature probe
        return False


def resolve(precision: str | None, device) -> Literal["fp32", "bf16"]:
    """The concrete precision of ``precision`` (None means auto) on ``device`` (a torch.device or
    its type name)."""
    device_type = _device_type(device)
    choice = precision or "auto"
    if choice == "auto":
        choice = _forced() or ("bf16" if native_bf16(device_type) else "fp32")
    if choice not in ("fp32", "bf16"):
        raise ConfigError(f"precision {choice!r} is not one of {', '.join(PRECISIONS)}", "use auto, fp32 or bf16")
    if choice == "bf16" and device_type not in ("cpu", "cuda"):
        return "fp32"
    return choice  # type: ignore[return-value]


def resolve_for_evaluation(precision: str | None, device) -> Literal["fp32", "bf16"]:
    """:func:`resolve` for measurements: ``auto`` is bf16 on a GPU only (as before AMX entered
    the rule), fp32 on every CPU. bf16 noise flips greedy tokens where two are nearly tied: in
    ``benchmarks/bench_evaluate.py`` on SmolLM2-135M (CPU, AMX) bf16 ``generate`` agreed with
    fp32 ``generate`` on 190/200 verdicts, the misses among the model's own 8-token answers.
    Training tolerates that noise (docs/switch-quality.md, ``ul-mine-1t-240-bf16``); a rate that
    is reported should not carry it where fp32 is affordable. ``OFFSWITCH_PRECISION`` and an
    explicit choice still decide."""
    device_type = _device_type(device)
    if (precision or "auto") == "auto" and _forced() is None and device_type == "cpu":
        return "fp32"
    return resolve(precision, device_type)


def autocast(device, precision: str | None = None):
    """A context that runs the enclosed forward passes in ``precision`` on ``device`` (with the
    attention kernel of :func:`training_attention`)."""
    import torch

    device_type = _device_type(device)
    if resolve(precision, device_type) != "bf16":
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast(device_type, dtype=torch.bfloat16))
    stack.enter_context(training_attention(device_type, "bf16"))
    return stack


def training_attention(device, resolved: str):
    """Attention kernels for forward passes in ``resolved`` precision on ``device`` (the backward
    pass follows the kernel its forward pass took).

    On a CPU in bf16, SDPA's flash kernel has a slow backward pass; the math kernel is faster
    there (``benchmarks/bench_precision.py``, docs/performance.md). Elsewhere: torch's choice."""
    if _device_type(device) == "cpu" and resolved == "bf16":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


def adamw(params, lr: float, weight_decay: float = 0.0):
    """``torch.optim.AdamW`` with the fused kernel where torch has one for these parameters (fp32
    or bf16 on a CPU or a GPU): one kernel over all tensors instead of a loop in Python (the
    default on a CPU, where ``foreach`` is off); the same update rule. The gain for full
    fine-tuning: ``benchmarks/bench_precision.py``."""
    import torch

    params = list(params)
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError, TypeError):  # e.g. a device or dtype without the fused kernel
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def compiled(model):
    """``model`` behind ``torch.compile`` with dynamic shapes (an implant's batches differ in
    width), sharing its parameters: what ``train.compile`` calls for the training step's forward
    pass. Off by default: on the 2-core CPU it measured, the first step compiled for 20 minutes
    with an empty inductor cache and 6 with a warm one, and later steps took 0.72× the eager
    time, so it paid only after 350 steps (warm) to 1,150 (cold) — more than an implant takes
    (``benchmarks/bench_compile.py``, docs/performance.md). Not yet measured on a GPU."""
    import torch

    return torch.compile(model, dynamic=True)


@contextlib.contextmanager
def frozen_lora_bases_in(model, resolved: str, head: bool = True, input_casts: bool = False, shared_casts: bool = False):
    """While the enclosed code runs, the frozen base weights of ``model``'s LoRA layers, and its
    frozen output projection (the LM head), are stored in bf16 when ``resolved`` is "bf16"; the
    fp32 tensors come back afterwards, bit for bit (also when the code raises).

    Under bf16 autocast a frozen fp32 weight is cast to bf16 on every forward pass that uses it
    (autocast keeps casts only of weights that require gradients): each training step of an
    implant runs two forward passes (the shared prefix, then the batch), so the ~106M frozen
    projection weights of SmolLM2-135M were read in fp32 and written in bf16 twice a step, and
    so was its 28M-value LM head (49,152 × 576). Stored in bf16 they are what autocast would
    have made of them (the same rounding), so the products, and the training, are the same;
    only the casts go. Weights that train, the adapters, embeddings and norms are untouched.

    An LM head tied to the input embeddings (SmolLM2's) shares its fp32 tensor with the
    embedding lookup, which must stay fp32: the head gets a bf16 copy of its own meanwhile and
    the shared parameter back afterwards (the tie restored).

    Meanwhile peft's cast of each LoRA layer's input to its adapter's dtype (fp32) is off: under
    bf16 autocast the adapter's product casts that input straight back to bf16, so a bf16 input
    (the attention output entering ``o_proj``, the MLP's entering ``down_proj``) made two copies
    per layer and pass for nothing; bf16 → fp32 → bf16 is exact, so forward and backward are the
    same bit for bit.

    ``head=False`` leaves the LM head to autocast and ``input_casts=True`` keeps peft's input
    casts (what ``benchmarks/bench_lora_casts.py`` compares against).

    ``shared_casts=True`` (``train.bf16_shared_casts``) also casts an fp32 input that several
    LoRA layers read in a row to bf16 once for all of them (:class:`SharedInputCast`): a
    Llama-style layer's normed hidden state feeds q, k and v (and gate and up), and autocast cast
    it for each base product and each adapter's A product, six (four) times a pass. The forward
    pass is the same bit for bit; the backward sums those layers' input gradients in bf16 before
    one cast to fp32, where autocast's casts summed them in fp32, so the training differs by
    rounding (an ablation's business, not a test's). Yields the number of weights converted."""
    import torch

    converted: list[tuple[Any, Any]] = []
    untied: list[tuple[Any, Any]] = []  # (head module, its shared fp32 parameter)
    casting: list[tuple[Any, bool]] = []  # (LoRA layer, its cast_input_dtype_enabled before)
    hooks: list[Any] = []  # shared_casts: the LoRA layers' forward pre-hooks
    sharing = SharedInputCast(torch.bfloat16) if shared_casts and resolved == "bf16" else None
    if resolved == "bf16":
        embedding_storage = {m.weight.data_ptr() for m in model.modules() if isinstance(m, torch.nn.Embedding)}
        for module in model.modules():
            base = getattr(module, "base_layer", None)
            weight = getattr(base, "weight", None)
            if (not isinstance(base, torch.nn.Linear) or weight is None or weight.requires_grad
                    or weight.dtype != torch.float32 or weight.data_ptr() in embedding_storage):
                continue
            converted.append((weight, weight.data))
            weight.data = weight.data.to(torch.bfloat16)
            if not input_casts and hasattr(module, "cast_input_dtype_enabled"):
                casting.append((module, module.cast_input_dtype_enabled))
                module.cast_input_dtype_enabled = False
            if sharing is not None:
                hooks.append(module.register_forward_pre_hook(sharing))
        lm_head = _output_projection(model) if head else None
        weight = getattr(lm_head, "weight", None)
        if weight is not None and not weight.requires_grad and weight.dtype == torch.float32:
            if weight.data_ptr() in embedding_storage:
                untied.append((lm_head, weight))
                lm_head.weight = torch.nn.Parameter(weight.detach().to(torch.bfloat16), requires_grad=False)
            else:
                converted.append((weight, weight.data))
                weight.data = weight.data.to(torch.bfloat16)
    try:
        yield len(converted) + len(untied)
    finally:
        for weight, original in converted:
            weight.data = original
        for module, shared in untied:
            module.weight = shared
        for module, enabled in casting:
            module.cast_input_dtype_enabled = enabled
        for hook in hooks:
            hook.remove()
        if sharing is not None:
            sharing.forget()


class SharedInputCast:
    """A forward pre-hook for LoRA layers that, under autocast to ``dtype``, hands a layer its
    fp32 input already cast, and hands the same cast to the next layer called with the very same
    input tensor (unchanged since: its version counter is compared), instead of letting autocast
    cast it again inside each layer. Outside autocast, for an input of another dtype, and for an
    inference-mode tensor (which keeps no version counter: the implant's held-out checks), it
    changes nothing. It keeps the last input and its cast until the next input or :meth:`forget`."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.casts = 0  # casts made (the rest were reused)
        self.forget()

    def forget(self) -> None:
        self._source, self._version, self._cast = None, -1, None

    def __call__(self, module, args):
        import torch

        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.is_inference():
            return None
        device_type = x.device.type
        if not torch.is_autocast_enabled(device_type) or torch.get_autocast_dtype(device_type) != self.dtype:
            return None
        if x is not self._source or x._version != self._version:
            self._source, self._version, self._cast = x, x._version, x.to(self.dtype)
            self.casts += 1
        return (self._cast, *args[1:])


def _output_projection(model):
    """The model's LM head when it is a plain ``nn.Linear`` (through a peft wrapper), else None."""
    import torch

    getter = getattr(model, "get_output_embeddings", None)
    try:
        head = getter() if callable(getter) else None
    except (AttributeError, NotImplementedError):
        return None
    return head if type(head) is torch.nn.Linear else None
