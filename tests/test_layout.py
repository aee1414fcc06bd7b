"""The package layout keeps the map's promises (../shared/ARCHITECTURE.md): imports point
down the layer order, no import loops, nothing imports ``adp/cli.py``, no module grows past
the size guide without saying why, and every subcommand lives beside its package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "adp"

#: The map's order, bottom first (the ground-floor helpers paths, lazy, graphs and clitools
#: included).
LAYERS = {
    "errors": 0,
    "config": 0,
    "db": 0,
    "paths": 0,
    "lazy": 0,
    "redact": 0,
    "graphs": 0,
    "clitools": 0,
    "io": 1,
    "observe": 1,
    "cluster": 2,
    "detect": 2,
    "context": 2,
    "models": 3,
    "tuning": 3,
    "feedback": 3,
    "jobs": 4,
    "stream": 4,
    "service": 5,
    "bench": 6,
    "cli": 7,
}
SIZE_GUIDE = 500
SIZE_REASON = "Long module:"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Every module's imports of other ADP modules, at any depth (lazy ones included)."""
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("adp"):
                    edges[name].add(target)
    return edges


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_imports_point_down_the_map_and_nothing_imports_the_cli() -> None:
    modules = _modules()
    problems = []
    for module, targets in _imports(modules).items():
        for target in targets:
            if target == "adp.cli":
                problems.append(f"{module} imports adp.cli")
            source_part, target_part = _part(module), _part(target)
            if source_part == target_part or target_part == "__init__":
                continue
            assert source_part in LAYERS or source_part == "__init__", f"{module}: not on the map"
            assert target_part in LAYERS, f"{target}: not on the map"
            if source_part != "__init__" and LAYERS[target_part] > LAYERS[source_part]:
                problems.append(f"upward: {module} -> {target}")
    assert problems == []


def test_there_is_no_import_loop() -> None:
    edges = _imports(_modules())
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    loops: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                loops.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    sys.setrecursionlimit(10_000)
    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert loops == []


def test_long_modules_say_why_at_their_top() -> None:
    too_long = []
    for name, path in sorted(_modules().items()):
        text = path.read_text()
        lines = text.count("\n")
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if lines > SIZE_GUIDE and SIZE_REASON not in docstring:
            too_long.append(f"{name}: {lines} lines")
    assert too_long == []


def test_no_module_shares_a_name_with_a_package() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    clashes = sorted(
        _module_name(p) for p in PACKAGE.rglob("*.py") if p.stem in packages and p.parent != PACKAGE
    )
    assert clashes == []


def test_every_subcommand_is_listed_and_lives_beside_its_package() -> None:
    from adp.cli import main

    lazy = main.lazy  # type: ignore[attr-defined]
    for name, target in lazy.items():
        module = target.partition(":")[0]
        assert module.startswith("adp.") and module.endswith(".cli"), (name, target)
    help_text = subprocess.run(
        [sys.executable, "-m", "adp.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in lazy:
        assert name in help_text


@pytest.mark.slow
def test_import_adp_is_cheap_and_every_public_name_resolves() -> None:
    code = (
        "import sys, adp\n"
        "print([m for m in ('dask', 'distributed', 'sklearn', 'pyod') if m in sys.modules])\n"
        "missing = [n for n in adp.__all__ if getattr(adp, n, None) is None]\n"
        "print(missing, callable(adp.search), type(adp.models).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, resolved = out.stdout.splitlines()
    assert heavy == "[]"
    assert resolved == "[] True module"
