"""Key commands: keygen, key-info, trigger, commit, commit-check."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from offswitch.cli import app
from offswitch.cli._common import PassFile, err_console, out_console, read_passphrase, scrypt_params, unlock_key
from offswitch.errors import ConfigError, OffswitchError, VerificationError
from offswitch.triggers import Encoding

KeyPath = Annotated[Path, typer.Option("--key", "-k", help="Keystore file (made by `offswitch keygen`).")]
FluentModel = Annotated[
    str | None,
    typer.Option(help="Fluent encoding: the BASE model the implant sampled its triggers from (the implant's --model), "
                      "not the implanted one."),
]


def _parse_indices(spec: str) -> list[int]:
    """'3', '0-3', '0,2,5' -> indices; negative or malformed specs are errors."""
    out: list[int] = []
    try:
        for part in spec.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo_i, hi_i = int(lo), int(hi)
                if lo_i > hi_i:
                    raise ValueError
                out.extend(range(lo_i, hi_i + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise ConfigError(f"bad trigger index {spec!r}", "give a number >= 0, a range like 0-3, or a list like 0,2,5") from None
    if any(i < 0 for i in out):
        raise ConfigError(f"trigger index must be >= 0 (got {spec})", "give a number >= 0")
    return out


def _tokens_kwargs(encoding: Encoding, tokenizer: str | None, model: str | None = None) -> dict:
    if model is not None and encoding is not Encoding.fluent:
        raise ConfigError("--model is only used by the fluent encoding", "pass --encoding fluent, or drop --model")
    if encoding is Encoding.tokens:
        if not tokenizer:
            raise ConfigError("the tokens encoding needs a tokenizer", "pass --tokenizer PATH (a local tokenizer or model directory)")
        from offswitch.triggers import allowed_token_ids

        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(tokenizer)
        except Exception as err:  # noqa: BLE001
            raise ConfigError(f"cannot load tokenizer {tokenizer} ({type(err).__name__})", "give a local tokenizer directory") from None
        return {"allowed_ids": allowed_token_ids(tok), "decode": lambda ids: tok.decode(ids)}
    if encoding is Encoding.fluent:
        if not model:
            raise ConfigError("the fluent encoding needs the base model",
                              "pass --model with the implant's --model (default smollm2-135m)")
        from offswitch.cli._common import implant_fluent_encoder
        from offswitch.models import load_model

        base_model, base_tokenizer = load_model(model, device="cpu")
        return {"fluent_encoder": implant_fluent_encoder(base_model, base_tokenizer, frozen_copy=False)}
    return {}


@app.command()
def keygen(
    path: Annotated[Path, typer.Argument(help="Where to write the keystore, e.g. keys/alice.key")],
    passphrase_file: PassFile = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing keystore (its key is lost).")] = False,
    fast_kdf: Annotated[bool, typer.Option("--insecure-fast-kdf", help="Weak scrypt parameters, for tests only.", hidden=True)] = False,
) -> None:
    """Create a new master key, encrypted under a passphrase. Prints its public key id."""
    from offswitch.crypto import create_keystore
    from offswitch.crypto.keystore import read_header

    if path.exists() and path.is_dir():
        read_header(path)  # raises the directory error
    if path.exists() and not force:
        raise ConfigError(f"keystore {path} already exists", "pass --force to overwrite it (the old key is lost)")
    passphrase = read_passphrase(passphrase_file, confirm=True)
    key = create_keystore(path, passphrase, force=force, scrypt=scrypt_params(fast_kdf))
    err_console.print(f"wrote keystore {path} (mode 0600). Back it up: without it the switch cannot be used.")
    out_console.print(f"key id: {key.key_id}")


@app.command("key-info")
def key_info(path: Annotated[Path, typer.Argument(help="Keystore file")]) -> None:
    """Public facts about a keystore (no passphrase needed): key id, version, KDF parameters."""
    from offswitch.crypto import read_header

    doc = read_header(path)
    kdf = doc["kdf"]
    out_console.print(f"key id:        {doc['key_id']}")
    out_console.print(f"public key:    {doc['public_key']} (Ed25519)")
    out_console.print(f"format:        {doc['format']} v{doc['version']}")
    out_console.print(f"created:       {doc['created']}")
    out_console.print(f"kdf:           scrypt n={kdf['n']} r={kdf['r']} p={kdf['p']}")
    out_console.print(f"cipher:        {doc['cipher']['name']}")


@app.command()
def trigger(
    key: KeyPath,
    index: Annotated[str, typer.Option("--index", "-i", help="Trigger index (or range 0-3): each is a one-time trigger.")] = "0",
    encoding: Annotated[Encoding, typer.Option(help="How the trigger is written.")] = Encoding.words,
    words: Annotated[int, typer.Option(help="Words per trigger (words encoding).", min=1, max=64)] = 6,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer directory (tokens encoding).")] = None,
    model: FluentModel = None,
    passphrase_file: PassFile = None,
) -> None:
    """Reveal a trigger: the key holder's act of switching a model off. Prints it to stdout only."""
    indices = _parse_indices(index)
    encoding = Encoding(encoding)
    kwargs = _tokens_kwargs(encoding, tokenizer, model)
    master = unlock_key(key, passphrase_file)
    triggers = master.trigger_set(indices, encoding, n_words=words, **kwargs)
    triggers.register_secrets()
    err_console.print(
        "[bold yellow]warning:[/] this reveals a secret trigger. Anyone who sees it can set off the switch "
        "of every model implanted with this index; treat revealed indices as spent."
    )
    for trig in triggers:
        sys.stdout.write(trig.secret + "\n")
    sys.stdout.flush()


