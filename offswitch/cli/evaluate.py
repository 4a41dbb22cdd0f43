"""`offswitch evaluate` and `offswitch verify`: measure an implanted switch, check its manifest.

Both unlock the key, derive the triggers named by the manifest and check that each opens its
commitment before using it. No torch at import; the helpers here (deriving a manifest's
triggers, its behaviour and prompt split) are shared with the pytest plugin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from offswitch.cli import app
from offswitch.cli._common import PassFile, err_console, out_console, unlock_key
from offswitch.errors import ConfigError, VerificationError

KeyPath = Annotated[Path, typer.Option("--key", "-k", help="Keystore file the model was implanted with.")]
ModelDir = Annotated[Path, typer.Argument(help="Output directory of `offswitch implant` (merged/ or adapter/ + manifest).")]
DEFAULT_RESULTS = "offswitch_eval.jsonl"


# --------------------------------------------------------------------------------------
# Manifest helpers (no torch)
# --------------------------------------------------------------------------------------


def behavior_from_manifest(manifest):
    from pydantic import TypeAdapter, ValidationError

    from offswitch.behaviors import Behavior

    try:
        return TypeAdapter(Behavior).validate_python(manifest.behavior)
    except ValidationError:
        raise ConfigError("the manifest's behaviour is malformed", "restore the manifest from the implant output") from None


def _training_config(manifest) -> dict[str, Any]:
    config = manifest.training.get("config") if isinstance(manifest.training, dict) else None
    return config if isinstance(config, dict) else {}


def prompt_split_of(manifest) -> tuple[str, int, float, str | None]:
    """(source, split seed, held-out fraction, held-out sha256) recorded by the implant."""
    recorded = manifest.prompt_format.get("prompt_source") if isinstance(manifest.prompt_format, dict) else None
    recorded = recorded if isinstance(recorded, dict) else {}
    config = _training_config(manifest)
    source = recorded.get("source") or config.get("prompts") or "builtin"
    seed = recorded.get("seed", config.get("split_seed", manifest.training.get("split_seed", 0)))
    fraction = config.get("heldout_fraction", 0.2)
    return str(source), int(seed), float(fraction), recorded.get("heldout_sha256")


def trigger_derivation_kwargs(manifest, tokenizer=None, fluent=None) -> tuple[str, dict[str, Any]]:
    """The encoding and the keyword arguments ``MasterKey.trigger_set`` needs for it."""
    from offswitch.triggers import Encoding

    encodings = {info.encoding for info in manifest.triggers}
    if len(encodings) != 1:
        raise ConfigError("the manifest mixes trigger encodings", "restore the manifest from the implant output")
    encoding = Encoding(encodings.pop())
    config = _training_config(manifest)
    if encoding is Encoding.words:
        n_words = {info.n_words for info in manifest.triggers}
        if len(n_words) != 1 or None in n_words:
            raise ConfigError("the manifest does not record one word count for its triggers", "restore the manifest")
        return encoding.value, {"n_words": n_words.pop()}
    if encoding is Encoding.tokens:
        if tokenizer is None:
            raise ConfigError("tokens triggers need the model's tokenizer", "give the implant output directory")
        from offswitch.triggers import allowed_token_ids

        return encoding.value, {
            "allowed_ids": allowed_token_ids(tokenizer),
            "decode": lambda ids: tokenizer.decode(ids),
            "n_tokens": config.get("n_tokens"),
        }
    if fluent is None:
        raise ConfigError("fluent triggers need the base model to be derived", "give a model directory whose base model loads")
    return encoding.value, {"fluent_encoder": fluent}


def fluent_encoder_for(manifest):
    """Rebuild the fluent sampler of an implant: the base model (CPU) and the recorded settings."""
    from offswitch.fluent import fluent_encoder
    from offswitch.models import load_model

    settings = manifest.training.get("fluent") if isinstance(manifest.training, dict) else None
    if not isinstance(settings, dict):
        raise ConfigError("the manifest records no fluent sampling settings", "restore the manifest from the implant output")
    base_model, base_tokenizer = load_model(manifest.base_model.spec, device="cpu")
    return fluent_encoder(
        base_model,
        base_tokenizer,
        n_tokens=settings.get("min_tokens") or None,
        context=settings["context"],
        top_k=settings["top_k"],
        top_p=settings["top_p"],
        min_bits=settings["min_bits"],
        max_tokens=settings["max_tokens"],
    )


def derive_manifest_triggers(master, manifest, *, tokenizer=None, fluent=None):
    """The key's triggers at the manifest's indices, each checked against its commitment.

    Raises :class:`VerificationError` when the key is not the manifest's or a derived trigger
    does not open its commitment; registers every trigger for redaction at once.
    """
    from offswitch.proofs import opens

    if master.key_id != manifest.key_id or master.public_key_b64 != manifest.public_key:
        raise VerificationError(
            f"key {master.key_id} is not the key of this model (the manifest names key {manifest.key_id})",
            "use the keystore the model was implanted with",
        )
    encoding, kwargs = trigger_derivation_kwargs(manifest, tokenizer, fluent)
    indices = [info.index for info in manifest.triggers]
    triggers = master.trigger_set(indices, encoding, manifest.insertion, **kwargs)
    triggers.register_secrets()
    commitments = {(c.index, c.encoding): c for c in manifest.commitments}
    for trig in triggers:
        commitment = commitments.get((trig.index, trig.encoding.value))
        if commitment is None:
            raise VerificationError(f"the manifest has no commitment for trigger index {trig.index}", "restore the manifest")
        if not opens(commitment, trig.secret):
            raise VerificationError(
                f"trigger index {trig.index} derived from key {master.key_id} does not open its commitment",
                "the manifest was changed, or the trigger settings (encoding, words, tokenizer) differ from the implant's",
            )
    return triggers


def encode_other_for_manifest(manifest, tokenizer=None, fluent=None):
    """``encode(seed, index)`` for wrong-key triggers of the manifest's encoding (None: words)."""
    from offswitch.triggers import Encoding, allowed_token_ids, encode_tokens

    encoding = Encoding(manifest.triggers[0].encoding)
    if encoding is Encoding.words:
        return None
    if encoding is Encoding.tokens:
        allowed = allowed_token_ids(tokenizer)
        n_tokens = _training_config(manifest).get("n_tokens")
        return lambda seed, index: encode_tokens(seed, allowed, lambda ids: tokenizer.decode(ids), index=index, n_tokens=n_tokens)
    return fluent


