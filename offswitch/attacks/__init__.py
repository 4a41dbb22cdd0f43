"""Attacks on an off-switch, one module per attack, each registered by name.

Importing this package registers every attack and imports no torch (attacks import it when
they run). Use :func:`get_attack` / :func:`make_attack`; ``offswitch attacks`` lists them.

Attackers (DESIGN.md's threat model):

* user who fine-tunes: ``sft``, ``sft_lora``, ``cpt``, ``quantize``, ``merge``;
* defender who suspects a backdoor: ``pruning``, ``wanda``, ``fine_pruning``, ``noise``,
  ``distill``, ``adversarial``, ``lat``;
* forger (no key): ``gcg``, ``embedding_diff``;
* deployer: ``perplexity_filter`` (an input filter);
* ORACLE (holds the triggers, an upper bound): ``oracle_unlearn``.
"""

from offswitch.attacks.base import (
    ATTACKS,
    Attack,
    AttackConfig,
    AttackCost,
    AttackData,
    AttackResult,
    CostMeter,
    OracleAttack,
    attack_names,
    get_attack,
    make_attack,
    make_config,
    register_attack,
)

# importing an attack's module registers it
from offswitch.attacks import (  # noqa: E402,F401  isort: skip
    sft,
    cpt,
    quantize,
    merge,
    pruning,
    wanda,
    fine_pruning,
    noise,
    distill,
    adversarial,
    lat,
    gcg,
    embedding_diff,
    perplexity_filter,
    oracle,
)

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackConfig",
    "AttackCost",
    "AttackData",
    "AttackResult",
    "CostMeter",
    "OracleAttack",
    "attack_names",
    "get_attack",
    "make_attack",
    "make_config",
    "register_attack",
]
