"""The only code that ever holds a master key. Import it from here and from the CLI only
(tests/unit/test_import_contract.py enforces this)."""

from offswitch.crypto.derive import TRIGGER_INFO, hkdf, signing_seed, trigger_seed
from offswitch.crypto.keys import MasterKey
from offswitch.crypto.keystore import (
    DEFAULT_SCRYPT,
    FAST_SCRYPT,
    create_keystore,
    read_header,
    unlock,
)

__all__ = [
    "DEFAULT_SCRYPT",
    "FAST_SCRYPT",
    "MasterKey",
    "TRIGGER_INFO",
    "create_keystore",
    "hkdf",
    "read_header",
    "signing_seed",
    "trigger_seed",
    "unlock",
]
