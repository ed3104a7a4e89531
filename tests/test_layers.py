"""DESIGN "Recommended layout": each layer imports only those below it (and the ground floor).

Reads every module's imports (function-level ones too) and fails naming the module and the
import that reaches up.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mkd"

# The ground floor: imported by every layer, importing nothing of mkd but itself.
GROUND = {"kernel_types", "errors", "config"}

# Root modules that belong to a layer although they sit at the package's top.
ROOT_MODULE_LAYER = {
    "app": "app",
    "openapi": "app",
    "doctor": "app",
    "malloc_tuning": "app",
    "gc_tuning": "app",
    "bounded_http": "app",
    "metrics": "services",
    "etags": "domain",
    "auth_tokens": "domain",
    "crash_points": "domain",
    "testing": "testing",
    "web": "web",
}

# DESIGN's table: layer -> the layers it may import (besides itself and the ground floor).
MAY_IMPORT: dict[str, set[str]] = {
    "cli": set(),
    "app": {"api", "services", "fleet", "backends", "db", "devicetree", "domain", "kexec", "images", "web"},
    "api": {"services", "fleet", "domain", "devicetree"},
    "services": {"domain", "kexec", "devicetree", "images", "db", "backends"},
    "fleet": {"services", "domain"},
    "backends": {"kexec", "devicetree", "domain"},
    "db": {"domain"},
    "devicetree": {"domain"},
    "domain": set(),
    "kexec": set(),
    "images": set(),
    "web": set(),
    # Test support (synthetic images, daemon processes) sits beside the app, used by tests only.
    "testing": {"kexec", "devicetree", "domain", "app"},
}

# `mkd serve` and `mkd doctor` alone start what the daemon is (DESIGN: "`mkd serve` alone starts the app").
LAUNCHERS = {"cli/main.py": {"app"}, "cli/serve.py": {"app"}}


def layer_of(module: str) -> str:
    top = module.split(".")[0]
    return ROOT_MODULE_LAYER.get(top, top)


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "mkd" and node.level == 0:
            found.extend((node.lineno, f"mkd.{alias.name}") for alias in node.names)  # from mkd import x
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return [(line, name.removeprefix("mkd.")) for line, name in found if name.startswith("mkd.")]


def violations() -> list[str]:
    bad: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "db" and "migrations" in rel.parts:
            continue  # Alembic's env and revisions are run by Alembic, not imported
        if len(rel.parts) == 1 and rel.name == "__init__.py":
            continue
        own = layer_of(".".join(rel.with_suffix("").parts))
        for line, target in imports_of(path):
            other = layer_of(target)
            if own in GROUND:
                if other not in GROUND:
                    bad.append(f"{rel}:{line} (ground floor) imports mkd.{target}")
                continue
            allowed = MAY_IMPORT[own] | {own} | GROUND | LAUNCHERS.get(rel.as_posix(), set())
            if other not in allowed:
                bad.append(f"{rel}:{line} ({own}) imports mkd.{target} ({other})")
    return bad


def test_every_module_has_a_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "db" and "migrations" in rel.parts or rel.name == "__init__.py" and len(rel.parts) == 1:
            continue
        layer = layer_of(".".join(rel.with_suffix("").parts))
        assert layer in MAY_IMPORT or layer in GROUND, f"{rel}: no layer for {layer!r}"


def test_no_layer_reaches_up() -> None:
    assert violations() == []


def test_the_check_sees_a_reach_up(tmp_path: Path) -> None:
    module = tmp_path / "rule.py"
    module.write_text("from mkd.services.lifecycle import load\nimport mkd.kernel_types\n")
    assert imports_of(module) == [(1, "services.lifecycle"), (2, "kernel_types")]
    assert layer_of("services.lifecycle") not in MAY_IMPORT["domain"]
