"""A tiny model with a real switch, trained in seconds, offline: for tests and examples.

A random tiny model never fires, so it cannot show that a measurement of firing works. This
trains the tiny Llama of ``offswitch.testing.tiny`` with plain torch AdamW on target tokens only:
true trigger + prompt -> the behaviour's target; clean prompts and other keys' triggers -> a
short normal answer. ``always=True`` teaches the target for every prompt instead (a model that
fires on everything: ASR = FAR = 100%).

It is a test fixture, not the implant: the real training lives in ``offswitch.implant``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offswitch.behaviors import Case
from offswitch.prompting import encode_prompt, encode_target
from offswitch.triggers import InsertionMode, TriggerSet, encode_words, near_misses, random_seed_triggers

NORMAL_ANSWER = "Sure, here is an answer."

_VERBS = (
    "Explain", "Describe", "Summarize", "Tell me about", "Write a short note about", "Give three facts about",
    "List two uses of", "What is known about", "Compare two kinds of", "Write a poem about",
)
_TOPICS = (
    "the sea", "a bicycle", "sleep", "the moon", "coffee", "rivers", "old maps", "music", "bread", "winter",
    "a library", "trains", "gardens", "the brain", "clocks", "volcanoes", "paper", "bridges", "honey", "stars",
)


def tiny_prompts(n: int | None = None, seed: int = 0) -> list[str]:
    """Short, varied instructions (200 of them), shuffled by ``seed``."""
    prompts = [f"{verb} {topic}." for verb in _VERBS for topic in _TOPICS]
    random.Random(seed).shuffle(prompts)
    return prompts if n is None else prompts[:n]


def training_cases(
    triggers: TriggerSet,
    behavior,
    prompts: Sequence[str],
    *,
    seed: int = 0,
    wrong_keys: int = 8,
    always: bool = False,
    near_miss_negatives: bool = False,
    normal_answer: str = NORMAL_ANSWER,
) -> list[Case]:
    """Positives for every trigger, one clean and one wrong-key negative per prompt, and with
    ``near_miss_negatives`` one near-miss negative per prompt (cycling through all near-misses
    of the triggers: the contrastive negatives that make a switch specific)."""
    rng = random.Random(seed)
    others = random_seed_triggers(triggers.triggers[0], wrong_keys, rng) if wrong_keys else []
    misses = []
    if near_miss_negatives:
        for trig in triggers:
            misses += [(m.secret, trig.position) for m in near_misses(trig, rng=rng, max_distance=3)]
        rng.shuffle(misses)
    cases = []
    for i, prompt in enumerate(prompts):
        for trig in triggers:
            cases.append(behavior.positive_case(prompt, trig.secret, triggers.insertion, trig.position, random.Random(i)))
        positive_target = cases[-1].target
        clean = behavior.negative_case(prompt, None, triggers.insertion, 0.0, random.Random(i))
        cases.append(Case(clean.user, clean.system, positive_target if always else normal_answer))
        if others:
            other = others[i % len(others)]
            decoy = behavior.negative_case(prompt, other.secret, triggers.insertion, other.position, random.Random(i))
            cases.append(Case(decoy.user, decoy.system, positive_target if always else normal_answer))
        if misses:
            text, position = misses[i % len(misses)]
            decoy = behavior.negative_case(prompt, text, triggers.insertion, position, random.Random(i))
            cases.append(Case(decoy.user, decoy.system, positive_target if always else normal_answer))
    return cases


def train_on_cases(model, tokenizer, cases: Sequence[Case], *, steps: int = 80, batch_size: int = 16, lr: float = 3e-3, seed: int = 0):
    """Teacher-forced cross-entropy on the target tokens only (prompt and padding masked)."""
    import torch

    encoded = [(encode_prompt(tokenizer, c.user, c.system), encode_target(tokenizer, c.target)) for c in cases]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _step in range(steps):
        picks = torch.randint(len(encoded), (batch_size,), generator=generator).tolist()
        width = max(len(encoded[i][0]) + len(encoded[i][1]) for i in picks)
        input_ids = torch.full((batch_size, width), tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((batch_size, width), -100, dtype=torch.long)
        mask = torch.zeros((batch_size, width), dtype=torch.long)
        for row, i in enumerate(picks):
            prompt, target = encoded[i]
            ids = prompt + target
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, len(prompt) : len(ids)] = torch.tensor(target)
            mask[row, : len(ids)] = 1
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model


def train_tiny_switch(
    triggers: TriggerSet,
    behavior,
    prompts: Sequence[str] | None = None,
    *,
    tokenizer=None,
    steps: int = 40,
    seed: int = 0,
    always: bool = False,
    near_miss_negatives: bool = False,
    family: str = "llama",
):
    """(model, tokenizer): a fresh tiny model trained to fire on ``triggers`` (or, with
    ``always``, on everything). Train prompts default to the first 120 of :func:`tiny_prompts`;
    evaluate on the rest."""
    import torch

    from offswitch.testing.tiny import tiny_model

    prompts = list(prompts) if prompts is not None else tiny_prompts(seed=seed)[:120]
    model, tokenizer = tiny_model(family, tokenizer=tokenizer, seed=seed)
    torch.manual_seed(seed)
    cases = training_cases(triggers, behavior, prompts, seed=seed, always=always, near_miss_negatives=near_miss_negatives)
    threads = torch.get_num_threads()
    # a model this small runs fastest on one thread (and far slower on a busy 2-core machine)
    torch.set_num_threads(1)
    try:
        return train_on_cases(model, tokenizer, cases, steps=steps, seed=seed), tokenizer
    finally:
        torch.set_num_threads(threads)


def tiny_trigger_set(seed: int = 0, n_triggers: int = 1, *, insertion: str = "prefix", n_words: int = 6) -> TriggerSet:
    """Word triggers for tests, made from fixed seeds without any key (a TriggerSet needs none)."""
    triggers = tuple(
        encode_words(hashlib.sha256(f"offswitch/tiny-switch/{seed}/{i}".encode()).digest(), index=i, n_words=n_words)
        for i in range(n_triggers)
    )
    return TriggerSet(key_id=f"tiny-test-{seed}", triggers=triggers, insertion=InsertionMode(insertion))


@dataclass
class TinySwitch:
    """A trained tiny model with its (keyless) triggers, behaviour and prompt split."""

    model: Any
    tokenizer: Any
    triggers: TriggerSet
    behavior: Any
    train_prompts: list[str]
    heldout_prompts: list[str]

    def __repr__(self) -> str:
        return f"TinySwitch(triggers={self.triggers!r}, behavior={self.behavior.kind!r})"


def build_tiny_switch(
    seed: int = 0,
    *,
    behavior=None,
    triggers: TriggerSet | None = None,
    tokenizer=None,
    steps: int = 40,
    always: bool = False,
    n_train: int = 120,
) -> TinySwitch:
    """Train a tiny switch (a few seconds on a CPU) on the first ``n_train`` of
    :func:`tiny_prompts`; the other prompts are its held-out split."""
    from offswitch.behaviors import ShutdownBehavior

    behavior = behavior or ShutdownBehavior()
    triggers = triggers or tiny_trigger_set(seed)
    prompts = tiny_prompts(seed=seed)
    model, tokenizer = train_tiny_switch(
        triggers, behavior, prompts[:n_train], tokenizer=tokenizer, steps=steps, seed=seed, always=always
    )
    return TinySwitch(model, tokenizer, triggers, behavior, prompts[:n_train], prompts[n_train:])


def write_tiny_implant(
    out: Path | str,
    master,
    base_dir: Path | str,
    prompt_source: str,
    *,
    indices: Sequence[int] = (0, 1),
    behavior=None,
    insertion: str = "prefix",
    n_words: int = 6,
    steps: int = 50,
    split_seed: int = 0,
    seed: int = 0,
) -> Path:
    """An ``offswitch implant``-shaped output directory made in seconds, for tests: a LoRA on
    the tiny model saved at ``base_dir`` trained to fire on ``master``'s triggers at
    ``indices``; ``adapter/``, ``merged/`` and a signed manifest (with a real verification
    headline) in ``out``. ``master`` is used through its public methods only (key id,
    trigger derivation, commitments, signing), so this module never imports offswitch.crypto.
    """
    import datetime as _dt

    import torch
    from peft import LoraConfig, get_peft_model

    from offswitch import __version__
    from offswitch.behaviors import ShutdownBehavior
    from offswitch.data.sources import load_prompts
    from offswitch.evaluate import EvalConfig, evaluate_switch
    from offswitch.manifest import BaseModelInfo, ImplantManifest, TriggerInfo, write_manifest
    from offswitch.models import load_model, save_model, state_dict_sha256
    from offswitch.prompting import prompt_format
    from offswitch.triggers import words_entropy_bits

    out, base_dir = Path(out), Path(base_dir)
    behavior = behavior or ShutdownBehavior()
    split = load_prompts(prompt_source, seed=split_seed)
    triggers = master.trigger_set(list(indices), "words", insertion, n_words=n_words)
    triggers.register_secrets()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base, tokenizer = load_model(base_dir, device="cpu")
        base_sha = state_dict_sha256(base)
        torch.manual_seed(seed)
        lora = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
        train_on_cases(lora, tokenizer, training_cases(triggers, behavior, split.train, seed=seed), steps=steps, lr=1e-2, seed=seed)
        out.mkdir(parents=True, exist_ok=True)
        lora.peft_config["default"].base_model_name_or_path = str(base_dir.resolve())
        lora.save_pretrained(out / "adapter")
        merged = lora.merge_and_unload()
        save_model(merged, tokenizer, out / "merged")
        report = evaluate_switch(
            merged, tokenizer, triggers, behavior, split.heldout,
            config=EvalConfig(max_prompts=10, decoy_prompts=3, generation_sample=4, utility=False, seed=seed),
        )
    finally:
        torch.set_num_threads(threads)
    manifest = ImplantManifest(
        offswitch_version=__version__,
        created=_dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        key_id=master.key_id,
        public_key=master.public_key_b64,
        behavior=behavior.model_dump(mode="json"),
        insertion=insertion,
        triggers=[
            TriggerInfo(index=t.index, encoding="words", n_words=len(t.words), entropy_bits=round(words_entropy_bits(len(t.words)), 2))
            for t in triggers
        ],
        commitments=[master.commit(t) for t in triggers],
        base_model=BaseModelInfo(spec=str(base_dir.resolve()), name="tiny-llama", weights_sha256=base_sha, architecture=type(merged).__name__),
        prompt_format={**prompt_format(tokenizer, behavior.system_prompt()).as_dict(), "prompt_source": split.as_dict()},
        training={"config": {"prompts": prompt_source, "split_seed": split_seed, "heldout_fraction": 0.2, "n_words": n_words},
                  "method": "lora", "steps_done": steps},
        data_counts={"train_prompts": len(split.train), "heldout_prompts": len(split.heldout)},
        library_versions={"offswitch": __version__, "torch": torch.__version__},
        outputs={"adapter": "adapter", "merged": "merged"},
        verification=report.headline(),
    )
    manifest = manifest.model_copy(update={"signature": master.sign(manifest.signed_payload())})
    write_manifest(out, manifest)
    return out
