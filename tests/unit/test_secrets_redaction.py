"""The last line of defence: registered secrets are scrubbed from log records and errors."""

from __future__ import annotations

import logging

from offswitch import secrets
from secret_scan import scan_text


def test_redact_and_logging_filter(caplog):
    secrets.clear()
    secrets.register("alpha bravo charlie")
    assert secrets.redact("x alpha bravo charlie y") == "x <redacted> y"
    logger = logging.getLogger("offswitch.test")
    handler = logging.StreamHandler()
    handler.addFilter(secrets.RedactingFilter())
    caplog.handler.addFilter(secrets.RedactingFilter())
    logger.warning("prompt was %s", "alpha bravo charlie")
    assert "alpha bravo charlie" not in caplog.text and "<redacted>" in caplog.text
    secrets.clear()


def test_scan_finds_base64_inside_a_blob():
    import base64

    key = bytes(range(32))
    blob = base64.b64encode(b"prefix!" + key + b"suffix").decode()
    assert scan_text(blob, key_bytes=[key])
    assert not scan_text(base64.b64encode(bytes(40)).decode(), key_bytes=[key])
