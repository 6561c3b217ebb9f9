"""Every named choice comes from a registry: each states its contract, each entry keeps it, and no
hand-kept list of registered names is left in the code (a list that goes stale, as a hand-kept
mode order once did when a mode was added)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from parity_ray.cli.listing import load_registries

ROOT = Path(__file__).resolve().parents[2]
REGISTRIES = load_registries()
ENTRIES = [(key, name) for key, registry in REGISTRIES.items() for name in registry.in_order()]


@pytest.mark.parametrize("key", sorted(REGISTRIES))
def test_every_registry_states_its_contract_and_has_entries(key):
    registry = REGISTRIES[key]
    assert registry.key == key and len(registry.contract) > 60, f"registry '{key}' must state its call contract"
    assert registry.in_order(), f"registry '{key}' has no built-in entries"


def _dataset(spec):
    from parity_ray.tasks import TASKS

    assert spec.task in TASKS and callable(spec.reader) and len(spec.input_shape) == 3


def _class_of(base_path):
    def check(entry):
        module, _, name = base_path.rpartition(".")
        base = getattr(__import__(module, fromlist=[name]), name)
        assert isinstance(entry, type) and issubclass(entry, base), f"{entry} is not a {base.__name__}"
    return check


def _loss(entry):
    from parity_ray.losses import LossInputs

    g = torch.Generator().manual_seed(0)
    decoded, base = torch.randn(2, 3, 2, 10, generator=g), torch.randn(2, 2, 10, generator=g)
    inputs = LossInputs(parity_outputs=torch.randn(2, 1, 10, generator=g), parity_targets=None, decoded=decoded,
                        rebuilt=torch.ones(2, 3, 2, dtype=torch.bool), base_outputs=base, labels=torch.tensor([[1, 2], [3, 4]]))
    value = entry()(inputs)
    assert value.dim() == 0 and torch.isfinite(value)


def _augmentation(entry):
    images = torch.rand(4, 3, 16, 16)
    out = entry(images, torch.Generator().manual_seed(0), [0.0, 0.0, 0.0])
    assert out.shape == images.shape


def _task(entry):
    from parity_ray.analysis.explorer import EXPLORER_PAYLOADS
    from parity_ray.tasks import Task

    assert isinstance(entry, Task) and entry.registry_name in EXPLORER_PAYLOADS
    for method in ("accuracy", "base_loss", "add_rebuilt", "add_patterns", "prediction_columns"):
        assert getattr(type(entry), method) is not getattr(Task, method), f"task must define {method}"


def _optimizer(entry):
    from parity_ray.config import TrainConfig

    assert isinstance(entry(nn.Linear(3, 2).parameters(), TrainConfig()), torch.optim.Optimizer)


def _lr_schedule(entry):
    from parity_ray.config import TrainConfig

    optimizer = torch.optim.SGD(nn.Linear(3, 2).parameters(), lr=0.1)
    schedule = entry(optimizer, TrainConfig())
    assert schedule is None or callable(schedule.step)


def _parity_init(entry):
    from parity_ray.initialization import ParityInit

    base, model = nn.Linear(3, 2), nn.Linear(3, 2)
    entry(model, base)
    assert isinstance(entry, ParityInit)
    assert entry.from_scratch or torch.equal(model.weight, base.weight)


def _recipe(entry):
    from parity_ray.config import TrainConfig

    TrainConfig.from_dict(dict(entry.overrides))


def _import_path(entry):
    """A class, or the import path of Ray's plug-in or of this project's wrapper of one (imported when used)."""
    assert isinstance(entry, type) or (isinstance(entry, str) and entry.startswith(("ray.", "parity_ray.tune.")))


def _straggler(entry):
    from parity_ray.actors.stragglers import StragglerModel

    model = entry()
    assert isinstance(model, StragglerModel)
    assert model.delay(np.random.default_rng(0), 0.001, 0.0, 0, 2) >= 0.0


def _mode(entry):
    """A mode is written once: the sweep's simulated frontend runs this very class on its virtual clock."""
    from parity_ray.actors.codes import CodeLayout
    from parity_ray.actors.modes import ServingMode
    from parity_ray.actors.sweep.engine import Shard
    from parity_ray.actors.sweep.service import parse_service

    assert issubclass(entry, ServingMode)
    layout = CodeLayout(k=2, r=1, systematic=True, num_coded=1)
    own = sum(len(workers) for workers in entry.workers(layout, True).values())
    for copies in (1, 3):  # --copies: one frontend over copies of the mode's pools, routing across all of them
        shard = Shard(entry.registry_name, layout, True, {"deadline_ms": 20, "timeout_s": 5}, parse_service("constant:ms=2"),
                      [], 0, 3 * copies, 0, 4, 0.001, 1.0, 1.0, copies=copies)
        result = shard.run(np.arange(40) * 0.005)
        assert (result.path == 0).sum() >= 30 and not (result.path == 2).any()
        assert sum(len(replicas) for replicas in shard.replicas.values()) == own * copies
        assert len({replica.index for replica in shard.req_replica}) > (own if copies > 1 else 0)


def _service(entry):
    draws = entry.draw(np.random.default_rng(0), {p: 1.0 for p in entry.params}, 100)
    assert len(draws) and (np.asarray(draws) > 0).all()


