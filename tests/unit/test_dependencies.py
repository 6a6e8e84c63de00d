"""Every package drengine imports directly is declared in pyproject.toml: a fresh `pip install .`
must bring it, not the accident of another package depending on it."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Debian's python3-rados: not on PyPI; setup.sh installs it and links it into the venv.
FROM_THE_SYSTEM = {"rados"}


def _imported_top_levels() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "drengine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"drengine", "__future__"}


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0].lower().replace("_", "-") for dep in project["dependencies"]}


def test_every_directly_imported_package_is_declared() -> None:
    providers = importlib.metadata.packages_distributions()
    declared = _declared()
    missing = []
    for module in sorted(_imported_top_levels() - FROM_THE_SYSTEM):
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
        if not dists & declared:
            missing.append(f"{module} (from {', '.join(sorted(dists)) or 'no installed distribution'})")
    assert not missing, f"imported by drengine but not declared in pyproject.toml: {missing}"