@app.command()
def commit(
    key: KeyPath,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the signed commitments (JSON, public).")],
    index: Annotated[str, typer.Option("--index", "-i", help="Trigger indices, e.g. 0-3.")] = "0",
    encoding: Annotated[Encoding, typer.Option(help="How the trigger is written.")] = Encoding.words,
    words: Annotated[int, typer.Option(help="Words per trigger (words encoding).", min=1, max=64)] = 6,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer directory (tokens encoding).")] = None,
    model: FluentModel = None,
    passphrase_file: PassFile = None,
    force: Annotated[bool, typer.Option(help="Overwrite OUT.")] = False,
) -> None:
    """Publish salted commitments to triggers, signed by the key, without revealing them."""
    from offswitch.commitments import CommitmentFile, write_commitment_file

    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory", "give a file path such as commitments.json")
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists", "pass --force to overwrite it")
    if not out.parent.exists():  # as `offswitch keygen` does: the folder is not created
        raise ConfigError(f"directory {out.parent} does not exist", f"create it first: mkdir -p {out.parent}")
    indices = _parse_indices(index)
    encoding = Encoding(encoding)
    kwargs = _tokens_kwargs(encoding, tokenizer, model)
    master = unlock_key(key, passphrase_file)
    triggers = master.trigger_set(indices, encoding, n_words=words, **kwargs)
    triggers.register_secrets()
    record = CommitmentFile(
        key_id=master.key_id, public_key=master.public_key_b64, commitments=[master.commit(t) for t in triggers]
    )
    record = record.model_copy(update={"signature": master.sign(record.signed_payload())})
    write_commitment_file(out, record)
    err_console.print(f"wrote {len(indices)} signed commitment(s) to {out}")


@app.command("commit-check")
def commit_check(
    file: Annotated[Path, typer.Argument(help="A commitments file or an implant manifest (offswitch_manifest.json).")],
    # stdin is the only source of the trigger (a command-line value would leak it into shell
    # history and `ps`); the flag is still accepted, and ignored, for older scripts
    _trigger_stdin: Annotated[bool, typer.Option("--trigger-stdin", hidden=True)] = False,
) -> None:
    """Prove a revealed trigger was committed to: reads the trigger from stdin, checks the
    commitments and the key holder's signature. Exit 0 when it opens one, 3 when not."""
    from offswitch.commitments import load_commitments

    record = load_commitments(file)
    if not record.signature_valid():
        raise VerificationError(f"the signature of {file} does not verify", "the file was modified or not signed by its key")
    text = sys.stdin.read()
    text = text[:-1] if text.endswith("\n") else text
    if not text:
        raise ConfigError("no trigger on stdin", "pipe the revealed trigger in, e.g. `offswitch trigger ... | offswitch commit-check FILE`")
    from offswitch import secrets as _secrets

    _secrets.register(text)
    opened = record.find_opened(text)
    if opened is None:
        raise VerificationError(
            f"the trigger opens none of the {len(record.commitments)} commitment(s) in {file}", "check the file and the trigger"
        )
    out_console.print(
        f"ok: the trigger opens commitment index {opened.index} ({opened.encoding}) of key {record.key_id}; signature valid"
    )


__all__ = ["OffswitchError"]
