"""The robustness harness: implants × attacks × strengths × seeds, each cell one attacked model
measured by :func:`offswitch.evaluate.evaluate_switch`, stored as result records.

A suite is a YAML file (:class:`SuiteConfig`, unknown keys are errors)::

    name: smoke
    implants:
      - dir: runs/alice-smol          # an `offswitch implant` output directory
    attacks:
      - name: sft
        strengths: [0, 20, 50]        # what the attack's `strength` means: `offswitch attacks`
        seeds: [0, 1]
        config: {lr: 1.0e-4}          # other parameters of the attack
        grid: {batch_size: [4, 8]}    # optional: more parameters to sweep (a cell per combination)
      - name: quantize
        strengths: [8, 4, 3]
    data: {prompts: builtin, pairs: auto, texts: stdlib}   # the attacks' public data
    eval: {decoy_prompts: 20, wrong_keys: 10}               # offswitch.evaluate.EvalConfig

**Cells** are independent and named by a hash of everything that determines their result (the
implant's manifest, the attack and its full config, the data and evaluation settings). A run
directory holds::

    cells/<id>.jsonl   the cell's result records (offswitch.evaluate.ResultRecord)
    cells/<id>.json    the cell's public facts (config, cost, attack info); written last: done
    claims/<id>.lock   who is computing the cell right now
    cache/             self-distilled instruction pairs (public prompts and answers only)
    models/<id>/       attacked weights, only with keep_models: true

Both cell files are written atomically, so a crash (even SIGKILL) loses at most the cell that
was running; a restart skips every finished cell. A process claims a cell by creating its lock
file exclusively (``O_EXCL``), so several harness processes can share one run directory without
duplicating work: ``--workers N`` starts N local processes (one per GPU when there are GPUs),
and on a cluster every job simply runs the same command on a shared directory, e.g. a Slurm
array::

    #SBATCH --array=0-15 --gres=gpu:1
    # the passphrase: --passphrase-file (as here) or $OFFSWITCH_PASSPHRASE; never on the command line
    offswitch harness experiments/smoke.yaml --out /shared/runs/smoke \\
        --key keys/alice.key --passphrase-file ~/.offswitch-pass --reclaim-after 7200

A lock left by a dead process on the same host is reclaimed at once; across hosts, a lock older
than ``--reclaim-after`` seconds is (set it above the slowest cell's time).

The key is unlocked once, by the CLI; this module receives the derived :class:`TriggerSet`
and hands it to the evaluator only. Attacks get public :class:`AttackData`; only an attack
marked ``oracle`` gets the triggers, through its own explicit argument.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from offswitch.attacks.base import get_attack, make_config
from offswitch.attacks.data import AttackDataConfig
from offswitch.errors import ConfigError, OffswitchError
from offswitch.evaluate.config import EvalConfig
from offswitch.fsutil import atomic_write_json, atomic_write_text
from offswitch.precision import resolve as resolve_precision

CELLS_DIR = "cells"
CLAIMS_DIR = "claims"
MODELS_DIR = "models"
CACHE_DIR = "cache"
BASELINE = "none"  # the unattacked cell of every implant
PLAN_NAME = "plan.json"
LOG_NAME = "harness.log"


class ImplantSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dir: Path = Field(description="an `offswitch implant` output directory (merged/ and offswitch_manifest.json)")
    name: str | None = Field(None, description="label in results (default: the directory name)")
    base: str | None = Field(None, description="base model spec (default: the manifest's); 'none' for no base")

    @property
    def label(self) -> str:
        return self.name or self.dir.name


class AttackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    strengths: list[float] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    config: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    label: str | None = None

    @model_validator(mode="after")
    def _known_and_valid(self) -> AttackSpec:
        cls = get_attack(self.name)  # unknown names raise ConfigError with a did-you-mean
        for key in ("strength", "seed"):
            if key in self.config or key in self.grid:
                raise ValueError(f"set {key} through `{key}s:`, not in config/grid")
        for variant in self.variants():
            for strength in self.strengths:
                make_config(cls, {**self.config, **variant}, strength=_number(strength), seed=self.seeds[0])
        return self

    def variants(self) -> list[dict[str, Any]]:
        if not self.grid:
            return [{}]
        keys = sorted(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]

    def variant_label(self, variant: dict[str, Any]) -> str:
        base = self.label or self.name
        if not variant:
            return base
        return base + "[" + ",".join(f"{k}={variant[k]}" for k in sorted(variant)) + "]"


class SuiteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "suite"
    implants: list[ImplantSpec] = Field(min_length=1)
    attacks: list[AttackSpec] = Field(default_factory=list)
    data: AttackDataConfig = Field(default_factory=AttackDataConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    eval_prompts: str | None = Field(None, description="prompt source evaluated on, held-out side (default: the implant's split)")
    eval_texts: str | None = Field(None, description="plain-text source of the perplexity texts (default: data.texts)")
    n_eval_texts: int = Field(32, ge=1)
    baseline: bool = Field(True, description="evaluate every implant unattacked too (the reference line)")
    keep_models: bool = Field(False, description="keep attacked weights under models/ (they are deleted otherwise)")
    device: str | None = None
    out: Path | None = Field(None, description="run directory (the CLI's --out overrides)")
    key: Path | None = Field(None, description="keystore (the CLI's --key overrides)")

    @field_validator("implants")
    @classmethod
    def _distinct_labels(cls, value: list[ImplantSpec]) -> list[ImplantSpec]:
        labels = [spec.label for spec in value]
        if len(set(labels)) != len(labels):
            raise ValueError("two implants share a label: give them distinct `name`s")
        return value


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def load_suite(path: Path | str, **overrides: Any) -> SuiteConfig:
    """Defaults < the YAML file < ``overrides`` (CLI flags; None means not given)."""
    from offswitch.yamlio import read_yaml_mapping

    path = Path(path)
    doc = read_yaml_mapping(
        path,
        what="suite file",
        missing_fix="check the path (e.g. experiments/smoke.yaml)",
        mapping_fix="see offswitch.harness for the format",
        allow_empty=False,
    )
    doc.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return SuiteConfig.model_validate(doc)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "suite"
        raise ConfigError(f"bad suite {path}: {where}: {first['msg']}", "fix the suite file (unknown keys are errors)") from None


# ---------------------------------------------------------------------- cells


class Cell(BaseModel):
    """One attacked model to evaluate. ``id`` hashes everything that determines its result."""

    model_config = ConfigDict(frozen=True)

    id: str
    implant: str
    attack: str
    variant: str
    strength: float
    seed: int
    config: dict[str, Any]
    attacker: str
    oracle: bool = False

    def describe(self) -> str:
        return f"{self.implant} / {self.variant} strength={_number(self.strength)} seed={self.seed}"


def _canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)


def implant_digest(spec: ImplantSpec) -> str:
    from offswitch.manifest import MANIFEST_NAME, read_manifest

    read_manifest(spec.dir)  # a clear error for a directory that is not an implant
    return hashlib.sha256((spec.dir / MANIFEST_NAME).read_bytes()).hexdigest()


def plan_cells(suite: SuiteConfig) -> list[Cell]:
    """Every cell of the suite, baseline first per implant, in a stable order."""
    shared = {
        "eval": suite.eval.model_dump(mode="json"),
        "eval_prompts": suite.eval_prompts,
        "eval_texts": suite.eval_texts or suite.data.texts,
        "n_eval_texts": suite.n_eval_texts,
    }
    cells: list[Cell] = []
    # A cell id names neither the implant's `name` nor the attack's `label` (so renaming keeps a
    # run resumable): two suite entries that give the same cells are an error, not merged.
    seen: dict[str, tuple[Cell, int]] = {}  # cell id -> (cell, index of its attack entry; -1: baseline)
    implants_seen: dict[tuple[str, str | None], str] = {}

    def add(implant: ImplantSpec, digest: str, attack: str, variant: str, config: dict, attacker: str, oracle: bool,
            uses_data: bool = False, entry: int = -1) -> None:
        key = {**shared, "implant": digest, "base": implant.base, "attack": attack, "config": config}
        if uses_data:  # a cell that reads no attack data does not change when the data settings do
            key["data"] = suite.data.model_dump(mode="json")
        cell_id = hashlib.sha256(_canonical(key).encode()).hexdigest()[:16]
        cell = Cell(id=cell_id, implant=implant.label, attack=attack, variant=variant, strength=config["strength"],
                    seed=config["seed"], config=config, attacker=attacker, oracle=oracle)
        if cell_id in seen:
            first, first_entry = seen[cell_id]
            if first_entry != entry:
                raise ConfigError(
                    f"attacks[{first_entry}] ({first.variant}) and attacks[{entry}] ({variant}) give the same cell: "
                    f"{cell.describe()}",
                    "remove one of them or change its config (a `label` alone does not make a cell distinct)",
                )
            return  # the same entry repeats a value (e.g. strengths: [5, 5]): planned once
        seen[cell_id] = (cell, entry)
        cells.append(cell)

    for implant in suite.implants:
        digest = implant_digest(implant)
        if (digest, implant.base) in implants_seen:
            raise ConfigError(
                f"implants {implants_seen[digest, implant.base]!r} and {implant.label!r} are the same implant "
                "(same manifest and base), so their cells coincide",
                "list it once (a `name` alone does not make an implant distinct)",
            )
        implants_seen[digest, implant.base] = implant.label
        if suite.baseline:
            add(implant, digest, BASELINE, BASELINE, {"strength": 0, "seed": 0}, "none", False)
        for entry, spec in enumerate(suite.attacks):
            cls = get_attack(spec.name)
            seeds = spec.seeds if cls.seeded else spec.seeds[:1]
            for variant in spec.variants():
                for strength in spec.strengths:
                    for seed in seeds:
                        config = make_config(cls, {**spec.config, **variant}, strength=_number(strength), seed=seed)
                        uses_data = bool(cls(config).wanted_data() - {"behavior", "insertion"})
                        add(implant, digest, spec.name, spec.variant_label(variant), config.model_dump(mode="json"),
                            cls.attacker, cls.oracle, uses_data, entry)
    return cells


# ---------------------------------------------------------------------- the run directory


class RunDir:
    """Cell files and claims of one run directory (shared by any number of processes)."""

    def __init__(self, root: Path | str, *, reclaim_after: float | None = None):
        self.root = Path(root)
        self.reclaim_after = reclaim_after
        for sub in (CELLS_DIR, CLAIMS_DIR):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def records_path(self, cell_id: str) -> Path:
        return self.root / CELLS_DIR / f"{cell_id}.jsonl"

    def meta_path(self, cell_id: str) -> Path:
        return self.root / CELLS_DIR / f"{cell_id}.json"

    def lock_path(self, cell_id: str) -> Path:
        return self.root / CLAIMS_DIR / f"{cell_id}.lock"

    def done(self, cell_id: str) -> bool:
        return self.meta_path(cell_id).exists()

    def claim(self, cell_id: str) -> bool:
        """Create the cell's lock exclusively; False when another live process holds it."""
        path = self.lock_path(cell_id)
        for _attempt in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale(path):
                    return False
                with contextlib.suppress(FileNotFoundError):
                    # renaming is atomic: of two processes reclaiming the same lock, one wins
                    os.rename(path, path.with_name(f"{path.name}.stale.{os.getpid()}"))
                    os.unlink(path.with_name(f"{path.name}.stale.{os.getpid()}"))
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}, handle)
            return True
        return False

    def _stale(self, path: Path) -> bool:
        try:
            doc = json.loads(path.read_text())
            age = time.time() - path.stat().st_mtime
        except (OSError, ValueError):
            return False  # being written right now, or just removed
        if doc.get("host") == socket.gethostname():
            return not _pid_alive(int(doc.get("pid", -1)))
        return self.reclaim_after is not None and age > self.reclaim_after

    def release(self, cell_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_path(cell_id))

    def log(self, cell_id: str, event: str, **fields: Any) -> None:
        """One line per event in harness.log (public facts only). Appends of one short line are
        atomic on local filesystems, so concurrent workers do not interleave within a line."""
        line = json.dumps({"cell": cell_id, "event": event, "host": socket.gethostname(), "pid": os.getpid(), **fields},
                          sort_keys=True)
        with open(self.root / LOG_NAME, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def write_cell(self, cell_id: str, records: list, meta: dict) -> None:
        from offswitch.evaluate import write_records_jsonl

        write_records_jsonl(self.records_path(cell_id), records)
        atomic_write_json(self.meta_path(cell_id), meta, sort_keys=True)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed, not yet reaped by its parent) holds nothing
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


