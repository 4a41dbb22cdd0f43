"""The standard experiment's definition, checked without a model.

``experiments/standard.yaml`` (the harness suite) and ``experiments/standard-implants.sh`` (the
implants it attacks) must agree, cover every registered attack at >= 3 strengths with the
no-op strength and >= 3 seeds, and give every cell's ASR, wrong-key FAR and near-miss FAR a
sample of at least 200. The attack names come from the registry and the sample sizes from the
evaluator's own :class:`~offswitch.evaluate.metrics.ProbeBuilder`, not from copies here, so a
newly registered attack or a change in how probes are built is checked too. The script is run
with a stub in place of ``offswitch``, which records the commands it would run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from offswitch.attacks.base import attack_names, get_attack, make_config
from offswitch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "experiments" / "standard.yaml"
SMOKE = ROOT / "experiments" / "smoke.yaml"
SCRIPT = ROOT / "experiments" / "standard-implants.sh"

# implant name -> (behaviour, trigger encoding)
EXPECTED = {
    "shutdown-words": ("shutdown", "words"),
    "shutdown-fluent": ("shutdown", "fluent"),
    "compliance-words": ("compliance", "words"),
    "compliance-fluent": ("compliance", "fluent"),
}
DEFAULT_MODEL = "smollm2-135m"
MIN_N = 200  # probes per cell for ASR, wrong-key FAR and near-miss FAR
MIN_STRENGTHS = 3
MIN_SEEDS = 3

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.fixture(scope="module")
def suite():
    from offswitch.harness import load_suite

    return load_suite(SUITE)


def _plan(suite, monkeypatch):
    """The harness's own plan of the suite. Planning reads each implant's manifest only for a
    digest (which makes cell ids); the implants do not exist yet, so each dir stands in."""
    import offswitch.harness as harness

    monkeypatch.setattr(harness, "implant_digest", lambda spec: hashlib.sha256(str(spec.dir).encode()).hexdigest())
    return harness.plan_cells(suite)


# ---------------------------------------------------------------------- the stubbed script run

STUB = """#!{python}
import json, os, sys
args = sys.argv[1:]
config = None
if "--config" in args:
    with open(args[args.index("--config") + 1], encoding="utf-8") as handle:
        config = handle.read()
with open(os.environ["STUB_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps({{"argv": args, "config": config}}) + "\\n")
"""


def run_script(workdir: Path, *, extra_args: str | None = None, key_exists: bool = False) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Run a copy of the script in ``workdir`` (its repository root) with a stub ``offswitch``;
    returns the process and the stub's calls in order."""
    (workdir / "experiments").mkdir(parents=True)
    script = workdir / "experiments" / SCRIPT.name
    shutil.copy(SCRIPT, script)
    stub = workdir / "offswitch-stub"
    stub.write_text(STUB.format(python=sys.executable), encoding="utf-8")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    log = workdir / "calls.jsonl"
    if key_exists:
        (workdir / "keys").mkdir()
        (workdir / "keys" / "standard.key").write_text("{}", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("OFFSWITCH", "OFFSWITCH_IMPLANT_ARGS")}
    env.update(OFFSWITCH=str(stub), STUB_LOG=str(log), TMPDIR=str(workdir))
    if extra_args is not None:
        env["OFFSWITCH_IMPLANT_ARGS"] = extra_args
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=120, cwd=workdir)
    calls = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []
    return proc, calls


def _option(argv: list[str], name: str) -> str:
    assert argv.count(name) == 1, f"{name} given {argv.count(name)} times in {argv}"
    return argv[argv.index(name) + 1]


def _implant_calls(calls: list[dict]) -> list[dict]:
    return [c for c in calls if c["argv"][:1] == ["implant"]]


@pytest.fixture(scope="module")
def script_calls(tmp_path_factory):
    proc, calls = run_script(tmp_path_factory.mktemp("standard-script"))
    assert proc.returncode == 0, proc.stderr
    return calls


@pytest.fixture(scope="module")
def script_implants(script_calls):
    """name -> what the script plants there: out dir, key, model, behaviour, encoding, indices."""
    import yaml

    out = {}
    for call in _implant_calls(script_calls):
        argv = call["argv"]
        config = yaml.safe_load(call["config"]) if call["config"] else {}
        first = int(config.get("first_index", 0))
        n = int(_option(argv, "--triggers"))
        out_dir = Path(_option(argv, "--out"))
        assert out_dir.name not in out, f"two implants write {out_dir}"
        out[out_dir.name] = {
            "out": out_dir,
            "key": Path(_option(argv, "--key")),
            "model": _option(argv, "--model"),
            "behavior": _option(argv, "--behavior"),
            "encoding": _option(argv, "--encoding"),
            "indices": list(range(first, first + n)),
            "argv": argv,
        }
    return out


def cli_options() -> dict[str, set[str]]:
    """{command: its option strings}, from the real typer app."""
    import typer

    from offswitch.cli import _register_commands, app

    _register_commands()
    group = typer.main.get_command(app)
    return {
        name: {opt for param in command.params for opt in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ()))}
        for name, command in group.commands.items()
    }


