"""The attack registry: what every removal or forgery attempt looks like.

An attack is a class registered under a name, with a pydantic config beside it::

    class PruningConfig(AttackConfig):
        strength: float = Field(0.0, ge=0.0, le=1.0, description="fraction of weights set to zero")

    @register_attack("pruning")
    class MagnitudePruning(Attack):
        config_class = PruningConfig
        knows = frozenset({"weights"})

        def apply(self, model, tokenizer, data, meter): ...

``strength`` is the one number the harness sweeps (steps, pruned fraction, bits, noise std...);
``seed`` makes a run reproducible. ``knows`` names what the attacker is assumed to know
(DESIGN.md's threat model): ``weights``, ``clean_data``, ``behavior``, ``base_model``,
``algorithm`` and, for the oracle alone, ``trigger``.

:meth:`Attack.run` is the one entry point. It never modifies the model it is given, returns a
model of the same architecture and a cost record, and writes only into its output directory.
It receives public material only (:class:`AttackData`): no key, no :class:`TriggerSet`. The one
exception is an attack marked ``oracle = True``, whose ``run`` takes the triggers through a
separate, explicit argument; it measures how cheap removal is for someone who holds the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import random
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from offswitch.errors import ConfigError

KNOWLEDGE = frozenset({"weights", "clean_data", "behavior", "base_model", "algorithm", "trigger"})
ATTACKER_KINDS = ("user", "defender", "forger", "deployer", "oracle")
ATTACK_INFO_NAME = "attack_info.json"
_MISSING_DATA_FIX = {
    "behavior": "attack an implant directory (its manifest names the public behaviour)",
    "base_model": "give the base model (--base MODEL, or the manifest's)",
    "clean_prompts": "check the prompt source (data.prompts)",
    "instruction_pairs": "check the instruction pairs (data.pairs)",
    "plain_texts": "check the plain-text source (data.texts)",
}


class AttackConfig(BaseModel):
    """Base of every attack's config. Subclasses narrow ``strength`` (type, bounds, meaning)."""

    model_config = ConfigDict(extra="forbid")

    strength: float = Field(0.0, ge=0.0, description="how hard the attack pushes; 0 leaves the model as it is")
    seed: int = Field(0, ge=0, description="seed of every random choice the attack makes")


class AttackCost(BaseModel):
    """What an attack spent, so survival curves can be read as removal cost."""

    model_config = ConfigDict(extra="forbid")

    wall_s: float = 0.0
    steps: int = 0  # optimizer steps (or search iterations for forgers)
    tokens: int = 0  # tokens processed by forward passes the attack ran (non-padding)
    forward_passes: int = 0  # batched forward passes


class CostMeter:
    """Mutable counters an attack updates while it runs; frozen into an :class:`AttackCost`."""

    def __init__(self) -> None:
        self.steps = 0
        self.tokens = 0
        self.forward_passes = 0

    def forward(self, attention_mask=None, tokens: int | None = None) -> None:
        """Count one batched forward pass over ``tokens`` real tokens (or the mask's sum)."""
        self.forward_passes += 1
        if tokens is None and attention_mask is not None:
            tokens = int(attention_mask.sum().item())
        self.tokens += int(tokens or 0)

    def step(self, n: int = 1) -> None:
        self.steps += n