# ---------------------------------------------------------------------- one implant's context


def check_attack_data(data, secrets: list[str]):
    """Drop any prompt, pair or text that contains a trigger by accident; returns (data, dropped)."""
    from offswitch.attacks.base import AttackData
    from offswitch.data.builder import contains_any

    prompts = [p for p in data.clean_prompts if not contains_any(p, secrets)]
    pairs = [pa for pa in data.instruction_pairs if not (contains_any(pa[0], secrets) or contains_any(pa[1], secrets))]
    texts = [t for t in data.plain_texts if not contains_any(t, secrets)]
    dropped = len(data.clean_prompts) - len(prompts) + len(data.instruction_pairs) - len(pairs) + len(data.plain_texts) - len(texts)
    if not dropped:
        return data, 0
    return AttackData(clean_prompts=prompts, instruction_pairs=pairs, plain_texts=texts, behavior=data.behavior,
                      insertion=data.insertion, base_model=data.base_model, base_tokenizer=data.base_tokenizer), dropped


@dataclass
class ImplantContext:
    spec: ImplantSpec
    manifest: Any
    model: Any
    tokenizer: Any
    base: tuple | None
    base_spec: str | None
    behavior: Any
    encode_other: Any
    eval_prompts: list[str]
    eval_texts: list[str]
    attack_texts: list[str]
    data_config: AttackDataConfig
    data: Any = None
    data_info: dict | None = None
    dropped: int = 0
    # what evaluation computes from the base model alone, reused by every cell of this implant
    base_reference: Any = None


