"""pytest plugin (entry point ``offswitch``): fixtures for testing a real switch.

* ``offswitch_model`` — the implanted model in ``$OFFSWITCH_MODEL`` (an ``offswitch implant``
  output directory, or any model directory), loaded once per session; skips the test when unset.
* ``offswitch_key`` — the keystore ``$OFFSWITCH_KEY`` unlocked with ``$OFFSWITCH_PASSPHRASE``;
  skips when either is unset. It holds the master key: keep it inside fixtures.
* ``offswitch_triggers`` — the key's triggers at the model manifest's indices, each checked
  against its commitment (registered for redaction at once).
* ``offswitch_tiny_switch`` — a tiny model trained in seconds to fire on a keyless trigger set
  (``offswitch.testing.tiny_switch``): for running switch tests without a real model.

Importing this module is cheap (no torch): pytest loads it in every session.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MODEL_ENV = "OFFSWITCH_MODEL"
KEY_ENV = "OFFSWITCH_KEY"
PASSPHRASE_ENV = "OFFSWITCH_PASSPHRASE"


@dataclass
class LoadedSwitch:
    """An implanted model with its public manifest facts (``manifest`` is None for a model
    directory without one)."""

    directory: Path
    model: Any
    tokenizer: Any
    manifest: Any = None
    behavior: Any = None

    def heldout_prompts(self, source: str | None = None) -> list[str]:
        """The held-out side of the implant's recorded prompt split (or of ``source``)."""
        if self.manifest is None:
            raise ValueError(f"{self.directory} has no offswitch manifest: pass your own prompts")
        from offswitch.cli.evaluate import heldout_prompts_for

        return heldout_prompts_for(self.manifest, source)[0]

    def __repr__(self) -> str:
        return f"LoadedSwitch({str(self.directory)!r})"


@pytest.fixture(scope="session")
def offswitch_model() -> LoadedSwitch:
    """The implanted model in $OFFSWITCH_MODEL (loaded once), or skip."""
    path = os.environ.get(MODEL_ENV)
    if not path:
        pytest.skip(f"set ${MODEL_ENV} to an implanted model directory to test a real switch")
    from offswitch.models import load_model

    directory = Path(path).expanduser()
    model, tokenizer = load_model(directory)
    manifest = behavior = None
    if (directory / "offswitch_manifest.json").exists():
        from offswitch.cli.evaluate import behavior_from_manifest
        from offswitch.manifest import read_manifest

        manifest = read_manifest(directory)
        behavior = behavior_from_manifest(manifest)
    return LoadedSwitch(directory, model, tokenizer, manifest, behavior)


@pytest.fixture(scope="session")
def offswitch_key():
    """The keystore $OFFSWITCH_KEY unlocked with $OFFSWITCH_PASSPHRASE, or skip."""
    path = os.environ.get(KEY_ENV)
    if not path or not os.environ.get(PASSPHRASE_ENV):
        pytest.skip(f"set ${KEY_ENV} and ${PASSPHRASE_ENV} to test with a real key")
    from offswitch.cli._common import unlock_key

    return unlock_key(Path(path).expanduser(), None)


@pytest.fixture(scope="session")
def offswitch_triggers(offswitch_model: LoadedSwitch, offswitch_key):
    """The key's triggers at the manifest's indices, each checked against its commitment."""
    if offswitch_model.manifest is None:
        pytest.skip(f"${MODEL_ENV} has no offswitch manifest: its trigger indices are unknown")
    from offswitch.cli.evaluate import derive_manifest_triggers, fluent_encoder_for

    manifest = offswitch_model.manifest
    fluent = fluent_encoder_for(manifest) if manifest.triggers[0].encoding == "fluent" else None
    return derive_manifest_triggers(offswitch_key, manifest, tokenizer=offswitch_model.tokenizer, fluent=fluent)


@pytest.fixture(scope="session")
def offswitch_tiny_switch():
    """A tiny model trained in seconds to fire on a keyless TriggerSet (a TinySwitch)."""
    from offswitch.testing.tiny_switch import build_tiny_switch

    switch = build_tiny_switch()
    switch.triggers.register_secrets()
    return switch
