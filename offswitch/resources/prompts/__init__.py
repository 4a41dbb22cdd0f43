"""Prompt sets shipped with offswitch (data files and the script that generates the built-in set)."""
