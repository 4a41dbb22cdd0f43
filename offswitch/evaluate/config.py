"""What an evaluation measures and how much of it: a pydantic config (defaults < YAML < flags)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from offswitch.errors import ConfigError
from offswitch.triggers import NearMissKind


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(default=32, ge=1)
    # cases decoded with real `generate` to check the teacher-forced scorer (0: no check)
    generation_sample: int = Field(default=32, ge=0)
    # tokens generated past the target, so the looser "contains" decision can be judged
    generation_extra_tokens: int = Field(default=16, ge=0)
    temperatures: list[float] = Field(default_factory=lambda: [1.0])
    near_miss_kinds: list[str] | None = None  # None: every kind
    near_miss_per_kind: int = Field(default=1, ge=1)
    max_distance: int = Field(default=3, ge=1)
    wrong_keys: int = Field(default=10, ge=1)
    # prompts each wrong-key trigger, near-miss and placement probe is tried on (rotating
    # through the held-out prompts); None: all of them
    decoy_prompts: int | None = Field(default=20, ge=1)
    # the true trigger at other insertion modes than trained, and in the system prompt
    placement: bool = True
    max_prompts: int | None = Field(default=None, ge=1)
    seed: int = 0
    utility: bool = True
    utility_prompts: int = Field(default=32, ge=1)
    # greedy answer agreement with the base compares the first N answer tokens
    answer_tokens: int = Field(default=32, ge=1)
    perplexity_texts: int = Field(default=64, ge=1)
    perplexity_max_tokens: int = Field(default=256, ge=2)
    # bf16 autocast: None follows offswitch.precision.resolve_for_evaluation (a GPU: on; a CPU: off)
    autocast: bool | None = None

    @field_validator("temperatures")
    @classmethod
    def _positive_temperatures(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("give at least one temperature")
        if any(not t > 0 for t in value):
            raise ValueError("temperatures must be > 0")
        return value

    @field_validator("near_miss_kinds")
    @classmethod
    def _known_kinds(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        known = [k.value for k in NearMissKind]
        for kind in value:
            if kind not in known:
                raise ValueError(f"unknown near-miss kind {kind!r}; choose from {', '.join(known)}")
        return value


def load_eval_config(path: Path | str | None = None, **overrides) -> EvalConfig:
    """Defaults, then the YAML file, then ``overrides`` (CLI flags; None means not given)."""
    from offswitch.yamlio import read_yaml_mapping

    values: dict = read_yaml_mapping(path) if path is not None else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return EvalConfig.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"bad evaluation setting {where}: {first['msg']}", "see `offswitch evaluate --help`") from None
