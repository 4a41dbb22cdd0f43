"""Public-side proofs: opening a commitment and checking a signature.

Nothing here needs or touches a master key, so any module may import it. Creating
commitments and signatures is ``offswitch.crypto``'s job.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

COMMITMENT_SCHEME = "sha256(salt||utf8(trigger))"


class Commitment(BaseModel):
    """``SHA-256(salt ‖ trigger)``: binds a trigger without revealing it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0)
    encoding: str
    salt: str  # hex, 16 bytes
    digest: str  # hex sha256
    scheme: str = COMMITMENT_SCHEME


def commitment_digest(salt: bytes, trigger_text: str) -> str:
    return hashlib.sha256(salt + trigger_text.encode("utf-8")).hexdigest()


def opens(commitment: Commitment, trigger_text: str) -> bool:
    """True when ``trigger_text`` is the string committed to (constant-time comparison)."""
    try:
        salt = bytes.fromhex(commitment.salt)
    except ValueError:
        return False
    return hmac.compare_digest(commitment_digest(salt, trigger_text), commitment.digest)


def canonical_json(payload: Any) -> bytes:
    """The bytes that get signed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def verify_signature(public_key_b64: str, message: bytes, signature_b64: str) -> bool:
    """Check an Ed25519 signature made by a key holder over ``message``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        public_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64, validate=True))
        public_key.verify(base64.b64decode(signature_b64, validate=True), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def key_id_from_public_key(public_key_raw: bytes) -> str:
    """The public fingerprint of a key: first 16 hex of SHA-256 of its Ed25519 public key."""
    return hashlib.sha256(b"offswitch/v1/key-id\0" + public_key_raw).hexdigest()[:16]
