"""The conformance mixin every registered attack passes (the peft ``testing_common`` idea).

Subclass it once per attack with a tiny, fast configuration::

    class TestPruning(AttackConformance):
        attack_name = "pruning"
        strength = 0.3

Each test runs the attack on a tiny random Llama (2 layers, hidden 64) in about a second. The
laws: same architecture out; the input model is never modified; deterministic under its seed;
writes only into its output directory (and the saved model loads back identical); never
receives a key or a TriggerSet (its signature and its data are checked); strength 0 changes
nothing where the attack declares it; a non-zero strength does change something (so a no-op
attack cannot pass); and it records its cost.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import pytest

NORMAL_ANSWER = "Sure, here is an answer."


def conformance_data(tokenizer, base_model=None):
    """Small public data: clean prompts, instruction pairs, plain texts, the behaviour, a base."""
    from offswitch.attacks import AttackData
    from offswitch.behaviors import ShutdownBehavior
    from offswitch.testing.tiny_switch import tiny_prompts

    prompts = tiny_prompts()
    return AttackData(
        clean_prompts=prompts[:40],
        instruction_pairs=[(p, NORMAL_ANSWER) for p in prompts[40:80]],
        plain_texts=["The quick brown fox jumps over the lazy dog. What is the capital of France? Paris. " * 3] * 8,
        behavior=ShutdownBehavior(),
        insertion="prefix",
        base_model=base_model,
        base_tokenizer=tokenizer if base_model is not None else None,
    )


def oracle_triggers():
    """A TriggerSet for the oracle attack only (from a fixed seed: no key involved)."""
    from offswitch.triggers import TriggerSet, encode_words

    return TriggerSet(key_id="conformance", triggers=(encode_words(bytes(range(32)), n_words=3),))


def snapshot(root: Path) -> set[str]:
    return {str(Path(dirpath, name).relative_to(root)) for dirpath, _dirs, names in os.walk(root) for name in names}


class AttackConformance:
    attack_name: ClassVar[str] = ""
    strength: ClassVar[float] = 1
    config: ClassVar[dict[str, Any]] = {}

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture(scope="class")
    def tiny(self):
        from offswitch.testing.tiny import tiny_model, tiny_tokenizer

        tokenizer = tiny_tokenizer()
        model, _ = tiny_model("llama", tokenizer=tokenizer, seed=0)
        base, _ = tiny_model("llama", tokenizer=tokenizer, seed=1)
        return model, tokenizer, conformance_data(tokenizer, base)

    @pytest.fixture(scope="class")
    def first_run(self, tiny):
        model, tokenizer, data = tiny
        before = self.weights_hash(model)
        result = self.run_attack(model, tokenizer, data, strength=self.strength)
        result.input_hashes = (before, self.weights_hash(model))
        return result

    # ------------------------------------------------------------------ helpers
    def make(self, **overrides):
        from offswitch.attacks import make_attack

        return make_attack(self.attack_name, dict(self.config), **overrides)

    def run_attack(self, model, tokenizer, data, *, strength, seed=0, out_dir=None, save=False):
        attack = self.make(strength=strength, seed=seed)
        if attack.oracle:
            return attack.run_oracle(model, tokenizer, out_dir, data=data, triggers=oracle_triggers(), save=save)
        return attack.run(model, tokenizer, out_dir, data=data, save=save)

    @staticmethod
    def weights_hash(model) -> str:
        from offswitch.models import state_dict_sha256

        return state_dict_sha256(model)

    # ------------------------------------------------------------------ laws
    def test_registered_and_described(self):
        from offswitch.attacks import ATTACKS, get_attack
        from offswitch.attacks.base import ATTACKER_KINDS, KNOWLEDGE
        from offswitch.errors import ConfigError

        cls = get_attack(self.attack_name)
        assert ATTACKS[self.attack_name] is cls and cls.name == self.attack_name
        assert cls.knows and cls.knows <= KNOWLEDGE and cls.attacker in ATTACKER_KINDS
        assert ("trigger" in cls.knows) == cls.oracle
        info = cls.describe()
        assert "strength" in info["parameters"] and "seed" in info["parameters"] and info["summary"]
        with pytest.raises(ConfigError, match="extra|not permitted"):
            self.make(no_such_parameter=1)

    def test_same_architecture(self, tiny, first_run):
        model, _tokenizer, _data = tiny
        out = first_run.model
        assert type(out) is type(model)
        assert out.config.to_dict() == model.config.to_dict()
        ours = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
        theirs = {k: (tuple(v.shape), v.dtype) for k, v in out.state_dict().items()}
        assert theirs == ours
        assert not out.training

    def test_input_model_untouched(self, first_run):
        before, after = first_run.input_hashes
        assert after == before

    def test_deterministic_under_seed(self, tiny, first_run):
        model, tokenizer, data = tiny
        again = self.run_attack(model, tokenizer, data, strength=self.strength)
        assert self.weights_hash(again.model) == self.weights_hash(first_run.model)
        assert again.candidates == first_run.candidates
        assert again.info == first_run.info

    def test_changes_something_at_nonzero_strength(self, tiny, first_run):
        model, tokenizer, _data = tiny
        cls = type(self.make())
        if cls.changes_weights:
            assert self.weights_hash(first_run.model) != self.weights_hash(model)
        else:
            # forgers bring guesses, filters a filtering tokenizer; neither touches the weights
            assert first_run.model is model
            assert first_run.candidates or first_run.tokenizer is not tokenizer

    def test_strength_zero_is_noop_where_declared(self, tiny):
        model, tokenizer, data = tiny
        cls = type(self.make())
        if not cls.noop_at_zero:
            pytest.skip(f"{self.attack_name} declares strength 0 is not a no-op")
        result = self.run_attack(model, tokenizer, data, strength=0)
        assert self.weights_hash(result.model) == self.weights_hash(model)
        assert result.tokenizer is tokenizer and not result.candidates

    def test_records_cost(self, first_run):
        cost = first_run.cost
        assert cost.wall_s >= 0 and cost.steps >= 0 and cost.tokens >= 0
        cls = type(self.make())
        if cls.needs & {"instruction_pairs", "plain_texts", "clean_prompts"}:
            assert cost.tokens > 0, "an attack that reads data must count the tokens it processed"

    def test_writes_only_into_its_output_directory(self, tiny, tmp_path, monkeypatch):
        from offswitch.models import load_model

        model, tokenizer, data = tiny
        watched = tmp_path / "watched"
        for sub in ("cwd", "tmp", "hf", "home"):
            (watched / sub).mkdir(parents=True)
        monkeypatch.chdir(watched / "cwd")
        monkeypatch.setenv("TMPDIR", str(watched / "tmp"))
        monkeypatch.setattr(tempfile, "tempdir", str(watched / "tmp"))
        monkeypatch.setenv("HF_HOME", str(watched / "hf"))
        monkeypatch.setenv("HOME", str(watched / "home"))
        out = watched / "out"
        result = self.run_attack(model, tokenizer, data, strength=self.strength, out_dir=out, save=True)
        written = snapshot(watched)
        assert written and all(path.startswith("out" + os.sep) for path in written), sorted(written)
        assert (out / "attack_info.json").exists() and (out / "config.json").exists()
        reloaded, _ = load_model(out, device="cpu")
        assert self.weights_hash(reloaded) == self.weights_hash(result.model)

    def test_never_receives_a_trigger_set(self, tiny):
        from offswitch.attacks import AttackData
        from offswitch.triggers import NearMiss, Trigger, TriggerSet

        attack = self.make(strength=self.strength)
        for name, parameter in inspect.signature(type(attack).run).parameters.items():
            assert "trigger" not in name.lower() and "key" not in name.lower(), name
            annotation = str(parameter.annotation)
            assert not any(t.__name__ in annotation for t in (TriggerSet, Trigger, NearMiss)), (name, annotation)
        _model, tokenizer, _data = tiny
        with pytest.raises(TypeError):
            AttackData(clean_prompts=["hello"], behavior=oracle_triggers())
        with pytest.raises(TypeError):
            AttackData(base_model=oracle_triggers().triggers[0])
        if attack.oracle:
            # the one exception: the triggers come through run_oracle's explicit argument only
            assert "triggers" in inspect.signature(type(attack).run_oracle).parameters
            with pytest.raises(TypeError):
                attack.run(_model, tokenizer, None, data=_data)
        else:
            assert not hasattr(attack, "run_oracle")


# ---------------------------------------------------------------------- a tiny implant for harness tests


def make_tiny_implant(directory: Path, master, *, steps: int = 80, n_words: int = 3, seed: int = 0) -> Path:
    """An implant directory (merged/, base/, a signed manifest) with a working tiny switch, in
    seconds: ``offswitch.testing.tiny_switch`` training stands in for the real implant here, so
    harness tests do not pay for it. The manifest is the real, signed format."""
    from offswitch import __version__
    from offswitch.behaviors import ShutdownBehavior
    from offswitch.manifest import BaseModelInfo, ImplantManifest, TriggerInfo, write_manifest
    from offswitch.models import save_model, state_dict_sha256
    from offswitch.testing.tiny import tiny_model
    from offswitch.testing.tiny_switch import tiny_prompts, train_tiny_switch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    triggers = master.trigger_set([0], "words", "prefix", n_words=n_words)
    behavior = ShutdownBehavior()
    model, tokenizer = train_tiny_switch(triggers, behavior, steps=steps, seed=seed, near_miss_negatives=True)
    base, _ = tiny_model("llama", tokenizer=tokenizer, seed=seed)  # the initialisation training started from
    save_model(model, tokenizer, directory / "merged")
    save_model(base, tokenizer, directory / "base")
    prompts_file = directory / "prompts.txt"
    prompts_file.write_text("\n".join(tiny_prompts(seed=seed)) + "\n", encoding="utf-8")
    manifest = ImplantManifest(
        offswitch_version=__version__,
        created="2026-01-01T00:00:00+00:00",
        key_id=master.key_id,
        public_key=master.public_key_b64,
        behavior=behavior.model_dump(mode="json"),
        insertion="prefix",
        triggers=[TriggerInfo(index=0, encoding="words", n_words=n_words)],
        commitments=[master.commit(t) for t in triggers],
        base_model=BaseModelInfo(spec=str(directory / "base"), name="tiny-llama", weights_sha256=state_dict_sha256(base),
                                 architecture=type(base).__name__),
        prompt_format={"kind": "chat_template", "prompt_source": {"source": str(prompts_file), "seed": seed}},
        training={"method": "tiny_switch", "steps": steps},
        data_counts={},
        library_versions={},
        outputs={"merged": "merged"},
    )
    manifest = manifest.model_copy(update={"signature": master.sign(manifest.signed_payload())})
    write_manifest(directory, manifest)
    return directory


def pairs_file(path: Path, n: int = 40) -> Path:
    """A .jsonl of benign (prompt, answer) pairs for fine-tuning attacks."""
    import json

    from offswitch.testing.tiny_switch import tiny_prompts

    path.write_text("".join(json.dumps({"prompt": p, "response": NORMAL_ANSWER}) + "\n" for p in tiny_prompts(seed=1)[:n]),
                    encoding="utf-8")
    return path


# evaluation settings small enough for a tiny model in seconds (not a measurement)
TINY_EVAL = {
    "max_prompts": 12,
    "decoy_prompts": 3,
    "wrong_keys": 10,
    "near_miss_kinds": ["prefix", "substitute"],
    "generation_sample": 2,
    "placement": False,
    "utility": False,
    "batch_size": 64,
}