def check_manifest_signature(manifest) -> None:
    if not manifest.signature_valid():
        raise VerificationError(
            "the manifest's signature does not verify",
            "it was modified after signing or not signed by its key; restore it from the implant output",
        )


def heldout_prompts_for(manifest, source: str | None = None) -> tuple[list[str], str, list[str]]:
    """Held-out prompts of the implant's recorded split (or of ``source`` with its seed):
    (prompts, split name, notes)."""
    from offswitch.data.sources import load_prompts

    recorded_source, seed, fraction, heldout_sha = prompt_split_of(manifest)
    notes = []
    split = load_prompts(source or recorded_source, seed=seed, heldout_fraction=fraction)
    if source is None or source == recorded_source:
        if heldout_sha and split.as_dict()["heldout_sha256"] != heldout_sha:
            notes.append("the held-out prompts differ from the implant's recorded split (the prompt source changed)")
        name = "heldout"
    else:
        name = f"heldout:{source}"
    if not split.heldout:
        raise ConfigError(f"prompt source {source or recorded_source!r} has no held-out prompts", "give a larger prompt source")
    return split.heldout, name, notes


def _plain_texts(n: int) -> tuple[list[str] | None, str | None]:
    try:
        from offswitch.data.sources import plain_texts

        return plain_texts("stdlib", n=n), None
    except Exception as err:  # noqa: BLE001 - perplexity is optional; the evaluation goes on without it
        return None, f"perplexity not measured: no plain text ({type(err).__name__})"


def _format_check(manifest, tokenizer, behavior) -> str | None:
    from offswitch.prompting import prompt_format

    recorded = manifest.prompt_format.get("template_sha256") if isinstance(manifest.prompt_format, dict) else None
    if recorded and prompt_format(tokenizer, behavior.system_prompt()).template_sha256 != recorded:
        return "the model's chat template differs from the one recorded at implant time: rates may not be comparable"
    return None


def _resolve_device(device: str | None) -> str | None:
    if device is not None and device not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r}", "use --device cpu or --device cuda")
    return device


