"""The encrypted keystore file.

Format (version 1), canonical JSON (sorted keys, 2-space indent, trailing newline)::

    {"format": "offswitch-keystore", "version": 1, "key_id": "...", "created": "...Z",
     "public_key": "<b64 Ed25519>",
     "kdf": {"name": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": "<b64>"},
     "cipher": {"name": "aes-256-gcm", "nonce": "<b64>", "ciphertext": "<b64 key+tag>"}}

The key is encrypted with AES-256-GCM under scrypt(passphrase); every header field is bound as
associated data, so changing any of them fails decryption. A file that parses but is not in
canonical form is refused as well, so *every* single-byte change is detected.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import secrets
import stat
import unicodedata
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from offswitch.crypto.keys import MasterKey
from offswitch.errors import KeystoreError, WrongPassphrase
from offswitch.fsutil import atomic_write_text

FORMAT = "offswitch-keystore"
VERSION = 1
DEFAULT_SCRYPT = {"n": 2**17, "r": 8, "p": 1}
# For tests only: fast and weak. Never use for a real key.
FAST_SCRYPT = {"n": 2**4, "r": 8, "p": 1}
MAX_SCRYPT_N = 2**22


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str, path: Path) -> bytes:
    try:
        if not isinstance(text, str):
            raise ValueError
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise KeystoreError(f"keystore {path} is corrupt ({what} is not base64)", "restore it from a backup") from None


def normalize_passphrase(passphrase: str) -> bytes:
    """NFC-normalised UTF-8, so the same passphrase typed on two systems opens the file."""
    if not isinstance(passphrase, str) or passphrase == "":
        raise KeystoreError("empty passphrase", "choose a non-empty passphrase")
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _stretch(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(normalize_passphrase(passphrase))


def _canonical(doc: dict) -> str:
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=True) + "\n"


def _aad(doc: dict) -> bytes:
    header = {k: doc[k] for k in ("format", "version", "key_id", "created", "public_key", "kdf")}
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")


def encrypt_key(key: MasterKey, passphrase: str, scrypt: dict | None = None, created: str | None = None) -> str:
    params = dict(scrypt or DEFAULT_SCRYPT)
    salt = secrets.token_bytes(16)
    nonce = secrets.token_bytes(12)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "key_id": key.key_id,
        "created": created or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "public_key": key.public_key_b64,
        "kdf": {"name": "scrypt", "n": params["n"], "r": params["r"], "p": params["p"], "salt": _b64(salt)},
    }
    wrapping = _stretch(passphrase, salt, params["n"], params["r"], params["p"])
    ciphertext = AESGCM(wrapping).encrypt(nonce, key.raw_bytes_for_keystore(), _aad(doc))
    doc["cipher"] = {"name": "aes-256-gcm", "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}
    return _canonical(doc)


def create_keystore(path: Path | str, passphrase: str, *, force: bool = False, scrypt: dict | None = None) -> MasterKey:
    """Generate a master key and write it, encrypted, to ``path`` (mode 0600, atomically)."""
    path = Path(path)
    if path.is_dir():
        raise KeystoreError(f"{path} is a directory", "give a file path such as keys/alice.key")
    if path.exists() and not force:
        raise KeystoreError(f"keystore {path} already exists", "pass --force to overwrite it (the old key is lost)")
    if not path.parent.exists():
        raise KeystoreError(f"directory {path.parent} does not exist", f"create it first: mkdir -p {path.parent}")
    normalize_passphrase(passphrase)
    key = MasterKey.generate()
    atomic_write_text(path, encrypt_key(key, passphrase, scrypt), mode=0o600)
    return key


def read_header(path: Path | str) -> dict:
    """Parse and validate the public part of a keystore (no passphrase needed)."""
    path = Path(path)
    if not path.exists():
        raise KeystoreError(f"keystore {path} not found", "check the path or create one with `offswitch keygen`")
    if path.is_dir():
        raise KeystoreError(f"{path} is a directory, not a keystore file", "give the path of a .key file")
    try:
        raw = path.read_bytes().decode("utf-8")  # not read_text: its newline translation would hide a "\r"
    except UnicodeDecodeError:
        raise KeystoreError(f"keystore {path} is corrupt (not UTF-8 text)", "restore it from a backup") from None
    except OSError as err:
        raise KeystoreError(f"cannot read keystore {path} ({err.strerror})", "check its permissions") from None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        raise KeystoreError(f"keystore {path} is corrupt or truncated (not valid JSON)", "restore it from a backup") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KeystoreError(f"{path} is not an offswitch keystore", "give the path of a file made by `offswitch keygen`")
    version = doc.get("version")
    if version != VERSION:
        raise KeystoreError(
            f"keystore {path} has unknown format version {version!r} (this offswitch reads version {VERSION})",
            "upgrade offswitch",
        )
    try:
        kdf, cipher = doc["kdf"], doc["cipher"]
        ok = (
            isinstance(doc["key_id"], str)
            and isinstance(doc["created"], str)
            and isinstance(doc["public_key"], str)
            and kdf["name"] == "scrypt"
            and cipher["name"] == "aes-256-gcm"
            and all(isinstance(kdf[k], int) and not isinstance(kdf[k], bool) for k in ("n", "r", "p"))
            and set(doc) == {"format", "version", "key_id", "created", "public_key", "kdf", "cipher"}
            and set(kdf) == {"name", "n", "r", "p", "salt"}
            and set(cipher) == {"name", "nonce", "ciphertext"}
        )
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise KeystoreError(f"keystore {path} is corrupt (missing or malformed fields)", "restore it from a backup")
    n, r, p = kdf["n"], kdf["r"], kdf["p"]
    if n < 2 or n & (n - 1) or n > MAX_SCRYPT_N or not (1 <= r <= 64) or not (1 <= p <= 16):
        raise KeystoreError(f"keystore {path} has invalid scrypt parameters", "restore it from a backup")
    if _canonical(doc) != raw:
        raise KeystoreError(f"keystore {path} was modified (not in canonical form)", "restore it from a backup")
    return doc


def check_permissions(path: Path | str) -> None:
    """Refuse a keystore that others can read, as ssh does with private keys."""
    path = Path(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeystoreError(
            f"keystore {path} is accessible by other users (mode {mode:04o})", f"run: chmod 600 {path}"
        )


def unlock(path: Path | str, passphrase: str) -> MasterKey:
    """Open a keystore. Raises WrongPassphrase or KeystoreError, never a traceback-worthy error."""
    path = Path(path)
    doc = read_header(path)
    check_permissions(path)
    kdf, cipher = doc["kdf"], doc["cipher"]
    salt = _unb64(kdf["salt"], "salt", path)
    nonce = _unb64(cipher["nonce"], "nonce", path)
    ciphertext = _unb64(cipher["ciphertext"], "ciphertext", path)
    if len(nonce) != 12 or len(ciphertext) != 48 or len(salt) < 16:
        raise KeystoreError(f"keystore {path} is corrupt (wrong field lengths)", "restore it from a backup")
    wrapping = _stretch(passphrase, salt, kdf["n"], kdf["r"], kdf["p"])
    try:
        raw = AESGCM(wrapping).decrypt(nonce, ciphertext, _aad(doc))
    except InvalidTag:
        raise WrongPassphrase(
            f"wrong passphrase for keystore {path} (or the file was tampered with)",
            "check OFFSWITCH_PASSPHRASE / --passphrase-file",
        ) from None
    key = MasterKey(raw)
    if key.key_id != doc["key_id"] or key.public_key_b64 != doc["public_key"]:
        raise KeystoreError(f"keystore {path} is inconsistent (key id does not match the key)", "restore it from a backup")
    return key
