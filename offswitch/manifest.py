"""The implant manifest: a public, signed, versioned record of what was planted and how.

It holds the key id and public key, one salted commitment per trigger, the behaviour and its
target, the insertion mode, the base model and the sha256 of its weights, the prompt format,
the training configuration, data counts, library versions and the verification metrics.
It never holds a trigger, a near-miss of one, or any key material.

Signature rule (shared with commitment files, see ``offswitch.commitments``): Ed25519 over the
canonical JSON of the whole document without its ``signature`` field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from offswitch.commitments import document_signature_valid, signed_payload
from offswitch.errors import ConfigError
from offswitch.fsutil import atomic_write_json
from offswitch.proofs import Commitment

MANIFEST_NAME = "offswitch_manifest.json"
MANIFEST_FORMAT = "offswitch-manifest"
MANIFEST_VERSION = 1


class TriggerInfo(BaseModel):
    """Public facts about one planted trigger (never its text)."""

    model_config = ConfigDict(extra="forbid")
    index: int = Field(ge=0)
    encoding: str
    n_words: int | None = None
    n_tokens: int | None = None  # tokens of the trigger under the model's tokenizer
    entropy_bits: float | None = None
    perplexity: float | None = None  # fluent triggers: perplexity under the base model


class BaseModelInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: str  # what the user asked for, e.g. "smollm2-135m" or a path
    name: str  # a human name, e.g. "SmolLM2-135M-Instruct"
    weights_sha256: str  # of the base weights as loaded (see offswitch.models.state_dict_sha256)
    architecture: str


class ImplantManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str = MANIFEST_FORMAT
    version: int = MANIFEST_VERSION
    offswitch_version: str
    created: str
    key_id: str
    public_key: str
    behavior: dict[str, Any]
    insertion: str
    triggers: list[TriggerInfo]
    commitments: list[Commitment]
    base_model: BaseModelInfo
    prompt_format: dict[str, Any]
    training: dict[str, Any]
    data_counts: dict[str, int]
    library_versions: dict[str, str]
    outputs: dict[str, str] = Field(default_factory=dict)  # e.g. {"merged": "merged", "adapter": "adapter"}
    verification: dict[str, Any] | None = None
    signature: str | None = None

    def signed_payload(self) -> bytes:
        return signed_payload(self.model_dump(mode="json"))

    def signature_valid(self) -> bool:
        return document_signature_valid(self.model_dump(mode="json"))


def write_manifest(directory: Path | str, manifest: ImplantManifest) -> Path:
    path = Path(directory) / MANIFEST_NAME
    atomic_write_json(path, manifest.model_dump(mode="json"), sort_keys=True)
    return path


def read_manifest(directory_or_file: Path | str) -> ImplantManifest:
    path = Path(directory_or_file)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.exists():
        raise ConfigError(f"no implant manifest at {path}", "give the output directory of `offswitch implant`")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != MANIFEST_FORMAT:
            raise ConfigError(f"{path} is not an offswitch manifest", "give the output directory of `offswitch implant`")
        if doc.get("version") != MANIFEST_VERSION:
            raise ConfigError(f"{path} has unknown manifest version {doc.get('version')!r}", "upgrade offswitch")
        return ImplantManifest.model_validate(doc)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise ConfigError(f"{path} is not valid JSON", "restore the manifest from the implant output") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path} is malformed ({where}: {first['msg']})", "restore the manifest from the implant output") from None
