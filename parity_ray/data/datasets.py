"""Dataset registry: readers for the on-disk formats, data-root search, splits, normalisation.

Every dataset is loaded once into in-memory float tensors (on the training device),
so the trainer indexes tensors instead of decoding PIL images sample by sample.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import re
import shutil
import tarfile
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import UsageError
from ..registry import Registry
from ..atomic import atomic_write_bytes
from ..machine import cache_dir
from ..provenance import stable_hash

Tensor = torch.Tensor


@dataclass(frozen=True)
class RawData:
    """Inputs of shape (N, C, H, W) and labels, as a reader produced them.

    Inputs are float32 (images in [0, 1], or features such as spectrograms) or uint8 images
    (0..255, scaled to [0, 1] when ``load_data`` prepares them; 224 x 224 datasets stay 4x
    smaller in memory until then). Labels are int64 class indices (classification) or float32
    (N, outputs) targets (regression).
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    source: str  # the folder (or package) the files were read from
    # An official validation split (Speech Commands' validation_list.txt); None = ``load_data``
    # carves a seeded one from the train split.
    val_x: Optional[Tensor] = None
    val_y: Optional[Tensor] = None
    # How the reader split the files, recorded with the split (official lists, a seeded test
    # carving). With an official validation split it holds "val_indices_sha256".
    split_info: Mapping[str, Any] = field(default_factory=dict)


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
    # "classification" (labels are class indices, num_classes outputs) or "regression" (labels
    # are float targets of shape (N, num_classes): num_classes is then the number of outputs).
    task: str = "classification"
    # For datasets that are never downloaded: finds the folder holding the files without reading
    # them (or raises the missing-data UsageError), so a grid can list the cell as unavailable.
    locate: Optional[Callable[["DatasetSpec", List[Path]], Path]] = field(default=None, repr=False, compare=False)


DATASETS: Registry[DatasetSpec] = Registry("dataset", "datasets", """
    A :class:`DatasetSpec` (registered with :func:`register_dataset`): its ``reader(spec, roots,
    download)`` returns the raw train and test arrays of the real on-disk format; ``task`` names the
    registered task that scores it.""")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    DATASETS.register(spec.name)(spec)
    return spec


def list_datasets() -> List[str]:
    return DATASETS.names()


def get_dataset_spec(name: str) -> DatasetSpec:
    return DATASETS.get(name)


# --------------------------------------------------------------------------- data roots


def data_roots(data_root: Optional[str] = None) -> List[Path]:
    """Folders searched: a data root given explicitly (``--data-root``, ``data_root`` of a config)
    alone; without one, ``$PARITY_RAY_DATA`` then the user cache.

    An explicit root is used or refused, never silently replaced: one that is not a folder is a
    :class:`UsageError` naming it, and data missing from it is not looked up elsewhere (a run
    must not train on other files than the ones it was pointed at).
    """
    if data_root:
        if "\0" in str(data_root):
            raise UsageError(f"data root {str(data_root)[:200]!r} holds a NUL character")
        root = Path(data_root).expanduser().resolve()
        if not os.path.isdir(root):  # (not Path.is_dir: a name too long for the filesystem raises there)
            raise UsageError(f"data root '{str(data_root)[:200]}' does not exist or is not a folder")
        return [root]
    roots: List[Path] = []
    if os.environ.get("PARITY_RAY_DATA"):
        roots.append(Path(os.environ["PARITY_RAY_DATA"]).expanduser().resolve())
    roots.append(cache_dir("data").resolve())
    return list(dict.fromkeys(roots))


def _download_target(roots: Sequence[Path]) -> Path:
    """Where a download goes: the user cache when searching the defaults, else the explicit root."""
    cache = cache_dir("data").resolve()
    return cache if cache in roots else roots[0]


def _candidate_folders(spec: DatasetSpec, roots: Sequence[Path]) -> List[Path]:
    return [root / layout if layout else root for root in roots for layout in spec.layouts]


