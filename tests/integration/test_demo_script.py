"""`bash scripts/demo.sh` end to end on a tiny model: the README's main command, with its
environment overrides (model, runs root, suite, implant flags, no setup) so that the shell glue
of all eight steps runs in seconds. Everything the demo writes, except the trigger it reveals on
purpose, and everything it prints are scanned for the triggers and the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from attack_conformance import TINY_EVAL
from secret_scan import assert_no_secrets, files_under

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "demo.sh"
DEMO_PASSPHRASE = "demo passphrase"  # the demo's own default when $OFFSWITCH_PASSPHRASE is unset


def _suite(path: Path) -> Path:
    """A two-attack suite shaped like experiments/smoke.yaml, naming the demo's default paths
    (runs/smoke-implant, runs/smoke): the demo must re-root them under its runs directory."""
    suite = {
        "name": "demo-test",
        "out": "runs/smoke",
        "implants": [{"dir": "runs/smoke-implant", "name": "tiny-demo"}],
        "attacks": [
            {"name": "quantize", "strengths": [8]},
            {"name": "noise", "strengths": [0.01]},
        ],
        "data": {"n_pairs": 8, "n_texts": 4},
        "eval": {**TINY_EVAL, "max_prompts": 8},
        "n_eval_texts": 4,
    }
    path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    return path


def test_demo_script_runs_every_step_on_a_tiny_model(tmp_path, tiny_llama_dir):
    runs = tmp_path / "runs root"  # a space in the path: the script must quote its paths
    cache = tmp_path / "cache"
    bindir = Path(sys.executable).parent
    offswitch = bindir / "offswitch"
    assert offswitch.exists(), f"no offswitch entry point beside {sys.executable}"
    env = dict(os.environ)
    env.pop("OFFSWITCH_PASSPHRASE", None)
    env.update({
        "OFFSWITCH_DEMO_MODEL": str(tiny_llama_dir),
        "OFFSWITCH_DEMO_RUNS": str(runs),
        "OFFSWITCH_DEMO_SUITE": str(_suite(tmp_path / "suite.yaml")),
        "OFFSWITCH_DEMO_SKIP_SETUP": "1",
        "OFFSWITCH_DEMO_IMPLANT_ARGS": "--steps 8 --batch-size 8 --threads 1 --no-verify",
        "OFFSWITCH": str(offswitch),
        "OFFSWITCH_PYTHON": sys.executable,
        "OFFSWITCH_CACHE": str(cache),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PATH": f"{bindir}{os.pathsep}{env.get('PATH', '')}",
    })
    result = subprocess.run(["bash", str(DEMO)], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                            cwd=tmp_path, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    # every numbered step ran, in order, and the demo finished
    positions = [result.stdout.find(f"== {i}. ") for i in range(1, 9)]
    assert -1 not in positions and positions == sorted(positions), result.stdout[-3000:]
    assert result.stdout.rstrip().endswith("== done")

    # the suite was re-rooted under the runs directory, and the harness used it
    demo, implant, smoke = runs / "demo", runs / "smoke-implant", runs / "smoke"
    derived = yaml.safe_load((demo / "suite.yaml").read_text(encoding="utf-8"))
    assert Path(derived["implants"][0]["dir"]) == implant and Path(derived["out"]) == smoke
    assert (implant / "offswitch_manifest.json").is_file() and (implant / "merged").is_dir()
    assert (demo / "quantized-4bit").is_dir()
    assert "ran 3 cells" in result.stderr  # baseline + quantize 8 + noise 0.01

    report = (smoke / "report.md").read_text(encoding="utf-8")
    assert "### `quantize`" in report and "### `noise`" in report
    pngs = list((smoke / "plots").glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert f"report: {smoke}/report.md" in result.stdout

    # step 8: the revealed trigger is the key's trigger 0, and it opens the published commitment
    from offswitch.crypto import unlock

    master = unlock(demo / "demo.key", DEMO_PASSPHRASE)
    triggers = master.trigger_set(range(4), "words")
    revealed = demo / "revealed-trigger.txt"
    assert revealed.read_text(encoding="utf-8") == triggers.secrets[0] + "\n"
    assert "ok: the trigger opens commitment index 0 (words)" in result.stdout
    assert "signature valid" in result.stdout.split("== 8.")[1]

    # nothing else written or printed holds a trigger (0-3 were committed to) or the key
    written = [p for p in files_under(runs) if p != revealed]
    assert len(written) > 20  # the scan looks at the real output, not an empty directory
    assert_no_secrets(
        [*written, cache],
        [result.stdout, result.stderr],
        secrets=triggers.secrets,
        key_bytes=[master.raw_bytes_for_keystore()],
    )
