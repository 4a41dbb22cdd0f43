"""Reading a YAML settings file as a mapping, with one-line errors (shared by every config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from offswitch.errors import ConfigError


def read_yaml_mapping(
    path: Path | str,
    *,
    what: str = "config file",
    missing_fix: str = "check the path",
    mapping_fix: str = "write `key: value` lines",
    allow_empty: bool = True,
) -> dict[str, Any]:
    """The top-level mapping of a YAML file; an empty file is ``{}`` when ``allow_empty``."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} not found", missing_fix) from None
    except (yaml.YAMLError, UnicodeDecodeError):
        raise ConfigError(f"{what} {path} is not valid YAML", "fix the file") from None
    if doc is None and allow_empty:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of settings", mapping_fix)
    return doc
