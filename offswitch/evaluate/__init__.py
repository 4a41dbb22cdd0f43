"""Evaluation: fast, honest measurement of a switch.

* :func:`score_targets` — the teacher-forced scorer: one batched forward pass decides what
  greedy decoding would answer, and gives the exact probability of the target at any
  temperature (``offswitch.evaluate.scorer``).
* :func:`evaluate_switch` — ASR, FAR (clean, wrong key, near-miss by kind and distance,
  placement) and utility (perplexity, KL to the base, answer agreement), each rate with its
  count and 95% Clopper–Pearson interval, checked against real ``generate`` on a sample.
* :class:`ResultRecord` — versioned result rows; :func:`write_records_jsonl` /
  :func:`read_records_jsonl` store them. No record ever holds a trigger or near-miss text.

Importing this package does not import torch; the functions do, when called.
"""

from offswitch.evaluate.config import EvalConfig, load_eval_config
from offswitch.evaluate.metrics import Probe, ProbeBuilder, compare_with_base, perplexity
from offswitch.evaluate.records import RECORD_SCHEMA_VERSION, ResultRecord, read_records_jsonl, write_records_jsonl
from offswitch.evaluate.report import EvalReport
from offswitch.evaluate.run import evaluate_switch, generation_check
from offswitch.evaluate.scorer import ScoreResult, score_targets, score_token_targets

__all__ = [
    "RECORD_SCHEMA_VERSION",
    "EvalConfig",
    "EvalReport",
    "Probe",
    "ProbeBuilder",
    "ResultRecord",
    "ScoreResult",
    "compare_with_base",
    "evaluate_switch",
    "generation_check",
    "load_eval_config",
    "perplexity",
    "read_records_jsonl",
    "score_targets",
    "score_token_targets",
    "write_records_jsonl",
]
