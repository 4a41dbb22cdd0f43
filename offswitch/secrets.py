"""A process-wide registry of secret strings, used to scrub anything shown to a user.

The CLI registers every trigger (and the text of every near-miss it builds) as soon as it
exists. Log records and error messages pass through :func:`redact` before they are shown,
so that even an exception raised deep inside a third-party library cannot leak a trigger.
This is a last line of defence: code must not put secrets into messages in the first place.
"""

from __future__ import annotations

import logging
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
REDACTED = "<redacted>"


def register(*texts: str) -> None:
    with _lock:
        for text in texts:
            if text and len(text) >= 3:
                _secrets.add(text)


def clear() -> None:
    with _lock:
        _secrets.clear()


def redact(message: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in message:
            message = message.replace(secret, REDACTED)
    return message


class RedactingFilter(logging.Filter):
    """Logging filter that scrubs registered secrets from every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is still logged, not raised
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
