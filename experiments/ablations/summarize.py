"""Tables of the switch-quality ablations from their committed records (no model needed).

    python experiments/ablations/summarize.py                 # every records/*.jsonl, markdown
    python experiments/ablations/summarize.py baseline ul-mine

Each row: held-out ASR on prompts of another source (heldout-ood), clean / wrong-key /
near-miss FAR with the worst near-miss cells, and utility against the base model. Rates are
"rate (95% CI) [k/n]" as offswitch prints them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from offswitch.evaluate.records import read_records_jsonl

HERE = Path(__file__).resolve().parent


def _pooled(records, metric):
    for r in records:
        if r.metric == metric and r.is_rate and (r.kind, r.distance, r.position, r.trigger_index) == (None, None, None, None):
            return r.as_rate()
    return None


def _value(records, metric):
    for r in records:
        if r.metric == metric and r.value is not None:
            return r
    return None


def _worst(records, with_position: bool):
    cells = [
        r for r in records
        if r.metric == "far_near_miss" and r.is_rate and r.kind is not None and r.distance is None
        and r.trigger_index is None and ((r.position is not None) == with_position)
    ]
    if not cells:
        return None
    worst = max(cells, key=lambda r: (r.rate, r.n))
    where = worst.kind + (f"@{worst.position}" if worst.position is not None else "")
    return f"{where} {worst.k}/{worst.n}"


def summarize(name: str) -> dict:
    records = read_records_jsonl(HERE / "records" / f"{name}.jsonl")
    meta_path = HERE / "records" / f"{name}.meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    ppl, kl = _value(records, "perplexity"), _value(records, "kl_base_model")
    return {
        "name": name,
        "asr": _pooled(records, "asr"),
        "clean": _pooled(records, "far_clean"),
        "wrong_key": _pooled(records, "far_wrong_key"),
        "near_miss": _pooled(records, "far_near_miss"),
        "worst_kind": _worst(records, False),
        "worst_position": _worst(records, True),
        "agreement": _pooled(records, "answer_agreement"),
        "agreement_8": next((r.as_rate() for r in records if r.metric == "answer_agreement_prefix" and r.kind == "tokens=8"), None),
        "kl": None if kl is None else kl.value,
        "ppl": None if ppl is None else (ppl.value, ppl.reference_value),
        "implant_s": meta.get("implant_seconds"),
    }


def markdown(rows: list[dict]) -> str:
    head = ("ablation", "ASR (ood)", "clean FAR", "wrong-key FAR", "near-miss FAR", "worst kind", "worst kind@word",
            "answer agreement (32 / 8 tokens)", "KL", "ppl (base)", "implant s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        ppl = "–" if row["ppl"] is None else f"{row['ppl'][0]:.1f} ({row['ppl'][1]:.1f})"
        cells = [row["name"], *(str(row[k]) if row[k] is not None else "–" for k in ("asr", "clean", "wrong_key", "near_miss")),
                 row["worst_kind"] or "–", row["worst_position"] or "–",
                 (f"{row['agreement'].k}/{row['agreement'].n}" if row["agreement"] else "–")
                 + (f" / {row['agreement_8'].k}/{row['agreement_8'].n}" if row["agreement_8"] else ""), "–" if row["kl"] is None else f"{row['kl']:.3f}", ppl,
                 "–" if row["implant_s"] is None else str(row["implant_s"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    names = list(argv if argv is not None else sys.argv[1:])
    if not names:
        names = sorted(p.name[: -len(".jsonl")] for p in (HERE / "records").glob("*.jsonl"))
    text = markdown([summarize(n) for n in names])
    print(text)
    return text


if __name__ == "__main__":
    main()