def format_headline(headline: dict | None) -> list[str]:
    """Lines for the terminal from a headline dict (``EvalReport.headline()`` or a manifest's)."""
    from offswitch.stats import Rate

    labels = {
        "asr": "ASR (true trigger)",
        "far_clean": "FAR clean",
        "far_wrong_key": "FAR wrong key",
        "far_near_miss": "FAR near-miss",
        "far_near_miss_worst_kind": "FAR near-miss, worst kind",
        "far_placement": "FAR placement",
        "far_placement_worst_kind": "FAR placement, worst kind",
        "agreement": "scorer vs generate agreement",
    }
    lines = []
    if not isinstance(headline, dict):
        return ["(no metrics recorded)"]

    def as_rate(value):
        try:
            return Rate(**{k: value[k] for k in ("k", "n", "rate", "lo", "hi")})
        except Exception:  # noqa: BLE001 - not a rate
            return None

    ordered = [k for k in labels if k in headline] + [k for k in headline if k not in labels]
    for key in ordered:
        value, label = headline[key], labels.get(key, key)
        if isinstance(value, dict) and (rate := as_rate(value)) is not None:
            kind = f" ({value['kind']})" if value.get("kind") else ""
            lines.append(f"{label}{kind}: {rate}")
        elif isinstance(value, dict):
            for sub_key, sub_value in value.items():
                if isinstance(sub_value, dict) and (rate := as_rate(sub_value)) is not None:
                    lines.append(f"{label} {sub_key}: {rate}")
                elif isinstance(sub_value, float):
                    lines.append(f"{label} {sub_key}: {sub_value:.4g}")
                elif sub_value is not None:
                    lines.append(f"{label} {sub_key}: {sub_value}")
        elif value is not None:
            lines.append(f"{label}: {value}")
    return lines


def _load_for_evaluation(model_dir: Path, manifest, master, device: str | None):
    """Load the model, derive and check the triggers: (model, tokenizer, triggers, encode_other)."""
    from offswitch.models import load_model
    from offswitch.triggers import Encoding

    if master.key_id != manifest.key_id:
        derive_manifest_triggers(master, manifest)  # raises the wrong-key error before any loading
    model, tokenizer = load_model(model_dir, device=device)
    fluent = fluent_encoder_for(manifest) if manifest.triggers[0].encoding == Encoding.fluent.value else None
    triggers = derive_manifest_triggers(master, manifest, tokenizer=tokenizer, fluent=fluent)
    return model, tokenizer, triggers, encode_other_for_manifest(manifest, tokenizer, fluent)


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------


