"""Generated blocks inside hand-written docs: the text between two marker comments is replaced
by a block computed from committed records, so a doc's figures cannot drift from its records
(``--check`` in a test fails when they do)."""

from __future__ import annotations

from pathlib import Path


def splice(document: str, block: str, begin: str, end: str) -> str:
    """``document`` with the text between the ``begin`` and ``end`` markers replaced by ``block``."""
    if begin not in document or end not in document:
        raise SystemExit(f"the document has no {begin} ... {end} markers")
    head, rest = document.split(begin, 1)
    _old, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}\n{end}{tail}"


def sync(doc: Path, block: str, begin: str, end: str, *, write: bool, fix: str) -> None:
    """Write the fresh block into ``doc`` (``write``), or exit with ``fix`` when it is stale."""
    current = doc.read_text(encoding="utf-8")
    fresh = splice(current, block, begin, end)
    if write:
        doc.write_text(fresh, encoding="utf-8")
    elif fresh != current:
        raise SystemExit(f"{doc}: the generated block differs from the records; {fix}")
