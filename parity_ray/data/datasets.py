"""Dataset registry: readers for the on-disk formats, data-root search, splits, normalisation.

Every dataset is loaded once into in-memory float tensors (on the training device),
so the trainer indexes tensors instead of decoding PIL images sample by sample.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import UsageError
from ..registry import Registry
from ..utils import atomic_write_bytes, cache_dir

Tensor = torch.Tensor


@dataclass(frozen=True)
class RawData:
    """Images as float32 in [0, 1], shape (N, C, H, W); labels int64."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    source: str  # the folder (or package) the files were read from


@dataclass(frozen=True)
class DatasetSpec:
    """What configs, models and tables need to know about a dataset."""

    name: str
    num_classes: int
    input_shape: Tuple[int, int, int]  # (C, H, W)
    mean: Tuple[float, ...]  # per-channel normalisation applied by input_norm="dataset"
    std: Tuple[float, ...]
    default_val_size: int  # validation images carved from the official train split
    base_epochs: int  # epochs when the platform trains the base model itself
    expected_files: Tuple[str, ...]  # shown in the missing-data error
    layouts: Tuple[str, ...]  # sub-folders of a data root that may hold the files
    reader: Callable[["DatasetSpec", List[Path], bool], RawData] = field(repr=False, compare=False)


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    DATASETS.register(spec.name)(spec)
    return spec


def list_datasets() -> List[str]:
    return DATASETS.names()


def get_dataset_spec(name: str) -> DatasetSpec:
    return DATASETS.get(name)


# --------------------------------------------------------------------------- data roots


def data_roots(data_root: Optional[str] = None) -> List[Path]:
    """Folders searched, in order: ``--data-root``, ``$PARITY_RAY_DATA``, the user cache."""
    roots: List[Path] = []
    for candidate in (data_root, os.environ.get("PARITY_RAY_DATA")):
        if candidate:
            roots.append(Path(candidate).expanduser().resolve())
    roots.append(cache_dir("data").resolve())
    return list(dict.fromkeys(roots))


def _candidate_folders(spec: DatasetSpec, roots: Sequence[Path]) -> List[Path]:
    return [root / layout if layout else root for root in roots for layout in spec.layouts]


def _missing_data_error(spec: DatasetSpec, folders: Sequence[Path], why: str = "") -> UsageError:
    searched = ", ".join(str(f) for f in folders)
    reason = f" ({why})" if why else ""
    return UsageError(
        f"dataset '{spec.name}' not found{reason}: expected {', '.join(spec.expected_files)} "
        f"(or their .gz) in one of: {searched}; pass --data-root or set PARITY_RAY_DATA"
    )


# --------------------------------------------------------------------------- MNIST family

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _decompress_into_cache(gz_path: Path, dest: Path) -> Path:
    """Decompress ``gz_path`` to ``dest`` once; the data root itself may be read-only."""
    stat = gz_path.stat()
    stamp = f"{gz_path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
    marker = dest.with_name(dest.name + ".source")
    if dest.exists() and marker.exists() and marker.read_text() == stamp:
        return dest
    try:
        with gzip.open(gz_path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise UsageError(f"cannot decompress {gz_path}: {exc}; the file is corrupt, replace it") from None
    atomic_write_bytes(dest, data)
    atomic_write_bytes(marker, stamp.encode())
    return dest


def _torchvision_mnist_class(spec: DatasetSpec):
    import torchvision.datasets as tvd

    return {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST}[spec.name]


def _read_mnist_family(spec: DatasetSpec, roots: List[Path], download: bool) -> RawData:
    tv_class = _torchvision_mnist_class(spec)
    known_md5 = {Path(url).name: md5 for url, md5 in tv_class.resources}
    folders = _candidate_folders(spec, roots)
    for folder in folders:
        plain = [folder / name for name in _IDX_FILES]
        if all(p.exists() for p in plain):
            return _mnist_from_idx(tv_class, plain, folder)
        gz = [folder / f"{name}.gz" for name in _IDX_FILES]
        if all(p.exists() or q.exists() for p, q in zip(plain, gz)):
            extracted_root = cache_dir("extracted", spec.name, tv_class.__name__, "raw")
            files = []
            for p, q in zip(plain, gz):
                if p.exists():
                    files.append(p)
                    continue
                expected = known_md5.get(q.name)
                if expected and _md5(q) != expected:
                    raise UsageError(
                        f"{q} has md5 {_md5(q)}, not the published {expected}; the file is corrupt or not {spec.name}"
                    )
                files.append(_decompress_into_cache(q, extracted_root / p.name))
            return _mnist_from_idx(tv_class, files, folder)
    if download:
        target = cache_dir("data")
        try:
            tv_class(str(target), train=True, download=True)
        except Exception as exc:  # offline, proxy, mirror down: all end in the same clear error
            raise _missing_data_error(spec, folders, f"download failed: {type(exc).__name__}") from None
        return _read_mnist_family(spec, roots, download=False)
    raise _missing_data_error(spec, folders)


def _mnist_from_idx(tv_class, files: List[Path], source: Path) -> RawData:
    from torchvision.datasets.mnist import read_image_file, read_label_file

    try:
        train_x, train_y, test_x, test_y = (
            read_image_file(str(files[0])),
            read_label_file(str(files[1])),
            read_image_file(str(files[2])),
            read_label_file(str(files[3])),
        )
    except Exception as exc:
        raise UsageError(f"cannot read {tv_class.__name__} files in {source}: {exc}") from None
    return RawData(
        train_x=train_x.unsqueeze(1).float().div_(255.0),
        train_y=train_y.long(),
        test_x=test_x.unsqueeze(1).float().div_(255.0),
        test_y=test_y.long(),
        source=str(source),
    )


# --------------------------------------------------------------------------- CIFAR family

_CIFAR = {
    # name: (folder in the archive, archive name, train files, test files, label key)
    "cifar10": (
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "labels",
    ),
    "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz", ("train",), ("test",), "fine_labels"),
}