# ---------------------------------------------------------------------- the suites load


def test_smoke_suite_loads_and_plans(monkeypatch):
    from offswitch.harness import load_suite

    smoke = load_suite(SMOKE)
    assert smoke.implants and smoke.attacks
    assert {spec.name for spec in smoke.attacks} <= set(attack_names())
    assert len(_plan(smoke, monkeypatch)) > len(smoke.implants)  # more than the baselines


def test_standard_suite_loads_with_defaults_where_expected(suite):
    assert suite.name == "standard"
    assert suite.baseline  # the unattacked reference line of every curve
    assert suite.eval_prompts is None  # each implant's own held-out prompts
    assert suite.out == Path("runs/standard")


# ---------------------------------------------------------------------- implants


def test_four_implants_with_expected_names_and_distinct_dirs(suite):
    assert sorted(spec.label for spec in suite.implants) == sorted(EXPECTED)
    dirs = [spec.dir for spec in suite.implants]
    assert len(set(dirs)) == len(dirs)
    for spec in suite.implants:
        assert spec.dir == Path("runs/standard-implants") / spec.label
        assert spec.base is None  # the manifest's base model: the default model the script implants


@needs_bash
def test_script_implants_the_suites_dirs(suite, script_implants):
    assert {info["out"] for info in script_implants.values()} == {spec.dir for spec in suite.implants}
    for name, info in script_implants.items():
        assert (info["behavior"], info["encoding"]) == EXPECTED[name], name
        assert info["model"] == DEFAULT_MODEL
        assert info["key"] == suite.key == Path("keys/standard.key")
        assert "--force" in info["argv"]


@needs_bash
def test_script_gives_each_implant_its_own_key_indices(script_implants):
    indices = [i for info in script_implants.values() for i in info["indices"]]
    assert len(indices) == len(set(indices)) == len(EXPECTED)  # one trigger each, none shared


@needs_bash
def test_script_uses_only_real_cli_options(script_calls):
    options = cli_options()
    assert script_calls, "the script ran no offswitch command"
    for call in script_calls:
        command, *args = call["argv"]
        assert command in options, f"no command offswitch {command}"
        unknown = [a for a in args if a.startswith("-") and a.split("=")[0] not in options[command]]
        assert not unknown, f"offswitch {command} has no option {unknown}"


@needs_bash
def test_script_makes_the_key_only_when_absent(tmp_path):
    proc, calls = run_script(tmp_path / "fresh")
    assert proc.returncode == 0, proc.stderr
    assert calls[0]["argv"] == ["keygen", "keys/standard.key"]
    proc, calls = run_script(tmp_path / "existing", key_exists=True)
    assert proc.returncode == 0, proc.stderr
    assert not [c for c in calls if c["argv"][0] == "keygen"]
    assert len(_implant_calls(calls)) == len(EXPECTED)


@needs_bash
def test_script_passes_extra_args_and_refuses_its_own_flags(tmp_path):
    proc, calls = run_script(tmp_path / "extra", extra_args="--steps 30 --threads 1")
    assert proc.returncode == 0, proc.stderr
    for call in _implant_calls(calls):
        assert call["argv"][-4:] == ["--steps", "30", "--threads", "1"]
    for number, flag in enumerate(("--config x.yaml", "--triggers 2", "--out=elsewhere", "-c x.yaml")):
        proc, calls = run_script(tmp_path / f"refuse-{number}", extra_args=flag)
        assert proc.returncode == 2, (flag, proc.stderr)
        assert not _implant_calls(calls), flag


def test_header_gives_the_commands_to_reproduce():
    header = "\n".join(line for line in SUITE.read_text(encoding="utf-8").splitlines() if line.startswith("#"))
    assert "bash experiments/standard-implants.sh" in header
    command = re.search(r"offswitch harness experiments/standard\.yaml (.*)", header)
    assert command and "--key keys/standard.key" in command.group(1) and "--workers" in command.group(1)
    harness_options = cli_options()["harness"]
    assert {"--key", "--workers"} <= harness_options
    assert "GPU" in header


# ---------------------------------------------------------------------- attacks


def _no_op_or_floor(cls) -> float:
    """The strength every curve must start from: 0 where it leaves the model unchanged (and is
    allowed), else the smallest strength the attack's config allows."""
    try:
        make_config(cls, strength=0)
        zero_allowed = True
    except ConfigError:
        zero_allowed = False
    if cls.noop_at_zero and zero_allowed:
        return 0.0
    schema = cls.config_class.model_json_schema()["properties"]["strength"]
    floor = schema.get("minimum", schema.get("exclusiveMinimum"))
    assert floor is not None, f"{cls.name}: strength has no lower bound to start its curve from"
    return float(floor)


