"""Every registered dataset loads from its real on-disk format into normalised tensors."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch

from parity_ray import UsageError
from parity_ray.data import list_datasets, get_dataset_spec, load_data, parse_input_norm
from parity_ray.utils import cache_dir

EXPECTED_SIZES = {"mnist": (60000, 10000), "fashion-mnist": (60000, 10000), "digits": (1500, 297)}


@pytest.mark.parametrize("name", list_datasets())
def test_every_dataset_loads_split_and_normalises(name, roots):
    spec = get_dataset_spec(name)
    val_size = 10 if name.startswith("cifar") else None
    data = load_data(name, data_root=roots[name], val_size=val_size, split_seed=3, download=False)
    assert tuple(data.train_x.shape[1:]) == spec.input_shape
    assert data.train_x.dtype == torch.float32
    assert len(data.val_y) == (val_size or spec.default_val_size)
    total_train = len(data.train_y) + len(data.val_y)
    if name in EXPECTED_SIZES:
        assert (total_train, len(data.test_y)) == EXPECTED_SIZES[name]
    assert int(data.train_y.max()) < spec.num_classes and int(data.train_y.min()) >= 0
    # The recorded split is reproducible from its seed and differs for another seed.
    again = load_data(name, data_root=roots[name], val_size=val_size, split_seed=3, download=False)
    other = load_data(name, data_root=roots[name], val_size=val_size, split_seed=4, download=False)
    assert data.split == again.split and torch.equal(data.val_x, again.val_x)
    assert data.split["val_indices_sha256"] != other.split["val_indices_sha256"]


def test_mnist_normalisation_matches_recorded_statistics(data_root):
    data = load_data("mnist", data_root=data_root, input_norm="dataset")
    assert data.normalization.mean == (0.1307,)
    # Standardised with MNIST's own statistics: train pixels come out near mean 0, std 1.
    assert abs(float(data.train_x.mean())) < 0.02
    assert abs(float(data.train_x.std()) - 1.0) < 0.02
    raw = load_data("mnist", data_root=data_root, input_norm="none")
    assert float(raw.train_x.min()) == 0.0 and float(raw.train_x.max()) == 1.0


def test_gz_files_are_decompressed_into_the_cache_not_the_data_root(data_root):
    load_data("mnist", data_root=data_root)
    raw_dir = Path(data_root) / "mnist" / "MNIST" / "raw"
    assert sorted(p.name for p in raw_dir.iterdir()) == sorted(
        f"{n}.gz" for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    )
    assert (cache_dir("extracted", "mnist", "MNIST", "raw") / "train-images-idx3-ubyte").exists()


def test_missing_files_name_expected_files_and_every_folder(tmp_path):
    with pytest.raises(UsageError) as err:
        load_data("fashion-mnist", data_root=str(tmp_path), download=False)
    message = str(err.value)
    assert "\n" not in message
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert str(cache_dir("data")) in message


def test_corrupt_gz_is_reported(tmp_path, data_root):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (Path(data_root) / "mnist" / "MNIST" / "raw").iterdir():
        shutil.copy(f, raw / f.name)
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not mnist"))
    with pytest.raises(UsageError, match="md5"):
        load_data("mnist", data_root=str(tmp_path), download=False)


def test_cifar_archive_in_distribution_format_is_extracted(tmp_path):
    import tarfile

    from tests.conftest import write_cifar

    staging = tmp_path / "staging"
    folder = write_cifar(staging, "cifar10", n_train=30, n_test=10)
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    data = load_data("cifar10", data_root=str(root), val_size=5, download=False)
    assert len(data.train_y) + len(data.val_y) == 30 and len(data.test_y) == 10
    assert not (root / "cifar-10-batches-py").exists()  # extracted into the cache, not the data root


def test_cifar_channels_stay_in_order(tmp_path):
    """The pickled rows are channel-major (1024 R, 1024 G, 1024 B); the reader must keep that."""
    import pickle

    import numpy as np

    from tests.conftest import write_cifar

    folder = write_cifar(tmp_path, "cifar10", n_train=10, n_test=5)
    with open(folder / "test_batch", "rb") as fh:
        entry = pickle.load(fh, encoding="latin1")
    data = load_data("cifar10", data_root=str(tmp_path), val_size=2, input_norm="none", download=False)
    expected = torch.from_numpy(np.asarray(entry["data"][0], dtype=np.float32).reshape(3, 32, 32) / 255.0)
    assert torch.allclose(data.test_x[0], expected)


@pytest.mark.parametrize("value", ["nonsense", "0.5/0", "0.1,0.2/0.3"])
def test_bad_input_norm_is_a_usage_error(value):
    with pytest.raises(UsageError):
        parse_input_norm(value, get_dataset_spec("mnist"))
