"""The result of one evaluation: records, the scorer's agreement with generation, a headline
for manifests and a table for the terminal. Public: no trigger or near-miss text anywhere."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from offswitch.evaluate.records import ResultRecord, kind_cells
from offswitch.stats import Rate

HEADLINE_RATES = ("asr", "far_clean", "far_wrong_key", "far_near_miss", "far_placement")


class EvalReport(BaseModel):
    records: list[ResultRecord]
    agreement: Rate
    # one dict per case where the scorer and real generation disagree: public fields only
    # (metric, kind, distance, position, trigger index, prompt index, both decisions)
    disagreements: list[dict[str, Any]] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    # wall seconds of each part of the evaluation (scoring, generation_check, perplexity,
    # base_comparison), where a sweep's evaluation time goes; timings, not results
    seconds: dict[str, float] = Field(default_factory=dict)

    def metric(
        self,
        name: str,
        kind: str | None = None,
        distance: int | None = None,
        position: int | None = None,
        trigger_index: int | None = None,
    ) -> ResultRecord | None:
        """The record of exactly this cell (None fields mean "pooled over")."""
        for record in self.records:
            if record.cell() == (name, kind, distance, position, trigger_index):
                return record
        return None

    def rate(self, name: str, **cell) -> Rate | None:
        record = self.metric(name, **cell)
        return record.as_rate() if record is not None else None

    def worst_kind(self, name: str = "far_near_miss") -> ResultRecord | None:
        """The kind with the highest false-activation rate (ties: more trials first)."""
        rows = kind_cells(self.records, name)
        if not rows:
            return None
        return max(rows, key=lambda r: (r.rate, r.n))

    def headline(self) -> dict[str, Any]:
        """The public summary that goes into manifests: each rate as a Rate dict."""
        out: dict[str, Any] = {}
        for name in HEADLINE_RATES:
            rate = self.rate(name)
            out[name] = rate.model_dump() if rate is not None else None
        worst = self.worst_kind("far_near_miss")
        out["far_near_miss_worst_kind"] = {"kind": worst.kind, **worst.as_rate().model_dump()} if worst else None
        worst_placement = self.worst_kind("far_placement")
        out["far_placement_worst_kind"] = (
            {"kind": worst_placement.kind, **worst_placement.as_rate().model_dump()} if worst_placement else None
        )
        utility: dict[str, Any] = {}
        ppl = self.metric("perplexity")
        if ppl is not None:
            utility["perplexity"] = ppl.value
            utility["perplexity_base"] = ppl.reference_value
        kl = self.metric("kl_base_model")
        if kl is not None:
            utility["kl_per_token"] = kl.value
        answers = self.rate("answer_agreement")
        if answers is not None:
            utility["answer_agreement"] = answers.model_dump()
        out["utility"] = utility or None
        out["agreement"] = self.agreement.model_dump()
        return out

    def print_table(self, console=None, *, detail: bool = False) -> None:
        """A rich table of the rates (pooled, per trigger, per kind, per distance; with
        ``detail`` also per (kind, distance) and per word position) and utility values."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        table = Table(title="offswitch evaluation", show_lines=False)
        for column, justify in (("metric", "left"), ("cell", "left"), ("rate (95% CI) [k/n]", "right")):
            table.add_column(column, justify=justify)
        previous = None
        for record in self.records:
            if not detail and (record.position is not None or (record.kind is not None and record.distance is not None)):
                continue
            first_of_metric = record.metric != previous
            if first_of_metric and previous is not None:
                table.add_section()
            previous = record.metric
            cell = ", ".join(
                f"{name} {value}"
                for name, value in (
                    ("trigger", record.trigger_index),
                    ("kind", record.kind),
                    ("distance", record.distance),
                    ("word", record.position),
                )
                if value is not None
            )
            if record.is_rate:
                shown = str(record.as_rate())
            else:
                shown = f"{record.value:.4g}"
                if record.reference_value is not None:
                    shown += f" (base {record.reference_value:.4g})"
                if record.n is not None:
                    shown += f" [n={record.n}]"
            table.add_row(record.metric if first_of_metric else "", cell or "all", shown)
        console.print(table)
        console.print(f"scorer vs generate agreement: {self.agreement}")
        for disagreement in self.disagreements[:10]:
            console.print(f"  disagreement: {disagreement}")
        for note in self.notes:
            console.print(f"note: {note}")