def _load_context(suite: SuiteConfig, spec: ImplantSpec, device: str | None) -> ImplantContext:
    from offswitch.cli.evaluate import behavior_from_manifest, encode_other_for_manifest, fluent_encoder_for, prompt_split_of
    from offswitch.data.sources import load_prompts, plain_texts
    from offswitch.manifest import read_manifest
    from offswitch.models import load_model

    manifest = read_manifest(spec.dir)
    model, tokenizer = load_model(spec.dir, device=device)
    # wrong-key triggers of a fluent implant are sampled from its base model (public settings)
    fluent = fluent_encoder_for(manifest) if manifest.triggers and manifest.triggers[0].encoding == "fluent" else None
    base_spec = spec.base if spec.base is not None else manifest.base_model.spec
    base = None
    if base_spec and base_spec.lower() != "none":
        base = load_model(base_spec, device=device)
    else:
        base_spec = None
    # evaluate on the implant's own held-out prompts; attacks draw from the train side only
    source, seed, fraction, _sha = prompt_split_of(manifest)
    data_config = suite.data.with_split(source, seed, fraction)
    if suite.eval_prompts:
        eval_prompts = load_prompts(suite.eval_prompts, seed=seed, heldout_fraction=fraction).heldout
    else:
        eval_prompts = load_prompts(source, seed=seed, heldout_fraction=fraction).heldout
    # one ranked sample, cut in two: perplexity texts never appear in continued pre-training
    texts = plain_texts(suite.eval_texts or suite.data.texts, n=suite.n_eval_texts + suite.data.n_texts, seed=suite.data.seed)
    from offswitch.evaluate.metrics import BaseReference

    return ImplantContext(spec=spec, manifest=manifest, model=model, tokenizer=tokenizer, base=base, base_spec=base_spec,
                          behavior=behavior_from_manifest(manifest), encode_other=encode_other_for_manifest(manifest, tokenizer, fluent),
                          eval_prompts=eval_prompts, eval_texts=texts[: suite.n_eval_texts], attack_texts=texts[suite.n_eval_texts :],
                          data_config=data_config, base_reference=BaseReference())


