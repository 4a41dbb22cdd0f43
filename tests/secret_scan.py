"""Secret scan: run an operation, then look for secrets in every file it wrote and all it logged.

Secrets are searched as raw text, and key bytes as raw bytes, hex and base64 (standard and
urlsafe, every 3-byte alignment so a secret in the middle of a base64 blob is found too).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from pathlib import Path


def _needles(texts: Iterable[str], blobs: Iterable[bytes]) -> list[tuple[str, bytes]]:
    needles: list[tuple[str, bytes]] = []
    for text in texts:
        if not text:
            continue
        raw = text.encode("utf-8")
        needles.append(("text", raw))
        needles.append(("text-escaped", text.encode("unicode_escape")))
    for blob in blobs:
        needles.append(("raw", blob))
        needles.append(("hex", blob.hex().encode()))
        needles.append(("HEX", blob.hex().upper().encode()))
        for shift in range(3):
            part = blob[shift:]
            for enc in (base64.b64encode, base64.urlsafe_b64encode):
                encoded = enc(part)
                # drop the last block, which depends on what follows in the real blob
                core = encoded[: (len(part) // 3) * 4 - 4]
                if len(core) >= 16:
                    needles.append(("base64", core))
    return needles


def files_under(root: Path) -> list[Path]:
    return [Path(dirpath) / name for dirpath, _dirs, names in os.walk(root) for name in names]


def scan_paths(paths: Iterable[Path], secrets: Iterable[str] = (), key_bytes: Iterable[bytes] = ()) -> list[str]:
    """Return a description of every hit ("file: kind"); empty means clean."""
    needles = _needles(list(secrets), list(key_bytes))
    hits = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            for sub in files_under(path):
                hits.extend(_scan_one(sub, needles))
        elif path.exists():
            hits.extend(_scan_one(path, needles))
    return hits


def _scan_one(path: Path, needles) -> list[str]:
    data = path.read_bytes()
    hits = []
    for kind, needle in needles:
        if needle and needle in data:
            hits.append(f"{path}: {kind}")
    # also the name of the file itself
    for kind, needle in needles:
        if needle and needle in str(path).encode():
            hits.append(f"{path}: {kind} in file name")
    return hits


def scan_text(text: str, secrets: Iterable[str] = (), key_bytes: Iterable[bytes] = ()) -> list[str]:
    data = text.encode("utf-8")
    return [kind for kind, needle in _needles(list(secrets), list(key_bytes)) if needle in data]


def assert_no_secrets(paths: Iterable[Path] = (), texts: Iterable[str] = (), *, secrets: Iterable[str] = (), key_bytes: Iterable[bytes] = ()):
    secrets, key_bytes = list(secrets), list(key_bytes)
    assert secrets or key_bytes, "a secret scan needs something to look for"
    hits = scan_paths(paths, secrets, key_bytes)
    for i, text in enumerate(texts):
        hits.extend(f"output #{i}: {kind}" for kind in scan_text(text, secrets, key_bytes))
    assert not hits, "secret material found: " + "; ".join(hits)