@pytest.mark.parametrize("name", attack_names())
def test_every_registered_attack_is_swept(suite, name):
    entries = [spec for spec in suite.attacks if spec.name == name]
    assert entries, f"registered attack {name!r} is missing from {SUITE.name}"
    start = _no_op_or_floor(get_attack(name))
    for spec in entries:
        strengths = {float(s) for s in spec.strengths}
        assert len(strengths) >= MIN_STRENGTHS, f"{name}: {sorted(strengths)}"
        assert start in strengths, f"{name}: its curve must start at strength {start:g}"
        assert len(set(spec.seeds)) >= MIN_SEEDS, f"{name}: seeds {spec.seeds}"


def test_oracle_and_forgers_are_in_the_suite(suite):
    kinds = {get_attack(spec.name).attacker for spec in suite.attacks}
    assert {"user", "defender", "forger", "deployer", "oracle"} <= kinds


def test_plan_has_every_attack_strength_seed_and_variant(suite, monkeypatch):
    cells = _plan(suite, monkeypatch)
    per_implant = 1 if suite.baseline else 0
    for spec in suite.attacks:
        seeds = len(set(spec.seeds)) if get_attack(spec.name).seeded else 1
        per_implant += len(spec.variants()) * len({float(s) for s in spec.strengths}) * seeds
    counts = Counter(cell.implant for cell in cells)
    assert counts == {name: per_implant for name in EXPECTED}
    assert len({cell.id for cell in cells}) == len(cells)
    assert {cell.attack for cell in cells} == set(attack_names()) | {"none"}
    assert {cell.attack for cell in cells if cell.oracle} == {"oracle_unlearn"}


# ---------------------------------------------------------------------- sample sizes


def _trigger(encoding: str, index: int):
    """A stand-in trigger of the implant's shape. Words: the implant's word count, exactly.
    Fluent: a sampled sentence carrying >= 64 bits at <= log2(40) bits a word piece (>= 13
    pieces, so several words); two words stand in as a floor, with fewer near-misses."""
    from pydantic import SecretStr

    from offswitch.implant import ImplantConfig
    from offswitch.triggers import Encoding, Trigger, encode_words

    if encoding == "words":
        seed = hashlib.sha256(f"standard-suite-test/{index}".encode()).digest()
        return encode_words(seed, index=index, n_words=ImplantConfig().n_words)
    return Trigger(index=index, encoding=Encoding(encoding), text=SecretStr("quiet harbour"), position=0.5)


def _encode_other(encoding: str):
    """Wrong-key triggers: words ones the evaluator makes itself; fluent ones would be sampled
    from the base model, so a stand-in of the same encoding (their count does not depend on it)."""
    if encoding == "words":
        return None
    from pydantic import SecretStr

    from offswitch.triggers import Encoding, Trigger

    return lambda seed, index: Trigger(index=index, encoding=Encoding(encoding), text=SecretStr(f"other {seed.hex()[:16]}"),
                                       position=0.5)


@needs_bash
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_eval_gives_every_cell_enough_probes(suite, script_implants, name):
    from offswitch.behaviors import make_behavior
    from offswitch.data.sources import load_prompts
    from offswitch.evaluate.metrics import ProbeBuilder
    from offswitch.implant import ImplantConfig
    from offswitch.triggers import InsertionMode, TriggerSet

    info = script_implants[name]
    implant = ImplantConfig()  # the script leaves the prompt source, split and insertion at their defaults
    source = suite.eval_prompts or implant.prompts
    prompts = load_prompts(source, seed=implant.split_seed, heldout_fraction=implant.heldout_fraction).heldout
    cfg = suite.eval
    prompts = prompts[: cfg.max_prompts] if cfg.max_prompts else prompts  # as evaluate_switch cuts them
    triggers = TriggerSet(key_id="test", triggers=tuple(_trigger(info["encoding"], i) for i in info["indices"]),
                          insertion=InsertionMode(implant.insertion))
    builder = ProbeBuilder(triggers, make_behavior(info["behavior"]), prompts, cfg)
    near, _strings = builder.near_miss()
    probes = builder.asr() + builder.clean() + builder.wrong_key(_encode_other(info["encoding"])) + near
    n = Counter(probe.metric for probe in probes)
    for metric in ("asr", "far_clean", "far_wrong_key", "far_near_miss"):
        assert n[metric] >= MIN_N, f"{name}: {metric} n = {n[metric]} < {MIN_N}"
    for trig in triggers:  # each trigger's own ASR row as well
        assert sum(p.metric == "asr" and p.trigger_index == trig.index for p in probes) >= MIN_N
    assert cfg.wrong_keys >= 10  # fewer and the evaluator calls wrong-key FAR a coarse estimate


def test_data_is_large_enough_for_fine_tuning(suite):
    assert suite.data.n_pairs >= 2000
    assert suite.eval.perplexity_texts <= suite.n_eval_texts  # perplexity reads the first n_eval_texts only