def _missing_data_error(spec: DatasetSpec, folders: Sequence[Path], why: str = "", gz: bool = True) -> UsageError:
    searched = ", ".join(str(f) for f in folders)
    reason = f" ({why})" if why else ""
    variants = " (or their .gz)" if gz else ""
    hint = "pass --data-root or set PARITY_RAY_DATA" + ("" if gz else f" ('{spec.name}' is not downloaded automatically)")
    return UsageError(
        f"dataset '{spec.name}' not found{reason}: expected {', '.join(spec.expected_files)}"
        f"{variants} in one of: {searched}; {hint}"
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
    """The four IDX files (plain, or ``.gz`` checked against the published MD5s), as uint8 images.

    The decoded tensors are cached per file stamps (``decoded/<name>/``), so a later process
    reads one file and never imports torchvision: a run's start-up stays well under a second.
    """
    folders = _candidate_folders(spec, roots)
    for folder in folders:
        plain = [folder / name for name in _IDX_FILES]
        gz = [folder / f"{name}.gz" for name in _IDX_FILES]
        files = [p if p.exists() else q for p, q in zip(plain, gz)]
        if all(f.exists() for f in files):
            key = {"recipe": "idx-uint8-v1", "files": _file_stamps(files, folder)}
            tensors = _cached_tensors(spec.name, key, lambda folder=folder, files=files: _decode_idx_files(spec, folder, files))
            return RawData(train_x=tensors["train_x"], train_y=tensors["train_y"], test_x=tensors["test_x"],
                           test_y=tensors["test_y"], source=str(folder))
    if download:
        tv_class = _torchvision_mnist_class(spec)
        target = _download_target(roots)
        try:
            tv_class(str(target), train=True, download=True)
        except Exception as exc:  # offline, proxy, mirror down: all end in the same clear error
            raise _missing_data_error(spec, folders, f"download failed: {type(exc).__name__}") from None
        return _read_mnist_family(spec, roots, download=False)
    raise _missing_data_error(spec, folders)


def _decode_idx_files(spec: DatasetSpec, folder: Path, files: List[Path]) -> Dict[str, Tensor]:
    """Decompress (into the cache, MD5-checked) and parse the IDX files: uint8 images (N, 1, 28, 28), int64 labels."""
    tv_class = _torchvision_mnist_class(spec)
    known_md5 = {Path(url).name: md5 for url, md5 in tv_class.resources}
    extracted_root = cache_dir("extracted", spec.name, tv_class.__name__, "raw")
    plain_files = []
    for path in files:
        if path.suffix != ".gz":
            plain_files.append(path)
            continue
        expected = known_md5.get(path.name)
        if expected and _md5(path) != expected:
            raise UsageError(f"{path} has md5 {_md5(path)}, not the published {expected}; the file is corrupt or not {spec.name}")
        plain_files.append(_decompress_into_cache(path, extracted_root / path.name[: -len(".gz")]))
    return _mnist_from_idx(tv_class, plain_files, folder)


def _mnist_from_idx(tv_class, files: List[Path], source: Path) -> Dict[str, Tensor]:
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
    return {
        "train_x": train_x.unsqueeze(1).contiguous(),  # uint8; load_data scales to [0, 1]
        "train_y": train_y.long(),
        "test_x": test_x.unsqueeze(1).contiguous(),
        "test_y": test_y.long(),
    }


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


class _PlainDataUnpickler(pickle.Unpickler):
    """Reads CIFAR's python batches and nothing that could run code: plain containers, numbers, strings,
    bytes and numpy arrays only. Any other global a pickle names (a function to call, a class to build)
    is refused before it is looked up, so a planted "batch" cannot execute anything."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol 2 writes bytes from Python 3
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never holds "
                                         f"(only plain containers, numbers, strings, bytes and numpy arrays are read)")
        return super().find_class(module, name)


def _read_cifar_batches(paths: Sequence[Path], label_key: str) -> Tuple[Tensor, Tensor]:
    images, labels = [], []
    for path in paths:
        try:
            with open(path, "rb") as fh:
                entry = _PlainDataUnpickler(fh, encoding="latin1").load()
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
        target = _download_target(roots)
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


# --------------------------------------------------------------------------- decoded-tensor cache


def _file_stamps(paths: Sequence[Path], base: Path) -> List[Tuple[str, int, int]]:
    """(path relative to ``base``, size, mtime) of every file: what a cache entry was built from."""
    stamps = []
    for path in paths:
        stat = path.stat()
        stamps.append((path.relative_to(base).as_posix(), stat.st_size, stat.st_mtime_ns))
    return stamps


def _cached_tensors(name: str, key: Any, build: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    """Tensors decoded from a dataset's files, built once per ``key`` (the files' stamps and the recipe).

    Entries live in the user cache (``decoded/<name>/``), never in the data root; an entry that
    cannot be read is rebuilt, and one that cannot be written (a full disk) only costs the cache.
    """
    path = cache_dir("decoded", name) / f"{stable_hash(key, 24)}.pt"
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            pass
    tensors = build()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(tensors, tmp)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
    return tensors


# --------------------------------------------------------------------------- Speech Commands v0.01

# The 30 words of v0.01, in the order of their class indices (sorted, like a folder listing).
SPEECH_COMMANDS_WORDS = tuple(
    sorted(
        "bed bird cat dog down eight five four go happy house left marvin nine no off on one right "
        "seven sheila six stop three tree two up wow yes zero".split()
    )
)
SPEECH_SAMPLE_RATE = 16_000
SPEECH_N_FFT = 320  # 20 ms windows; win_length = n_fft
SPEECH_HOP = 160  # 10 ms
SPEECH_FRAMES = 101  # 1 s of frames: shorter clips are zero-padded, longer ones cut
SPEECH_BINS = SPEECH_N_FFT // 2 + 1  # 161
SPEECH_FULL_VAL_SIZE = 6798  # lines of validation_list.txt in the full v0.01 release
_SPEECH_LISTS = ("validation_list.txt", "testing_list.txt")
_SPEECH_RECIPE = {
    "version": 1,
    "stft": {"n_fft": SPEECH_N_FFT, "win_length": SPEECH_N_FFT, "hop": SPEECH_HOP, "window": "hamming (periodic)",
             "center": True, "pad_mode": "reflect"},
    "features": "log1p(|STFT|), 101 frames, z-score per clip (unbiased std, skipped when 0)",
}


def read_wav(path: Path) -> np.ndarray:
    """A mono 16-bit PCM WAV at 16 kHz as float32 samples / 32768 (the scale librosa and soundfile use).

    Python's ``wave`` module reads it: no FFmpeg or torchcodec needed.
    """
    try:
        with wave.open(str(path), "rb") as fh:
            channels, width, rate = fh.getnchannels(), fh.getsampwidth(), fh.getframerate()
            frames = fh.readframes(fh.getnframes())
    except (wave.Error, EOFError, OSError) as exc:
        raise UsageError(f"cannot read WAV file {path}: {exc}") from None
    if (channels, width, rate) != (1, 2, SPEECH_SAMPLE_RATE):
        raise UsageError(
            f"WAV file {path} is {channels}-channel {8 * width}-bit at {rate} Hz; "
            f"speech-commands needs mono 16-bit PCM at {SPEECH_SAMPLE_RATE} Hz"
        )
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0


def _speech_spectrogram() -> Callable[[Tensor], Tensor]:
    import torchaudio.transforms  # the transforms only: decoding stays with ``wave``

    return torchaudio.transforms.Spectrogram(
        n_fft=SPEECH_N_FFT,
        win_length=SPEECH_N_FFT,
        hop_length=SPEECH_HOP,
        window_fn=torch.hamming_window,
        power=1.0,  # magnitude
        center=True,
        pad_mode="reflect",
        normalized=False,
    )


def speech_features(waveforms: Sequence[np.ndarray], chunk: int = 512) -> Tensor:
    """(N, 1, 161, 101) features of 16 kHz clips, as the parity-models artifact prepared them.

    |STFT| (n_fft = win_length = 320, hop 160, periodic Hamming window, centred with reflect
    padding), log(1 + x), frames zero-padded or cut to 101, then each clip z-scored over all of its
    values (unbiased std; left as is when the std is 0). Clips of equal length share one STFT call.
    Clips under 161 samples (too short for the reflect padding) are zero-padded to 161 first.
    """
    spectrogram = _speech_spectrogram()
    out = torch.zeros(len(waveforms), 1, SPEECH_BINS, SPEECH_FRAMES)
    by_length: Dict[int, List[int]] = {}
    for index, samples in enumerate(waveforms):
        by_length.setdefault(len(samples), []).append(index)
    minimum = SPEECH_N_FFT // 2 + 1
    with torch.no_grad():
        for length, indices in by_length.items():
            if length == 0:
                continue  # an empty clip stays all zeros
            for start in range(0, len(indices), chunk):
                part = indices[start : start + chunk]
                batch = np.stack([np.asarray(waveforms[i], dtype=np.float32) for i in part])
                if length < minimum:
                    batch = np.pad(batch, ((0, 0), (0, minimum - length)))
                spec = torch.log1p(spectrogram(torch.from_numpy(batch)))[..., :SPEECH_FRAMES]
                out[part, 0, :, : spec.shape[-1]] = spec
        flat = out.view(len(waveforms), -1)
        mean = flat.mean(1, keepdim=True)
        std = flat.std(1, keepdim=True)
        nonzero = std > 0
        flat.sub_(torch.where(nonzero, mean, torch.zeros_like(mean)))
        flat.div_(torch.where(nonzero, std, torch.ones_like(std)))
    return out


def _locate_speech_commands(spec: DatasetSpec, roots: List[Path]) -> Path:
    folders = _candidate_folders(spec, roots)
    partial = []
    for folder in folders:
        if not all((folder / name).is_file() for name in _SPEECH_LISTS):
            continue
        missing = [w for w in SPEECH_COMMANDS_WORDS if not (folder / w).is_dir()]
        if not missing:
            return folder
        partial.append(f"{folder} lacks the word folders {', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}")
    raise _missing_data_error(spec, folders, "; ".join(partial), gz=False)


def _read_list(path: Path) -> List[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


def _read_speech_commands(spec: DatasetSpec, roots: List[Path], download: bool) -> RawData:
    folder = _locate_speech_commands(spec, roots)
    val_list, test_list = (_read_list(folder / name) for name in _SPEECH_LISTS)
    clips = sorted(
        f"{word}/{entry.name}"
        for word in SPEECH_COMMANDS_WORDS
        for entry in os.scandir(folder / word)
        if entry.name.lower().endswith(".wav") and entry.is_file()
    )
    present = set(clips)
    absent = [c for c in val_list + test_list if c not in present]
    if absent:
        raise UsageError(
            f"speech-commands in {folder}: {len(absent)} clip(s) named in validation_list.txt/testing_list.txt "
            f"are missing (first: {absent[0]}); the lists and the word folders must come from the same release"
        )
    held_out = set(val_list) | set(test_list)
    train_list = [c for c in clips if c not in held_out]
    files = train_list + val_list + test_list
    label_of = {word: index for index, word in enumerate(SPEECH_COMMANDS_WORDS)}
    key = {"recipe": _SPEECH_RECIPE, "files": _file_stamps([folder / c for c in files], folder),
           "split": [len(train_list), len(val_list), len(test_list)]}

    def build() -> Dict[str, Any]:
        x = torch.empty(len(files), 1, SPEECH_BINS, SPEECH_FRAMES)
        step = 2048  # read and transform in chunks: 65k decoded clips would need 4 GB at once
        for start in range(0, len(files), step):
            waves = [read_wav(folder / c) for c in files[start : start + step]]
            x[start : start + len(waves)] = speech_features(waves)
        y = torch.tensor([label_of[c.split("/", 1)[0]] for c in files], dtype=torch.int64)
        return {"x": x, "y": y}

    tensors = _cached_tensors(spec.name, key, build)
    x, y = tensors["x"], tensors["y"]
    a, b = len(train_list), len(train_list) + len(val_list)
    return RawData(
        train_x=x[:a],
        train_y=y[:a],
        test_x=x[b:],
        test_y=y[b:],
        val_x=x[a:b],
        val_y=y[a:b],
        source=str(folder),
        split_info={
            "val_source": "official validation_list.txt",
            "test_source": "official testing_list.txt",
            "val_indices_sha256": hashlib.sha256("\n".join(val_list).encode()).hexdigest()[:16],
        },
    )


# --------------------------------------------------------------------------- 224 x 224 images

IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _decode_resized(paths: Sequence[Path], size: int = IMAGE_SIZE) -> Tuple[Tensor, Tensor]:
    """Decode every image to RGB, resize to ``size`` x ``size`` (bilinear, antialiased), as uint8.

    Returns the images (N, 3, size, size) and each file's original (width, height).
    """
    from PIL import Image

    images = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    sizes = torch.empty(len(paths), 2, dtype=torch.int64)
    for index, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                sizes[index] = torch.tensor(img.size)
                rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise UsageError(f"cannot decode image {path}: {exc}") from None
        images[index] = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy())
    return images, sizes


_IMAGE_RECIPE = {"version": 1, "size": IMAGE_SIZE, "mode": "RGB", "resample": "PIL bilinear"}


def _names_sha256(names: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- Cats vs Dogs

CATS_V_DOGS_TEST_FRACTION = 0.2  # no official labelled test split: a fixed seeded 20% stands in
CATS_V_DOGS_SPLIT_SEED = 0
_CAT_DOG_FILE = re.compile(r"^(cat|dog)\.(\d+)\.jpe?g$", re.IGNORECASE)


def _cat_dog_files(folder: Path) -> List[Tuple[int, int, str]]:
    """(label, number, file name) of every ``cat.<n>.jpg`` / ``dog.<n>.jpg`` in ``folder``, sorted."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        match = _CAT_DOG_FILE.match(name)
        if match:
            found.append((0 if match.group(1).lower() == "cat" else 1, int(match.group(2)), name))
    return sorted(found)