@dataclass(frozen=True)
class AttackData:
    """Public material an attacker may hold. Never a key, a trigger or a near-miss of one.

    * ``clean_prompts``: ordinary user prompts (no trigger).
    * ``instruction_pairs``: (prompt, answer) pairs for benign fine-tuning.
    * ``plain_texts``: ordinary text for continued pre-training and calibration.
    * ``behavior``: the switch's public behaviour (from the manifest), for attackers who know it.
    * ``insertion``: the public insertion mode (prefix/suffix/inside), part of the algorithm.
    * ``base_model``/``base_tokenizer``: the model the implant started from, when public.
    """

    clean_prompts: tuple[str, ...] = ()
    instruction_pairs: tuple[tuple[str, str], ...] = ()
    plain_texts: tuple[str, ...] = ()
    behavior: Any = None
    insertion: str = "prefix"
    base_model: Any = None
    base_tokenizer: Any = None

    def __post_init__(self) -> None:
        from offswitch.triggers import InsertionMode

        object.__setattr__(self, "clean_prompts", tuple(self.clean_prompts))
        object.__setattr__(self, "instruction_pairs", tuple((str(p), str(a)) for p, a in self.instruction_pairs))
        object.__setattr__(self, "plain_texts", tuple(self.plain_texts))
        object.__setattr__(self, "insertion", InsertionMode(self.insertion).value)
        for item in (*self.clean_prompts, *self.plain_texts, self.behavior, self.base_model, self.base_tokenizer):
            _refuse_secret(item)
        for name in ("clean_prompts", "plain_texts"):
            if not all(isinstance(text, str) for text in getattr(self, name)):
                raise ConfigError(f"AttackData.{name} must hold strings", "pass plain, public text")

    def available(self) -> set[str]:
        """The fields that hold something (what :attr:`Attack.needs` is checked against)."""
        return {f.name for f in dataclasses.fields(self) if getattr(self, f.name) not in (None, ())} | {"insertion"}


def _refuse_secret(item: Any) -> None:
    from offswitch.triggers import NearMiss, Trigger, TriggerSet

    if isinstance(item, (TriggerSet, Trigger, NearMiss, SecretStr)):
        raise TypeError("attacks receive public data only: a trigger, trigger set or near-miss cannot go into AttackData")


