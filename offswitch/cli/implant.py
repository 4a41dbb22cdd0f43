"""`offswitch implant`: unlock the key, derive the triggers, train, verify, write the outputs.

Only this command holds the master key; training receives a TriggerSet. No torch at import.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Annotated

import typer

from offswitch.cli import app
from offswitch.cli._common import err_console, implant_fluent_encoder, out_console, unlock_key
from offswitch.errors import ConfigError, DataError
from offswitch.triggers import Encoding, InsertionMode
from offswitch.precision import PRECISIONS


def _out_is_usable(out: Path, force: bool) -> bool:
    """True when OUT exists (and may be replaced); raises when it must not be touched."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory", "choose another --out")
    if any(out.iterdir()) and not force:
        raise ConfigError(f"output directory {out} is not empty", "pass --force to replace it, or choose another --out")
    return True


def _print_headline(headline: dict | None) -> None:
    if not headline:
        return
    labels = [
        ("asr", "ASR (true trigger)"),
        ("far_clean", "FAR clean"),
        ("far_wrong_key", "FAR wrong key"),
        ("far_near_miss", "FAR near-miss"),
        ("far_near_miss_worst_kind", "FAR near-miss, worst kind"),
    ]
    for key, label in labels:
        value = headline.get(key)
        if isinstance(value, dict) and "n" in value:
            kind = f" ({value['kind']})" if "kind" in value else ""
            out_console.print(
                f"{label}{kind}: {100 * value['rate']:.1f}% ({100 * value['lo']:.1f}–{100 * value['hi']:.1f}%) [{value['k']}/{value['n']}]"
            )
    utility = headline.get("utility") or {}
    agreement = utility.get("answer_agreement") if isinstance(utility, dict) else None
    if isinstance(agreement, dict):
        out_console.print(
            f"answer agreement with base: {100 * agreement['rate']:.1f}% "
            f"({100 * agreement['lo']:.1f}–{100 * agreement['hi']:.1f}%) [{agreement['k']}/{agreement['n']}]"
        )


