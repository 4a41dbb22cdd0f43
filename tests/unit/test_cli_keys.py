"""The key commands as a user runs them: outputs, exit codes, one-line errors, no leaks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from secret_scan import assert_no_secrets, files_under

PW = {"OFFSWITCH_PASSPHRASE": "hunter2 ✓"}


@pytest.fixture()
def keyfile(tmp_path, cli):
    path = tmp_path / "alice.key"
    proc = cli("keygen", str(path), "--insecure-fast-kdf", env=PW)
    assert proc.returncode == 0, proc.stderr
    return path


def _unlock(path):
    from offswitch.crypto import unlock

    return unlock(path, PW["OFFSWITCH_PASSPHRASE"])


def test_help_is_instant():
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "offswitch", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "keygen" in proc.stdout
    assert time.perf_counter() - start < 5
    code = "import offswitch.cli as c, sys; c._register_commands(); print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split()
    assert out == ["False", "False"]


def test_keygen_trigger_commit_flow_leaks_nothing(tmp_path, cli, keyfile):
    key = _unlock(keyfile)
    outputs = []
    info = cli("key-info", str(keyfile))
    assert info.returncode == 0 and key.key_id in info.stdout
    outputs += [info.stdout, info.stderr]
    commit = cli("commit", "--key", str(keyfile), "-i", "0-3", "-o", str(tmp_path / "c.json"), env=PW)
    assert commit.returncode == 0, commit.stderr
    outputs += [commit.stdout, commit.stderr]
    reveal = cli("trigger", "--key", str(keyfile), "--index", "2", env=PW)
    assert reveal.returncode == 0
    assert reveal.stdout == key.trigger(2).secret + "\n"
    assert "warning" in reveal.stderr
    outputs.append(reveal.stderr)
    check = cli("commit-check", str(tmp_path / "c.json"), input=reveal.stdout)
    assert check.returncode == 0 and "index 2" in check.stdout, check.stderr
    outputs += [check.stdout, check.stderr]
    wrong = cli("commit-check", str(tmp_path / "c.json"), input=key.trigger(9).secret + "\n")
    assert wrong.returncode == 3 and "opens none" in wrong.stderr
    outputs += [wrong.stdout, wrong.stderr]
    secrets = [key.trigger(i).secret for i in range(10)]
    assert_no_secrets(files_under(tmp_path), outputs, secrets=secrets, key_bytes=[key.raw_bytes_for_keystore()])


def test_commitment_file_tamper_is_detected(tmp_path, cli, keyfile):
    key = _unlock(keyfile)
    out = tmp_path / "c.json"
    assert cli("commit", "--key", str(keyfile), "-i", "0", "-o", str(out), env=PW).returncode == 0
    doc = json.loads(out.read_text())
    doc["commitments"][0]["index"] = 5
    out.write_text(json.dumps(doc))
    proc = cli("commit-check", str(out), input=key.trigger(0).secret)
    assert proc.returncode == 3 and "signature" in proc.stderr


def test_trigger_from_passphrase_file(tmp_path, cli, keyfile):
    pwfile = tmp_path / "pw.txt"
    pwfile.write_text(PW["OFFSWITCH_PASSPHRASE"] + "\n")
    proc = cli("trigger", "--key", str(keyfile), "--passphrase-file", str(pwfile))
    assert proc.returncode == 0 and len(proc.stdout.split()) == 6


def test_trigger_tokens_encoding(tmp_path, cli, keyfile, tiny_llama_dir):
    proc = cli("trigger", "--key", str(keyfile), "--encoding", "tokens", "--tokenizer", str(tiny_llama_dir), env=PW)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


@pytest.mark.parametrize(
    "args, env, needle, code",
    [
        (["trigger", "--key", "{key}"], {"OFFSWITCH_PASSPHRASE": "wrong"}, "wrong passphrase", 2),
        (["trigger", "--key", "{tmp}/nope.key"], PW, "not found", 2),
        (["trigger", "--key", "{tmp}"], PW, "is a directory", 2),
        (["trigger", "--key", "{key}", "--index", "-1"], PW, "index must be >= 0", 2),
        (["trigger", "--key", "{key}", "--index", "x"], PW, "bad trigger index", 2),
        (["trigger", "--key", "{key}", "--encoding", "emoji"], PW, "emoji", 2),
        (["trigger", "--key", "{key}", "--encoding", "tokens"], PW, "needs a tokenizer", 2),
        (["trigger", "--key", "{key}"], {}, "no passphrase given", 2),
        (["keygen", "{key}"], PW, "already exists", 2),
        (["keygen", "{tmp}/missing-dir/k.key"], PW, "does not exist", 2),
        (["commit", "--key", "{key}", "--out", "{tmp}/missing-dir/c.json"], PW, "does not exist; create it first", 2),
        (["commit", "--key", "{key}", "--out", "{tmp}", "--force"], PW, "is a directory", 2),
        (["trigger", "--key", "{key}", "--encoding", "fluent"], PW, "needs the base model; pass --model", 2),
        (["commit", "--key", "{key}", "--out", "{tmp}/c.json", "--encoding", "fluent"], PW, "needs the base model", 2),
        (["trigger", "--key", "{key}", "--model", "{tmp}"], PW, "only used by the fluent encoding", 2),
        (["key-info", "{tmp}/garbage.key"], {}, "not valid JSON", 2),
        (["commit-check", "{tmp}/garbage.key"], {}, "not valid JSON", 2),
    ],
)
def test_bad_input_is_one_line(tmp_path, cli, keyfile, args, env, needle, code):
    (tmp_path / "garbage.key").write_text("{not json")
    args = [a.format(key=keyfile, tmp=tmp_path) for a in args]
    proc = cli(*args, env=env)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "missing-dir").exists() and not (tmp_path / "c.json").exists()


def test_keygen_force_and_mode(tmp_path, cli, keyfile):
    before = keyfile.read_bytes()
    proc = cli("keygen", str(keyfile), "--force", "--insecure-fast-kdf", env=PW)
    assert proc.returncode == 0 and keyfile.read_bytes() != before
    assert oct(os.stat(keyfile).st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in keyfile.parent.iterdir()) == ["alice.key"]


def test_debug_flag_shows_traceback(tmp_path, cli):
    proc = cli("key-info", str(tmp_path / "nope.key"), "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_no_arguments_shows_the_help_not_an_error(cli):
    proc = cli()
    # click's convention for no_args_is_help: the help on stderr, exit 2 (no command ran)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Usage: offswitch") and "Commands:" in proc.stderr and "keygen" in proc.stderr
    assert "error" not in proc.stderr and "(see --help)" not in proc.stderr
    assert proc.stdout == ""


def test_commit_check_reads_stdin_and_still_accepts_trigger_stdin(tmp_path, cli, keyfile):
    key = _unlock(keyfile)
    out = tmp_path / "c.json"
    assert cli("commit", "--key", str(keyfile), "-o", str(out), env=PW).returncode == 0
    help_text = cli("commit-check", "--help").stdout
    assert "--trigger-stdin" not in help_text, "stdin is the only source: no option that does nothing"
    for flag in ([], ["--trigger-stdin"]):  # scripts written for the old flag keep working
        proc = cli("commit-check", str(out), *flag, input=key.trigger(0).secret + "\n")
        assert proc.returncode == 0 and "index 0" in proc.stdout, proc.stderr


def test_fluent_triggers_are_revealed_and_committed_with_the_base_model(tmp_path, cli, keyfile, tiny_llama_dir):
    from offswitch.cli._common import implant_fluent_encoder
    from offswitch.models import load_model

    key = _unlock(keyfile)
    model, tokenizer = load_model(tiny_llama_dir, device="cpu")
    expected = [key.trigger(i, "fluent", fluent_encoder=implant_fluent_encoder(model, tokenizer)).secret for i in (0, 1)]
    reveal = cli("trigger", "--key", str(keyfile), "--encoding", "fluent", "--model", str(tiny_llama_dir), "-i", "0-1", env=PW)
    assert reveal.returncode == 0, reveal.stderr
    assert reveal.stdout.splitlines() == expected
    out = tmp_path / "c.json"
    commit = cli("commit", "--key", str(keyfile), "--encoding", "fluent", "--model", str(tiny_llama_dir), "-i", "0-1",
                 "-o", str(out), env=PW)
    assert commit.returncode == 0, commit.stderr
    check = cli("commit-check", str(out), input=expected[1] + "\n")
    assert check.returncode == 0 and "index 1 (fluent)" in check.stdout, check.stderr
    assert_no_secrets(files_under(tmp_path), [reveal.stderr, commit.stdout, commit.stderr, check.stdout, check.stderr],
                      secrets=expected, key_bytes=[key.raw_bytes_for_keystore()])