def _read_cifar_batches(paths: Sequence[Path], label_key: str) -> Tuple[Tensor, Tensor]:
    images, labels = [], []
    for path in paths:
        try:
            with open(path, "rb") as fh:
                entry = pickle.load(fh, encoding="latin1")
            data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            target = np.asarray(entry[label_key], dtype=np.int64)
        except Exception as exc:
            raise UsageError(f"cannot read CIFAR batch {path}: {type(exc).__name__}: {exc}") from None
        if len(data) != len(target):
            raise UsageError(f"CIFAR batch {path} has {len(data)} images but {len(target)} labels")
        images.append(torch.from_numpy(data))
        labels.append(torch.from_numpy(target))
    return torch.cat(images).float().div_(255.0), torch.cat(labels)


def _extract_cifar_archive(archive: Path, spec_name: str) -> Path:
    target = cache_dir("extracted", spec_name)
    marker = target / ".source"
    stat = archive.stat()
    stamp = f"{archive.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
    if not (marker.exists() and marker.read_text() == stamp):
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise UsageError(f"cannot extract {archive}: {exc}; the archive is corrupt, replace it") from None
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
        atomic_write_bytes(marker, stamp.encode())
    return target


def _read_cifar_family(spec: DatasetSpec, roots: List[Path], download: bool) -> RawData:
    folder_name, archive_name, train_files, test_files, label_key = _CIFAR[spec.name]
    folders = _candidate_folders(spec, roots)
    for folder in folders:
        batches = folder / folder_name
        if all((batches / f).exists() for f in train_files + test_files):
            train_x, train_y = _read_cifar_batches([batches / f for f in train_files], label_key)
            test_x, test_y = _read_cifar_batches([batches / f for f in test_files], label_key)
            return RawData(train_x, train_y, test_x, test_y, source=str(batches))
        archive = folder / archive_name
        if archive.exists():
            extracted = _extract_cifar_archive(archive, spec.name)
            return _read_cifar_family(spec, [extracted], download=False)
    if download:
        import torchvision.datasets as tvd

        tv_class = tvd.CIFAR10 if spec.name == "cifar10" else tvd.CIFAR100
        target = cache_dir("data")
        try:
            tv_class(str(target), train=True, download=True)
        except Exception as exc:
            raise _missing_data_error(spec, folders, f"download failed: {type(exc).__name__}") from None
        return _read_cifar_family(spec, [target], download=False)
    raise _missing_data_error(spec, folders)


# --------------------------------------------------------------------------- scikit-learn digits

DIGITS_TEST_SIZE = 297  # a fixed held-out set (seed 0), the stand-in for an official test split


def _read_digits(spec: DatasetSpec, roots: List[Path], download: bool) -> RawData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    # The split is fixed (seed 0) for every run so that "test" means the same images everywhere.
    order = torch.from_numpy(np.random.RandomState(0).permutation(len(labels)))
    test, train = order[:DIGITS_TEST_SIZE], order[DIGITS_TEST_SIZE:]
    return RawData(images[train], labels[train], images[test], labels[test], source="sklearn.datasets.load_digits")


# --------------------------------------------------------------------------- registrations

register_dataset(
    DatasetSpec(
        name="digits",
        num_classes=10,
        input_shape=(1, 8, 8),
        mean=(0.3040,),
        std=(0.3799,),
        default_val_size=300,
        base_epochs=60,
        expected_files=("(bundled with scikit-learn)",),
        layouts=("",),
        reader=_read_digits,
    )
)
register_dataset(
    DatasetSpec(
        name="mnist",
        num_classes=10,
        input_shape=(1, 28, 28),
        mean=(0.1307,),
        std=(0.3081,),
        default_val_size=5000,
        base_epochs=12,
        expected_files=_IDX_FILES,
        layouts=("MNIST/raw", "mnist/MNIST/raw", "mnist/raw", "mnist", ""),
        reader=_read_mnist_family,
    )
)
register_dataset(
    DatasetSpec(
        name="fashion-mnist",
        num_classes=10,
        input_shape=(1, 28, 28),
        mean=(0.2860,),
        std=(0.3530,),
        default_val_size=5000,
        base_epochs=20,
        expected_files=_IDX_FILES,
        layouts=(
            "FashionMNIST/raw",
            "fashion_mnist/FashionMNIST/raw",
            "fashion-mnist/FashionMNIST/raw",
            "fashion-mnist",
            "fashion_mnist",
        ),
        reader=_read_mnist_family,
    )
)
register_dataset(
    DatasetSpec(
        name="cifar10",
        num_classes=10,
        input_shape=(3, 32, 32),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        default_val_size=5000,
        base_epochs=30,
        expected_files=("cifar-10-batches-py/{data_batch_1..5,test_batch}", "cifar-10-python.tar.gz"),
        layouts=("", "cifar10", "cifar-10", "CIFAR10"),
        reader=_read_cifar_family,
    )
)
register_dataset(
    DatasetSpec(
        name="cifar100",
        num_classes=100,
        input_shape=(3, 32, 32),
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        default_val_size=5000,
        base_epochs=40,
        expected_files=("cifar-100-python/{train,test}", "cifar-100-python.tar.gz"),
        layouts=("", "cifar100", "cifar-100", "CIFAR100"),
        reader=_read_cifar_family,
    )
)
