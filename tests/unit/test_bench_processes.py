"""The helpers the benchmarks share (benchmarks/processes.py): the ratio of mean timings, and a
child process's figures read back from its marked line; and bench_blas refusing an implant run
whose MKL setting is not the one it compares."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_blas  # noqa: E402
from processes import child_json, mean_ratio, run_child  # noqa: E402

times = st.lists(st.floats(min_value=1e-6, max_value=1e6, allow_nan=False), min_size=1, max_size=8)


@given(times, times)
def test_mean_ratio_is_the_ratio_of_the_means(numerator, denominator):
    assert mean_ratio(numerator, denominator) == pytest.approx(statistics.mean(numerator) / statistics.mean(denominator))


@given(times)
def test_mean_ratio_of_nothing_timed_is_nan(numerator):
    assert math.isnan(mean_ratio(numerator, [0.0, 0.0]))


def test_child_json_reads_the_marked_line_and_names_a_failed_child():
    script = "print('warming up'); print('MARK ' + '{\"a\": 1}'); print('done')"
    assert child_json([sys.executable, "-c", script], "MARK ", what="test run") == {"a": 1}
    assert run_child([sys.executable, "-c", "print('x')"], what="test run") == "x\n"
    with pytest.raises(SystemExit, match=r"the broken run failed \(exit 3\):\nboom"):
        child_json([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"], "MARK ", what="broken run")
    with pytest.raises(SystemExit, match="the silent run printed no MARK line"):
        child_json([sys.executable, "-c", "print('no figures')"], "MARK ", what="silent run")


def test_bench_blas_refuses_an_implant_run_under_another_mkl_setting(monkeypatch):
    """The loop's figures count for a setting only when its process ran under it."""
    monkeypatch.setattr(bench_blas, "child_json", lambda *a, **k: {"status": "enabled", "products": {}})

    def implant_run(command, *, env, what):
        out = Path(command[command.index("--json") + 1])
        out.write_text(json.dumps({"mkl_on_amd": "off (OFFSWITCH_MKL_AMD=0)", "methods": {}}))
        return ""

    monkeypatch.setattr(bench_blas, "run_child", implant_run)
    with pytest.raises(SystemExit, match=r"the stock implant run's MKL setting \(off .*\) is not its products run's \(enabled\)"):
        bench_blas.main(["--model", "tiny", "--steps", "1", "--batch-size", "1"])
