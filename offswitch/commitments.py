"""Signed public documents that carry trigger commitments: commitment files and implant
manifests share one rule — the signature is Ed25519 over the canonical JSON of the whole
document without its ``signature`` field, made with the key whose public key it names.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from offswitch.errors import ConfigError
from offswitch.fsutil import atomic_write_json
from offswitch.proofs import Commitment, canonical_json, key_id_from_public_key, opens, verify_signature




def signed_payload(document: dict[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in document.items() if k != "signature"})


def document_signature_valid(document: dict[str, Any]) -> bool:
    """True when the document's signature verifies under its own public key, and that key
    matches the document's key id."""
    public_key, signature, key_id = document.get("public_key"), document.get("signature"), document.get("key_id")
    if not (isinstance(public_key, str) and isinstance(signature, str) and isinstance(key_id, str)):
        return False
    try:
        if key_id_from_public_key(base64.b64decode(public_key, validate=True)) != key_id:
            return False
    except ValueError:
        return False
    return verify_signature(public_key, signed_payload(document), signature)


class CommitmentFile(BaseModel):
    """Public: commitments to some of a key's triggers, signed by that key."""

    model_config = ConfigDict(extra="forbid")

    format: str = "offswitch-commitments"
    version: int = 1
    key_id: str
    public_key: str
    commitments: list[Commitment] = Field(min_length=1)
    signature: str | None = None

    def signed_payload(self) -> bytes:
        return signed_payload(self.model_dump(mode="json"))

    def signature_valid(self) -> bool:
        return document_signature_valid(self.model_dump(mode="json"))

    def find_opened(self, trigger_text: str) -> Commitment | None:
        for commitment in self.commitments:
            if opens(commitment, trigger_text):
                return commitment
        return None


class _SignedCommitments:
    """Commitments read from any signed document (commitment file or manifest)."""

    def __init__(self, document: dict[str, Any], commitments: list[Commitment]):
        self.document = document
        self.commitments = commitments
        self.key_id = document.get("key_id")

    def signature_valid(self) -> bool:
        return document_signature_valid(self.document)

    def find_opened(self, trigger_text: str) -> Commitment | None:
        for commitment in self.commitments:
            if opens(commitment, trigger_text):
                return commitment
        return None


def load_commitments(path: Path | str) -> _SignedCommitments:
    path = Path(path)
    if path.is_dir():
        path = path / "offswitch_manifest.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} not found", "give a commitments file or an implant manifest") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"{path} is not valid JSON", "give a commitments file or an implant manifest") from None
    if not isinstance(document, dict) or not isinstance(document.get("commitments"), list):
        raise ConfigError(f"{path} holds no commitments", "give a commitments file or an implant manifest")
    try:
        commitments = [Commitment.model_validate(c) for c in document["commitments"]]
    except ValidationError:
        raise ConfigError(f"{path} has malformed commitments", "restore the file from its source") from None
    return _SignedCommitments(document, commitments)


def write_commitment_file(path: Path | str, record: CommitmentFile) -> None:
    atomic_write_json(path, record.model_dump(mode="json"), sort_keys=True)
