"""Shared CLI plumbing: where the passphrase comes from, unlocking a keystore, console output."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from offswitch.errors import KeystoreError

PASSPHRASE_ENV = "OFFSWITCH_PASSPHRASE"

# the one --passphrase-file option every key-using command shares
PassFile = Annotated[
    Path | None, typer.Option("--passphrase-file", help="Read the passphrase from this file (else $OFFSWITCH_PASSPHRASE, else a prompt).")
]

# stdout is for results (a revealed trigger, JSON); everything else goes to stderr.
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


def read_passphrase(passphrase_file: Path | None, *, confirm: bool = False) -> str:
    """Passphrase from --passphrase-file, else $OFFSWITCH_PASSPHRASE, else a hidden prompt.

    Never from a command-line value: those end up in shell history and `ps` output.
    """
    if passphrase_file is not None:
        try:
            text = Path(passphrase_file).read_text(encoding="utf-8")
        except OSError as err:
            raise KeystoreError(f"cannot read passphrase file {passphrase_file} ({err.strerror})", "check the path") from None
        text = text[:-1] if text.endswith("\n") else text
        text = text[:-1] if text.endswith("\r") else text
        if not text:
            raise KeystoreError(f"passphrase file {passphrase_file} is empty", "write the passphrase into it")
        return text
    env = os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        if not env:
            raise KeystoreError(f"${PASSPHRASE_ENV} is set but empty", "set it to the passphrase or unset it to be asked")
        return env
    if not sys.stdin.isatty():
        raise KeystoreError(
            "no passphrase given and no terminal to ask on", f"set ${PASSPHRASE_ENV} or pass --passphrase-file FILE"
        )
    first = getpass.getpass("Passphrase: ")
    if not first:
        raise KeystoreError("empty passphrase", "choose a non-empty passphrase")
    if confirm and getpass.getpass("Passphrase (again): ") != first:
        raise KeystoreError("the two passphrases differ", "run the command again and type the same passphrase twice")
    return first


def unlock_key(path: Path, passphrase_file: Path | None):
    """Unlock a keystore; the returned MasterKey must not leave the CLI process."""
    from offswitch.crypto import read_header, unlock

    read_header(path)  # fail on a missing/corrupt file before asking for a passphrase
    return unlock(path, read_passphrase(passphrase_file))


def implant_fluent_encoder(base_model, tokenizer, n_tokens: int | None = None, *, frozen_copy: bool = True):
    """The fluent sampler ``offswitch implant`` draws its triggers with (default sampling
    settings over the base model, in eval mode); ``offswitch trigger``/``commit`` use the same
    one, so a revealed fluent trigger is the implanted one.

    ``frozen_copy`` samples from a deep copy: for a caller that goes on to train ``base_model``
    in place (wrong-key triggers drawn later must come from the base, as the key's own did).
    """
    import copy

    from offswitch.fluent import fluent_encoder

    model = copy.deepcopy(base_model) if frozen_copy else base_model
    return fluent_encoder(model.eval(), tokenizer, n_tokens=n_tokens)


def scrypt_params(fast: bool) -> dict | None:
    from offswitch.crypto import FAST_SCRYPT

    return dict(FAST_SCRYPT) if fast else None
