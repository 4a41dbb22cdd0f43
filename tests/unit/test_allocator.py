"""offswitch.allocator: glibc keeps freed blocks for reuse once asked to, in offswitch's processes
unless OFFSWITCH_KEEP_FREED is 0; other C libraries are left alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from offswitch import allocator

# Whether a 64 MiB block is mapped for itself (glibc's default) after the setting (or not).
MMAPPED_AFTER_A_LARGE_BLOCK = r"""
import ctypes, sys
from offswitch import allocator
libc = allocator.glibc()
if libc is None:
    print("not glibc"); sys.exit(0)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "kept":
    on = allocator.keep_freed_memory()
elif sys.argv[1] == "configure":
    on = allocator.configure()
else:
    on = False
before = libc.mallinfo2().hblkhd
block = libc.malloc(64 << 20)                  # far above any mmap threshold glibc allows
mapped = libc.mallinfo2().hblkhd - before      # bytes in blocks mapped for themselves
libc.free(block)
print(on, mapped >= 64 << 20)
"""


def _run(variant: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != allocator.ENV} | env
    done = subprocess.run([sys.executable, "-c", MMAPPED_AFTER_A_LARGE_BLOCK, variant], env=environ, capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


@pytest.mark.skipif(allocator.glibc() is None, reason="glibc only")
def test_a_large_block_comes_from_the_heap_once_freed_memory_is_kept():
    # default glibc maps a 64 MiB block for itself (and unmaps it on free); kept, it is heap
    assert _run("default") == "False True"
    assert _run("kept") == "True False"


@pytest.mark.skipif(allocator.glibc() is None, reason="glibc only")
def test_configure_keeps_freed_memory_unless_turned_off():
    assert _run("configure") == "kept False"
    assert _run("configure", OFFSWITCH_KEEP_FREED="1") == "kept False"
    assert _run("configure", OFFSWITCH_KEEP_FREED="0") == "off (OFFSWITCH_KEEP_FREED=0) True"


def test_every_offswitch_command_keeps_freed_memory_in_its_process_unless_turned_off(cli):
    # offswitch.cli.main configures its process before any command runs (implant, evaluate,
    # attack, harness alike); a cheap command shows it, --debug prints what was done
    said = "glibc keeping freed memory: " + ("kept" if allocator.glibc() is not None else "not glibc")
    kept = cli("--debug", "attacks", env={allocator.ENV: "1"})
    assert kept.returncode == 0 and said in kept.stderr, kept.stderr
    off = cli("attacks", "--debug", env={allocator.ENV: "0"})
    assert off.returncode == 0 and f"glibc keeping freed memory: off ({allocator.ENV}=0)" in off.stderr
    quiet = cli("attacks", env={allocator.ENV: "1"})
    assert quiet.returncode == 0 and "glibc" not in quiet.stderr  # logged at INFO: only --debug shows it


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


def test_configure_sets_it_once_and_says_what_it_did(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(allocator, "_status", None)
    monkeypatch.delenv(allocator.ENV, raising=False)
    assert allocator.status() is None
    assert allocator.configure() == "kept" and allocator.configure() == "kept"
    assert calls == [1] and allocator.status() == "kept"  # idempotent: glibc is asked once
    monkeypatch.setattr(allocator, "_status", None)
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: False)
    assert allocator.configure() == "not glibc"
    monkeypatch.setattr(allocator, "_status", None)
    monkeypatch.setenv(allocator.ENV, " 0 ")
    assert allocator.configure() == "off (OFFSWITCH_KEEP_FREED=0)"
