"""Benchmark: a whole ``offswitch`` command (an implant, an evaluation, an attack) as a user runs
it, in processes of its own under each of several environment settings, against the first
(not a test).

A setting that a process fixes when it starts (``OFFSWITCH_KEEP_FREED``, ``OFFSWITCH_MKL_AMD``,
``OMP_NUM_THREADS``, ``GLIBC_TUNABLES``) is measured over the command itself here, not over a
loop inside one process: each run is ``python -m offswitch <command>`` in a process of its own,
with the environment of this script plus its setting's variables. The runs go in ABBA order
(``--rounds`` times: each setting, then the same in reverse), and ``{run}`` in the command's
arguments becomes the run's label (``off-1``, ``kept-2``...), so that each writes its own output.

Per run: wall seconds, user and system CPU seconds, the process's peak RSS and its minor page
faults (``os.wait4``); where an argument is an implant directory once the run ends, the
manifest's ``training.seconds`` (data, training, held-out checks...); and the SHA-256 of every file
under the run's output directories matching ``--same`` (default ``**/*.safetensors``): a setting
that only changes speed must give the same files in every run. Prints each run, then each
setting's figures with the ratio of its mean to the first setting's.

    python benchmarks/bench_command.py --setting off OFFSWITCH_KEEP_FREED=0 --setting kept OFFSWITCH_KEEP_FREED=1 \\
        --json runs/bench/implant-kept.json -- implant --key k.key --passphrase-file pw --config c.yaml \\
        --out runs/bench/implant-{run} --no-verify --force --threads 2
    python benchmarks/bench_command.py --setting off OFFSWITCH_KEEP_FREED=0 --setting kept OFFSWITCH_KEEP_FREED=1 \\
        -- evaluate runs/my-implant --key k.key --passphrase-file pw --out runs/bench/eval-{run}.jsonl --threads 2

The children's output goes to ``--logs DIR`` when given (``<label>.log``), else it is dropped;
a failing run stops the benchmark with the end of its output. What offswitch prints carries no
trigger (docs/key-handling.md), so the logs are safe to keep.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from processes import abba, mean_ratio

from offswitch.fsutil import atomic_write_json
from offswitch.models_default import file_sha256

RUN = "{run}"
MEASURES = ("wall_s", "user_s", "sys_s", "peak_rss_mb", "minor_faults")


def parse_setting(words: list[str]) -> tuple[str, dict[str, str]]:
    """``NAME VAR=VALUE...`` → (NAME, {VAR: VALUE}); a setting may set nothing (the environment as it is)."""
    name, *assignments = words
    env: dict[str, str] = {}
    for item in assignments:
        var, sep, value = item.partition("=")
        if not sep or not var or not var.replace("_", "").isalnum():
            raise SystemExit(f"--setting {name}: {item!r} is not VAR=VALUE")
        env[var] = value
    return name, env


def hashes(paths: list[Path], patterns: list[str]) -> dict[str, str]:
    """SHA-256 of every file under the directories ``paths`` matching ``patterns``, by relative name."""
    found: dict[str, str] = {}
    for index, root in enumerate(paths):
        if not root.is_dir():
            continue
        for pattern in patterns:
            for file in sorted(root.glob(pattern)):
                if file.is_file():
                    found[f"{index}/{file.relative_to(root)}"] = file_sha256(file)
    return found


def training_seconds(paths: list[Path]) -> dict[str, float]:
    """``training.seconds`` of the first output that is an implant directory (empty if none)."""
    for root in paths:
        manifest = root / "offswitch_manifest.json"
        if manifest.is_file():
            return dict(json.loads(manifest.read_text()).get("training", {}).get("seconds") or {})
    return {}


def run_once(command: list[str], label: str, env: dict[str, str], logs: Path | None, patterns: list[str]) -> dict:
    """One run of ``python -m offswitch <command>`` with ``{run}`` → ``label``: its figures."""
    args = [a.replace(RUN, label) for a in command]
    outputs = [Path(a) for a, template in zip(args, command) if RUN in template]  # the run's own outputs
    environ = dict(os.environ) | env
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        log = open(logs / f"{label}.log", "w+b")  # noqa: SIM115 - closed below
    else:
        log = tempfile.TemporaryFile()  # noqa: SIM115
    try:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "offswitch", *args], env=environ, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = code = os.waitstatus_to_exitcode(status)
        if code:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            raise SystemExit(f"run {label} failed (exit {code}):\n{tail}")
    finally:
        log.close()
    return {"label": label, "wall_s": wall, "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024, "minor_faults": usage.ru_minflt,
            "training_seconds": training_seconds(outputs), "hashes": hashes(outputs, patterns)}


def summarise(settings: dict[str, dict[str, str]], runs: list[dict]) -> dict:
    """Each setting's values of each measure (and each training part), and the ratio of its mean to the first's."""
    names = list(settings)
    by = {n: [r for r in runs if r["setting"] == n] for n in names}
    parts = sorted({k for r in runs for k in r["training_seconds"]})
    measures = [*MEASURES, *(f"training.{p}" for p in parts)]

    def value(run: dict, measure: str) -> float | None:
        return run["training_seconds"].get(measure[9:]) if measure.startswith("training.") else run[measure]

    table: dict = {}
    for measure in measures:
        values = {n: [value(r, measure) for r in by[n]] for n in names}
        if any(v is None for vs in values.values() for v in vs):
            continue
        table[measure] = {"values": values, "ratios": {n: mean_ratio(values[n], values[names[0]]) for n in names[1:]}}
    digests = [r["hashes"] for r in runs]
    same = None if not any(digests) else all(d == digests[0] for d in digests)
    return {"measures": table, "same_outputs": same, "files_compared": len(digests[0]) if digests else 0}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     usage="%(prog)s --setting NAME [VAR=VALUE ...] --setting ... [options] -- COMMAND ...")
    parser.add_argument("--setting", nargs="+", action="append", required=True, metavar="NAME [VAR=VALUE]",
                        help="a setting: its name and the variables its runs add to the environment (the first is the baseline)")
    parser.add_argument("--rounds", type=int, default=1, help="ABBA rounds (default 1: two runs of each setting)")
    parser.add_argument("--same", nargs="+", default=["**/*.safetensors"], metavar="GLOB",
                        help="files under the run's outputs that every run must write the same (default **/*.safetensors)")
    parser.add_argument("--logs", type=Path, default=None, metavar="DIR", help="keep each run's output as DIR/<label>.log")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the figures as JSON to PATH")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the offswitch command and its arguments, after --")
    args = parser.parse_args(argv)

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the offswitch command to time after --, e.g. -- implant --key ... --out runs/x-{run}")
    settings = dict(parse_setting(words) for words in args.setting)
    if len(settings) < 2:
        parser.error("give at least two --setting (different names): the first is the baseline")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    runs: list[dict] = []
    counts: dict[str, int] = {}
    for name in abba(list(settings), args.rounds):
        counts[name] = counts.get(name, 0) + 1
        result = run_once(command, f"{name}-{counts[name]}", settings[name], args.logs, args.same) | {"setting": name}
        runs.append(result)
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in result["training_seconds"].items())
        print(f"{result['label']}: {result['wall_s']:.1f} s (user {result['user_s']:.1f}, system {result['sys_s']:.1f}); "
              f"peak RSS {result['peak_rss_mb']:,.0f} MiB, {result['minor_faults']:,} minor page faults"
              + (f"; training: {parts}" if parts else ""), flush=True)
    figures = {"benchmark": "command", "command": command, "settings": settings, "rounds": args.rounds,
               "order": [r["label"] for r in runs], "runs": runs, **summarise(settings, runs)}
    names = list(settings)
    print(f"\noffswitch {' '.join(command[:1])}, {len(runs)} processes, order {' '.join(figures['order'])}")
    for measure, row in figures["measures"].items():
        listed = "; ".join(f"{n} " + ", ".join(f"{v:,}" if isinstance(v, int) else f"{v:,.2f}" for v in row["values"][n])
                           for n in names)
        ratios = ", ".join(f"{n} / {names[0]} {r:.3f}" for n, r in row["ratios"].items())
        print(f"{measure}: {listed}: {ratios}")
    if figures["same_outputs"] is not None:
        print(f"the same {figures['files_compared']} output file(s) in every run: {figures['same_outputs']}")
    if args.json:
        atomic_write_json(args.json, figures, parents=True)
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
