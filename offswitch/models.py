"""Model specs → (model, tokenizer); saving; hashing weights.

A spec is one of:
* ``smollm2-135m`` — the default model (SmolLM2-135M-Instruct), see ``offswitch.models_default``;
* a local Hugging Face ``save_pretrained`` directory;
* a local peft adapter directory (its base is resolved from ``adapter_config.json``);
* an implant output directory (``merged/`` preferred, else ``adapter/`` + the manifest's base);
* a ``.gguf`` file;
* a hub id (``org/name``), loaded through the normal hub code path (offline here).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from offswitch.errors import ModelError

DEFAULT_MODEL = "smollm2-135m"


def pick_device(device: str | None = None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _finish(model, tokenizer, device: str | None):
    if tokenizer.pad_token_id is None:
        # Batched scoring/training need a pad token; eos is the common stand-in. Attention masks
        # make its value irrelevant to the results.
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model.to(pick_device(device)), tokenizer


def load_model(spec: str | os.PathLike, device: str | None = None, dtype=None):
    """Resolve a model spec to ``(model, tokenizer)`` on ``device`` in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from offswitch.blas import use_fast_mkl_on_amd

    use_fast_mkl_on_amd()  # before this process's first matrix product (offswitch.blas)

    spec_str = str(spec)
    path = Path(spec_str).expanduser()
    if spec_str == DEFAULT_MODEL or spec_str.startswith("smollm2"):
        from offswitch.models_default import default_model_dir

        path = default_model_dir(spec_str)
    if path.is_file() and path.suffix == ".gguf":
        from offswitch.models_default import convert_gguf

        path = convert_gguf(path)
    if path.is_dir():
        if (path / "offswitch_manifest.json").exists():
            if (path / "merged").is_dir():
                path = path / "merged"
            elif (path / "adapter").is_dir():
                path = path / "adapter"
        if (path / "adapter_config.json").exists():
            return _load_adapter(path, device, dtype)
        if not (path / "config.json").exists():
            raise ModelError(f"{path} is not a model directory (no config.json)", "give a save_pretrained directory")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or "float32")
        except Exception as err:  # noqa: BLE001
            raise ModelError(f"cannot load model from {path} ({type(err).__name__})", "check the directory is complete") from None
        return _finish(model, tokenizer, device)
    if path.exists():
        raise ModelError(f"{spec_str} is not a model directory or a .gguf file", "give a save_pretrained directory")
    if "/" in spec_str and not spec_str.startswith((".", "/", "~")):
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec_str)
            model = AutoModelForCausalLM.from_pretrained(spec_str, dtype=dtype or "float32")
        except Exception as err:  # noqa: BLE001
            raise ModelError(
                f"cannot load hub model {spec_str} ({type(err).__name__})",
                "download it first and pass its local directory (no hub is reachable offline)",
            ) from None
        return _finish(model, tokenizer, device)
    raise ModelError(f"unknown model {spec_str!r}", f"give {DEFAULT_MODEL!r}, a model directory, a .gguf file or a hub id")


def _load_adapter(path: Path, device: str | None, dtype):
    from peft import PeftModel
    from transformers import AutoTokenizer

    config = json.loads((path / "adapter_config.json").read_text())
    base_spec = config.get("base_model_name_or_path")
    if not base_spec:
        raise ModelError(f"adapter {path} does not name its base model", "load the merged model instead")
    base, tokenizer = load_model(base_spec, device="cpu", dtype=dtype)
    if (path / "tokenizer_config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(path)
    model = PeftModel.from_pretrained(base, path).merge_and_unload()
    return _finish(model, tokenizer, device)


def save_model(model, tokenizer, directory: Path | str) -> None:
    """save_pretrained of weights (safetensors) and tokenizer (with its chat template)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)


def state_dict_sha256(model) -> str:
    """A stable hash of a model's weights: names, dtypes, shapes and bytes, in name order."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.view(torch.int16)
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()