def _locate_cats_v_dogs(spec: DatasetSpec, roots: List[Path]) -> Path:
    searched = []
    for folder in _candidate_folders(spec, roots):
        for sub in (folder, folder / "train"):
            searched.append(sub)
            if {label for label, _, _ in _cat_dog_files(sub)} == {0, 1}:
                return sub
    raise _missing_data_error(spec, searched, gz=False)


def _read_cats_v_dogs(spec: DatasetSpec, roots: List[Path], download: bool) -> RawData:
    folder = _locate_cats_v_dogs(spec, roots)
    entries = _cat_dog_files(folder)
    names = [name for _, _, name in entries]
    paths = [folder / name for name in names]
    labels = torch.tensor([label for label, _, _ in entries], dtype=torch.int64)
    n = len(entries)
    n_test = int(round(n * CATS_V_DOGS_TEST_FRACTION))
    if n_test < 1 or n - n_test < 2:
        raise UsageError(f"cats-v-dogs in {folder} has only {n} images; a test split and a train split need at least 4")
    key = {"recipe": _IMAGE_RECIPE, "files": _file_stamps(paths, folder)}
    images = _cached_tensors(spec.name, key, lambda: {"x": _decode_resized(paths)[0]})["x"]
    # The test split is fixed (seed 0) for every run so that "test" means the same images everywhere.
    order = torch.from_numpy(np.random.RandomState(CATS_V_DOGS_SPLIT_SEED).permutation(n))
    test, train = order[:n_test].sort().values, order[n_test:].sort().values
    return RawData(
        train_x=images[train],
        train_y=labels[train],
        test_x=images[test],
        test_y=labels[test],
        source=str(folder),
        split_info={
            "test_source": f"seeded {CATS_V_DOGS_TEST_FRACTION:.0%} of the labelled images (seed {CATS_V_DOGS_SPLIT_SEED})",
            "test_files_sha256": _names_sha256([names[i] for i in test.tolist()]),
        },
    )


