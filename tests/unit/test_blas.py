"""offswitch.blas: MKL's vector kernels on AMD CPUs, set only where it is safe and early enough."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offswitch import blas


def _code(displacement: int, tail: bytes = b"\x01") -> bytes:
    """The prologue offswitch.blas expects: mov eax, [rip + disp32]; test eax, eax; js rel8."""
    return b"\x8b\x05" + struct.pack("<i", displacement) + b"\x85\xc0\x78" + tail


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_the_cached_answer_is_found_after_the_load(displacement):
    # rip-relative: the address of the next instruction (6 bytes in) plus the displacement
    assert blas.cached_answer_offset(_code(displacement)) == 6 + displacement


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1), st.sampled_from([0, 1, 6, 7, 8]), st.integers(0, 255))
def test_any_other_instruction_is_not_touched(displacement, index, byte):
    code = bytearray(_code(displacement))
    if code[index] == byte:
        byte ^= 0xFF
    code[index] = byte
    assert blas.cached_answer_offset(bytes(code)) is None


def test_a_near_miss_prologue_is_rejected():
    assert blas.cached_answer_offset(_code(16)[:8]) is None  # too short
    assert blas.cached_answer_offset(b"\x8b\x04" + _code(16)[2:]) is None  # another addressing mode
    assert blas.cached_answer_offset(_code(16)[:6] + b"\x85\xc0\x79") is None  # jns, not js


def test_the_switch_off_and_other_vendors(monkeypatch):
    monkeypatch.setenv(blas.ENV, "0")
    assert blas._skip_reason() == "off (OFFSWITCH_MKL_AMD=0)"
    monkeypatch.setenv(blas.ENV, "1")
    monkeypatch.setattr(blas, "cpu_vendor", lambda: "GenuineIntel")
    monkeypatch.setattr(blas.platform, "system", lambda: "Linux")
    monkeypatch.setattr(blas.platform, "machine", lambda: "x86_64")
    assert blas._skip_reason() == "not an AMD CPU"
    monkeypatch.setattr(blas.platform, "system", lambda: "Darwin")
    assert blas._skip_reason() == "not Linux on x86-64"


def _fresh_process(code: str, **env) -> dict:
    """Run ``code`` in a new interpreter (no matrix product has run yet); it prints one JSON line."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


PROBE = """
import json, platform, torch
from offswitch import blas
{before}
status = blas.use_fast_mkl_on_amd()
again = blas.use_fast_mkl_on_amd()
amd = platform.system() == "Linux" and blas.cpu_vendor() == "AuthenticAMD" and torch.backends.mkl.is_available()
function = blas._mkl_function() if amd else None
a = torch.randn(300, 200, dtype=torch.float64)
b = torch.randn(200, 100, dtype=torch.float64)
error = ((a.float() @ b.float()).double() - a @ b).abs().max().item()
print(json.dumps({{"status": status, "again": again, "answer": function() if function else None,
                   "applies": function is not None, "error": error}}))
"""


def test_in_a_fresh_process_mkl_is_told_before_its_first_product():
    out = _fresh_process(PROBE.format(before=""), OFFSWITCH_MKL_AMD="1")
    assert out["again"] == out["status"]  # idempotent
    if not out["applies"]:
        assert out["status"] in ("not Linux on x86-64", "not an AMD CPU", "torch without MKL") or "not found" in out["status"] \
            or out["status"].startswith("unrecognised")
        pytest.skip(f"not an AMD CPU with torch's MKL here: {out['status']}")
    assert out["status"] == "enabled"
    assert out["answer"] == 1  # MKL now treats the CPU as one whose vector kernels it may use
    assert out["error"] < 1e-3  # fp32 products are still right (against fp64)


def test_after_a_product_it_is_too_late_and_says_so():
    out = _fresh_process(PROBE.format(before="torch.randn(64, 64) @ torch.randn(64, 64)"), OFFSWITCH_MKL_AMD="1")
    if not out["applies"]:
        pytest.skip(f"not an AMD CPU with torch's MKL here: {out['status']}")
    assert out["status"] == "too late (a matrix product came first)"
    assert out["answer"] == 0  # left as MKL decided it


def test_switched_off_it_touches_nothing():
    out = _fresh_process(PROBE.format(before=""), OFFSWITCH_MKL_AMD="0")
    assert out["status"] == "off (OFFSWITCH_MKL_AMD=0)"
    if out["applies"]:
        assert out["answer"] == 0  # MKL answered for itself at the probe's product: not an Intel CPU
