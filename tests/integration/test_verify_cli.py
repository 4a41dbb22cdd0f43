"""`offswitch verify`: the key opens the manifest's commitments and the signature holds."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
from secret_scan import assert_no_secrets

# one worker builds this module's trained models once (pytest -n 2 --dist loadgroup)
pytestmark = [pytest.mark.xdist_group("verify-cli"), pytest.mark.usefixtures("one_thread")]

PASSPHRASE = "verify test passphrase"


@pytest.fixture(scope="module")
def implant(tmp_path_factory, tiny_llama_dir):
    from offswitch.crypto import FAST_SCRYPT, create_keystore
    from offswitch.testing.tiny_switch import tiny_prompts, write_tiny_implant

    root = tmp_path_factory.mktemp("verify-cli")
    key = create_keystore(root / "owner.key", PASSPHRASE, scrypt=FAST_SCRYPT)
    other = create_keystore(root / "other.key", PASSPHRASE, scrypt=FAST_SCRYPT)
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(tiny_prompts()) + "\n")
    # barely trained: verify checks the manifest; --measure only needs a model to measure
    out = write_tiny_implant(root / "implant", key, tiny_llama_dir, str(prompts), steps=5)
    return SimpleNamespace(
        root=root, out=out, key=root / "owner.key", other=root / "other.key", master=key, other_master=other,
        secrets=key.trigger_set([0, 1], "words", "prefix", n_words=6).secrets,
        key_bytes=[key.raw_bytes_for_keystore(), other.raw_bytes_for_keystore()],
    )


ENV = {"OFFSWITCH_PASSPHRASE": PASSPHRASE}


def _copy_with_manifest(implant, tmp_path, edit) -> object:
    """A copy of the manifest (no weights needed to verify) changed by ``edit(doc)``."""
    target = tmp_path / "copy"
    target.mkdir()
    doc = json.loads((implant.out / "offswitch_manifest.json").read_text())
    edit(doc)
    (target / "offswitch_manifest.json").write_text(json.dumps(doc))
    return target


def test_verify_passes_with_the_right_key_and_prints_the_headline(implant, cli):
    result = cli("verify", "--key", str(implant.key), str(implant.out), env=ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: key {implant.master.key_id} opens all 2 commitment(s)")
    assert "ASR (true trigger):" in result.stdout and "FAR near-miss, worst kind" in result.stdout
    assert "[" in result.stdout and "%" in result.stdout  # rates come with counts and intervals
    assert_no_secrets([implant.out], [result.stdout, result.stderr], secrets=implant.secrets, key_bytes=implant.key_bytes)


def test_verify_refuses_the_wrong_key(implant, cli):
    result = cli("verify", "--key", str(implant.other), str(implant.out), env=ENV)
    assert result.returncode == 3
    assert "is not the key of this model" in result.stderr and result.stderr.count("\n") == 1
    assert result.stdout == ""
    assert_no_secrets([], [result.stdout, result.stderr], secrets=implant.secrets, key_bytes=implant.key_bytes)


def test_verify_detects_a_tampered_manifest(implant, cli, tmp_path):
    def lower_the_far(doc):
        doc["verification"]["far_clean"]["hi"] = 0.001

    tampered = _copy_with_manifest(implant, tmp_path, lower_the_far)
    result = cli("verify", "--key", str(implant.key), str(tampered), env=ENV)
    assert result.returncode == 3 and "signature does not verify" in result.stderr
    assert result.stderr.count("\n") == 1


def test_verify_detects_commitments_the_key_does_not_open(implant, capsys, monkeypatch, tmp_path):
    """Even a validly signed manifest fails when its commitments are not to this key's triggers."""
    from offswitch.manifest import ImplantManifest

    def swap_commitments(doc):
        doc["commitments"][1]["digest"] = "0" * 64
        unsigned = ImplantManifest.model_validate({**doc, "signature": None})
        doc["signature"] = implant.master.sign(unsigned.signed_payload())

    resigned = _copy_with_manifest(implant, tmp_path, swap_commitments)
    monkeypatch.setenv("OFFSWITCH_PASSPHRASE", PASSPHRASE)
    code, out, err = _run(capsys, "verify", "-k", implant.key, resigned)
    assert code == 3 and "trigger index 1" in err and "does not open its commitment" in err
    assert_no_secrets([], [out, err], secrets=implant.secrets, key_bytes=implant.key_bytes)


def test_verify_detects_a_manifest_signed_by_another_key(implant, capsys, monkeypatch, tmp_path):
    from offswitch.manifest import ImplantManifest

    def forge(doc):
        doc["key_id"], doc["public_key"] = implant.other_master.key_id, implant.other_master.public_key_b64
        unsigned = ImplantManifest.model_validate({**doc, "signature": None})
        doc["signature"] = implant.other_master.sign(unsigned.signed_payload())

    forged = _copy_with_manifest(implant, tmp_path, forge)
    monkeypatch.setenv("OFFSWITCH_PASSPHRASE", PASSPHRASE)
    code, _out, err = _run(capsys, "verify", "-k", implant.key, forged)
    assert code == 3 and "is not the key of this model" in err
    # with the forger's key the signature holds but the commitments are not to its triggers
    code, _out, err = _run(capsys, "verify", "-k", implant.other, forged)
    assert code == 3 and "does not open its commitment" in err


def test_verify_measure_re_measures_the_headline(implant, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("OFFSWITCH_PASSPHRASE", PASSPHRASE)
    target = tmp_path / "implant"
    shutil.copytree(implant.out, target)
    code, out, err = _run(capsys, "verify", "-k", implant.key, target, "--measure", "--max-prompts", "4")
    assert code == 0, err
    assert "recorded at implant time:" in out and "measured now (4 held-out prompts" in out
    assert out.count("ASR (true trigger):") == 2
    assert sorted(p.name for p in target.iterdir()) == ["adapter", "merged", "offswitch_manifest.json"]  # writes nothing
    assert_no_secrets([target], [out, err], secrets=implant.secrets, key_bytes=implant.key_bytes)


def test_verify_without_a_manifest_is_a_clear_error(implant, cli, tmp_path):
    result = cli("verify", "--key", str(implant.key), str(tmp_path), env=ENV)
    assert result.returncode == 2 and "no implant manifest" in result.stderr


def _run(capsys, *args) -> tuple[int, str, str]:
    from offswitch.cli import main

    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err
