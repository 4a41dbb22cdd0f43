"""Import a repository script (e.g. experiments/ablations/summarize.py) as a module, for tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def load_script(path: Path, name: str):
    """The script as a module. Its folder goes on ``sys.path`` first, as when Python runs the
    script itself, so that it imports its sibling modules (benchmarks/processes.py) either way."""
    folder = str(Path(path).resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
