"""What several benchmarks share (not a benchmark): the ratio of two mean timings, and a child
process that reports its figures as one JSON line after a marker.

A setting that a process fixes once (MKL's kernels, glibc's allocator) is compared across
processes of its own: the parent runs each child with :func:`child_json` (or :func:`run_child`
when the child writes a JSON file) and reads back what it reported.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
from collections.abc import Mapping, Sequence


def mean_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """mean(numerator) / mean(denominator); nan when the denominator's mean is not positive
    (nothing was timed)."""
    below = statistics.mean(denominator)
    return statistics.mean(numerator) / below if below > 0 else math.nan


def abba(names: Sequence[str], rounds: int) -> list[str]:
    """``names``, then the same reversed, ``rounds`` times: ABBA for two, so that a drift over the
    runs falls on every setting alike."""
    return [*names, *names[::-1]] * rounds


def run_child(command: Sequence[str], *, env: Mapping[str, str] | None = None, what: str) -> str:
    """Run ``command`` (output captured) and return its stdout; exit with the end of its stderr,
    naming ``what`` ran, when it fails."""
    done = subprocess.run(list(command), capture_output=True, text=True, check=False, env=None if env is None else dict(env))
    if done.returncode:
        raise SystemExit(f"the {what} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def child_json(command: Sequence[str], mark: str, *, env: Mapping[str, str] | None = None, what: str) -> dict:
    """Run ``command`` and return the JSON on the line of its stdout that starts with ``mark``;
    exit naming ``what`` ran when it fails or prints no such line."""
    stdout = run_child(command, env=env, what=what)
    line = next((line for line in stdout.splitlines() if line.startswith(mark)), None)
    if line is None:
        raise SystemExit(f"the {what} printed no {mark.strip()} line:\n{stdout[-2000:]}")
    return json.loads(line[len(mark):])
