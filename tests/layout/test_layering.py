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
    if package.split(".")[0] in ("actors", "analysis", "search_spaces"):
        package = f"parity_ray.{package}"  # these folders install as parity_ray.<name>
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
            if module.startswith(("parity_ray.actors", "actors")) or module.startswith("ray.serve") or module == "ray.serve":
                offenders.append(f"{path.relative_to(REPO)}: {module}")
    assert not offenders, offenders


def test_importing_the_core_loads_no_serve():
    code = ("import sys, parity_ray, parity_ray.serving, parity_ray.results, parity_ray.quickstart, parity_ray.experiment; "
            "bad = [m for m in sys.modules if m.startswith(('ray.serve', 'actors', 'parity_ray.actors'))]; print(bad); "
            "sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_import_cycles_between_packages():
    """actors imports parity_ray; parity_ray (minus cli) never imports actors; analysis never imports actors."""
    for package in ("analysis",):
        for path in sorted((REPO / package).rglob("*.py")):
            assert not [m for m in _imports(path) if m.startswith(("parity_ray.actors", "actors"))], path
    # within actors: modes import the registry module only, never the frontend or the app
    for path in sorted((REPO / "actors" / "modes").rglob("*.py")):
        bad = [m for m in _imports(path) if m.startswith(tuple(f"parity_ray.actors.{name}" for name in
                                                              ("frontend", "app", "simulation", "serve")))]
        assert not bad, (path, bad)


# The three floors of the design card. A module imports its own floor's modules (within its own
# engine) and the floors below, never a floor above; search-space modules belong to the Tune layer.
CORE_MODULES = {"registry", "config", "data", "models", "coders", "losses", "metrics", "base", "trainer", "storage",
                "results", "errors", "utils", "boxes", "serving", "export", "recipes", "augment"}
TUNE_MODULES = {"experiment", "spaces", "tuning"}
APP_MODULES = {"cli", "quickstart", "__main__"}
SOURCE_PACKAGES = ("parity_ray", "actors", "analysis", "search_spaces")  # folders; the last three install as parity_ray.*
LINKED = ("actors", "analysis", "search_spaces")


def floor_of(module: str):
    """``(floor, engine)`` of a project module: 0 core, 1 an engine (tune, serve, analysis), 2 apps."""
    parts = module.split(".")
    if parts[0] in LINKED:
        raise AssertionError(f"'{module}' is imported by its folder name; import parity_ray.{module}")
    if parts[0] == "parity_ray" and len(parts) > 1 and parts[1] in LINKED:
        parts = parts[1:]
    if parts[0] == "parity_ray":
        sub = parts[1] if len(parts) > 1 else "__init__"
        if not ((REPO / "parity_ray" / f"{sub}.py").exists() or (REPO / "parity_ray" / sub).is_dir()):
            sub = "__init__"  # an attribute of the package itself (parity_ray.__version__)
        if sub in CORE_MODULES or sub == "__init__":
            return 0, "core"
        if sub in TUNE_MODULES:
            return 1, "tune"
        if sub in APP_MODULES:
            return 2, "apps"
        raise AssertionError(f"parity_ray.{sub} has no floor: add it to CORE_MODULES, TUNE_MODULES or APP_MODULES")
    if parts[0] == "search_spaces":
        return 1, "tune"
    if parts[0] == "actors":
        return 1, "serve"
    if parts[0] == "analysis":
        return 1, "analysis"
    return None


def project_modules():
    for package in SOURCE_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if package == "parity_ray" and path.relative_to(REPO / package).parts[0] in LINKED:
                continue  # the linked folders, seen once under their own name
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            if package in LINKED:
                name = f"parity_ray.{name}"
            yield (name[: -len(".__init__")] if name.endswith(".__init__") else name), path


def test_every_import_points_down_or_within_its_own_engine():
    offenders = []
    for module, path in project_modules():
        mine = floor_of(module)
        for imported in set(_imports(path)):
            theirs = floor_of(imported)
            if theirs is None or theirs == mine:
                continue
            if theirs[0] > mine[0] or (theirs[0] == mine[0] and theirs[1] != mine[1]):
                offenders.append(f"{module} ({mine[1]}) imports {imported} ({theirs[1]})")
    assert not offenders, "\n".join(sorted(offenders))


def test_no_import_cycle_between_modules():
    """Module-level and function-level imports alike: the import graph of the project is acyclic."""
    modules = dict(project_modules())
    graph = {}
    for module, path in modules.items():
        targets = set()
        for imported in _imports(path):
            # "a.b.c" may name a module or an attribute of module "a.b": keep the longest module prefix
            parts = imported.split(".")
            for end in range(len(parts), 0, -1):
                candidate = ".".join(parts[:end])
                if candidate in modules:
                    if candidate != module and not module.startswith(candidate + "."):  # a package's own __init__
                        targets.add(candidate)
                    break
        graph[module] = targets
    # Tarjan's strongly connected components; any component larger than one module is a cycle
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    import sys as _sys

    _sys.setrecursionlimit(max(_sys.getrecursionlimit(), 10000))
    for node in graph:
        if node not in index:
            visit(node)
    assert not cycles, cycles


def test_installing_claims_no_generic_top_level_module():
    """actors/, analysis/ and search_spaces/ install under parity_ray (linked from inside it)."""
    for name in LINKED:
        link = REPO / "parity_ray" / name
        assert link.is_symlink() and link.resolve() == (REPO / name).resolve(), link
    setup = (REPO / "setup.py").read_text()
    assert 'find_packages(include=["parity_ray", "parity_ray.*"])' in setup
