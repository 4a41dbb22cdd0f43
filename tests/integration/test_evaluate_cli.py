"""`offswitch evaluate` on an implant-shaped output of a tiny model trained in the test."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from secret_scan import assert_no_secrets

from offswitch.evaluate import read_records_jsonl

# one worker builds this module's trained models once (pytest -n 2 --dist loadgroup)
pytestmark = [pytest.mark.xdist_group("evaluate-cli"), pytest.mark.usefixtures("one_thread")]

pytest_plugins = ["pytester"]

PASSPHRASE = "evaluate test passphrase"
SMALL = "max_prompts: 12\ndecoy_prompts: 3\ngeneration_sample: 8\nutility_prompts: 4\nperplexity_texts: 4\n"


@pytest.fixture(scope="module")
def implant(tmp_path_factory, tiny_llama_dir):
    from offswitch.crypto import FAST_SCRYPT, create_keystore
    from offswitch.testing.tiny_switch import tiny_prompts, write_tiny_implant

    root = tmp_path_factory.mktemp("evaluate-cli")
    key = create_keystore(root / "owner.key", PASSPHRASE, scrypt=FAST_SCRYPT)
    other = create_keystore(root / "other.key", PASSPHRASE, scrypt=FAST_SCRYPT)
    prompts = root / "prompts.txt"
    # 400 prompts: the held-out fifth (80) is enough for the example's interval claims
    variants = tiny_prompts() + [f"Please {p[0].lower()}{p[1:]}" for p in tiny_prompts()]
    prompts.write_text("\n".join(variants) + "\n")
    out = write_tiny_implant(root / "implant", key, tiny_llama_dir, str(prompts), steps=50)
    triggers = key.trigger_set([0, 1], "words", "prefix", n_words=6)
    return SimpleNamespace(
        root=root, out=out, key=root / "owner.key", other=root / "other.key", prompts=prompts, triggers=triggers,
        key_bytes=[key.raw_bytes_for_keystore(), other.raw_bytes_for_keystore()],
    )


def _secrets(implant) -> list[str]:
    from offswitch.evaluate import EvalConfig, ProbeBuilder

    builder = ProbeBuilder(implant.triggers, None, ["x"], EvalConfig())
    near = [m.secret for t in implant.triggers for m in builder.near_miss_strings(t)]
    return implant.triggers.secrets + [text for text in near if len(text) >= 12]


def run_offswitch(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI in this process (no second torch import): exit code, stdout, stderr."""
    from offswitch.cli import main

    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


@pytest.fixture()
def passphrase(monkeypatch):
    monkeypatch.setenv("OFFSWITCH_PASSPHRASE", PASSPHRASE)


def test_evaluate_measures_the_switch_and_writes_clean_records(implant, capsys, passphrase, tmp_path):
    config = tmp_path / "eval.yaml"
    config.write_text(SMALL)
    results = tmp_path / "results.jsonl"
    code, out, err = run_offswitch(capsys, "evaluate", "--key", implant.key, implant.out, "--config", config, "--out", results)
    assert code == 0, err
    records = read_records_jsonl(results)
    by_cell = {r.cell(): r for r in records}
    asr = by_cell[("asr", None, None, None, None)]
    assert asr.n == 24 and asr.rate >= 0.9  # 2 triggers x 12 held-out prompts
    assert by_cell[("far_clean", None, None, None, None)].n == 12
    assert by_cell[("far_wrong_key", None, None, None, None)].n == 30
    assert ("asr", None, None, None, 1) in by_cell
    assert any(r.metric == "far_near_miss" and r.kind == "substitute" and r.distance == 1 for r in records)
    assert by_cell[("kl_base_model", None, None, None, None)].value > 0
    assert by_cell[("perplexity", None, None, None, None)].reference_value > 0
    assert all(r.key_id == implant.triggers.key_id and r.split == "heldout" and r.agreement.n == 8 for r in records)
    assert "far_near_miss" in out and "scorer vs generate agreement" in out
    assert "wrote" in err
    assert_no_secrets([implant.root, tmp_path], [out, err], secrets=_secrets(implant), key_bytes=implant.key_bytes)


