"""The core library (parity_ray/ minus its CLI) imports nothing from Ray Serve or actors/; no cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

CORE = REPO / "parity_ray"
ALLOWED = {"cli.py", "__main__.py"}  # the command line reaches into the Serve layer


def _imports(path: Path):
    """Every module a file imports, at any depth (function-level imports included), made absolute."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module
            for alias in node.names:
                yield f"{module}.{alias.name}"


def test_core_imports_no_serve_and_no_actors():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        if path.relative_to(CORE).as_posix() in ALLOWED:
            continue
        for module in _imports(path):
            if module == "actors" or module.startswith("actors.") or module.startswith("ray.serve") or module == "ray.serve":
                offenders.append(f"{path.relative_to(REPO)}: {module}")
    assert not offenders, offenders


def test_importing_the_core_loads_no_serve():
    code = ("import sys, parity_ray, parity_ray.serving, parity_ray.results, parity_ray.quickstart, parity_ray.experiment; "
            "bad = [m for m in sys.modules if m.startswith(('ray.serve', 'actors'))]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_import_cycles_between_packages():
    """actors imports parity_ray; parity_ray (minus cli) never imports actors; analysis never imports actors."""
    for package in ("analysis",):
        for path in sorted((REPO / package).rglob("*.py")):
            assert not [m for m in _imports(path) if m == "actors" or m.startswith("actors.")], path
    # within actors: modes import the registry module only, never the frontend or the app
    for path in sorted((REPO / "actors" / "modes").rglob("*.py")):
        bad = [m for m in _imports(path) if m.startswith(("actors.frontend", "actors.app", "actors.simulation", "actors.serve"))]
        assert not bad, (path, bad)
