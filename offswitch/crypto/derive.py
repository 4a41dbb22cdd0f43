"""Versioned HKDF derivations from a master key. Frozen: see tests/unit/test_derivation_kat.py.

    seed_i   = HKDF-SHA256(ikm=key, salt=none, info="offswitch/v1/trigger/<i>/<encoding>", L=32)
    signing  = HKDF-SHA256(ikm=key, salt=none, info="offswitch/v1/signing-key", L=32) -> Ed25519
    trigger_i = encode_<encoding>(seed_i)   (offswitch.triggers)

Each seed is an independent pseudorandom value: knowing seed_i (or trigger_i) tells nothing
about seed_j or the key.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from offswitch.triggers import DERIVATION_VERSION, Encoding

TRIGGER_INFO = "offswitch/{version}/trigger/{index}/{encoding}"
SIGNING_INFO = "offswitch/{version}/signing-key"


def hkdf(key: bytes, info: str, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info.encode("utf-8")).derive(key)


def trigger_seed(key: bytes, index: int, encoding: Encoding | str) -> bytes:
    if index < 0:
        raise ValueError("trigger index must be >= 0")
    encoding = Encoding(encoding)
    info = TRIGGER_INFO.format(version=DERIVATION_VERSION, index=index, encoding=encoding.value)
    return hkdf(key, info)


def signing_seed(key: bytes) -> bytes:
    return hkdf(key, SIGNING_INFO.format(version=DERIVATION_VERSION))
