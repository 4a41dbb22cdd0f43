"""Errors that the CLI turns into one line: what went wrong and how to fix it.

Messages must never contain secret material (keys, triggers, near-misses of triggers).
"""

from __future__ import annotations


class OffswitchError(Exception):
    """A user-facing error. ``str(err)`` is one line naming the problem and the fix."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem}; {fix}")


class KeystoreError(OffswitchError):
    """The keystore file is missing, unreadable, corrupt, tampered or of an unknown version."""


class WrongPassphrase(KeystoreError):
    """The passphrase does not open the keystore (or the ciphertext was tampered with)."""


class ConfigError(OffswitchError):
    """A configuration value or file is invalid."""


class ModelError(OffswitchError):
    """A model spec cannot be resolved or loaded."""


class DataError(OffswitchError):
    """A prompt source is missing, empty or too small."""


class VerificationError(OffswitchError):
    """A manifest's commitments or signature do not check out."""

    exit_code = 3