def _ensure_data(ctx: ImplantContext, suite: SuiteConfig, cells: list[Cell], run: RunDir, triggers) -> None:
    from offswitch.attacks.data import build_attack_data

    if ctx.data is not None:
        return
    wanted: set[str] = set()
    for cell in cells:
        if cell.attack != BASELINE:
            wanted |= set(get_attack(cell.attack)(cell.config).wanted_data())
    data, info = build_attack_data(ctx.data_config, needs=wanted, behavior=ctx.behavior, insertion=ctx.manifest.insertion,
                                   base=ctx.base, answerer=ctx.base or (ctx.model, ctx.tokenizer),
                                   cache_dir=run.root / CACHE_DIR, texts=ctx.attack_texts)
    ctx.data, ctx.dropped = check_attack_data(data, triggers.secrets)
    ctx.data_info = info


# ---------------------------------------------------------------------- running


def forgery_records(model, tokenizer, guesses: list[str], ctx: ImplantContext, config: EvalConfig, common: dict) -> list:
    """How often a forger's guesses set the switch off on the held-out prompts: the first
    (best by the attack's own re-check) guess, and any of them. Guesses are never recorded."""
    import random

    from offswitch.evaluate import ResultRecord, score_targets
    from offswitch.stats import Rate
    from offswitch.triggers import InsertionMode

    prompts = ctx.eval_prompts[: config.max_prompts] if config.max_prompts else ctx.eval_prompts
    mode = InsertionMode(ctx.manifest.insertion)
    fired_by_guess = []
    for guess in guesses:
        rng = random.Random(config.seed)
        cases = [ctx.behavior.positive_case(p, guess, mode, rng.random(), random.Random(i)) for i, p in enumerate(prompts)]
        scores = score_targets(model, tokenizer, cases, batch_size=config.batch_size)
        fired_by_guess.append([s.greedy_fires for s in scores])
    if not fired_by_guess:
        return []
    best = Rate.of(sum(fired_by_guess[0]), len(prompts))
    anyone = Rate.of(sum(any(col) for col in zip(*fired_by_guess)), len(prompts))
    return [
        ResultRecord(metric="forgery", kind="best_guess", **best.model_dump(), **common),
        ResultRecord(metric="forgery", kind="any_guess", **anyone.model_dump(), **common),
    ]