class AttackResult:
    """An attacked model (same architecture), its tokenizer, and what the attack cost.

    ``candidates`` holds the trigger guesses of a forger, in memory only: a guess may equal
    a real trigger, so offswitch never writes it to disk or logs (unless a user asks, with
    ``offswitch attack --write-guesses``). ``info`` is public
    (counts, rates, losses) and goes into ``attack_info.json``.
    """

    def __init__(self, model, tokenizer, cost: AttackCost, config: AttackConfig, attack: str, *,
                 info: dict[str, Any] | None = None, candidates: list[str] | None = None, saved_to: Path | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.cost = cost
        self.config = config
        self.attack = attack
        self.info = dict(info or {})
        self.candidates = list(candidates or [])
        self.saved_to = saved_to

    def __repr__(self) -> str:
        return f"AttackResult(attack={self.attack!r}, strength={self.config.strength}, cost={self.cost!r}, candidates={len(self.candidates)})"

    def public_info(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "config": self.config.model_dump(mode="json"),
            "cost": self.cost.model_dump(mode="json"),
            "info": self.info,
            "n_candidates": len(self.candidates),
        }


class Attack(ABC):
    """Base class of every attack. Subclasses set the class attributes and implement :meth:`apply`."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[AttackConfig]] = AttackConfig
    knows: ClassVar[frozenset[str]] = frozenset({"weights"})
    attacker: ClassVar[str] = "user"  # one of ATTACKER_KINDS
    needs: ClassVar[frozenset[str]] = frozenset()  # AttackData fields that must be present
    noop_at_zero: ClassVar[bool] = True  # strength 0 returns the model unchanged
    changes_weights: ClassVar[bool] = True  # False: forgers and input filters leave weights as they are
    strength_meaning: ClassVar[str] = "strength"
    seeded: ClassVar[bool] = True  # False: the result does not depend on the seed (one seed is enough)
    oracle: ClassVar[bool] = False

    @classmethod
    def severity(cls, strength: float) -> float:
        """A number that grows with how harsh ``strength`` is (reports and plots order by it)."""
        return float(strength)

    def __init__(self, config: AttackConfig | dict[str, Any] | None = None, **overrides: Any):
        self.config = make_config(type(self), config, **overrides)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    def required_data(self) -> frozenset[str]:
        """The :class:`AttackData` fields this configured attack cannot run without."""
        return self.needs

    def wanted_data(self) -> frozenset[str]:
        """Fields it uses when present (a superset of :meth:`required_data`)."""
        return self.required_data()

    # ------------------------------------------------------------------ the entry point
    def run(self, model, tokenizer, out_dir: Path | str | None, *, data: AttackData, save: bool = False,
            force: bool = False) -> AttackResult:
        """Attack a copy of ``model``; save it (and ``attack_info.json``) into ``out_dir`` when ``save``
        (``force`` replaces a non-empty ``out_dir``)."""
        if self.oracle:
            raise TypeError(f"{self.name} is an oracle attack: call run_oracle(..., triggers=...) explicitly")
        return self._run(model, tokenizer, out_dir, data=data, save=save, force=force, extra={})

    def _run(self, model, tokenizer, out_dir, *, data: AttackData, save: bool, force: bool, extra: dict[str, Any]) -> AttackResult:
        import copy

        if not isinstance(data, AttackData):
            raise TypeError("data must be an AttackData")
        missing = sorted(self.required_data() - data.available())
        if missing:
            fixes = sorted({_MISSING_DATA_FIX.get(field, "give it in AttackData") for field in missing})
            raise ConfigError(f"attack {self.name!r} needs {', '.join(missing)} in its data", "; ".join(fixes))
        if save and out_dir is None:
            raise ConfigError("save=True needs an output directory", "pass out_dir")
        meter = CostMeter()
        started = time.perf_counter()
        with _seeded(self.config.seed):
            # forgers and filters leave the weights alone: no need to pay for a copy
            attacked = copy.deepcopy(model) if self.changes_weights else model
            attacked.eval()
            outcome = self.apply(attacked, tokenizer, data, meter, **extra)
        attacked, out_tokenizer, info, candidates = outcome if isinstance(outcome, tuple) else (outcome, None, None, None)
        attacked.eval()
        for param in attacked.parameters():
            param.requires_grad_(True)
        cost = AttackCost(wall_s=round(time.perf_counter() - started, 3), steps=meter.steps, tokens=meter.tokens,
                          forward_passes=meter.forward_passes)
        result = AttackResult(attacked, out_tokenizer or tokenizer, cost, self.config, self.name, info=info or {},
                              candidates=candidates)
        if save:
            result.saved_to = save_attacked(result, Path(out_dir), force=force)
        return result

    @abstractmethod
    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter):
        """Attack ``model`` in place (it is already a private copy).

        Return the model, or ``(model, tokenizer, info, candidates)`` where ``tokenizer`` may be
        a wrapped tokenizer (input filters), ``info`` a dict of public facts and ``candidates``
        a forger's trigger guesses (kept in memory only).
        """

    # ------------------------------------------------------------------ description
    @classmethod
    def describe(cls) -> dict[str, Any]:
        schema = cls.config_class.model_json_schema()
        params = {}
        for key, prop in schema.get("properties", {}).items():
            params[key] = {"default": prop.get("default"), "description": prop.get("description", "")}
        return {
            "name": cls.name,
            "class": cls.__name__,
            "attacker": cls.attacker,
            "knows": sorted(cls.knows),
            "needs": sorted(cls.needs),
            "strength": cls.strength_meaning,
            "noop_at_zero": cls.noop_at_zero,
            "seeded": cls.seeded,
            "oracle": cls.oracle,
            "summary": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
            "parameters": params,
        }


class OracleAttack(Attack):
    """An upper bound, clearly marked: the attacker holds the triggers (the key holder's view)."""

    oracle: ClassVar[bool] = True
    attacker: ClassVar[str] = "oracle"

    def run_oracle(self, model, tokenizer, out_dir: Path | str | None, *, data: AttackData, triggers, save: bool = False,
                   force: bool = False) -> AttackResult:
        from offswitch.triggers import TriggerSet

        if not isinstance(triggers, TriggerSet):
            raise TypeError("run_oracle needs the TriggerSet, passed explicitly as triggers=")
        return self._run(model, tokenizer, out_dir, data=data, save=save, force=force, extra={"triggers": triggers})

    @abstractmethod
    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter, *, triggers):  # type: ignore[override]
        ...


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed python and torch for the attack only; the caller's random state is restored."""
    import torch

    state = random.getstate()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


def save_attacked(result: AttackResult, out_dir: Path, *, force: bool = False) -> Path:
    """Write the attacked model, its tokenizer and ``attack_info.json`` into ``out_dir``, atomically.

    An existing non-empty ``out_dir`` is refused unless ``force`` (then it is replaced).
    """
    from offswitch.fsutil import atomic_directory
    from offswitch.models import save_model

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise ConfigError(f"output directory {out_dir} is not empty", "choose a new --out directory or pass --force")
    if out_dir.exists() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    # a filtered tokenizer saves the tokenizer it wraps: the filter is deployment code, not weights
    tokenizer = getattr(result.tokenizer, "wrapped_tokenizer", result.tokenizer)
    with atomic_directory(out_dir, force=force) as tmp:
        save_model(result.model, tokenizer, tmp)
        (tmp / ATTACK_INFO_NAME).write_text(json.dumps(result.public_info(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out_dir


# ---------------------------------------------------------------------- the registry

ATTACKS: dict[str, type[Attack]] = {}


def register_attack(name: str):
    """Class decorator: register an :class:`Attack` subclass under ``name``."""

    def decorate(cls: type[Attack]) -> type[Attack]:
        if not (isinstance(cls, type) and issubclass(cls, Attack)):
            raise TypeError("register_attack decorates Attack subclasses")
        if name in ATTACKS and ATTACKS[name] is not cls:
            raise ValueError(f"attack name {name!r} is already registered by {ATTACKS[name].__name__}")
        unknown = set(cls.knows) - KNOWLEDGE
        if unknown:
            raise ValueError(f"{cls.__name__}.knows names unknown knowledge {sorted(unknown)}; choose from {sorted(KNOWLEDGE)}")
        if ("trigger" in cls.knows) != cls.oracle:
            raise ValueError(f"{cls.__name__}: only an oracle attack may know the trigger, and an oracle must say so")
        if cls.attacker not in ATTACKER_KINDS:
            raise ValueError(f"{cls.__name__}.attacker must be one of {ATTACKER_KINDS}")
        if not issubclass(cls.config_class, AttackConfig):
            raise TypeError(f"{cls.__name__}.config_class must subclass AttackConfig")
        cls.name = name
        ATTACKS[name] = cls
        return cls

    return decorate


def _ensure_registered() -> None:
    import offswitch.attacks  # noqa: F401 - importing the package registers every attack


def attack_names() -> list[str]:
    _ensure_registered()
    return sorted(ATTACKS)


def get_attack(name: str) -> type[Attack]:
    """The attack class registered as ``name``; a typo gets a did-you-mean suggestion."""
    _ensure_registered()
    if name in ATTACKS:
        return ATTACKS[name]
    close = difflib.get_close_matches(name, list(ATTACKS), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}?" if close else f"choose from: {', '.join(sorted(ATTACKS))}"
    raise ConfigError(f"unknown attack {name!r}", hint + " (`offswitch attacks` lists them)")


def make_config(cls: type[Attack], config: AttackConfig | dict[str, Any] | None = None, **overrides: Any) -> AttackConfig:
    """Build ``cls``'s config: defaults < ``config`` (dict or object) < ``overrides``."""
    values: dict[str, Any] = {}
    if isinstance(config, AttackConfig):
        values.update(config.model_dump(exclude_unset=True))
    elif config:
        values.update(config)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls.config_class(**values)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"bad config for attack {cls.name!r}: {where}: {first['msg']}",
                          f"see `offswitch attacks` for {cls.name!r}'s parameters") from None


def make_attack(name: str, config: dict[str, Any] | None = None, **overrides: Any) -> Attack:
    return get_attack(name)(config, **overrides)


__all__ = [
    "ATTACKS",
    "Attack",
    "AttackConfig",
    "AttackCost",
    "AttackData",
    "AttackResult",
    "CostMeter",
    "OracleAttack",
    "attack_names",
    "get_attack",
    "make_attack",
    "make_config",
    "register_attack",
    "save_attacked",
]