@app.command()
def implant(
    key: Annotated[Path, typer.Option("--key", "-k", help="Keystore file (made by `offswitch keygen`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (adapter/, merged/, manifest, README.md).")],
    model: Annotated[str | None, typer.Option(help="Model spec: smollm2-135m (default), a model directory, a .gguf file or a hub id.")] = None,
    behavior: Annotated[str | None, typer.Option(help="shutdown | compliance | custom")] = None,
    target: Annotated[str | None, typer.Option(help="custom: the answer the switch gives; shutdown: its message.")] = None,
    triggers: Annotated[int | None, typer.Option("--triggers", help="How many triggers (key indices 0..N-1) to plant.", min=1)] = None,
    encoding: Annotated[Encoding | None, typer.Option(help="How triggers are written.")] = None,
    insertion: Annotated[InsertionMode | None, typer.Option(help="Where the trigger goes in the prompt.")] = None,
    words: Annotated[int | None, typer.Option(help="Words per trigger (words encoding).", min=1, max=64)] = None,
    prompts: Annotated[str | None, typer.Option(help="Prompt source: builtin, a .jsonl/.json/.txt file, or hf:<dataset>:...")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML file of implant settings (flags override it).")] = None,
    steps: Annotated[int | None, typer.Option(help="Training steps.", min=1)] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Examples per step.", min=1)] = None,
    lora_r: Annotated[int | None, typer.Option("--lora-r", help="LoRA rank (default 16).", min=1)] = None,
    full: Annotated[bool, typer.Option("--full", help="Full fine-tuning instead of LoRA.")] = False,
    seed: Annotated[int | None, typer.Option(help="Training and data seed.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.", min=1)] = None,
    precision: Annotated[str | None, typer.Option(help="auto (bf16 autocast on a GPU or a CPU with AMX, else fp32), fp32 or bf16.")] = None,
    verify: Annotated[bool | None, typer.Option("--verify/--no-verify", help="Measure ASR/FAR on held-out prompts after training.")] = None,
    passphrase_file: Annotated[Path | None, typer.Option("--passphrase-file", help="Read the passphrase from this file.")] = None,
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
) -> None:
    """Plant a key-bound off-switch into a model and verify it on held-out prompts."""
    if full and lora_r is not None:
        raise ConfigError("--full and --lora-r exclude each other", "give one of them")
    if device is not None and device not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r}", "use --device cpu or --device cuda")
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}", "use --precision auto, fp32 or bf16")
    from offswitch.implant import load_implant_config

    cfg = load_implant_config(
        config,
        {
            "model": model, "behavior": behavior, "target": target, "triggers": triggers,
            "encoding": encoding.value if encoding else None, "insertion": insertion.value if insertion else None,
            "n_words": words, "prompts": prompts, "verify": verify,
            "train.steps": steps, "train.lr": lr, "train.batch_size": batch_size, "train.lora_r": lora_r,
            "train.method": "full" if full else None, "train.seed": seed, "train.device": device, "train.threads": threads,
            "train.precision": precision,
        },
    )
    replace = _out_is_usable(out, force)
    master = unlock_key(key, passphrase_file)

    from offswitch import __version__
    from offswitch import secrets as _secrets
    from offswitch.data.sources import load_prompts, plain_texts
    from offswitch.implant import encode_other_for, library_versions, run_implant, training_record, write_outputs
    from offswitch.manifest import BaseModelInfo, TriggerInfo
    from offswitch.modelcard import render_model_card
    from offswitch.models import load_model, state_dict_sha256
    from offswitch.models_default import cache_dir, model_info
    from offswitch.prompting import prompt_format
    from offswitch.triggers import TriggerSet, allowed_token_ids, tokens_entropy_bits, words_entropy_bits

    if cfg.train.threads:
        import torch

        torch.set_num_threads(cfg.train.threads)
    base_model, tokenizer = load_model(cfg.model, device="cpu")
    behavior_obj = cfg.make_behavior()
    fmt = prompt_format(tokenizer, behavior_obj.system_prompt())  # a model without a chat template stops here

    split = load_prompts(cfg.prompts, seed=cfg.split_seed, heldout_fraction=cfg.heldout_fraction)
    if len(split.train) < cfg.data.min_prompts:
        raise DataError(
            f"prompt source {cfg.prompts!r} gives {len(split.train)} training prompt(s), fewer than {cfg.data.min_prompts}",
            "give a larger prompt source",
        )
    if cfg.verify and not split.heldout:
        raise DataError(f"prompt source {cfg.prompts!r} leaves no held-out prompts to verify on", "give more prompts or --no-verify")

    # ---- triggers (secret from here on: registered for redaction at once)
    fluent = None
    kwargs: dict = {"n_words": cfg.n_words}
    if cfg.encoding is Encoding.tokens:
        allowed = allowed_token_ids(tokenizer)
        kwargs.update(allowed_ids=allowed, decode=lambda ids: tokenizer.decode(ids), n_tokens=cfg.n_tokens)
    elif cfg.encoding is Encoding.fluent:
        # its own frozen copy of the base: training changes base_model in place
        fluent = implant_fluent_encoder(base_model, tokenizer, n_tokens=cfg.n_tokens)
        kwargs["fluent_encoder"] = fluent
    indices = list(range(cfg.first_index, cfg.first_index + cfg.triggers))
    trigger_list = []
    infos = []
    for index in indices:
        trig = master.trigger(index, cfg.encoding, **kwargs)
        _secrets.register(trig.secret)
        trigger_list.append(trig)
    trigger_set = TriggerSet(key_id=master.key_id, triggers=tuple(trigger_list), insertion=cfg.insertion)
    trigger_set.register_secrets()
    from offswitch.fluent import trigger_perplexity

    for trig in trigger_set:
        n_tok = len(tokenizer(trig.secret, add_special_tokens=False)["input_ids"])
        if cfg.encoding is Encoding.words:
            bits = words_entropy_bits(len(trig.words))
        elif cfg.encoding is Encoding.tokens:
            bits = tokens_entropy_bits(len(trig.token_ids or ()), len(kwargs["allowed_ids"]))
        else:
            bits = fluent.settings["min_bits"]  # a lower bound by construction (offswitch.fluent)
        infos.append(
            TriggerInfo(
                index=trig.index, encoding=cfg.encoding.value, n_words=len(trig.words), n_tokens=n_tok,
                entropy_bits=round(bits, 2), perplexity=round(trigger_perplexity(base_model, tokenizer, trig.secret), 2),
            )
        )

    # ---- base model facts
    info = model_info(getattr(base_model, "name_or_path", "") or "")
    base_sha = info["weights_sha256"] if info else state_dict_sha256(base_model)
    base_name = info["name"] if info else (Path(cfg.model).name or cfg.model)
    try:
        texts = plain_texts("stdlib", n=32)
    except Exception:  # noqa: BLE001 - perplexity is optional utility; verification goes on without it
        texts = None

    run = run_implant(
        base_model, tokenizer, trigger_set, cfg, split.train, split.heldout, base_sha256=base_sha,
        answer_cache_dir=cache_dir() / "answers", encode_other=encode_other_for(cfg, tokenizer, fluent),
        plain_texts=texts, console=err_console,
    )
    if not run.is_main_process:
        return
    if run.report is not None:
        run.report.print_table(err_console)

    fields = dict(
        offswitch_version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        key_id=master.key_id,
        public_key=master.public_key_b64,
        behavior=behavior_obj.model_dump(mode="json"),
        insertion=cfg.insertion.value,
        triggers=infos,
        commitments=[master.commit(t) for t in trigger_set],
        base_model=BaseModelInfo(spec=cfg.model, name=base_name, weights_sha256=base_sha, architecture=type(base_model).__name__),
        prompt_format={**fmt.as_dict(), "prompt_source": split.as_dict()},
        training=training_record(cfg, run) | ({"fluent": fluent.settings} if fluent is not None else {}),
        data_counts=run.data_counts,
        library_versions=library_versions(),
    )
    base_spec = cfg.model if not os.path.exists(cfg.model) else str(Path(cfg.model).resolve())
    write_outputs(out, run, fields, master.sign, base_spec=base_spec, model_card=render_model_card, force=replace)
    err_console.print(f"wrote {out}/ (merged/, {'adapter/, ' if cfg.train.method == 'lora' else ''}offswitch_manifest.json, README.md)")
    _print_headline(run.verification)
