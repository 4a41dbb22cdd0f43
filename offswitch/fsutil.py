"""Atomic file and directory writes: nothing half-written is ever left at the final path."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def atomic_write_text(path: Path | str, text: str, mode: int = 0o644) -> None:
    """Write to a temp file in the same directory, fsync, chmod, then rename over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path | str, obj, *, sort_keys: bool = False, ensure_ascii: bool = True, default=None,
                      parents: bool = False) -> None:
    """``obj`` as indented JSON with a final newline, written atomically; ``parents``: make missing
    parent folders (else a missing folder is an error, as for :func:`atomic_write_text`)."""
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=2, sort_keys=sort_keys, ensure_ascii=ensure_ascii, default=default)
    atomic_write_text(path, text + "\n")


@contextlib.contextmanager
def atomic_directory(final: Path | str, *, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temp directory beside ``final``; on success it replaces ``final``.

    On any error the temp directory is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        if not force:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(str(final))
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