# --------------------------------------------------------------------------- CUB-200-2011 localisation

_CUB_FILES = ("images.txt", "bounding_boxes.txt", "train_test_split.txt")


def _locate_cub(spec: DatasetSpec, roots: List[Path]) -> Path:
    folders = _candidate_folders(spec, roots)
    for folder in folders:
        if all((folder / name).is_file() for name in _CUB_FILES) and (folder / "images").is_dir():
            return folder
    raise _missing_data_error(spec, folders, gz=False)


def _read_id_table(path: Path, columns: int) -> Dict[int, List[str]]:
    """``<image id> <field> ...`` rows of a CUB metadata file, keyed by id."""
    rows: Dict[int, List[str]] = {}
    for number, line in enumerate(_read_list(path), 1):
        parts = line.split()
        if len(parts) != columns or not parts[0].isdigit():
            raise UsageError(f"{path} line {number}: expected '<image id>' and {columns - 1} field(s), got {line!r}")
        rows[int(parts[0])] = parts[1:]
    return rows


def _read_cub(spec: DatasetSpec, roots: List[Path], download: bool) -> RawData:
    from ..boxes import resize_boxes

    folder = _locate_cub(spec, roots)
    images = _read_id_table(folder / "images.txt", 2)
    boxes = _read_id_table(folder / "bounding_boxes.txt", 5)
    is_train = _read_id_table(folder / "train_test_split.txt", 2)
    ids = sorted(images)
    lacking = [i for i in ids if i not in boxes or i not in is_train]
    if lacking or not ids:
        raise UsageError(
            f"cub-localization in {folder}: image id(s) {lacking[:4]} of images.txt have no row in "
            f"bounding_boxes.txt or train_test_split.txt" if lacking else f"cub-localization in {folder}: images.txt lists no image"
        )
    try:
        raw_boxes = torch.tensor([[float(v) for v in boxes[i]] for i in ids], dtype=torch.float64)
    except ValueError as exc:
        raise UsageError(f"{folder / 'bounding_boxes.txt'} holds a non-number: {exc}") from None
    train_mask = torch.tensor([is_train[i][0] == "1" for i in ids])
    if bool(train_mask.all()) or not bool(train_mask.any()):
        raise UsageError(f"{folder / 'train_test_split.txt'} must mark some images 1 (train) and some 0 (test)")
    paths = [folder / "images" / images[i][0] for i in ids]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"cub-localization in {folder}: {len(missing)} image(s) of images.txt are missing (first: {missing[0]})")
    key = {"recipe": _IMAGE_RECIPE, "files": _file_stamps(paths, folder)}

    def build() -> Dict[str, Any]:
        x, sizes = _decode_resized(paths)
        return {"x": x, "sizes": sizes}

    tensors = _cached_tensors(spec.name, key, build)
    targets = resize_boxes(raw_boxes, tensors["sizes"], IMAGE_SIZE).float()
    x = tensors["x"]
    test_ids = [str(i) for i, train in zip(ids, train_mask.tolist()) if not train]
    return RawData(
        train_x=x[train_mask],
        train_y=targets[train_mask],
        test_x=x[~train_mask],
        test_y=targets[~train_mask],
        source=str(folder),
        split_info={"test_source": "official train_test_split.txt", "test_files_sha256": _names_sha256(test_ids)},
    )


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
register_dataset(
    DatasetSpec(
        name="speech-commands",
        num_classes=len(SPEECH_COMMANDS_WORDS),
        input_shape=(1, SPEECH_BINS, SPEECH_FRAMES),
        # Features are z-scored per clip already: the dataset normalisation is the identity.
        mean=(0.0,),
        std=(1.0,),
        # Validation is the official validation_list.txt, whatever its size (6,798 clips in the
        # full release); val_size may only be left at this default.
        default_val_size=SPEECH_FULL_VAL_SIZE,
        base_epochs=30,
        expected_files=("validation_list.txt", "testing_list.txt", "<word>/*.wav for the 30 v0.01 words (bed ... zero)"),
        layouts=(
            "SpeechCommands/speech_commands_v0.01",
            "speech_commands/SpeechCommands/speech_commands_v0.01",
            "speech-commands/SpeechCommands/speech_commands_v0.01",
            "speech_commands_v0.01",
            "speech_commands",
            "speech-commands",
            "",
        ),
        reader=_read_speech_commands,
        locate=_locate_speech_commands,
    )
)
register_dataset(
    DatasetSpec(
        name="cats-v-dogs",
        num_classes=2,  # cat = 0, dog = 1
        input_shape=(3, IMAGE_SIZE, IMAGE_SIZE),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        default_val_size=2000,  # of the 20,000 left after the fixed 20% test split (Kaggle's 25,000)
        base_epochs=20,
        expected_files=("cat.<n>.jpg and dog.<n>.jpg (in the folder or its train/)",),
        layouts=("cats-v-dogs", "cats_vs_dogs", "cats-vs-dogs", "dogs-vs-cats", "dogs_vs_cats", ""),
        reader=_read_cats_v_dogs,
        locate=_locate_cats_v_dogs,
    )
)
register_dataset(
    DatasetSpec(
        name="cub-localization",
        num_classes=4,  # regression outputs: the box (x, y, w, h) in the 224 x 224 frame
        input_shape=(3, IMAGE_SIZE, IMAGE_SIZE),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        default_val_size=600,  # of the 5,994 official training images
        base_epochs=30,
        expected_files=("images.txt", "bounding_boxes.txt", "train_test_split.txt", "images/<class folder>/<file>.jpg"),
        layouts=("CUB_200_2011", "cub/CUB_200_2011", "CUB_200_2011/CUB_200_2011", "cub", "cub-200-2011", ""),
        reader=_read_cub,
        task="regression",
        locate=_locate_cub,
    )
)
