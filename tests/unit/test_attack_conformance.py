"""Every registered attack passes the conformance laws (tests/attack_conformance.py) on a tiny model."""

from __future__ import annotations

from attack_conformance import AttackConformance

LORA = {"r": 4, "alpha": 8.0, "batch_size": 4}
ANSWERS = {"answer_tokens": 6, "prompts": 8}


class TestSFT(AttackConformance):
    attack_name = "sft"
    strength = 2
    config = {"batch_size": 4, "lr": 1e-3}


class TestLoRASFT(AttackConformance):
    attack_name = "sft_lora"
    strength = 2
    config = LORA


class TestCPT(AttackConformance):
    attack_name = "cpt"
    strength = 2
    config = {"batch_size": 4, "max_len": 32}


class TestQuantize(AttackConformance):
    attack_name = "quantize"
    strength = 4


class TestMerge(AttackConformance):
    attack_name = "merge"
    strength = 0.5


class TestPruning(AttackConformance):
    attack_name = "pruning"
    strength = 0.3


class TestWanda(AttackConformance):
    attack_name = "wanda"
    strength = 0.3
    config = {"calibration_prompts": 8}


class TestFinePruning(AttackConformance):
    attack_name = "fine_pruning"
    strength = 0.2
    config = {"finetune_steps": 2, "batch_size": 4, "calibration_prompts": 8}


class TestNoise(AttackConformance):
    attack_name = "noise"
    strength = 0.05


class TestDistill(AttackConformance):
    attack_name = "distill"
    strength = 2
    config = {"batch_size": 4, "prompts": 8, "answer_tokens": 6}


class TestAdversarial(AttackConformance):
    attack_name = "adversarial"
    strength = 2
    config = {"batch_size": 4, "candidates": 12, "keep": 6, **ANSWERS}


class TestLAT(AttackConformance):
    attack_name = "lat"
    strength = 2
    config = {"batch_size": 4, "inner_steps": 2, **ANSWERS}


class TestGCG(AttackConformance):
    attack_name = "gcg"
    strength = 2
    config = {"n_tokens": 3, "search_width": 16, "top_k": 16, "train_prompts": 2, "recheck_prompts": 2, "n_candidates": 2}


class TestEmbeddingDifference(AttackConformance):
    attack_name = "embedding_diff"
    strength = 4
    config = {"max_tokens": 2, "probe_prompts": 2, "recheck_prompts": 2, "n_candidates": 2}


class TestPerplexityFilter(AttackConformance):
    attack_name = "perplexity_filter"
    strength = 0.2


class TestOracleUnlearning(AttackConformance):
    attack_name = "oracle_unlearn"
    strength = 2
    config = {"batch_size": 4, **ANSWERS}


def test_every_registered_attack_has_a_conformance_class():
    from offswitch.attacks import attack_names

    covered = {cls.attack_name for cls in AttackConformance.__subclasses__()}
    assert covered == set(attack_names())
