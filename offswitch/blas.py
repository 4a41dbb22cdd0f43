"""MKL's vectorised matrix products on AMD CPUs.

torch's x86-64 wheels link Intel oneMKL for fp32 matrix products (``torch.__config__.show()``).
MKL picks its kernels only after asking ``mkl_serv_intel_cpu_true()`` whether the CPU is an
Intel one; on an AMD CPU the answer is 0 and SGEMM runs a generic code path, not the AVX2/FMA
(or AVX-512) kernels the CPU has (pytorch/builder#504 traced the hot loop to SSE code). The fix
PyTorch's maintainers give for AMD CPUs is to ``LD_PRELOAD`` a library whose
``mkl_serv_intel_cpu_true`` returns 1 (pytorch/builder#1245); MKL then chooses kernels by the
instruction sets the CPU reports, as it does on an Intel CPU.

offswitch does the same without building or preloading anything: the function returns an answer
it caches in a global (its first instruction loads it; -1 until MKL first asks), and
:func:`use_fast_mkl_on_amd` stores 1 there. It does so only where all of these hold, else it
touches nothing and returns the reason: Linux on x86-64, a CPU whose vendor is AuthenticAMD,
torch built with MKL, the function exported by ``libtorch_cpu.so`` and starting with the expected
instructions, and ``OFFSWITCH_MKL_AMD`` not set to 0. It must run before the process's first
matrix product: MKL asks once, at that product (the cached answer is -1 before it and 0 after it
on an AMD CPU), and in a trial here setting the answer afterwards sped no product up, so a later
call changes nothing and reports "too late". :func:`offswitch.models.load_model` and
:func:`offswitch.implant.train` call it.

What it changes: fp32 matrix products run other kernels, which round the same sums differently
(as on an Intel CPU); bf16 products (oneDNN) are not MKL's. Measured by ``benchmarks/bench_blas.py``
(docs/performance.md).
"""

from __future__ import annotations

import logging
import os
import platform
import struct
from pathlib import Path

ENV = "OFFSWITCH_MKL_AMD"
SYMBOL = "mkl_serv_intel_cpu_true"
# mov eax, [rip + disp32]; test eax, eax; js ...: the function returns its cached answer
_PROLOGUE = (b"\x8b\x05", b"\x85\xc0\x78")

_status: str | None = None
log = logging.getLogger(__name__)


def cpu_vendor() -> str | None:
    """The CPU's vendor string from /proc/cpuinfo (GenuineIntel, AuthenticAMD), else None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def cached_answer_offset(code: bytes) -> int | None:
    """Where (relative to the function's address) the cached answer lives, from the first nine
    bytes of ``mkl_serv_intel_cpu_true``; None if they are not the expected load-test-branch."""
    if len(code) < 9 or code[:2] != _PROLOGUE[0] or code[6:9] != _PROLOGUE[1]:
        return None
    return 6 + struct.unpack("<i", code[2:6])[0]


def _mkl_function():
    import ctypes

    import torch

    library = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    if not library.is_file():
        return None
    try:
        function = getattr(ctypes.CDLL(str(library)), SYMBOL)
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_int
    function.argtypes = []
    return function


def _skip_reason() -> str | None:
    if os.environ.get(ENV, "").strip() == "0":
        return f"off ({ENV}=0)"
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return "not Linux on x86-64"
    if cpu_vendor() != "AuthenticAMD":
        return "not an AMD CPU"
    import torch

    if not torch.backends.mkl.is_available():
        return "torch without MKL"
    return None


def use_fast_mkl_on_amd() -> str:
    """Let MKL use the AVX2/AVX-512 kernels of an AMD CPU (see the module docstring); idempotent.

    Returns what was done: ``"enabled"``, ``"already enabled"``, or why nothing was touched.
    """
    global _status
    if _status is not None:
        return _status
    reason = _skip_reason()
    if reason is None:
        import ctypes

        function = _mkl_function()
        if function is None:
            reason = f"{SYMBOL} not found in libtorch_cpu.so"
        else:
            address = ctypes.cast(function, ctypes.c_void_p).value
            offset = cached_answer_offset(ctypes.string_at(address, 9))
            if offset is None:
                reason = f"unrecognised {SYMBOL} (another MKL build)"
            else:
                answer = ctypes.c_int.from_address(address + offset)
                if answer.value == 1:
                    reason = "already enabled"
                elif answer.value >= 0:  # MKL asked at an earlier product and settled its kernels then
                    reason = "too late (a matrix product came first)"
                else:  # -1: not asked yet
                    answer.value = 1
                    reason = "enabled" if function() == 1 else "MKL ignored the cached answer"
    _status = reason
    log.info("MKL's vector kernels on an AMD CPU: %s (%s=0 turns this off)", reason, ENV)
    return _status


def status() -> str | None:
    """What :func:`use_fast_mkl_on_amd` did in this process (None: not called yet)."""
    return _status
