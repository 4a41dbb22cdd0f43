"""Generated blocks inside hand-written docs: the text between two marker comments is replaced
by a block computed from committed records, so a doc's figures cannot drift from its records
(``--check`` in a test fails when they do)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def block_main(argv: Sequence[str], render: Callable[[list[str]], str], default_names: Callable[[], list[str]],
               begin: str, end: str, script: str) -> str:
    """The command line of a script that generates a doc block from named records:
    ``[NAME ...]`` prints the block, ``--write DOC [NAME ...]`` splices it into DOC and
    ``--check DOC [NAME ...]`` exits when DOC's block is stale. No names: ``default_names()``."""
    args = list(argv)
    mode, doc = None, None
    if args and args[0] in ("--write", "--check"):
        mode, doc = args[0], Path(args[1])
        args = args[2:]
    text = render(args or default_names())
    if mode is None:
        print(text)
        return text
    sync(doc, text, begin, end, write=mode == "--write", fix=f"run {script} --write {doc}" + "".join(f" {n}" for n in args))
    return text
