"""Shared fixtures: the real data root, an isolated cache, tiny CIFAR files in the real format."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PARITY_RAY_SHARED", REPO.parent / "shared"))
DATA_ROOT = Path(os.environ.get("PARITY_RAY_DATA") or SHARED / "data").resolve()
FOREIGN_MLP = SHARED / "models" / "parm-mnist-base-mlp" / "model.t7"

# Every test process (and the subprocesses it starts) caches into a throw-away folder,
# never the user's ~/.cache: base models trained here must not leak between sessions.
_CACHE = tempfile.mkdtemp(prefix="parity-ray-test-cache-")
os.environ["PARITY_RAY_CACHE"] = _CACHE
os.environ.pop("PARITY_RAY_DATA", None)
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def data_root() -> str:
    if not (DATA_ROOT / "mnist").exists():
        pytest.skip(f"real datasets not found at {DATA_ROOT} (set PARITY_RAY_SHARED)")
    return str(DATA_ROOT)


@pytest.fixture(scope="session")
def foreign_mlp() -> str:
    if not FOREIGN_MLP.exists():
        pytest.skip(f"foreign checkpoint not found at {FOREIGN_MLP}")
    return str(FOREIGN_MLP)


def write_cifar(root: Path, name: str, n_train: int = 40, n_test: int = 20, seed: int = 0) -> Path:
    """Write a tiny dataset in the real CIFAR python-pickle layout under ``root``."""
    rng = np.random.RandomState(seed)
    classes = 10 if name == "cifar10" else 100
    key = "labels" if name == "cifar10" else "fine_labels"
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)

    def batch(path: Path, n: int) -> None:
        entry = {
            "batch_label": path.name,
            key: [int(v) for v in rng.randint(0, classes, size=n)],
            "data": rng.randint(0, 256, size=(n, 3072)).astype(np.uint8),
            "filenames": [f"img_{i}.png" for i in range(n)],
        }
        if name == "cifar100":
            entry["coarse_labels"] = [int(v) for v in rng.randint(0, 20, size=n)]
        with open(path, "wb") as fh:
            pickle.dump(entry, fh, protocol=2)

    if name == "cifar10":
        for i in range(1, 6):
            batch(folder / f"data_batch_{i}", n_train // 5)
        batch(folder / "test_batch", n_test)
        with open(folder / "batches.meta", "wb") as fh:
            pickle.dump({"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": n_train // 5}, fh)
    else:
        batch(folder / "train", n_train)
        batch(folder / "test", n_test)
        with open(folder / "meta", "wb") as fh:
            pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)]}, fh)
    return folder


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("cifar-root")
    write_cifar(root, "cifar10")
    write_cifar(root, "cifar100")
    return str(root)


@pytest.fixture(scope="session")
def roots(data_root, cifar_root):
    """A data root that holds every registered dataset: real MNIST family, tiny CIFAR."""
    return {"digits": None, "mnist": data_root, "fashion-mnist": data_root, "cifar10": cifar_root, "cifar100": cifar_root}


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for in-process experiments; workers import `tests.*` class-specs through PYTHONPATH."""
    import ray

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
