"""Every registered dataset loads from its real on-disk format into normalised tensors."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from parity_ray import UsageError
from parity_ray.data import list_datasets, get_dataset_spec, load_data, parse_input_norm
from parity_ray.machine import cache_dir

EXPECTED_SIZES = {
    "mnist": (60000, 10000),
    "fashion-mnist": (60000, 10000),
    "digits": (1500, 297),
    "speech-commands": (249, 51),  # the real 300-clip subset: 205 train + 44 val, 51 test
    "cats-v-dogs": (8, 2),  # 10 written JPEGs, a fixed 20% test split
    "cub-localization": (4, 4),  # 8 written images, every second one a test image
}
SMALL_VAL = {"cifar10": 10, "cifar100": 10, "cats-v-dogs": 2, "cub-localization": 2}  # the tiny written sets
OFFICIAL_VAL = {"speech-commands": 44}  # validation_list.txt of the subset


@pytest.mark.parametrize("name", list_datasets())
def test_every_dataset_loads_split_and_normalises(name, roots):
    spec = get_dataset_spec(name)
    val_size = SMALL_VAL.get(name)
    data = load_data(name, data_root=roots[name], val_size=val_size, split_seed=3, download=False)
    assert tuple(data.train_x.shape[1:]) == spec.input_shape
    assert data.train_x.dtype == torch.float32
    assert len(data.val_y) == (OFFICIAL_VAL.get(name) or val_size or spec.default_val_size)
    total_train = len(data.train_y) + len(data.val_y)
    if name in EXPECTED_SIZES:
        assert (total_train, len(data.test_y)) == EXPECTED_SIZES[name]
    if spec.task == "classification":
        assert data.train_y.dtype == torch.int64
        assert int(data.train_y.max()) < spec.num_classes and int(data.train_y.min()) >= 0
    else:  # regression: float targets with num_classes outputs
        assert data.train_y.dtype == torch.float32 and tuple(data.train_y.shape[1:]) == (spec.num_classes,)
    # The recorded split is reproducible from its seed and differs for another seed
    # (an official validation split is the same for every seed).
    again = load_data(name, data_root=roots[name], val_size=val_size, split_seed=3, download=False)
    other = load_data(name, data_root=roots[name], val_size=val_size, split_seed=4, download=False)
    assert data.split == again.split and torch.equal(data.val_x, again.val_x)
    if name in OFFICIAL_VAL:
        assert data.split["val_indices_sha256"] == other.split["val_indices_sha256"]
    else:
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
    assert str(cache_dir("data")) not in message  # an explicit data root is the only folder searched
    with pytest.raises(UsageError) as err:
        load_data("fashion-mnist", download=False)  # the defaults: $PARITY_RAY_DATA, then the cache
    assert str(cache_dir("data")) in str(err.value)


def test_an_explicit_data_root_is_used_or_refused(tmp_path, data_root, monkeypatch):
    """The data root a run names is never traded for another folder holding the same dataset."""
    monkeypatch.setenv("PARITY_RAY_DATA", data_root)
    assert load_data("mnist", download=False).source  # found through $PARITY_RAY_DATA
    with pytest.raises(UsageError, match="dataset 'mnist' not found"):
        load_data("mnist", data_root=str(tmp_path), download=False)
    with pytest.raises(UsageError, match=f"data root '{tmp_path / 'gone'}' does not exist"):
        load_data("mnist", data_root=str(tmp_path / "gone"), download=False)


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


# --------------------------------------------------------------------------- Speech Commands

SPEECH_RELEASE = ("speech_commands", "SpeechCommands", "speech_commands_v0.01")


def _recipe_by_hand(path: Path) -> np.ndarray:
    """The artifact's features computed directly with numpy: no torchaudio, no torch.stft."""
    import wave

    with wave.open(str(path), "rb") as fh:
        samples = np.frombuffer(fh.readframes(fh.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
    padded = np.pad(samples, 160, mode="reflect")  # centred frames
    n_frames = 1 + (len(padded) - 320) // 160
    window = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(320) / 320)  # periodic Hamming
    frames = np.stack([padded[i * 160 : i * 160 + 320] * window for i in range(n_frames)], axis=1)
    spect = np.log1p(np.abs(np.fft.rfft(frames, axis=0)))  # (161, frames)
    fixed = np.zeros((161, 101))
    fixed[:, : min(101, n_frames)] = spect[:, :101]
    std = fixed.std(ddof=1)
    return (fixed - fixed.mean()) / std if std > 0 else fixed


def _speech_lists(folder: Path):
    val = (folder / "validation_list.txt").read_text().split()
    test = (folder / "testing_list.txt").read_text().split()
    clips = sorted(p.relative_to(folder).as_posix() for p in folder.glob("*/*.wav"))
    train = [c for c in clips if c not in set(val) | set(test)]
    return train, val, test


def test_speech_features_equal_the_recipe_computed_by_hand(data_root):
    folder = Path(data_root).joinpath(*SPEECH_RELEASE)
    data = load_data("speech-commands", data_root=data_root, download=False)
    assert data.normalization.mean == (0.0,) and data.normalization.std == (1.0,)  # per-clip z-scored already
    train, val, test = _speech_lists(folder)
    short = [i for i, c in enumerate(train) if (folder / c).stat().st_size < 32044]  # under 1 s: padded frames
    assert short, "the subset has clips shorter than one second"
    for index in (0, short[0]):
        expected = torch.from_numpy(_recipe_by_hand(folder / train[index])).float()
        assert torch.allclose(data.train_x[index, 0], expected, atol=2e-4), train[index]
    expected = torch.from_numpy(_recipe_by_hand(folder / test[-1])).float()
    assert torch.allclose(data.test_x[-1, 0], expected, atol=2e-4)
    # Every clip is z-scored over its own 161 x 101 values.
    flat = torch.cat([data.train_x, data.val_x, data.test_x]).flatten(1)
    assert flat.mean(1).abs().max() < 1e-4 and (flat.std(1) - 1).abs().max() < 1e-4


def test_speech_official_lists_make_the_split(data_root):
    from parity_ray.data.datasets import SPEECH_COMMANDS_WORDS

    folder = Path(data_root).joinpath(*SPEECH_RELEASE)
    data = load_data("speech-commands", data_root=data_root, download=False)
    assert (data.split["train"], data.split["val"], data.split["test"]) == (205, 44, 51)
    assert data.split["val_source"] == "official validation_list.txt"
    train, val, test = _speech_lists(folder)
    assert len(SPEECH_COMMANDS_WORDS) == 30
    for clips, labels in ((train, data.train_y), (val, data.val_y), (test, data.test_y)):
        assert labels.tolist() == [SPEECH_COMMANDS_WORDS.index(c.split("/")[0]) for c in clips]
    # The root may also point at the release folder itself; features come from the cache then.
    same = load_data("speech-commands", data_root=str(folder), download=False)
    assert torch.equal(same.val_x, data.val_x) and same.split == data.split
    with pytest.raises(UsageError, match="official validation split"):
        load_data("speech-commands", data_root=data_root, val_size=10, download=False)


def test_speech_missing_files_name_the_lists_and_every_folder(tmp_path):
    with pytest.raises(UsageError) as err:
        load_data("speech-commands", data_root=str(tmp_path), download=False)
    message = str(err.value)
    assert "\n" not in message
    assert "validation_list.txt" in message and "testing_list.txt" in message and "<word>/*.wav" in message
    assert str(tmp_path / "SpeechCommands" / "speech_commands_v0.01") in message
    # Lists without the word folders: the folder is named with what it lacks.
    release = tmp_path / "speech_commands_v0.01"
    release.mkdir()
    for name in ("validation_list.txt", "testing_list.txt"):
        (release / name).write_text("")
    with pytest.raises(UsageError, match=r"speech_commands_v0.01 lacks the word folders bed, bird"):
        load_data("speech-commands", data_root=str(tmp_path), download=False)


# --------------------------------------------------------------------------- Cats vs Dogs


def _decoded(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(rgb).transpose(2, 0, 1).copy()).float() / 255.0


def test_cats_v_dogs_reads_jpegs_with_a_fixed_seeded_test_split(tmp_path):
    from tests.conftest import write_cats_v_dogs

    folder = write_cats_v_dogs(tmp_path / "mine", n_per_class=5)  # the data root is the image folder itself
    before = sorted(p.name for p in folder.iterdir())
    data = load_data("cats-v-dogs", data_root=str(folder), val_size=2, input_norm="none", download=False)
    assert (len(data.train_y), len(data.val_y), len(data.test_y)) == (6, 2, 2)
    assert data.split["test_source"] == "seeded 20% of the labelled images (seed 0)"
    # Files sort as cat.0..cat.4 (label 0), dog.0..dog.4 (label 1); the test split is seed 0's first 20%.
    names = [f"cat.{n}.jpg" for n in range(5)] + [f"dog.{n}.jpg" for n in range(5)]
    test = sorted(np.random.RandomState(0).permutation(10)[:2])
    assert data.test_y.tolist() == [int(i >= 5) for i in test]
    for row, index in enumerate(test):
        assert torch.allclose(data.test_x[row], _decoded(folder / names[index]), atol=1e-6)
    # ImageNet statistics by default; nothing was written next to the images.
    normalised = load_data("cats-v-dogs", data_root=str(folder), val_size=2, download=False)
    assert normalised.normalization.mean == (0.485, 0.456, 0.406)
    assert sorted(p.name for p in folder.iterdir()) == before


def test_cats_v_dogs_missing_files_is_one_line(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "cat.0.jpg").write_bytes(b"")  # cats only: not the dataset
    with pytest.raises(UsageError) as err:
        load_data("cats-v-dogs", data_root=str(tmp_path), download=False)
    message = str(err.value)
    assert "\n" not in message and "cat.<n>.jpg and dog.<n>.jpg" in message
    assert str(tmp_path / "train") in message and str(tmp_path / "cats-v-dogs") in message


# --------------------------------------------------------------------------- CUB-200 localisation


def test_cub_boxes_are_scaled_into_the_resized_frame(tmp_path):
    from tests.conftest import write_cub

    folder, records = write_cub(tmp_path, n_images=8)
    data = load_data("cub-localization", data_root=str(tmp_path), val_size=1, input_norm="none", download=False)
    assert get_dataset_spec("cub-localization").task == "regression"
    assert data.split["test_source"] == "official train_test_split.txt"
    test_records = [r for r in records if not r[4]]
    assert len(data.test_y) == len(test_records) and len(data.train_y) + len(data.val_y) == 8 - len(test_records)
    expected = torch.tensor(
        [[x * 224 / w, y * 224 / h, bw * 224 / w, bh * 224 / h] for _, _, (w, h), (x, y, bw, bh), _ in test_records]
    )
    assert data.test_y.dtype == torch.float32 and torch.allclose(data.test_y, expected, atol=1e-4)
    for row, (_, rel, _, _, _) in enumerate(test_records):
        assert torch.allclose(data.test_x[row], _decoded(folder / "images" / rel), atol=1e-6)
    # The folder itself is accepted as the data root too.
    same = load_data("cub-localization", data_root=str(folder), val_size=1, input_norm="none", download=False)
    assert torch.equal(same.test_y, data.test_y)


def test_cub_missing_or_inconsistent_files_are_usage_errors(tmp_path):
    from tests.conftest import write_cub

    with pytest.raises(UsageError) as err:
        load_data("cub-localization", data_root=str(tmp_path), download=False)
    message = str(err.value)
    assert "\n" not in message
    for name in ("images.txt", "bounding_boxes.txt", "train_test_split.txt", "images/<class folder>/<file>.jpg"):
        assert name in message
    assert str(tmp_path / "CUB_200_2011") in message
    folder, _ = write_cub(tmp_path, n_images=4)
    lines = (folder / "bounding_boxes.txt").read_text().splitlines()
    (folder / "bounding_boxes.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(UsageError, match=r"image id\(s\) \[4\].*no row in bounding_boxes.txt"):
        load_data("cub-localization", data_root=str(tmp_path), download=False)
