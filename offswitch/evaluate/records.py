"""Result records: one versioned pydantic row per measured quantity, stored as JSONL.

A record names what was measured (model, base, key id, behaviour, split, metric and its cell:
kind, distance, word position, trigger index), the count and the 95% Clopper–Pearson interval
(or a value, for perplexity and KL), the scorer/generation agreement of the run, the offswitch
version and the seed. Free ``labels`` carry the harness's cell (attack, strength, ...).

Records never hold a trigger, a near-miss of one, or any prompt text: a near-miss of a secret
is a secret. Only public facts (kind, distance, position, index) identify a cell.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from offswitch.errors import ConfigError
from offswitch.fsutil import atomic_write_text
from offswitch.stats import Rate

RECORD_SCHEMA_VERSION = 1


def _offswitch_version() -> str:
    from offswitch import __version__

    return __version__


class ResultRecord(BaseModel):
    """One measured quantity. Rates fill k/n/rate/lo/hi; values (perplexity, KL) fill
    ``value`` (and ``reference_value``, the base model's, where there is one) and ``n``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: int = RECORD_SCHEMA_VERSION
    model: str
    base: str | None = None
    key_id: str
    behavior: str = Field(validation_alias=AliasChoices("behavior", "behaviour"))
    split: str = "heldout"
    metric: str
    kind: str | None = None
    distance: int | None = None
    position: int | None = None
    trigger_index: int | None = None
    k: int | None = None
    n: int | None = None
    rate: float | None = None
    lo: float | None = None
    hi: float | None = None
    value: float | None = None
    reference_value: float | None = None
    agreement: Rate | None = None
    offswitch_version: str = Field(default_factory=_offswitch_version)
    seed: int = 0
    labels: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rate_is_complete(self) -> ResultRecord:
        rate_fields = (self.k, self.rate, self.lo, self.hi)
        if any(v is not None for v in rate_fields):
            if any(v is None for v in rate_fields) or self.n is None:
                raise ValueError("a rate record needs k, n, rate, lo and hi together")
            Rate(k=self.k, n=self.n, rate=self.rate, lo=self.lo, hi=self.hi)  # same checks as a Rate
        return self

    @property
    def is_rate(self) -> bool:
        return self.k is not None

    def as_rate(self) -> Rate | None:
        if not self.is_rate:
            return None
        return Rate(k=self.k, n=self.n, rate=self.rate, lo=self.lo, hi=self.hi)

    def cell(self) -> tuple:
        """What identifies this row within one evaluation."""
        return (self.metric, self.kind, self.distance, self.position, self.trigger_index)


def pooled_rate(records: list[ResultRecord], metric: str) -> Rate | None:
    """The metric's rate pooled over every kind, distance, position and trigger (None if absent)."""
    for record in records:
        if record.cell() == (metric, None, None, None, None) and record.is_rate:
            return record.as_rate()
    return None


def kind_cells(records: list[ResultRecord], metric: str, *, by_position: bool = False) -> list[ResultRecord]:
    """The metric's rate records per kind, pooled over distances and triggers: one per kind, or
    (``by_position``) one per kind and word position."""
    return [
        r for r in records
        if r.metric == metric and r.is_rate and r.kind is not None and r.distance is None
        and r.trigger_index is None and (r.position is not None) == by_position
    ]


def write_records_jsonl(path: Path | str, records: list[ResultRecord], *, append: bool = False) -> Path:
    """Write records as JSON lines, atomically (a reader never sees half a file).

    ``append`` keeps the records already in the file (read, extended, rewritten atomically).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = read_records_jsonl(path) if append and path.exists() else []
    lines = [json.dumps(r.model_dump(mode="json"), sort_keys=True, ensure_ascii=False) for r in [*existing, *records]]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return path


def read_records_jsonl(path: Path | str) -> list[ResultRecord]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no results file at {path}", "run `offswitch evaluate ... --out FILE` first") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a UTF-8 text file", "give a results .jsonl file") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"{path}:{number} is not valid JSON", "restore the results file or rerun the evaluation") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}:{number} is not a result record", "give a results .jsonl file")
        version = doc.get("schema_version")
        if version != RECORD_SCHEMA_VERSION:
            raise ConfigError(
                f"{path}:{number} has result schema version {version!r} (this offswitch reads {RECORD_SCHEMA_VERSION})",
                "upgrade offswitch or rerun the evaluation",
            )
        try:
            records.append(ResultRecord.model_validate(doc))
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "record"
            raise ConfigError(f"{path}:{number} is malformed ({where}: {first['msg']})", "rerun the evaluation") from None
    return records
