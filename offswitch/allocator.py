"""glibc keeping the memory a process frees, for the processes that run attacks.

By default glibc's ``malloc`` serves a block above its mmap threshold (which adapts up to 32 MiB)
from pages mapped for that block alone and unmaps them when the block is freed, and it gives the
free top of its heap back to the kernel once it passes a trim threshold. A training step of a
fine-tuning attack allocates and frees gigabytes of activations over chat examples of up to 256
tokens, so each step faults much of that memory in anew, 4 KiB at a time: 240,000 to 360,000
minor page faults a step for ``sft_lora`` at batch 8 on SmolLM2-135M, each zero-filled by the
kernel. :func:`keep_freed_memory` has glibc serve every block from its heap (``M_MMAP_MAX`` 0)
and keep up to 1 GiB free at its top (``M_TRIM_THRESHOLD``): freed blocks are reused without
faults.

Measured (docs/performance.md, session 28) by ``benchmarks/bench_attack_loss.py --fresh
--keep-freed`` and ``benchmarks/bench_harness.py``; not set for the implant, in whose loop it
did not pay (session 16, ``benchmarks/bench_allocator.py``). So :func:`for_attacks`, which
:func:`offswitch.harness.run_suite` and ``offswitch attack`` call before they build anything,
sets it where glibc is the C library and ``OFFSWITCH_KEEP_FREED`` is not 0. It changes no number;
freed memory stays with the process (peak memory: the same in a harness run, about 6% more in
an attack's training alone).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

ENV = "OFFSWITCH_KEEP_FREED"
M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4
KEEP_TRIM = 1 << 30  # bytes that may stay free at the top of the heap (1 GiB)

_status: str | None = None
log = logging.getLogger(__name__)


def glibc():
    """The C library when it is glibc (None elsewhere: musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()  # glibc's own function
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory(trim: int = KEEP_TRIM) -> bool:
    """glibc serves every block from its heap and keeps freed ones for reuse; whether it is set."""
    libc = glibc()
    if libc is None:
        return False
    trim = max(0, min(int(trim), 2**31 - 1))  # mallopt takes an int
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim))


def for_attacks() -> str:
    """Keep freed memory in this process unless ``OFFSWITCH_KEEP_FREED`` is 0; idempotent.

    Returns what was done: ``"kept"``, or why nothing was set."""
    global _status
    if _status is None:
        if os.environ.get(ENV, "").strip() == "0":
            _status = f"off ({ENV}=0)"
        else:
            _status = "kept" if keep_freed_memory() else "not glibc"
        log.info("glibc keeping freed memory: %s (%s=0 turns this off)", _status, ENV)
    return _status


def status() -> str | None:
    """What :func:`for_attacks` did in this process (None: not called yet)."""
    return _status
