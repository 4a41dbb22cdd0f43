"""benchmarks/bench_allocator.py's setting: glibc keeps freed blocks for reuse once asked to;
other C libraries are left alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from script_loader import load_script

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_allocator.py"
allocator = load_script(BENCH, "bench_allocator_setting")

MMAPPED_AFTER_A_LARGE_BLOCK = r"""
import ctypes, os, sys
sys.path.insert(0, os.environ["BENCHMARKS"])
from bench_allocator import glibc, keep_freed_memory
libc = glibc()
if libc is None:
    print("not glibc"); sys.exit(0)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
on = keep_freed_memory() if sys.argv[1] == "kept" else False
before = libc.mallinfo2().hblkhd
block = libc.malloc(64 << 20)                  # far above any mmap threshold glibc allows
mapped = libc.mallinfo2().hblkhd - before      # bytes in blocks mapped for themselves
libc.free(block)
print(on, mapped >= 64 << 20)
"""


def _run(variant: str) -> str:
    import os

    env = {**os.environ, "BENCHMARKS": str(BENCH.parent)}
    done = subprocess.run([sys.executable, "-c", MMAPPED_AFTER_A_LARGE_BLOCK, variant], env=env, capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


@pytest.mark.skipif(allocator.glibc() is None, reason="glibc only")
def test_a_large_block_comes_from_the_heap_once_freed_memory_is_kept():
    # default glibc maps a 64 MiB block for itself (and unmaps it on free); kept, it is heap
    assert _run("default") == "False True"
    assert _run("kept") == "True False"


def test_the_setting_is_what_glibc_takes_and_nothing_elsewhere(monkeypatch):
    calls: list[tuple[int, int]] = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(allocator, "glibc", lambda: FakeLibc())
    assert allocator.keep_freed_memory(trim=2**40) is True
    assert calls == [(allocator.M_MMAP_MAX, 0), (allocator.M_TRIM_THRESHOLD, 2**31 - 1)]  # mallopt takes an int
    monkeypatch.setattr(allocator, "glibc", lambda: None)  # musl, macOS, Windows: nothing to set
    assert allocator.keep_freed_memory() is False
