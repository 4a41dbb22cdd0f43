"""Import contract: only offswitch/crypto/ itself and the CLI may import offswitch.crypto."""

from __future__ import annotations

import ast
from pathlib import Path

import offswitch

PACKAGE = Path(offswitch.__file__).parent
ALLOWED = ("crypto", "cli")


def _module_of(path: Path) -> list[str]:
    return list(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def _imports(source: str, module: list[str]) -> set[str]:
    tree = ast.parse(source)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the module's package
                parts = module[: -node.level]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    # importlib.import_module("offswitch.crypto") and __import__ count too
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            fname = getattr(func, "attr", None) or getattr(func, "id", None)
            if fname in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def test_only_crypto_and_cli_import_crypto():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        top = path.relative_to(PACKAGE).parts[0]
        if top in ALLOWED:
            continue
        if any(name == "offswitch.crypto" or name.startswith("offswitch.crypto.") for name in _imports(path.read_text(encoding="utf-8"), _module_of(path))):
            offenders.append(str(path.relative_to(PACKAGE.parent)))
    assert not offenders, f"these modules import offswitch.crypto: {offenders}"


def test_contract_detects_an_offender():
    module = ["offswitch", "evaluate", "probe"]
    assert "offswitch.crypto" in _imports("from offswitch.crypto import MasterKey\n", module)
    assert "offswitch.crypto.keys" in _imports("from ..crypto import keys\n", module)
    assert "offswitch.crypto" in _imports("import importlib\nimportlib.import_module('offswitch.crypto')\n", module)
    assert "offswitch.crypto" in _imports("def f():\n    import offswitch.crypto as c\n", module)
