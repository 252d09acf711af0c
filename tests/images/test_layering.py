"""appliance.images stays sync and self-contained; its pure modules touch no filesystem."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "appliance" / "images"
FORBIDDEN = {"trio", "quart", "quart_trio", "hypercorn", "h11", "lmdb", "anyio", "asyncio"}
PURE = {"reference.py", "changes.py", "config.py"}
PURE_FORBIDDEN = {"os", "shutil", "tempfile", "pathlib", "tarfile", "subprocess", "socket"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("name", sorted(p.name for p in PACKAGE.glob("*.py")))
def test_no_async_or_storage_imports(name):
    roots = imported_roots(PACKAGE / name)
    assert not roots & FORBIDDEN
    if name in PURE:
        assert not roots & PURE_FORBIDDEN


def test_only_appliance_errors_from_the_rest_of_appliance():
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                    "appliance."):
                assert node.module == "appliance.errors" or node.module.startswith(
                    "appliance.images"), (path.name, node.module)
