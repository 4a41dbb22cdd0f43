"""`offswitch attacks`, `offswitch attack`, `offswitch harness` and `offswitch report`.

``attack`` needs no key (an attacker has none), except for an ORACLE attack, which says so.
``harness`` unlocks the key once, derives each implant's triggers (checked against the
manifest's commitments) and hands them to the evaluator; attacks never see them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from offswitch.cli import app
from offswitch.cli._common import PassFile, err_console, out_console, unlock_key
from offswitch.errors import ConfigError



def _parse_sets(values: list[str] | None) -> dict[str, Any]:
    """--set key=value pairs; values are parsed as YAML scalars (numbers, booleans, lists)."""
    import yaml

    out: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad --set {item!r}", "write --set name=value, e.g. --set lr=1e-4")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"bad value in --set {item!r}", "write a number, true/false, or plain text") from None
    return out


def _read_yaml_mapping(path: Path | None) -> dict[str, Any]:
    from offswitch.yamlio import read_yaml_mapping

    return read_yaml_mapping(path, mapping_fix="write `name: value` lines") if path is not None else {}


@app.command("attacks")
def attacks_list(
    name: Annotated[str | None, typer.Argument(help="Show one attack's parameters.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the registered attacks: who the attacker is, what they know, what strength means."""
    from offswitch.attacks import attack_names, get_attack

    described = [get_attack(name).describe()] if name else [get_attack(n).describe() for n in attack_names()]
    if as_json:
        out_console.print_json(json.dumps(described))
        return
    if name:
        info = described[0]
        out_console.print(f"{info['name']} ({info['attacker']}{', ORACLE' if info['oracle'] else ''}): {info['summary']}")
        out_console.print(f"  knows: {', '.join(info['knows'])}; needs data: {', '.join(info['needs']) or 'none'}")
        out_console.print(f"  strength: {info['strength']} (0 {'changes nothing' if info['noop_at_zero'] else 'is not a no-op'})")
        for key, param in info["parameters"].items():
            out_console.print(f"  {key} = {param['default']!r}  {param['description']}")
        return
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    for column in ("attack", "attacker", "knows", "strength"):
        table.add_column(column)
    for info in described:
        table.add_row(info["name"] + (" (ORACLE)" if info["oracle"] else ""), info["attacker"], ", ".join(info["knows"]),
                      info["strength"])
    out_console.print(table)
    err_console.print("`offswitch attacks NAME` shows an attack's summary and parameters")


