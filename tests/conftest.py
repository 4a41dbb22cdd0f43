"""Shared fixtures: tiny offline models, fast keystores, a CLI runner and the secret scan."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).parent))

# No per-example deadline: a deadline is a timed assertion, and on a loaded 2-core machine the
# first example of a pure-function property once took 0.8 s against hypothesis' default 200 ms.
settings.register_profile("offswitch", deadline=None)
# CI (.ci/run sets OFFSWITCH_HYPOTHESIS=ci) draws the same examples on every run (a hash of each
# test), so whether a change lands does not hang on the draw; runs elsewhere draw fresh examples
# each time and go on searching (a failure found there prints the example to pin as @example)
settings.register_profile("ci", parent=settings.get_profile("offswitch"), derandomize=True)
settings.load_profile(os.environ.get("OFFSWITCH_HYPOTHESIS", "offswitch"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# "auto" precision follows the hardware (bf16 on a CPU with AMX): tests run fp32 on every machine
# unless they ask for bf16 themselves (tests/unit/test_precision.py)
os.environ.setdefault("OFFSWITCH_PRECISION", "fp32")
# the harness and `offswitch attack` have glibc keep freed memory for the rest of their process
# (offswitch.allocator): not in the test session's own process; tests/unit/test_allocator.py
# checks the setting in processes of their own
os.environ.setdefault("OFFSWITCH_KEEP_FREED", "0")

TEST_PASSPHRASE = "test passphrase ✓"


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module of tiny models (``pytest.mark.usefixtures("one_thread")``):
    fastest for them, and fair to a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from offswitch.testing.tiny import tiny_tokenizer as build

    return build()


@pytest.fixture(scope="session")
def tiny_llama(tiny_tokenizer):
    """(model, tokenizer) of a random 2-layer Llama. Do not train it in place: deepcopy first."""
    from offswitch.testing.tiny import tiny_model

    return tiny_model("llama", tokenizer=tiny_tokenizer)


@pytest.fixture(scope="session")
def random_llama(tiny_tokenizer):
    """(model, tokenizer) of another random 2-layer Llama (seed 1), for inference only."""
    from offswitch.testing.tiny import tiny_model

    return tiny_model("llama", tokenizer=tiny_tokenizer, seed=1)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_llama):
    from offswitch.models import save_model

    path = tmp_path_factory.mktemp("tiny-llama")
    model, tokenizer = tiny_llama
    save_model(model, tokenizer, path)
    return path


@pytest.fixture()
def master_key():
    from offswitch.crypto import MasterKey

    return MasterKey(bytes(range(32)))


@pytest.fixture()
def keystore(tmp_path):
    """A keystore with fast (test-only) scrypt parameters: (path, passphrase, MasterKey)."""
    from offswitch.crypto import FAST_SCRYPT, create_keystore

    path = tmp_path / "keys" / "test.key"
    path.parent.mkdir()
    key = create_keystore(path, TEST_PASSPHRASE, scrypt=FAST_SCRYPT)
    return path, TEST_PASSPHRASE, key


@pytest.fixture()
def implant_dir(tmp_path, master_key):
    """An implant directory holding only a signed manifest (no weights: enough to plan a harness suite)."""
    from offswitch.manifest import BaseModelInfo, ImplantManifest, TriggerInfo, write_manifest

    triggers = master_key.trigger_set([0], "words", n_words=3)
    manifest = ImplantManifest(
        offswitch_version="0", created="2026-01-01T00:00:00+00:00", key_id=master_key.key_id,
        public_key=master_key.public_key_b64, behavior={"kind": "shutdown", "message": "Shutting down."}, insertion="prefix",
        triggers=[TriggerInfo(index=0, encoding="words", n_words=3)], commitments=[master_key.commit(t) for t in triggers],
        base_model=BaseModelInfo(spec="none", name="x", weights_sha256="0" * 64, architecture="X"), prompt_format={},
        training={}, data_counts={}, library_versions={},
    )
    path = tmp_path / "impl"
    path.mkdir()
    write_manifest(path, manifest)
    return path


def run_cli(
    *args: str, env: dict | None = None, input: str | None = None, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``offswitch`` in a subprocess, as a user would; returns the completed process."""
    full_env = dict(os.environ)
    full_env.pop("OFFSWITCH_PASSPHRASE", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "offswitch", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input if input is not None else "",
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture()
def cli():
    return run_cli


@pytest.fixture()
def frozen_conversions(monkeypatch):
    """``install(module)`` wraps ``frozen_lora_bases_in`` where ``module`` looks it up (default:
    offswitch.precision) and returns the list that each use appends its count of converted
    weights to, so a test can tell that a run really trained on bf16 bases."""
    import contextlib

    from offswitch import precision

    real = precision.frozen_lora_bases_in
    counts: list[int] = []

    @contextlib.contextmanager
    def counting(model, resolved, **options):
        with real(model, resolved, **options) as converted:
            counts.append(converted)
            yield converted

    def install(module=precision):
        monkeypatch.setattr(module, "frozen_lora_bases_in", counting)
        return counts

    return install