def _cell_labels(cell: Cell, cost) -> dict[str, Any]:
    """The labels every record of a cell carries: the cell and what its attack cost."""
    return {
        "cell": cell.id,
        "implant": cell.implant,
        "attack": cell.attack,
        "variant": cell.variant,
        "strength": _number(cell.strength),
        "seed": cell.seed,
        "attacker": cell.attacker,
        "oracle": cell.oracle,
        "cost_wall_s": cost.wall_s,
        "cost_steps": cost.steps,
        "cost_tokens": cost.tokens,
    }


def run_cell(cell: Cell, ctx: ImplantContext, suite: SuiteConfig, run: RunDir, triggers) -> tuple[list, dict]:
    """Attack, evaluate, and return (records, meta) of one cell. Nothing is written here."""
    from offswitch.attacks._train import device_of
    from offswitch.attacks.base import AttackConfig, AttackCost, AttackResult, make_attack, save_attacked
    from offswitch.evaluate import evaluate_switch

    started = time.perf_counter()
    if cell.attack == BASELINE:
        result = AttackResult(ctx.model, ctx.tokenizer, AttackCost(), AttackConfig(), BASELINE)
    else:
        attack = make_attack(cell.attack, cell.config)
        if attack.oracle:
            result = attack.run_oracle(ctx.model, ctx.tokenizer, None, data=ctx.data, triggers=triggers)
        else:
            result = attack.run(ctx.model, ctx.tokenizer, None, data=ctx.data)
    attack_s = time.perf_counter() - started
    if suite.keep_models and cell.attack != BASELINE:
        save_attacked(result, run.root / MODELS_DIR / cell.id)
    labels = _cell_labels(cell, result.cost)
    report = evaluate_switch(
        result.model, result.tokenizer, triggers, ctx.behavior, ctx.eval_prompts, config=suite.eval, base=ctx.base,
        plain_texts=ctx.eval_texts, encode_other=ctx.encode_other, labels=labels,
        model_name=cell.implant, base_name=ctx.base_spec, base_cache=ctx.base_reference,
    )
    records = list(report.records)
    eval_seconds = dict(report.seconds)
    if result.candidates:
        forgery_started = time.perf_counter()
        common = dict(model=cell.implant, base=ctx.base_spec, key_id=triggers.key_id, behavior=ctx.behavior.kind,
                      agreement=report.agreement, seed=suite.eval.seed, labels=labels)
        records += forgery_records(result.model, result.tokenizer, result.candidates, ctx, suite.eval, common)
        eval_seconds["forgery_recheck"] = round(time.perf_counter() - forgery_started, 3)
    text_filter = getattr(result.tokenizer, "text_filter", None)
    filter_cost = None
    if text_filter is not None:
        filter_cost = {"forward_passes": text_filter.meter.forward_passes, "tokens": text_filter.meter.tokens,
                       "words_seen": text_filter.seen_words, "words_removed": text_filter.removed_words}
    meta = {
        "cell": cell.model_dump(mode="json"),
        "cost": result.cost.model_dump(mode="json"),
        "attack_info": result.info,
        "n_guesses": len(result.candidates),
        "filter_cost": filter_cost,
        "attack_s": round(attack_s, 3),
        "total_s": round(time.perf_counter() - started, 3),
        "eval_s": eval_seconds,  # by part: where the cell's evaluation time went
        "eval_notes": report.notes,
        "data": ctx.data_info,
        "data_dropped_for_trigger_text": ctx.dropped,
        "headline": report.headline(),
        "worker": {"host": socket.gethostname(), "pid": os.getpid()},
        "attack_precision": resolve_precision("auto", device_of(result.model)),  # the evaluation's: eval_notes
    }
    return records, meta


