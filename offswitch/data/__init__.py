"""Prompt sources and the implant dataset builder."""
