"""Import directions, read with ast (like trio's test_exports): the seams of docs/ARCHITECTURE.md."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "appliance"


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(PKG.parent).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{alias.name}" for alias in node.names)
    return out


def _files(subpackage: str) -> list[Path]:
    return sorted((PKG / subpackage).rglob("*.py"))


def _offenders(files, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for f in files:
        for name in _imports(f):
            if any(name == p or name.startswith(p + ".") for p in forbidden):
                bad.append(f"{f.relative_to(PKG.parent)} imports {name}")
    return bad


@pytest.mark.parametrize("subpackage", ["store", "engine", "runtime", "images", "cluster"])
def test_lower_layers_never_import_the_api(subpackage):
    assert _offenders(_files(subpackage), ("appliance.api", "quart", "quart_trio", "hypercorn")) == []


@pytest.mark.parametrize("subpackage", ["store", "runtime", "images"])
def test_building_blocks_never_import_the_engine(subpackage):
    assert _offenders(_files(subpackage), ("appliance.engine", "appliance.serve")) == []


def test_pure_cores_do_no_io_frameworks():
    pure = [PKG / "runtime" / n for n in ("spec.py", "seccomp.py", "users.py", "timestamps.py")]
    pure += _files("images") + _files("store")
    pure += [PKG / "engine" / n for n in ("mounts.py", "naming.py", "signals.py")]
    assert _offenders(pure, ("trio",)) == []
    assert _offenders([p for p in pure if "store" not in p.parts], ("lmdb",)) == []


def test_api_reaches_the_runtime_only_through_the_engine():
    allowed = {"appliance.runtime.timestamps", "appliance.runtime.timestamps.format_rfc3339nano"}
    bad = [b for b in _offenders(_files("api"), ("appliance.runtime", "appliance.store.env", "lmdb"))
           if b.split(" imports ")[1] not in allowed]
    assert bad == []


def test_only_the_composition_root_wires_everything():
    for f in PKG.rglob("*.py"):
        if f.name in ("serve.py", "__main__.py"):
            continue
        assert "appliance.serve" not in _imports(f), f
