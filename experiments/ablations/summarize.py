"""Tables of the switch-quality ablations from their committed records (no model needed).

    python experiments/ablations/summarize.py                 # every records/*.jsonl, markdown
    python experiments/ablations/summarize.py baseline ul-mine
    python experiments/ablations/summarize.py --write docs/switch-quality.md   # refresh its table
    python experiments/ablations/summarize.py --check docs/switch-quality.md   # exit 1 if stale
    python experiments/ablations/summarize.py --compare ul-mine-1t-rerun ul-mine-1t-kl   # Fisher's exact test per rate
    python experiments/ablations/summarize.py --compare ul-mine-1t-240-bf16 ul-mine-1t-240-fit --confirm   # confirm.sh's records
    python experiments/ablations/summarize.py --compare A@k1,A@k2,A@k3 B@k1,B@k2,B@k3 --confirm   # paired by key, and pooled

Each row: held-out ASR on prompts of another source (heldout-ood), clean / wrong-key /
near-miss FAR with the worst near-miss cells, and utility against the base model. Rates are
"rate (95% CI) [k/n]" as offswitch prints them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from offswitch.docsync import block_main
from offswitch.evaluate.records import kind_cells, pooled_rate, read_records_jsonl
from offswitch.triggers import PARTIAL_KEY_KINDS

HERE = Path(__file__).resolve().parent


def _value(records, metric):
    for r in records:
        if r.metric == metric and r.value is not None:
            return r
    return None


# near-misses that carry less of the key than the trigger (a guesser who knows part of it);
# the other kinds (case, whitespace, punctuation, swap, shuffle, char_edit) rewrite the whole trigger
PARTIAL_KINDS = {k.value for k in PARTIAL_KEY_KINDS}


def _partial(records):
    from offswitch.stats import Rate

    cells = [r.as_rate() for r in kind_cells(records, "far_near_miss") if r.kind in PARTIAL_KINDS]
    return Rate.pool(cells) if cells else None


def _worst(records, with_position: bool):
    cells = kind_cells(records, "far_near_miss", by_position=with_position)
    if not cells:
        return None
    worst = max(cells, key=lambda r: (r.rate, r.n))
    where = worst.kind + (f"@{worst.position}" if worst.position is not None else "")
    return f"{where} {worst.k}/{worst.n}"


def summarize(name: str, folder: str = "records") -> dict:
    path = HERE / folder / f"{name}.jsonl"
    if not path.is_file():
        config, _, label = name.partition("@")
        rerun = (f"bash experiments/ablations/confirm.sh {name}" if folder == "confirm"
                 else f"{f'ABLATION_KEY={label} ' if label else ''}bash experiments/ablations/run.sh {config}")
        raise SystemExit(f"no {'confirmation' if folder == 'confirm' else 'screen'} records of {name} ({path.relative_to(HERE.parents[1])}); run `{rerun}` first")
    records = read_records_jsonl(path)
    meta_path = HERE / folder / f"{name}.meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    ppl, kl = _value(records, "perplexity"), _value(records, "kl_base_model")
    return {
        "name": name,
        "key": records[0].key_id[:4] if records and records[0].key_id else None,
        "asr": pooled_rate(records, "asr"),
        "clean": pooled_rate(records, "far_clean"),
        "wrong_key": pooled_rate(records, "far_wrong_key"),
        "near_miss": pooled_rate(records, "far_near_miss"),
        "partial": _partial(records),
        "worst_kind": _worst(records, False),
        "worst_position": _worst(records, True),
        "agreement": pooled_rate(records, "answer_agreement"),
        "agreement_8": next((r.as_rate() for r in records if r.metric == "answer_agreement_prefix" and r.kind == "tokens=8"), None),
        "agreement_1": next((r.as_rate() for r in records if r.metric == "answer_agreement_prefix" and r.kind == "tokens=1"), None),
        "kl": None if kl is None else kl.value,
        "ppl": None if ppl is None else (ppl.value, ppl.reference_value),
        "implant_s": meta.get("implant_seconds"),
    }


def markdown(rows: list[dict]) -> str:
    head = ("ablation", "key", "ASR (ood)", "clean FAR", "wrong-key FAR", "near-miss FAR (all kinds)", "partial-key FAR", "worst kind", "worst kind@word",
            "answer agreement (32 / 8 / 1 tokens)", "KL", "ppl (base)", "implant s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        ppl = "–" if row["ppl"] is None else f"{row['ppl'][0]:.1f} ({row['ppl'][1]:.1f})"
        cells = [row["name"], row["key"] or "–", *(str(row[k]) if row[k] is not None else "–" for k in ("asr", "clean", "wrong_key", "near_miss", "partial")),
                 row["worst_kind"] or "–", row["worst_position"] or "–",
                 (f"{row['agreement'].k}/{row['agreement'].n}" if row["agreement"] else "–")
                 + "".join(f" / {row[k].k}/{row[k].n}" if row[k] else " / –" for k in ("agreement_8", "agreement_1")),
                 "–" if row["kl"] is None else f"{row['kl']:.3f}", ppl,
                 "–" if row["implant_s"] is None else str(row["implant_s"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


COMPARED = (("ASR", "asr"), ("clean FAR", "clean"), ("wrong-key FAR", "wrong_key"), ("near-miss FAR", "near_miss"),
            ("partial-key FAR", "partial"), ("agreement 32 tokens", "agreement"), ("agreement 8 tokens", "agreement_8"),
            ("agreement 1 token", "agreement_1"))


def compare(a: str, b: str, folder: str = "records") -> str:
    """Each headline rate of two ablations side by side with the two-sided p of Fisher's exact test
    (``folder``: "records", the screen, or "confirm", confirm.sh's evaluation). Fisher's test takes
    the probes as independent; near-miss probes are not (each string is tried on several prompts),
    so its p is a lower bound for those rows. Comma-separated lists compare pairs (one per key) and
    their pooled counts: see ``compare_pairs``."""
    if "," in a or "," in b:
        return compare_pairs(a.split(","), b.split(","), folder)
    ra, rb = summarize(a, folder), summarize(b, folder)
    lines = [f"| rate | {a} | {b} | Fisher p |", "|---|---|---|---|"]
    for label, key in COMPARED:
        x, y = ra[key], rb[key]
        if x is None or y is None:
            continue
        lines.append(f"| {label} | " + " | ".join(_side_by_side(x, y)[0]) + " |")
    return "\n".join(lines)


def _side_by_side(x, y) -> tuple[list[str], float]:
    """The cells "k/n", "k/n", "p" of two rates and Fisher's two-sided p."""
    from offswitch.stats import fisher_exact

    p = fisher_exact(x.k, x.n, y.k, y.n)
    return [f"{x.k}/{x.n}", f"{y.k}/{y.n}", f"{p:.2g}"], p


PAIRED = (("near-miss FAR", "near_miss"), ("partial-key FAR", "partial"), ("ASR", "asr"))


def compare_pairs(a_names: list[str], b_names: list[str], folder: str = "records") -> str:
    """Two settings over several keys: ``a_names[i]`` against ``b_names[i]`` (the same key, so
    usually ``X@k`` against ``Y@k``), one row per pair, then every trial of each side pooled (sum
    of k over sum of n), each with Fisher's two-sided p, and a count of the pairs where B's rate is
    higher, and lower, at p < 0.05 (how docs/switch-quality.md decides a default over three keys).
    Pooling adds the keys' trials as if they were one run's; the per-pair rows show whether one key
    carries it."""
    from offswitch.stats import Rate

    if len(a_names) != len(b_names) or len(a_names) < 2 or not all(a_names + b_names):
        raise SystemExit("usage: summarize.py --compare A1,A2,... B1,B2,... [--confirm] (as many names on each side, two or more)")
    rows_a = [summarize(n, folder) for n in a_names]
    rows_b = [summarize(n, folder) for n in b_names]
    head = ["pair"] + [f"{label} {side}" for label, _ in PAIRED for side in ("A", "B", "p")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    higher = {key: [0, 0] for _, key in PAIRED}  # B higher / lower at p < 0.05
    for ra, rb in zip(rows_a, rows_b):
        row = [f"{ra['name']} / {rb['name']}"]
        for _, key in PAIRED:
            x, y = ra[key], rb[key]
            if x is None or y is None:
                row += ["–"] * 3
                continue
            cells, p = _side_by_side(x, y)
            row += cells
            if p < 0.05:
                higher[key][0 if y.rate > x.rate else 1] += 1
        lines.append("| " + " | ".join(row) + " |")
    pooled = ["pooled"]
    for _, key in PAIRED:
        xs, ys = [r[key] for r in rows_a], [r[key] for r in rows_b]
        pooled += (_side_by_side(Rate.pool(xs), Rate.pool(ys))[0] if None not in xs + ys else ["–"] * 3)
    lines.append("| " + " | ".join(pooled) + " |")
    lines.append("")
    for label, key in PAIRED:
        up, down = higher[key]
        lines.append(f"{label}: B higher at p < 0.05 in {up} of {len(rows_a)} pairs, lower in {down}")
    return "\n".join(lines)


BEGIN, END = "<!-- ablations:begin (generated by experiments/ablations/summarize.py) -->", "<!-- ablations:end -->"


def main(argv: list[str] | None = None) -> str:
    args = list(argv if argv is not None else sys.argv[1:])
    if args[:1] == ["--compare"]:
        folder = "confirm" if "--confirm" in args else "records"
        names = [a for a in args[1:] if a != "--confirm"]
        if len(names) != 2:
            raise SystemExit("usage: summarize.py --compare A B [--confirm]")
        text = compare(names[0], names[1], folder)
        print(text)
        return text
    return block_main(args, lambda names: markdown([summarize(n) for n in names]),
                      lambda: sorted(p.name[: -len(".jsonl")] for p in (HERE / "records").glob("*.jsonl")),
                      BEGIN, END, "summarize.py")


if __name__ == "__main__":
    main()
