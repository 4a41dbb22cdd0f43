"""Known answers: frozen forever. A model implanted today must be switchable by the same key in
every later release, so any change that breaks one of these vectors is a breaking change of the
derivation (it needs a new version string, never an edit of these values)."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from offswitch.crypto import MasterKey, trigger_seed
from offswitch.proofs import Commitment, opens, verify_signature

KEY = bytes(range(32))

VECTORS_WORDS = {
    0: "myself virtual retire bitter helmet fame",
    1: "volcano city crush differ stumble donor",
    2: "mechanic oblige scatter worry amateur heart",
    3: "answer power want offer solar all",
}


def _hkdf_reference(key: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 written out, independent of the cryptography package."""
    prk = hmac.new(b"\0" * 32, key, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def test_seed_vectors():
    assert trigger_seed(KEY, 0, "words").hex() == "8f1642e332a95942d47fd0b4e6d8a72b20c3d2d8473f6a75a8a7c21648e50379"
    assert trigger_seed(KEY, 7, "fluent").hex() == "88ab4e9fe2de3e82452d878bdc12db6c50ff406494cb50393b2e8d6ad0a82654"


def test_seed_is_rfc5869_hkdf_with_versioned_info():
    for index in (0, 1, 99):
        for encoding in ("words", "tokens", "fluent"):
            info = f"offswitch/v1/trigger/{index}/{encoding}".encode()
            assert trigger_seed(KEY, index, encoding) == _hkdf_reference(KEY, info)


def test_words_vectors():
    key = MasterKey(KEY)
    for index, text in VECTORS_WORDS.items():
        assert key.trigger(index).secret == text
    assert key.trigger(0, n_words=8).secret == "myself virtual retire bitter helmet fame awesome almost"
    assert abs(key.trigger(0).position - 0.03450940298031624) < 1e-15


def test_tokens_vector():
    key = MasterKey(KEY)
    trig = key.trigger(2, "tokens", allowed_ids=list(range(100, 1100)), decode=lambda ids: ",".join(map(str, ids)))
    assert trig.secret == "330,1030,512,494,911,243,907"
    assert trig.token_ids == (330, 1030, 512, 494, 911, 243, 907)


def test_key_id_and_public_key_vectors():
    key = MasterKey(KEY)
    assert key.key_id == "9613f1ab0c378186"
    assert key.public_key_b64 == "p/puuzSdS/AdL/mUmWRRKbWTX2k99rbtzy0c5xwRy1g="


def test_commitment_vector():
    key = MasterKey(KEY)
    commitment = key.commit(key.trigger(0), salt=bytes(16))
    assert commitment.digest == "bb44eef12b5dde9544c0fa18edb206dcd8a23d4ead97df05783a52ad6948ead6"
    assert opens(commitment, VECTORS_WORDS[0])
    assert not opens(commitment, VECTORS_WORDS[1])


def test_signature_vector():
    key = MasterKey(KEY)
    signature = key.sign(b"offswitch known answer")
    assert signature == "9LYxfhILsPBEZ58vwF2BWTitDmpp36gZBlJRQSJa9rQOE7SjuPAWVai4t87tERIKpWssFPvfeVfhlSSAzbkrDw=="
    assert verify_signature(key.public_key_b64, b"offswitch known answer", signature)
    assert not verify_signature(key.public_key_b64, b"offswitch known answeR", signature)


keys = st.binary(min_size=32, max_size=32)


@settings(max_examples=200)
@given(keys, st.integers(0, 10**6))
def test_derivation_deterministic(key, index):
    assert MasterKey(key).trigger(index).secret == MasterKey(key).trigger(index).secret


@settings(max_examples=200)
@given(keys, keys, st.integers(0, 1000))
def test_derivation_key_separated(k1, k2, index):
    assume(k1 != k2)
    assert trigger_seed(k1, index, "words") != trigger_seed(k2, index, "words")
    assert MasterKey(k1).trigger(index).secret != MasterKey(k2).trigger(index).secret
    assert MasterKey(k1).key_id != MasterKey(k2).key_id


@settings(max_examples=200)
@given(keys, st.integers(0, 1000), st.integers(0, 1000))
def test_derivation_index_and_encoding_separated(key, i, j):
    assume(i != j)
    assert trigger_seed(key, i, "words") != trigger_seed(key, j, "words")
    assert trigger_seed(key, i, "words") != trigger_seed(key, i, "tokens") != trigger_seed(key, i, "fluent")
    assert MasterKey(key).trigger(i).secret != MasterKey(key).trigger(j).secret


@settings(max_examples=200)
@given(keys, st.text(min_size=1, max_size=50), st.text(min_size=1, max_size=50), st.binary(min_size=16, max_size=16))
def test_commitments_bind(key, a, b, salt):
    from offswitch.triggers import Encoding, Trigger

    commitment = MasterKey(key).commit(Trigger(index=0, encoding=Encoding.words, text=a), salt=salt)
    assert opens(commitment, a)
    assert opens(commitment, b) == (a == b)
    tampered = Commitment(**{**commitment.model_dump(), "salt": (bytes([salt[0] ^ 1]) + salt[1:]).hex()})
    assert not opens(tampered, a)