def _service_tail(entry):
    """A tail fit takes sorted times (seconds) and returns None or a dict naming its kind."""
    times = np.sort(np.random.default_rng(0).lognormal(np.log(0.005), 0.4, 2000))
    fit = entry(times)
    assert fit is None or (fit["kind"] == entry.registry_name and fit["threshold_ms"] > 0)


def _sweep_preset(entry):
    """A preset's settings are SweepOptions fields and its service a valid law."""
    from parity_ray.actors.options import SweepOptions
    from parity_ray.actors.sweep.service import parse_service

    fields = {f.name for f in dataclasses.fields(SweepOptions)}
    assert set(entry.settings) <= fields and entry.source and entry.assumptions
    parse_service(entry.service)
    assert entry.headline([]) == []


def _explorer_payload(entry):
    assert callable(entry)


CHECKS = {
    "datasets": _dataset, "models": callable, "encoders": _class_of("parity_ray.coders.Encoder"),
    "decoders": _class_of("parity_ray.coders.Decoder"), "losses": _loss, "augmentations": _augmentation,
    "tasks": _task, "optimizers": _optimizer, "lr_schedules": _lr_schedule, "parity_inits": _parity_init,
    "recipes": _recipe, "schedulers": _import_path, "search_algs": _import_path, "callbacks": _import_path,
    "stragglers": _straggler, "modes": _mode,
    "service_distributions": _service, "sweep_presets": _sweep_preset, "service_tails": _service_tail, "explorer_payloads": _explorer_payload,
}


def test_every_registry_has_a_contract_test():
    assert sorted(REGISTRIES) == sorted(CHECKS), "a new registry needs its entries' contract checked here"


@pytest.mark.parametrize("key,name", ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_every_entry_keeps_its_registry_contract(key, name):
    check = CHECKS[key]
    result = check(REGISTRIES[key].get(name))
    assert result is not False


def test_keys_pair_up_across_floors():
    """Registries keyed by another registry's names hold exactly those names."""
    assert set(REGISTRIES["explorer_payloads"].names()) == set(REGISTRIES["tasks"].names())


# --------------------------------------------------------------------------- no hand-kept name lists

SCANNED = ("parity_ray", "actors", "analysis", "benchmarks")  # search_spaces/ are configs: they choose names


def _is_exempt(node: ast.AST, parents) -> bool:
    parent = parents.get(node)
    if isinstance(parent, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in parent.targets):
        return True  # Python names that happen to match registered ones
    if isinstance(parent, ast.Call):  # the registration itself
        func = parent.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        return "register" in name
    return False


def hand_kept_name_lists(root: Path = ROOT):
    """``(file, line, registry, names)`` of every literal list, tuple or set holding two or more
    names of one registry (a dict: three or more keys) outside the registries themselves."""
    names = {key: set(registry.names()) for key, registry in REGISTRIES.items() if len(registry.names()) >= 2}
    found = []
    for folder in SCANNED:
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
            for node in ast.walk(tree):
                if not isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)) or _is_exempt(node, parents):
                    continue
                items = node.keys if isinstance(node, ast.Dict) else node.elts
                strings = {i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)}
                for key, registered in names.items():
                    hit = sorted(strings & registered)
                    if len(hit) >= (3 if isinstance(node, ast.Dict) else 2):
                        found.append((str(path.relative_to(root)), node.lineno, key, hit))
    return found


def _docstrings(tree: ast.AST) -> set:
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, nodes) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}


def names_in_texts(root: Path = ROOT):
    """``(file, line, registry, names)`` of every string (help texts, messages; docstrings are the
    registries' documentation and exempt) naming three or more entries of one registry."""
    import re

    names = {key: set(registry.names()) for key, registry in REGISTRIES.items() if len(registry.names()) >= 3}
    found = []
    for folder in SCANNED:
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docs = _docstrings(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                    words = set(re.findall(r"[A-Za-z0-9][\w\-]*", node.value))
                    for key, registered in names.items():
                        hit = sorted(words & registered)
                        if len(hit) >= 3:
                            found.append((str(path.relative_to(root)), node.lineno, key, hit))
    return found


def test_no_hand_kept_list_of_registered_names_remains():
    assert hand_kept_name_lists() == []
    assert names_in_texts() == [], "list registered names from their registry (help texts, messages)"


def test_the_scan_finds_a_hand_kept_list(tmp_path):
    (tmp_path / "actors").mkdir()
    (tmp_path / "actors" / "stale.py").write_text('MODE_ORDER = ("coded", "replication", "hedged")\n')
    for folder in SCANNED:
        (tmp_path / folder).mkdir(exist_ok=True)
    (tmp_path / "actors" / "help.py").write_text('"""Doc: coded, hedged, none."""\nHELP = "modes: coded, hedged, none"\n')
    found = hand_kept_name_lists(tmp_path)
    assert ("actors/stale.py", 1, "modes", ["coded", "hedged", "replication"]) in found
    assert {key for _f, _l, key, _n in found} == {"modes"}
    texts = names_in_texts(tmp_path)
    assert ("actors/help.py", 2, "modes", ["coded", "hedged", "none"]) in texts and all(line == 2 for _f, line, _k, _n in texts)
