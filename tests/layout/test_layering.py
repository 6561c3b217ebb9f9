"""The core library (parity_ray/ minus the apps in parity_ray/cli/) imports nothing from Ray Serve or actors/; no cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

CORE = REPO / "parity_ray"
ALLOWED = ("cli/", "__main__.py")  # the apps: the command line reaches into the Serve layer


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
        if path.relative_to(CORE).as_posix().startswith(ALLOWED):
            continue
        for module in _imports(path):
            if module.startswith(("parity_ray.actors", "actors")) or module.startswith("ray.serve") or module == "ray.serve":
                offenders.append(f"{path.relative_to(REPO)}: {module}")
    assert not offenders, offenders


def test_importing_the_core_loads_no_serve():
    code = ("import sys, parity_ray, parity_ray.serving, parity_ray.results, parity_ray.tune.experiment; "
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


# The three floors of the design card, read from a file's path alone: the engine folders (each its
# own engine), the apps' files, and everything else under parity_ray/ is the core. A module imports
# its own floor's modules (within its own engine) and the floors below, never a floor above.
ENGINE_FOLDERS = {"actors": "serve", "analysis": "analysis", "search_spaces": "tune", "parity_ray/tune": "tune"}
APP_PATHS = ("parity_ray/cli/", "parity_ray/__main__.py")
INSTALLED_AS = {"actors": "parity_ray.actors", "analysis": "parity_ray.analysis", "search_spaces": "parity_ray.search_spaces"}


def floor_of_path(path: Path):
    """``(floor, engine)`` of a project file from where it lies: 0 core, 1 an engine, 2 apps."""
    relative = path.relative_to(REPO).as_posix()
    if relative.startswith(APP_PATHS):
        return 2, "apps"
    for folder, engine in ENGINE_FOLDERS.items():
        if relative.startswith(folder + "/"):
            return 1, engine
    if relative.startswith("parity_ray/"):
        return 0, "core"
    raise AssertionError(f"{relative} lies outside the project's packages")


def module_name(path: Path) -> str:
    """A file's one import name: its path, with the engine folders under the name setup.py installs them as."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] in INSTALLED_AS:
        parts = INSTALLED_AS[parts[0]].split(".") + parts[1:]
    name = ".".join(parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def project_modules():
    for folder in ("parity_ray", *INSTALLED_AS):
        for path in sorted((REPO / folder).rglob("*.py")):
            yield module_name(path), path


MODULE_PATHS = {name: path for name, path in project_modules()}


def floor_of(module: str):
    """``(floor, engine)`` of an imported project module (or of the module an imported name lives in)."""
    parts = module.split(".")
    if parts[0] in INSTALLED_AS:
        raise AssertionError(f"'{module}' is imported by its folder name; import parity_ray.{module}")
    for end in range(len(parts), 0, -1):
        path = MODULE_PATHS.get(".".join(parts[:end]))
        if path is not None:
            return floor_of_path(path)
    return None


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


def test_one_path_and_one_name_per_file():
    """No tracked links; actors/, analysis/ and search_spaces/ install under parity_ray by setup.py's
    package_dir, and each file imports under the one name its path gives."""
    links = subprocess.run(["git", "ls-files", "-s"], cwd=REPO, capture_output=True, text=True).stdout
    assert not [line for line in links.splitlines() if line.startswith("120000")], "a symlink is tracked"
    import importlib

    for name in ("parity_ray.actors.frontend", "parity_ray.analysis.report", "parity_ray.search_spaces.quick"):
        module = importlib.import_module(name)
        assert Path(module.__file__).resolve() == MODULE_PATHS[name].resolve(), (name, module.__file__)


def test_installing_claims_no_generic_top_level_module():
    """The wheel's packages are parity_ray and its subpackages only (setup.py's package list)."""
    code = "import runpy, setuptools; captured = {}; setuptools.setup = lambda **kw: captured.update(kw); " \
           "runpy.run_path('setup.py'); print(sorted({p.split('.')[0] for p in captured['packages']}), " \
           "sorted(captured['package_dir'].items()))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("['parity_ray'] "), result.stdout
    for folder, name in INSTALLED_AS.items():
        assert f"('{name}', '{folder}')" in result.stdout
