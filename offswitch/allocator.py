"""glibc keeping the memory a process frees, in offswitch's processes.

By default glibc's ``malloc`` serves a block above its mmap threshold (which adapts up to 32 MiB)
from pages mapped for that block alone and unmaps them when the block is freed, and it gives the
free top of its heap back to the kernel once it passes a trim threshold. A training step allocates
and frees gigabytes of activations, and a scoring batch its logits, so each step faults much of
that memory in anew, 4 KiB at a time (240,000 to 360,000 minor page faults a step for
``sft_lora`` at batch 8 on SmolLM2-135M), each page zero-filled by the kernel.
:func:`keep_freed_memory` has glibc serve every block from its heap (``M_MMAP_MAX`` 0) and keep up
to 1 GiB free at its top (``M_TRIM_THRESHOLD``): freed blocks are reused without faults.

Measured (docs/performance.md): the attacks, session 28 (``benchmarks/bench_attack_loss.py
--fresh --keep-freed``, ``benchmarks/bench_harness.py``); the implant and the evaluation, session 29
(``benchmarks/bench_command.py``, the whole command in processes of its own: the evaluation 0.97x,
the implant neutral within the machine's drift, the same peak memory). So
:func:`configure`, which ``offswitch.cli.main`` calls before any command runs (and
:func:`offswitch.harness.run_suite`, for callers other than the CLI), sets it where glibc is the
C library and ``OFFSWITCH_KEEP_FREED`` is not 0; the implant's manifest records what was done
(``training.allocator``). It changes no number; freed memory stays with the process.
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


def configure() -> str:
    """Keep freed memory in this process unless ``OFFSWITCH_KEEP_FREED`` is 0; idempotent.

    Returns what was done: ``"kept"``, or why nothing was set."""
    global _status
    if _status is None:
        if os.environ.get(ENV, "").strip() == "0":
            _status = f"off ({ENV}=0)"
        else:
            _status = "kept" if keep_freed_memory() else "not glibc"
        log.info("glibc keeping freed memory: %s%s", _status, "" if _status.startswith("off") else f" ({ENV}=0 turns this off)")
    return _status


def status() -> str | None:
    """What :func:`configure` did in this process (None: not called yet)."""
    return _status
