"""The gossip core stays sans-IO: only transport.py may import trio (or any I/O framework)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SWIM = Path(__file__).resolve().parents[2] / "appliance" / "cluster" / "swim"
PURE = ["awareness", "broadcast", "codec", "config", "errors", "node", "serf", "sim", "state", "suspicion"]
FORBIDDEN = {"trio", "quart", "quart_trio", "hypercorn", "lmdb", "socket", "asyncio", "time", "threading", "select"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", PURE)
def test_core_module_does_no_io(module: str) -> None:
    bad = imported_modules(SWIM / f"{module}.py") & FORBIDDEN
    assert not bad, f"swim/{module}.py imports {sorted(bad)}; cores take `now` and return actions"


def test_every_swim_module_is_classified() -> None:
    modules = {p.stem for p in SWIM.glob("*.py")} - {"__init__"}
    assert modules == set(PURE) | {"transport"}
