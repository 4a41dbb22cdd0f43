"""Keystore: round trips, tamper detection, and every bad input as a clear error."""

from __future__ import annotations

import json
import os
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offswitch.crypto import FAST_SCRYPT, MasterKey, create_keystore, read_header, unlock
from offswitch.crypto.keystore import encrypt_key
from offswitch.errors import KeystoreError, WrongPassphrase

passphrases = st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s)


def _write(path, text, mode=0o600):
    """A keystore file at ``mode``: ``text`` as UTF-8, or bytes as they are."""
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=32, max_size=32), passphrases)
def test_round_trip_any_passphrase(tmp_path, raw, passphrase):
    path = tmp_path / "k.key"
    key = MasterKey(raw)
    _write(path, encrypt_key(key, passphrase, FAST_SCRYPT))
    opened = unlock(path, passphrase)
    assert opened.raw_bytes_for_keystore() == raw
    assert read_header(path)["key_id"] == key.key_id


def test_unicode_passphrase_normalized(tmp_path):
    path = tmp_path / "k.key"
    key = MasterKey.generate()
    _write(path, encrypt_key(key, "caf\u00e9", FAST_SCRYPT))
    assert unlock(path, "cafe\u0301").key_id == key.key_id  # NFD form of the same text


def test_empty_passphrase_rejected(tmp_path):
    with pytest.raises(KeystoreError, match="empty passphrase"):
        create_keystore(tmp_path / "k.key", "", scrypt=FAST_SCRYPT)
    assert not (tmp_path / "k.key").exists()


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ks") / "k.key"
    create_keystore(path, "pw", scrypt=FAST_SCRYPT)
    return path.read_bytes()


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_every_single_byte_change_is_detected(tmp_path, good_file, data):
    at = data.draw(st.integers(0, len(good_file) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != good_file[at]))
    path = tmp_path / "t.key"
    _write(path, good_file[:at] + bytes([new]) + good_file[at + 1 :])
    with pytest.raises(KeystoreError):
        unlock(path, "pw")


def test_every_single_byte_change_of_a_keystore_is_detected_exhaustively(tmp_path, good_file):
    """Each of the file's bytes set to each other value (464 x 255 files). A change that leaves
    the text unreadable as JSON is refused before any key work, so only the parseable ones are
    written and opened; the property above samples all of them."""
    path, opened = tmp_path / "t.key", []
    for at in range(len(good_file)):
        for new in range(256):
            changed = good_file[:at] + bytes([new]) + good_file[at + 1 :]
            if new == good_file[at] or not _parses(changed):
                continue
            _write(path, changed)
            try:
                unlock(path, "pw")
            except KeystoreError:
                continue
            opened.append((at, good_file[at : at + 1], bytes([new])))
    assert opened == []


def _parses(data: bytes) -> bool:
    try:
        json.loads(data.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return False
    return True


@pytest.mark.parametrize("new", [b"\r", b"\r\n"])
def test_changed_line_endings_are_detected(tmp_path, good_file, new):
    """A text-mode read turns "\r" and "\r\n" into "\n": the canonical check must see the bytes
    (found by the single-byte property: "\n" -> "\r" opened the key)."""
    path = tmp_path / "t.key"
    _write(path, good_file.replace(b"\n", new, 1))
    with pytest.raises(KeystoreError, match="not in canonical form"):
        unlock(path, "pw")


def test_creates_mode_0600_and_refuses_overwrite(tmp_path):
    path = tmp_path / "k.key"
    create_keystore(path, "pw", scrypt=FAST_SCRYPT)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    with pytest.raises(KeystoreError, match="already exists.*--force"):
        create_keystore(path, "pw", scrypt=FAST_SCRYPT)
    assert path.read_bytes() == before
    create_keystore(path, "pw", scrypt=FAST_SCRYPT, force=True)
    assert path.read_bytes() != before
    assert [p.name for p in tmp_path.iterdir()] == ["k.key"]  # no temp files left


def test_default_scrypt_parameters_are_strong(tmp_path):
    path = tmp_path / "k.key"
    create_keystore(path, "pw")
    kdf = read_header(path)["kdf"]
    assert kdf["n"] >= 2**17 and kdf["r"] == 8


@pytest.mark.parametrize(
    "case, message",
    [
        ("wrong_passphrase", "wrong passphrase"),
        ("truncated", "corrupt or truncated"),
        ("tampered_ciphertext", "wrong passphrase .* tampered"),
        ("unknown_version", "unknown format version 99"),
        ("not_json", "not valid JSON"),
        ("missing", "not found"),
        ("directory", "is a directory"),
        ("world_readable", "accessible by other users .*chmod 600"),
        ("not_keystore", "not an offswitch keystore"),
        ("missing_field", "missing or malformed"),
        ("binary", "not UTF-8"),
    ],
)
def test_bad_inputs(tmp_path, case, message):
    path = tmp_path / "k.key"
    create_keystore(path, "pw", scrypt=FAST_SCRYPT)
    doc = json.loads(path.read_text())
    passphrase = "pw"
    if case == "wrong_passphrase":
        passphrase = "nope"
    elif case == "truncated":
        _write(path, path.read_text()[:100])
    elif case == "tampered_ciphertext":
        ct = bytearray(__import__("base64").b64decode(doc["cipher"]["ciphertext"]))
        ct[5] ^= 1
        doc["cipher"]["ciphertext"] = __import__("base64").b64encode(bytes(ct)).decode()
        _write(path, json.dumps(doc, sort_keys=True, indent=2) + "\n")
    elif case == "unknown_version":
        doc["version"] = 99
        _write(path, json.dumps(doc))
    elif case == "not_json":
        _write(path, "hello")
    elif case == "missing":
        path = tmp_path / "absent.key"
    elif case == "directory":
        path = tmp_path
    elif case == "world_readable":
        os.chmod(path, 0o644)
    elif case == "not_keystore":
        _write(path, json.dumps({"a": 1}))
    elif case == "missing_field":
        del doc["kdf"]["salt"]
        _write(path, json.dumps(doc, sort_keys=True, indent=2) + "\n")
    elif case == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(KeystoreError, match=message) as info:
        unlock(path, passphrase)
    text = str(info.value)
    assert "\n" not in text and ";" in text  # one line: problem; fix
    if case == "wrong_passphrase":
        assert isinstance(info.value, WrongPassphrase)


def test_master_key_never_shows_itself():
    key = MasterKey(bytes(range(32)))
    assert bytes(range(32)).hex() not in repr(key)
    with pytest.raises(TypeError):
        __import__("pickle").dumps(key)
    with pytest.raises(ValueError):
        MasterKey(b"short")