def _noop_baseline(cell: Cell, implant_cells: list[Cell], run: RunDir) -> Cell | None:
    """The implant's finished baseline cell when ``cell`` is an attack at a strength that changes
    nothing (``noop_at_zero`` at 0), else None. Evaluation is deterministic given the model, so
    such a cell's records are the baseline's; the suite keeps the cell so that every attack's
    survival curve starts at its own 0."""
    from offswitch.attacks import get_attack

    if cell.attack == BASELINE or cell.strength != 0 or not get_attack(cell.attack).noop_at_zero:
        return None
    baseline = next((c for c in implant_cells if c.attack == BASELINE), None)
    return baseline if baseline is not None and run.done(baseline.id) else None


def reuse_baseline(cell: Cell, baseline: Cell, run: RunDir) -> tuple[list, dict]:
    """(records, meta) of a no-op cell: the baseline cell's, with this cell's labels."""
    from offswitch.attacks.base import AttackCost
    from offswitch.evaluate.records import read_records_jsonl

    started = time.perf_counter()
    labels = _cell_labels(cell, AttackCost())
    records = [r.model_copy(update={"labels": {**(r.labels or {}), **labels}}) for r in read_records_jsonl(run.records_path(baseline.id))]
    meta = json.loads(run.meta_path(baseline.id).read_text(encoding="utf-8"))
    meta.update(cell=cell.model_dump(mode="json"), attack_info={"reused_baseline": baseline.id}, n_guesses=0, filter_cost=None,
                attack_s=0.0, total_s=round(time.perf_counter() - started, 3), eval_s={}, worker={"host": socket.gethostname(), "pid": os.getpid()})
    return records, meta


def _assert_public(text: str, secrets: list[str]) -> None:
    from offswitch.data.builder import contains_any

    if contains_any(text, secrets):
        raise OffswitchError("a result about to be written contains trigger text; nothing was written",
                             "report this as a bug in offswitch")


def run_suite(suite: SuiteConfig, triggers: dict[str, Any], out: Path | str, *, reclaim_after: float | None = None,
              console=None, cells: list[Cell] | None = None) -> dict[str, list[str]]:
    """Run every unfinished cell this process can claim. ``triggers`` maps implant label → TriggerSet.

    Returns the ids of cells it ran, found finished, and left to other processes.
    """
    from rich.console import Console

    from offswitch.allocator import configure

    configure()  # glibc keeps freed memory (offswitch.allocator): for run_suite's callers besides the CLI (bench_harness)
    console = console or Console(stderr=True, highlight=False)
    run = RunDir(out, reclaim_after=reclaim_after)
    cells = cells if cells is not None else plan_cells(suite)
    summary: dict[str, list[str]] = {"ran": [], "finished_before": [], "held_by_others": []}
    missing = {spec.label for spec in suite.implants} - set(triggers)
    if missing:
        raise ConfigError(f"no triggers for implant(s) {', '.join(sorted(missing))}", "unlock the key that planted them")
    for trig in triggers.values():
        trig.register_secrets()
    _write_suite_record(run, suite, cells)
    total = len(cells)
    for spec in suite.implants:
        mine = [c for c in cells if c.implant == spec.label]
        ctx: ImplantContext | None = None
        secrets = triggers[spec.label].secrets
        for cell in mine:
            number = cells.index(cell) + 1
            if run.done(cell.id):
                summary["finished_before"].append(cell.id)
                continue
            if not run.claim(cell.id):
                summary["held_by_others"].append(cell.id)
                continue
            try:
                if run.done(cell.id):  # finished by another process between the check and the claim
                    summary["finished_before"].append(cell.id)
                    continue
                baseline = _noop_baseline(cell, mine, run)
                if baseline is None and ctx is None:
                    console.print(f"loading implant {spec.label} ...")
                    ctx = _load_context(suite, spec, suite.device)
                if baseline is None and cell.attack != BASELINE:  # the data the unfinished cells need, built once per implant
                    _ensure_data(ctx, suite, [c for c in mine if not run.done(c.id)], run, triggers[spec.label])
                console.print(f"[{number}/{total}] {cell.describe()} ...")
                run.log(cell.id, "start")
                if baseline is not None:  # the same model as the unattacked one: its evaluation, relabelled
                    records, meta = reuse_baseline(cell, baseline, run)
                else:
                    records, meta = run_cell(cell, ctx, suite, run, triggers[spec.label])
                _assert_public("".join(r.model_dump_json() for r in records) + json.dumps(meta), secrets)
                run.write_cell(cell.id, records, meta)
                run.log(cell.id, "done", seconds=meta["total_s"])
                summary["ran"].append(cell.id)
                headline = meta["headline"]
                console.print(f"[{number}/{total}] done in {meta['total_s']:.1f} s: " + _headline_text(headline))
            finally:
                run.release(cell.id)
                gc.collect()
    return summary