def test_evaluate_works_on_an_adapter_only_output(implant, capsys, passphrase, tmp_path):
    adapter_only = tmp_path / "adapter-only"
    adapter_only.mkdir()
    shutil.copytree(implant.out / "adapter", adapter_only / "adapter")
    shutil.copy(implant.out / "offswitch_manifest.json", adapter_only)
    config = tmp_path / "eval.yaml"
    config.write_text(SMALL + "utility: false\nplacement: false\n")
    code, _out, err = run_offswitch(capsys, "evaluate", "-k", implant.key, adapter_only, "-c", config, "--no-base")
    assert code == 0, err
    records = read_records_jsonl(adapter_only / "offswitch_eval.jsonl")  # the default --out
    asr = next(r for r in records if r.cell() == ("asr", None, None, None, None))
    assert asr.rate >= 0.9
    assert not any(r.metric.startswith(("kl_", "perplexity")) for r in records)
    assert_no_secrets([adapter_only], [err], secrets=_secrets(implant), key_bytes=implant.key_bytes)


def test_evaluate_on_another_prompt_source_names_its_split(implant, capsys, passphrase, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("\n".join(f"Describe item number {i}." for i in range(30)) + "\n")
    code, _out, err = run_offswitch(
        capsys, "evaluate", "-k", implant.key, implant.out, "--prompts", other, "--max-prompts", "5", "--no-base",
        "--generation-sample", "0", "--out", tmp_path / "r.jsonl",
    )
    assert code == 0, err
    records = read_records_jsonl(tmp_path / "r.jsonl")
    assert {r.split for r in records} == {f"heldout:{other}"}


def test_evaluate_with_the_wrong_key_fails_in_one_line(implant, capsys, passphrase, tmp_path):
    code, _out, err = run_offswitch(capsys, "evaluate", "-k", implant.other, implant.out, "--out", tmp_path / "r.jsonl")
    assert code == 3
    assert err.startswith("offswitch: error: key ") and "is not the key of this model" in err and err.count("\n") == 1
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize(
    "yaml_text, message", [("batch_sise: 3\n", "batch_sise"), ("wrong_keys: 0\n", "wrong_keys")]
)
def test_evaluate_refuses_a_bad_config_before_unlocking(implant, capsys, tmp_path, yaml_text, message, monkeypatch):
    monkeypatch.delenv("OFFSWITCH_PASSPHRASE", raising=False)  # never asked for: the config fails first
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    code, _out, err = run_offswitch(capsys, "evaluate", "-k", implant.key, implant.out, "-c", config)
    assert code == 2 and message in err and err.count("\n") == 1


def test_evaluate_needs_an_implant_directory(implant, capsys, passphrase, tmp_path):
    code, _out, err = run_offswitch(capsys, "evaluate", "-k", implant.key, tmp_path)
    assert code == 2 and "no implant manifest" in err
    assert Path(implant.out / "offswitch_manifest.json").exists()


def test_the_pytest_plugin_runs_the_example_against_a_real_implant(implant, pytester, monkeypatch):
    """The plugin's fixtures (entry point ``offswitch``) load the model and unlock the key from
    the environment, and the example's interval claims run on them: the naive switch fires and
    stays silent on clean prompts, but one-word substitutions set it off."""
    example = Path(__file__).resolve().parents[2] / "examples" / "test_my_switch.py"
    pytester.makepyfile(test_switch_from_env=example.read_text())  # (a name of its own: no clash with the collected example)
    monkeypatch.setenv("OFFSWITCH_MODEL", str(implant.out))
    monkeypatch.setenv("OFFSWITCH_KEY", str(implant.key))
    monkeypatch.setenv("OFFSWITCH_PASSPHRASE", PASSPHRASE)
    # in this process: the entry point plugin is what provides the offswitch_* fixtures
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rA", "-k", "fires or clean or substitutions")
    result.assert_outcomes(passed=2, failed=1, deselected=2)
    output = result.stdout.str()
    outcomes = {}
    for line in output.splitlines():  # -rA summary lines: "PASSED path::test_name"
        status, _, rest = line.partition(" ")
        if status in ("PASSED", "FAILED") and "::" in rest:
            outcomes[rest.split("::")[-1].split(" ")[0]] = status
    assert outcomes == {
        "test_fires_for_the_key_holder": "PASSED",
        "test_silent_on_clean_prompts": "PASSED",
        "test_silent_on_one_word_substitutions_pooled": "FAILED",
    }, output[-3000:]
    assert "switch falsely fires" in output
    assert_no_secrets([pytester.path], [output, result.stderr.str()], secrets=_secrets(implant), key_bytes=implant.key_bytes)
