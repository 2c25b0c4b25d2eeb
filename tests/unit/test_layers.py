"""The package's folders form layers: every import points down, and run/ and report/ meet only
in results/. Read from the source with `ast`, so a new module is checked without registering it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "embbench"

# What each folder may import from embbench (besides itself). Lower layers first.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": {"machine", "errors"},  # defaults follow the cores this process may use
    "machine": {"errors"},
    "results": {"config", "machine", "errors"},
    "servers": {"config", "machine", "errors"},
    "load": {"results", "config", "machine", "errors"},
    "variants": {"servers", "load", "results", "config", "machine", "errors"},
    "run": {"variants", "servers", "load", "results", "config", "machine", "errors"},
    "report": {"results", "config", "machine", "errors"},
    "cli": {
        "run",
        "report",
        "variants",
        "servers",
        "load",
        "results",
        "config",
        "machine",
        "errors",
    },
}


def _folder(module: str) -> str:
    """`embbench.report.sections.why` -> `report`; `embbench.errors` -> `errors`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "embbench":
                found += [(node.lineno, f"embbench.{alias.name}") for alias in node.names]
            elif node.module.startswith("embbench."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("embbench.")]
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem == "errors")


def test_every_folder_has_a_layer() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(ALLOWED), folders - set(ALLOWED)


def test_imports_point_down() -> None:
    wrong = []
    for path in _modules():
        rel = path.relative_to(PACKAGE)
        here = rel.parts[0].removesuffix(".py")
        for line, module in _imports(path):
            there = _folder(module)
            if there in ("", here, "__version__"):
                continue
            if there not in ALLOWED[here]:
                wrong.append(f"{rel}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_relative_imports_are_not_used() -> None:
    # Absolute imports only, so that the scan above sees every edge.
    relative = [
        f"{p.relative_to(PACKAGE)}:{n.lineno}"
        for p in _modules()
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, ast.ImportFrom) and n.level > 0
    ]
    assert not relative, relative


def test_servers_read_the_wire_config_not_the_runs() -> None:
    # A server knows what it serves (config/wire.py), not how the run around it is planned.
    wrong = [
        f"{p.relative_to(PACKAGE)}:{line}"
        for p in sorted((PACKAGE / "servers").rglob("*.py"))
        for line, module in _imports(p)
        if module == "embbench.config.run"
    ]
    assert not wrong, wrong
