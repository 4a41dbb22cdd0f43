"""Tools for testing switches.

* ``offswitch.testing.tiny`` — tiny offline models (random weights) built from a config.
* ``offswitch.testing.tiny_switch`` — a tiny model trained in seconds to carry a real switch.
* ``offswitch.testing.assertions`` — ``assert_fires`` / ``assert_silent``: claims about a
  switch that pass only when the 95% Clopper–Pearson interval supports them.
* ``offswitch.testing.strategies`` — hypothesis strategies: prompts, other keys' triggers,
  near-misses by kind and distance, insertion modes, attack configurations.
* ``offswitch.testing.plugin`` — the pytest plugin (entry point ``offswitch``): fixtures
  ``offswitch_model``, ``offswitch_key``, ``offswitch_triggers`` (from ``$OFFSWITCH_MODEL``,
  ``$OFFSWITCH_KEY``, ``$OFFSWITCH_PASSPHRASE``) and ``offswitch_tiny_switch``.
"""
