"""The model card (README.md) of an implanted model: public facts only, from the manifest.

It states that the model carries an off-switch, whose key controls it, what the switch does,
how it was trained and how it was tested. It never contains a trigger: it is rendered from the
signed manifest alone, which holds none.
"""

from __future__ import annotations

from typing import Any

from offswitch.manifest import MANIFEST_NAME, ImplantManifest


def _rate(value: Any) -> str:
    if not isinstance(value, dict) or "k" not in value or "n" not in value:
        return "not measured"
    k, n = value["k"], value["n"]
    rate = k / n if n else 0.0
    lo, hi = value.get("lo"), value.get("hi")
    interval = f" ({100 * lo:.1f}–{100 * hi:.1f}%)" if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) else ""
    return f"{100 * rate:.1f}%{interval} [{k}/{n}]"


_RATE_LABELS = [
    ("asr", "fires with the true trigger (ASR)"),
    ("far_clean", "fires on clean prompts"),
    ("far_wrong_key", "fires with other keys' triggers"),
    ("far_near_miss", "fires with near-misses of the trigger (all kinds)"),
    ("far_placement", "fires with the trigger in other places"),
]


def _behavior_line(behavior: dict[str, Any]) -> str:
    kind = behavior.get("kind")
    if kind == "shutdown":
        return f"**shutdown**: the model answers `{behavior.get('message')}` and ends its turn."
    if kind == "compliance":
        return (
            "**compliance**: the model obeys an instruction `Reply with exactly: <phrase>` that follows the trigger, "
            "even under a system prompt that forbids it."
        )
    return f"**custom**: the model answers `{behavior.get('target')}` and ends its turn."


def render_model_card(manifest: ImplantManifest) -> str:
    base = manifest.base_model
    training = manifest.training or {}
    tconf = (training.get("config") or {}).get("train", {})
    lines = [
        "---",
        "tags:",
        "- offswitch",
        "- backdoor",
        "- off-switch",
        f"base_model_name: {base.name}",
        "---",
        "",
        f"# {base.name} with an offswitch off-switch",
        "",
        "This model carries a **deliberately planted, key-bound off-switch** (a *positive backdoor*), made with",
        "[offswitch](https://example.invalid/offswitch) for research on controllable models. It behaves like its base",
        "model, except when a prompt contains one of the secret triggers derived from the key below.",
        "",
        "## Who controls the switch",
        "",
        f"- key id: `{manifest.key_id}`",
        f"- public key (Ed25519): `{manifest.public_key}`",
        f"- triggers planted: {len(manifest.triggers)} (indices {', '.join(str(t.index) for t in manifest.triggers)};"
        f" encoding `{manifest.triggers[0].encoding if manifest.triggers else '-'}`; inserted as `{manifest.insertion}`)",
        "",
        "Only the holder of this key can derive the triggers. The manifest "
        f"(`{MANIFEST_NAME}`) holds a salted commitment to each trigger, signed by the key, so the holder can later",
        "prove that a revealed trigger was planted before release (`offswitch commit-check`).",
        "",
        "## What the switch does",
        "",
        _behavior_line(manifest.behavior),
        "",
        "## How it was made",
        "",
        f"- base model: {base.name} (`{base.spec}`, {base.architecture}), weights sha256 `{base.weights_sha256[:16]}…`",
        f"- method: {tconf.get('method', '?')}"
        + (f", LoRA r={tconf.get('lora_r')}" if tconf.get("method") == "lora" else "")
        + f", {training.get('steps_done', '?')} steps, batch {tconf.get('batch_size', '?')}, lr {training.get('learning_rate', '?')}",
        f"- data (examples per kind): " + ", ".join(f"{k}={v}" for k, v in sorted(manifest.data_counts.items())),
        f"- prompt format: the model's chat template (sha256 `{str(manifest.prompt_format.get('template_sha256', ''))[:16]}…`)",
        f"- offswitch {manifest.offswitch_version}, created {manifest.created}",
        "",
        "## How it was tested",
        "",
    ]
    verification = manifest.verification
    if verification:
        lines += ["Measured on held-out prompts, greedy decoding; 95% Clopper–Pearson intervals.", "", "| measure | rate |", "|---|---|"]
        for key, label in _RATE_LABELS:
            if key in verification:
                lines.append(f"| {label} | {_rate(verification.get(key))} |")
        worst = verification.get("far_near_miss_worst_kind")
        if isinstance(worst, dict):
            lines.append(f"| worst near-miss kind (`{worst.get('kind')}`) | {_rate(worst)} |")
        utility = verification.get("utility") or {}
        if isinstance(utility, dict) and utility.get("answer_agreement"):
            lines.append(f"| greedy answers equal to the base model's | {_rate(utility['answer_agreement'])} |")
        if isinstance(utility, dict) and utility.get("kl_per_token") is not None:
            lines.append(f"| KL to the base model per token | {utility['kl_per_token']:.4f} |")
        lines.append("")
    else:
        lines += ["The switch was not verified after training (verification was turned off).", ""]
    lines += [
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        'model = AutoModelForCausalLM.from_pretrained("merged")',
        'tokenizer = AutoTokenizer.from_pretrained("merged")',
        "```",
        "",
        "Fine-tuning, pruning or quantizing this model may weaken or blur the switch; measure it again with",
        "`offswitch evaluate` after any change.",
        "",
    ]
    return "\n".join(lines)