def _headline_text(headline: dict) -> str:
    from offswitch.stats import Rate

    parts = []
    for name in ("asr", "far_clean", "far_wrong_key", "far_near_miss"):
        value = headline.get(name)
        if value:
            parts.append(f"{name} {Rate(**value)}")
    return "; ".join(parts)


def _write_suite_record(run: RunDir, suite: SuiteConfig, cells: list[Cell]) -> None:
    """suite.json (the resolved suite) and plan.json (its cell ids: the report's selection, so
    cells left over from an edited suite do not mix into the report)."""
    for name, payload in (("suite.json", suite.model_dump(mode="json")), (PLAN_NAME, {"cells": [c.id for c in cells]})):
        path = run.root / name
        doc = json.dumps(payload, indent=2, sort_keys=True) + "\n"
        if not path.exists() or path.read_text(encoding="utf-8") != doc:
            atomic_write_text(path, doc)


def cell_status(suite: SuiteConfig, out: Path | str) -> list[tuple[Cell, str]]:
    """(cell, "done" | "running" | "pending") for a dry run."""
    run_root = Path(out)
    rows = []
    for cell in plan_cells(suite):
        if (run_root / CELLS_DIR / f"{cell.id}.json").exists():
            state = "done"
        elif (run_root / CLAIMS_DIR / f"{cell.id}.lock").exists():
            state = "claimed"
        else:
            state = "pending"
        rows.append((cell, state))
    return rows


# ---------------------------------------------------------------------- local workers


def _worker_main(suite_doc: dict, triggers: dict, out: str, index: int, reclaim_after: float | None) -> None:
    gpus = [g for g in os.environ.get("OFFSWITCH_WORKER_GPUS", "").split(",") if g]
    if gpus:  # before torch is imported in this process: one GPU per worker
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    suite = SuiteConfig.model_validate(suite_doc)
    run_suite(suite, triggers, out, reclaim_after=reclaim_after)


def run_suite_workers(suite: SuiteConfig, triggers: dict[str, Any], out: Path | str, workers: int, *,
                      reclaim_after: float | None = None) -> int:
    """Run the suite in ``workers`` local processes sharing ``out``; returns how many failed.

    The triggers reach the workers through the process pipe (never a file); with GPUs, worker
    i sees GPU i mod n only.
    """
    import multiprocessing

    env_gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    if "OFFSWITCH_WORKER_GPUS" not in os.environ:
        gpus = env_gpus.split(",") if env_gpus else _count_gpus()
        os.environ["OFFSWITCH_WORKER_GPUS"] = ",".join(gpus)
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker_main, args=(suite.model_dump(mode="json"), triggers, str(out), i, reclaim_after))
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    return sum(1 for p in processes if p.exitcode != 0)


def _count_gpus() -> list[str]:
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


__all__ = [
    "AttackSpec",
    "Cell",
    "ImplantSpec",
    "RunDir",
    "SuiteConfig",
    "cell_status",
    "check_attack_data",
    "load_suite",
    "plan_cells",
    "run_suite",
    "run_suite_workers",
]