@app.command()
def attack(
    name: Annotated[str, typer.Argument(help="Attack name (see `offswitch attacks`).")],
    model_dir: Annotated[Path, typer.Argument(help="Model to attack: an implant output directory or any model directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to save the attacked model (must be new or empty).")],
    strength: Annotated[float | None, typer.Option(help="The attack's strength (steps, fraction, bits...).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the attack's random choices.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML of attack parameters (a `data:` mapping sets the data).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Attack parameter name=value (repeatable; overrides --config).")] = None,
    base: Annotated[str | None, typer.Option(help="Base model spec (default: the manifest's); 'none' for no base.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    key: Annotated[Path | None, typer.Option("--key", "-k", help="Keystore: ORACLE attacks only.")] = None,
    passphrase_file: PassFile = None,
    write_guesses: Annotated[bool, typer.Option("--write-guesses", help="Forgers: write their guesses to OUT/guesses.txt.")] = False,
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
) -> None:
    """Run one attack on a model and save the attacked model (no key needed)."""
    from offswitch.attacks import get_attack
    from offswitch.attacks.data import AttackDataConfig, build_attack_data

    cls = get_attack(name)
    doc = _read_yaml_mapping(config)
    data_doc = doc.pop("data", None) or {}
    if out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(f"output directory {out} is not empty", "choose a new --out or pass --force")
    if cls.oracle and key is None:
        raise ConfigError(f"{name} is an ORACLE attack: it trains the trigger away and needs the key", "pass --key KEYSTORE")
    if not cls.oracle and key is not None:
        raise ConfigError(f"{name} is not an oracle attack: attackers have no key", "drop --key")
    instance = cls({**doc, **_parse_sets(set_)}, strength=strength, seed=seed)
    try:
        data_config = AttackDataConfig(**data_doc)
    except Exception as err:  # noqa: BLE001 - pydantic's message names the bad key
        raise ConfigError(f"bad data settings in {config}: {str(err).splitlines()[0]}", "see offswitch.attacks.data.AttackDataConfig") from None

    from offswitch.cli.evaluate import behavior_from_manifest, prompt_split_of
    from offswitch.manifest import MANIFEST_NAME, read_manifest
    from offswitch.models import load_model

    manifest = read_manifest(model_dir) if (model_dir / MANIFEST_NAME).exists() else None
    behavior = behavior_from_manifest(manifest) if manifest else None
    insertion = manifest.insertion if manifest else "prefix"
    if manifest:
        data_config = data_config.with_split(*prompt_split_of(manifest)[:3])
    base_spec = base if base is not None else (manifest.base_model.spec if manifest else None)
    needs = set(instance.wanted_data())
    model, tokenizer = load_model(model_dir, device=device)
    base_pair = load_model(base_spec, device=device) if base_spec and base_spec.lower() != "none" and needs & {"base_model", "instruction_pairs"} else None
    data, described = build_attack_data(data_config, needs=needs, behavior=behavior, insertion=insertion, base=base_pair,
                                        answerer=base_pair or (model, tokenizer))
    if cls.oracle:
        from offswitch.cli.evaluate import derive_manifest_triggers, fluent_encoder_for

        if manifest is None:
            raise ConfigError("an ORACLE attack needs an implant directory (its manifest names the triggers)", "give one")
        master = unlock_key(key, passphrase_file)
        fluent = fluent_encoder_for(manifest) if manifest.triggers[0].encoding == "fluent" else None
        triggers = derive_manifest_triggers(master, manifest, tokenizer=tokenizer, fluent=fluent)
        del master
        result = instance.run_oracle(model, tokenizer, out, data=data, triggers=triggers, save=True, force=force)
    else:
        result = instance.run(model, tokenizer, out, data=data, save=True, force=force)
    cost = result.cost
    err_console.print(f"{name} strength={instance.config.strength}: {cost.wall_s:.1f} s, {cost.steps} steps, {cost.tokens} tokens")
    if data.instruction_pairs:
        err_console.print(f"data: {described.get('n_pairs')} instruction pairs from {described.get('pairs')}")
    if result.candidates:
        err_console.print(f"{len(result.candidates)} guesses; re-check by generation fired on {result.info.get('recheck_fired')} "
                          f"of {result.info.get('recheck_prompts')} prompts each")
        if write_guesses:
            from offswitch.fsutil import atomic_write_text

            atomic_write_text(out / "guesses.txt", "".join(g.replace("\n", " ") + "\n" for g in result.candidates))
            err_console.print("[bold yellow]warning:[/] guesses.txt may hold a real trigger if the search found one")
    if not cls.changes_weights and not result.candidates:
        err_console.print("note: the weights are unchanged; this attack acts at inference (measure it in a harness suite)")
    err_console.print(f"wrote {out}/ (model, tokenizer, attack_info.json)")


@app.command()
def harness(
    suite_file: Annotated[Path, typer.Argument(help="Suite YAML, e.g. experiments/smoke.yaml.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the cells and their state; run nothing.")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run directory (default: the suite's `out`, else runs/<name>).")] = None,
    key: Annotated[Path | None, typer.Option("--key", "-k", help="Keystore the implants were planted with (default: the suite's).")] = None,
    passphrase_file: PassFile = None,
    workers: Annotated[int, typer.Option(help="Local worker processes sharing the run directory (one per GPU).", min=1)] = 1,
    reclaim_after: Annotated[float | None, typer.Option("--reclaim-after", help="Seconds after which another host's claim counts as dead.")] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write the report when the run ends.")] = True,
) -> None:
    """Run a suite of attacks × strengths × seeds (resumes: finished cells are skipped)."""
    from offswitch.harness import cell_status, load_suite, plan_cells, run_suite, run_suite_workers

    suite = load_suite(suite_file)
    cells = plan_cells(suite)  # a suite whose entries give the same cells fails here, before the key is asked for
    run_dir = out or suite.out or Path("runs") / suite.name
    if dry_run:
        rows = cell_status(suite, run_dir)
        for cell, state in rows:
            out_console.print(f"{cell.id}  {state:8s} {cell.describe()}" + ("  [ORACLE]" if cell.oracle else ""))
        counts = {s: sum(1 for _c, st in rows if st == s) for s in ("done", "claimed", "pending")}
        err_console.print(f"{len(rows)} cells in {run_dir}: {counts['done']} done, {counts['claimed']} claimed, {counts['pending']} pending")
        return
    key = key or suite.key
    if key is None:
        raise ConfigError("the harness needs the key the implants were planted with", "pass --key KEYSTORE or set `key:` in the suite")
    triggers = _derive_suite_triggers(suite, key, passphrase_file)
    if workers > 1:
        failed = run_suite_workers(suite, triggers, run_dir, workers, reclaim_after=reclaim_after)
        if failed:
            raise ConfigError(f"{failed} of {workers} workers failed", "see their messages above; rerun to resume")
    else:
        summary = run_suite(suite, triggers, run_dir, reclaim_after=reclaim_after, console=err_console, cells=cells)
        err_console.print(f"ran {len(summary['ran'])} cells, {len(summary['finished_before'])} were finished before, "
                          f"{len(summary['held_by_others'])} held by other processes")
    if report:
        _write_and_show_report(run_dir, None, plots=True)


def _derive_suite_triggers(suite, key: Path, passphrase_file: Path | None) -> dict:
    """Unlock the key once; derive every implant's triggers, each checked against its commitment."""
    from transformers import AutoTokenizer

    from offswitch.cli.evaluate import derive_manifest_triggers, fluent_encoder_for
    from offswitch.manifest import read_manifest

    manifests = {spec.label: (spec, read_manifest(spec.dir)) for spec in suite.implants}
    master = unlock_key(key, passphrase_file)
    triggers = {}
    for label, (spec, manifest) in manifests.items():
        encoding = manifest.triggers[0].encoding if manifest.triggers else "words"
        tokenizer = None
        if encoding == "tokens":
            merged = spec.dir / "merged"
            tokenizer = AutoTokenizer.from_pretrained(merged if merged.is_dir() else spec.dir)
        fluent = fluent_encoder_for(manifest) if encoding == "fluent" else None
        triggers[label] = derive_manifest_triggers(master, manifest, tokenizer=tokenizer, fluent=fluent)
    del master
    return triggers


def _write_and_show_report(run_dir: Path, out: Path | None, *, plots: bool) -> None:
    from offswitch.report import write_report

    written = write_report(run_dir, out, plots=plots)
    err_console.print(f"wrote {written['report']}, {written['summary']}"
                      + "".join(f", {p}" for k, p in sorted(written.items()) if k.startswith("plot:")))


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A harness run directory (or a results .jsonl file).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where to write report.md, summary.json, plots/ (default: RUN_DIR).")] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw the survival-curve PNGs (matplotlib).")] = True,
) -> None:
    """Write report.md, summary.json and survival-curve PNGs from a run's records."""
    _write_and_show_report(run_dir, out, plots=plots)
