"""Shared fixtures: the real data root, an isolated cache, tiny CIFAR / Cats-vs-Dogs / CUB files in the real formats."""

from __future__ import annotations

import contextlib
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


def write_cats_v_dogs(folder: Path, n_per_class: int = 5, seed: int = 0) -> Path:
    """Write real JPEGs named like Kaggle's ``cat.<n>.jpg`` / ``dog.<n>.jpg`` (various sizes) into ``folder``."""
    from PIL import Image

    rng = np.random.RandomState(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for animal in ("cat", "dog"):
        for n in range(n_per_class):
            width, height = (int(v) for v in rng.randint(16, 48, size=2))
            pixels = rng.randint(0, 256, size=(height, width, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{animal}.{n}.jpg", quality=95)
    return folder


BOX_PAINT = (255, 220, 0)  # write_cub(paint=True): the box's pixels, on a darkened background


def write_cub(root: Path, n_images: int = 8, seed: int = 0, paint: bool = False) -> tuple:
    """Write a tiny CUB_200_2011 folder (real JPEGs, the metadata files); return it and its records.

    Records are ``(image id, relative path, (width, height), (x, y, w, h), is_train)``; every
    second image is a test image, and the sizes differ so that box scaling is exercised.
    ``paint``: each image's box is filled with :data:`BOX_PAINT` (pixel columns x .. x+w, rows
    y .. y+h of the file), so a picture of the image shows where its box is.
    """
    from PIL import Image

    rng = np.random.RandomState(seed)
    folder = root / "CUB_200_2011"
    records = []
    for image_id in range(1, n_images + 1):
        klass = f"{1 + image_id % 2:03d}.Bird_{image_id % 2}"
        rel = f"{klass}/Bird_{image_id:04d}.jpg"
        width, height = int(rng.randint(40, 120)), int(rng.randint(30, 90))
        x, y = float(rng.randint(0, width // 2)), float(rng.randint(0, height // 2))
        box = (x, y, float(rng.randint(5, width - int(x))), float(rng.randint(5, height - int(y))) + 0.5)
        (folder / "images" / klass).mkdir(parents=True, exist_ok=True)
        pixels = rng.randint(0, 256, size=(height, width, 3)).astype(np.uint8)
        if paint:
            pixels //= 3
            pixels[int(round(y)):int(round(y + box[3])), int(round(x)):int(round(x + box[2]))] = BOX_PAINT
        Image.fromarray(pixels).save(folder / "images" / rel, **({"quality": 95} if paint else {}))
        records.append((image_id, rel, (width, height), box, image_id % 2 == 1))
    (folder / "images.txt").write_text("".join(f"{i} {rel}\n" for i, rel, _, _, _ in records))
    (folder / "bounding_boxes.txt").write_text("".join(f"{i} {' '.join(map(str, box))}\n" for i, _, _, box, _ in records))
    (folder / "train_test_split.txt").write_text("".join(f"{i} {int(train)}\n" for i, _, _, _, train in records))
    return folder, records


@pytest.fixture(scope="session")
def cats_v_dogs_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("cats-v-dogs-root")
    write_cats_v_dogs(root / "dogs-vs-cats" / "train")  # Kaggle's layout: train/cat.0.jpg
    return str(root)


@pytest.fixture(scope="session")
def cub_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("cub-root")
    write_cub(root)
    return str(root)


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("cifar-root")
    write_cifar(root, "cifar10")
    write_cifar(root, "cifar100")
    return str(root)


@pytest.fixture(scope="session")
def roots(data_root, cifar_root, cats_v_dogs_root, cub_root):
    """A data root for every registered dataset: real MNIST family and Speech Commands subset; tiny CIFAR, Cats vs Dogs, CUB."""
    return {
        "digits": None,
        "mnist": data_root,
        "fashion-mnist": data_root,
        "cifar10": cifar_root,
        "cifar100": cifar_root,
        "speech-commands": data_root,
        "cats-v-dogs": cats_v_dogs_root,
        "cub-localization": cub_root,
    }


def start_local_ray() -> None:
    """Start this session's local Ray unless one is up; workers import `tests.*` class-specs through PYTHONPATH."""
    import ray

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    os.environ["RAY_AUTH_MODE"] = "disabled"  # the tests' own environment only; the library never sets it
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray for the whole session, shared by every in-process experiment, simulation and
    in-process CLI call that needs one (the library reuses a Ray that is up and leaves it running).
    Tests that need a cluster of their own take it down and bring it back (``own_ray``)."""
    import ray

    start_local_ray()
    yield
    ray.shutdown()


@contextlib.contextmanager
def own_ray():
    """For a test that builds a Ray of its own (a multi-node cluster): the session's Ray is stopped
    for the block and started again afterwards if it was up."""
    import ray

    was_up = ray.is_initialized()
    if was_up:
        ray.shutdown()
    try:
        yield
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if was_up:
            start_local_ray()


# A small trained experiment shared by the serving tests and the benchmarks' smoke tests: digits,
# k=2, addition/subtraction, through Tune on the session's Ray. Tests that write into an
# experiment (simulations, reports) take a copy (``experiment_copy``).
@pytest.fixture(scope="session")
def trained_experiment(tmp_path_factory, local_ray) -> str:
    from parity_ray.tune.experiment import TuneOptions, run_experiment

    storage = tmp_path_factory.mktemp("serve-results")
    opts = TuneOptions(space="quick", name="served", storage=str(storage), progress=False,
                       overrides=["dataset=digits", "base_epochs=20", "encoder=addition", "k=2", "epochs=40"])
    run_experiment(opts, log=lambda _m: None)
    return opts.uri


def experiment_copy(experiment: str, folder: Path) -> str:
    """A copy of a shared experiment for a test that writes into it (its simulations, its report)."""
    import shutil

    return str(shutil.copytree(experiment, Path(folder) / Path(experiment).name))
