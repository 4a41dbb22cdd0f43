"""offswitch.allocator: glibc keeps freed blocks for reuse once the command asks it to; the
switch-off variable and other C libraries leave the allocator alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

import offswitch.allocator as allocator

MMAPPED_AFTER_A_LARGE_BLOCK = r"""
import ctypes, os, sys
from offswitch.allocator import _glibc, keep_freed_memory
libc = _glibc()
if libc is None:
    print("not glibc"); sys.exit(0)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
on = keep_freed_memory()
before = libc.mallinfo2().hblkhd
block = libc.malloc(64 << 20)                  # far above any mmap threshold glibc allows
mapped = libc.mallinfo2().hblkhd - before      # bytes in blocks mapped for themselves
libc.free(block)
print(on, mapped >= 64 << 20)
"""


def _run(env_value: str) -> str:
    import os

    env = {**os.environ, allocator.ENV: env_value}
    done = subprocess.run([sys.executable, "-c", MMAPPED_AFTER_A_LARGE_BLOCK], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.skipif(allocator._glibc() is None, reason="glibc only")
def test_a_large_block_comes_from_the_heap_once_freed_memory_is_kept():
    # default glibc maps a 64 MiB block for itself (and unmaps it on free); kept, it is heap
    assert _run("0") == "False True"
    assert _run("1") == "True False"


def test_the_setting_is_made_once_and_can_be_switched_off(monkeypatch):
    calls: list[tuple[int, int]] = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(allocator, "_glibc", lambda: FakeLibc())
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setenv(allocator.ENV, "0")
    assert allocator.keep_freed_memory() is False and calls == []
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.delenv(allocator.ENV)
    assert allocator.keep_freed_memory(trim=2**40) is True
    assert calls == [(allocator.M_MMAP_MAX, 0), (allocator.M_TRIM_THRESHOLD, 2**31 - 1)]  # mallopt takes an int
    assert allocator.keep_freed_memory() is True and len(calls) == 2  # once per process
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setattr(allocator, "_glibc", lambda: None)  # musl, macOS, Windows: nothing to set
    assert allocator.keep_freed_memory() is False
