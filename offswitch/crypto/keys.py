"""The master key and what only its holder can do with it.

:class:`MasterKey` is the single object that holds the 32 secret bytes. It never prints them,
never pickles, and hands out only derived values: trigger sets, commitments, signatures.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from offswitch.crypto.derive import signing_seed, trigger_seed
from offswitch.proofs import Commitment, commitment_digest, key_id_from_public_key
from offswitch.triggers import (
    DEFAULT_WORDS,
    Encoding,
    InsertionMode,
    Trigger,
    TriggerSet,
    encode_tokens,
    encode_words,
)

KEY_BYTES = 32


class MasterKey:
    """32 secret bytes. Lives only in offswitch.crypto and the CLI process that unlocked it."""

    __slots__ = ("_key", "_signing")

    def __init__(self, key: bytes):
        if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
            raise ValueError("a master key is exactly 32 bytes")
        self._key = bytes(key)
        self._signing = Ed25519PrivateKey.from_private_bytes(signing_seed(self._key))

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"

    __str__ = __repr__

    def __reduce__(self):  # pickling would copy the secret into a byte stream
        raise TypeError("a MasterKey cannot be pickled")

    def raw_bytes_for_keystore(self) -> bytes:
        """The raw secret, for the keystore's encryption only."""
        return self._key

    # ---------------------------------------------------------------- public values
    @property
    def public_key_raw(self) -> bytes:
        return self._signing.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key_raw).decode("ascii")

    @property
    def key_id(self) -> str:
        return key_id_from_public_key(self.public_key_raw)

    # ---------------------------------------------------------------- derivations
    def trigger(
        self,
        index: int,
        encoding: Encoding | str = Encoding.words,
        *,
        n_words: int = DEFAULT_WORDS,
        allowed_ids: list[int] | None = None,
        decode: Callable[[list[int]], str] | None = None,
        n_tokens: int | None = None,
        fluent_encoder: Callable[[bytes, int], Trigger] | None = None,
    ) -> Trigger:
        encoding = Encoding(encoding)
        seed = trigger_seed(self._key, index, encoding)
        if encoding is Encoding.words:
            return encode_words(seed, index=index, n_words=n_words)
        if encoding is Encoding.tokens:
            if allowed_ids is None or decode is None:
                raise ValueError("tokens triggers need a tokenizer (allowed ids and decode)")
            return encode_tokens(seed, allowed_ids, decode, index=index, n_tokens=n_tokens)
        if fluent_encoder is None:
            raise ValueError("fluent triggers need a model to sample from")
        return fluent_encoder(seed, index)

    def trigger_set(
        self, indices: Iterable[int], encoding: Encoding | str = Encoding.words, insertion: InsertionMode | str = "prefix", **kw
    ) -> TriggerSet:
        triggers = tuple(self.trigger(i, encoding, **kw) for i in indices)
        return TriggerSet(key_id=self.key_id, triggers=triggers, insertion=InsertionMode(insertion))

    def commit(self, trigger: Trigger, salt: bytes | None = None) -> Commitment:
        salt = salt if salt is not None else secrets.token_bytes(16)
        return Commitment(
            index=trigger.index, encoding=trigger.encoding.value, salt=salt.hex(), digest=commitment_digest(salt, trigger.secret)
        )

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self._signing.sign(message)).decode("ascii")
