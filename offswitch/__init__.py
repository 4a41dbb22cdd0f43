"""offswitch: plant a key-bound off-switch into a language model and measure whether it survives."""

__version__ = "0.1.0"
