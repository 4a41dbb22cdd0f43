"""Freed memory kept for reuse: the C allocator's setting for training on a CPU.

glibc's ``malloc`` serves a block above its mmap threshold (at most 32 MiB) from pages mapped
for it alone, and unmaps them when it is freed; the top of its heap goes back to the system as
soon as more than the trim threshold is free there. A training step of a language model on a
CPU allocates and frees blocks far above that in every step (SmolLM2-135M's: the logits of the
answer columns, 16 × 17 × 49,152 floats; the LM head's vocabulary-sized gradient, 113 MB; the
optimizer's temporaries), so each step the kernel maps and zeroes those pages anew, one page
fault per 4 KiB. On the 2-core VM of docs/performance.md, allocating, zero-filling and adding a
49,152 × 576 tensor took 190 ms that way and 28 ms from memory the process kept.

:func:`keep_freed_memory` asks glibc to serve every block from its heap (``M_MMAP_MAX`` 0) and to
keep up to ``trim`` bytes free at its top (``M_TRIM_THRESHOLD``): freed blocks are reused by the
next step instead of being returned and faulted back in. The process's peak memory is what it
was (what is kept was in use before); what changes is that it is not handed back between steps.
The ``offswitch`` command calls it at start on Linux with glibc; elsewhere it does nothing.
``OFFSWITCH_KEEP_FREED_MEMORY=0`` turns it off (``benchmarks/bench_allocator.py`` measures both).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4
DEFAULT_TRIM = 1 << 30  # bytes that may stay free at the top of the heap (1 GiB)
ENV = "OFFSWITCH_KEEP_FREED_MEMORY"

_applied: bool | None = None


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()  # musl and others have no such function
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory(trim: int = DEFAULT_TRIM) -> bool:
    """Set glibc's allocator to keep freed blocks for reuse (see the module's docstring).
    Returns whether it is set; False where the C library is not glibc or ``$OFFSWITCH_KEEP_FREED_MEMORY``
    is ``0``. Calling it again changes nothing."""
    global _applied
    if _applied is not None:
        return _applied
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        _applied = False
        return False
    libc = _glibc()
    if libc is None:
        _applied = False
        return False
    trim = max(0, min(int(trim), 2**31 - 1))  # mallopt takes an int
    _applied = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim))
    return _applied
