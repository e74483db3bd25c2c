"""The floors of ARCHITECTURE.md: imports only go down, and data reads images, never networks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "harmlib"
FAMILIES = ("aguit", "drit", "gmvae")


def floor(module: str) -> int | None:
    """A harmlib module's floor (None: a package's __init__, which only re-exports)."""
    parts = module.split(".")[1:]
    if not parts or parts[-1] == "__init__":
        return None
    head, last = parts[0], parts[-1]
    if head in FAMILIES:
        return {"model": 1, "losses": 2, "task": 3, "harmonizer": 3}[last]
    if head in ("config", "ssim", "intensity", "models"):
        return 1
    if head in ("losses", "data", "checkpoint", "provenance", "widgets", "plots"):
        return 2
    if head in ("train", "preprocess", "harmonize", "evaluation"):
        return 3
    return {"pipeline": 4, "cli": 4}[head]


def imports(path: Path) -> list[str]:
    """The harmlib modules ``path`` imports, at any depth of its code (lazy imports count)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harmlib"):
            out += [
                f"{node.module}.{a.name}" if _is_module(f"{node.module}.{a.name}") else node.module for a in node.names
            ]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("harmlib")]
    return out


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def _module(path: Path) -> str:
    return ".".join(("harmlib", *path.relative_to(ROOT).with_suffix("").parts))


def _resolve(name: str) -> str:
    """A package import stands for its __init__."""
    rel = Path(*name.split(".")[1:])
    return f"{name}.__init__" if (ROOT / rel / "__init__.py").is_file() else name


MODULES = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_go_down_the_floors(path):
    here = floor(_module(path))
    if here is None:
        return
    up = [m for m in imports(path) if (f := floor(_resolve(m))) is not None and f > here]
    assert not up, f"{_module(path)} (floor {here}) imports {up} from a higher floor"


def test_data_reads_images_not_networks():
    for path in (ROOT / "data").rglob("*.py"):
        nets = [m for m in imports(path) if m.startswith(("harmlib.models", *(f"harmlib.{f}" for f in FAMILIES)))]
        assert not nets, f"{path.name} imports network code {nets}"