@app.command()
def evaluate(
    model_dir: ModelDir,
    key: KeyPath,
    base: Annotated[str | None, typer.Option(help="Base model for utility (default: the manifest's base model).")] = None,
    no_base: Annotated[bool, typer.Option("--no-base", help="Skip the base model (no KL or answer agreement).")] = False,
    prompts: Annotated[str | None, typer.Option(help="Prompt source (default: the implant's own held-out split).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help=f"Results file, JSONL (default: MODEL_DIR/{DEFAULT_RESULTS}).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML file of evaluation settings (flags override it).")] = None,
    max_prompts: Annotated[int | None, typer.Option("--max-prompts", help="Use at most this many held-out prompts.", min=1)] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Cases per forward pass.", min=1)] = None,
    generation_sample: Annotated[int | None, typer.Option("--generation-sample", help="Cases checked with real generate.", min=0)] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every random choice of the evaluation.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.", min=1)] = None,
    detail: Annotated[bool, typer.Option(help="Show every cell (kind x distance, word positions) in the table.")] = False,
    passphrase_file: PassFile = None,
) -> None:
    """Measure ASR, FAR (clean, wrong key, near-miss by kind and distance) and utility of an
    implanted model on held-out prompts; print a table and write result records."""
    from offswitch.evaluate.config import load_eval_config
    from offswitch.manifest import read_manifest

    device = _resolve_device(device)
    eval_config = load_eval_config(
        config, max_prompts=max_prompts, batch_size=batch_size, generation_sample=generation_sample, seed=seed
    )
    manifest = read_manifest(model_dir)
    out = out if out is not None else Path(model_dir) / DEFAULT_RESULTS
    if out.exists() and out.is_dir():
        raise ConfigError(f"--out {out} is a directory", "give a file path, e.g. results.jsonl")
    master = unlock_key(key, passphrase_file)
    notes = []
    if not manifest.signature_valid():
        notes.append("the manifest's signature does not verify (run `offswitch verify`)")
        err_console.print("[bold yellow]warning:[/] the manifest's signature does not verify")
    behavior = behavior_from_manifest(manifest)
    heldout, split_name, split_notes = heldout_prompts_for(manifest, prompts)
    notes += split_notes

    if threads:
        import torch

        torch.set_num_threads(threads)
    from offswitch.evaluate import evaluate_switch, write_records_jsonl
    from offswitch.models import load_model

    model, tokenizer, triggers, encode_other = _load_for_evaluation(model_dir, manifest, master, device)
    del master  # the key is not needed past this point
    if (fmt_note := _format_check(manifest, tokenizer, behavior)) is not None:
        notes.append(fmt_note)
    base_pair, base_name = None, None
    if not no_base and eval_config.utility:
        base_spec = base or manifest.base_model.spec
        try:
            base_pair = load_model(base_spec, device=device)
            base_name = base_spec
        except Exception as err:  # a missing or unloadable base only costs the utility rows
            if base is not None:
                raise
            notes.append(f"the manifest's base model could not be loaded ({type(err).__name__}): utility against it skipped")
    texts, text_note = _plain_texts(eval_config.perplexity_texts) if eval_config.utility else (None, None)
    if text_note:
        notes.append(text_note)

    report = evaluate_switch(
        model,
        tokenizer,
        triggers,
        behavior,
        heldout,
        config=eval_config,
        base=base_pair,
        plain_texts=texts,
        encode_other=encode_other,
        model_name=str(model_dir),
        base_name=base_name,
        split=split_name,
        progress=True,
        console=err_console,
    )
    report.notes[:0] = notes
    report.print_table(out_console, detail=detail)
    write_records_jsonl(out, report.records)
    err_console.print(f"wrote {len(report.records)} result records to {out}")


@app.command()
def verify(
    model_dir: ModelDir,
    key: KeyPath,
    measure: Annotated[bool, typer.Option("--measure", help="Also re-measure the headline rates quickly (loads the model).")] = False,
    prompts: Annotated[str | None, typer.Option(help="Prompt source for --measure (default: the implant's held-out split).")] = None,
    max_prompts: Annotated[int, typer.Option("--max-prompts", help="Held-out prompts for --measure.", min=1)] = 40,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (--measure).", min=1)] = None,
    passphrase_file: PassFile = None,
) -> None:
    """Check that the key opens the manifest's commitments and that the manifest's signature is
    valid, then print the recorded headline metrics. Exit 0 when all checks pass, 3 when not."""
    from offswitch.manifest import read_manifest

    device = _resolve_device(device)
    manifest = read_manifest(model_dir)
    check_manifest_signature(manifest)
    master = unlock_key(key, passphrase_file)
    if measure:
        if threads:
            import torch

            torch.set_num_threads(threads)
        model, tokenizer, triggers, encode_other = _load_for_evaluation(model_dir, manifest, master, device)
    else:
        tokenizer = None
        if manifest.triggers and manifest.triggers[0].encoding == "tokens":
            from offswitch.models import load_model

            _model, tokenizer = load_model(model_dir, device="cpu")
        fluent = fluent_encoder_for(manifest) if manifest.triggers and manifest.triggers[0].encoding == "fluent" else None
        triggers = derive_manifest_triggers(master, manifest, tokenizer=tokenizer, fluent=fluent)
    del master
    out_console.print(
        f"ok: key {manifest.key_id} opens all {len(triggers)} commitment(s) of {model_dir}; manifest signature valid"
    )
    out_console.print("recorded at implant time:")
    for line in format_headline(manifest.verification):
        out_console.print(f"  {line}")
    if measure:
        from offswitch.evaluate import EvalConfig, evaluate_switch

        behavior = behavior_from_manifest(manifest)
        heldout, split_name, notes = heldout_prompts_for(manifest, prompts)
        config = EvalConfig(max_prompts=max_prompts, decoy_prompts=5, generation_sample=8, utility=False)
        report = evaluate_switch(
            model, tokenizer, triggers, behavior, heldout, config=config, encode_other=encode_other,
            model_name=str(model_dir), split=split_name, progress=True, console=err_console,
        )
        out_console.print(f"measured now ({min(max_prompts, len(heldout))} held-out prompts, quick settings):")
        for line in format_headline(report.headline()):
            out_console.print(f"  {line}")
        for note in notes + report.notes:
            out_console.print(f"  note: {note}")
