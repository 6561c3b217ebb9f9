"""Datasets as in-memory tensors: registry, seeded (or official) validation split, recorded normalisation."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch

from ..errors import UsageError
from .datasets import (
    DATASETS,
    DatasetSpec,
    RawData,
    data_roots,
    get_dataset_spec,
    list_datasets,
    register_dataset,
)

__all__ = [
    "DATASETS",
    "DataBundle",
    "DatasetSpec",
    "Normalization",
    "RawData",
    "data_roots",
    "dataset_available",
    "get_dataset_spec",
    "list_datasets",
    "load_data",
    "missing_data_reason",
    "parse_input_norm",
    "register_dataset",
]


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x - mean) / std`` applied to inputs as read: images scaled to [0, 1], or features.

    ``speech-commands`` features are z-scored per clip when computed, so its dataset statistics
    are mean 0 / std 1 and ``dataset`` and ``none`` both leave them as they are.
    """

    mean: Tuple[float, ...]
    std: Tuple[float, ...]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return (x - mean) / std

    def apply_(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`apply` in place on a float tensor ``x`` (the same values, no copies)."""
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return x.sub_(mean).div_(std)

    def as_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}


INPUT_NORM_CHOICES = (
    "dataset (the dataset's mean/std), none (inputs as read: pixels in [0,1], speech features z-scored per clip), "
    "or 'MEANS/STDS' like 0.5/0.25"
)


def parse_input_norm(value: str, spec: DatasetSpec) -> Normalization:
    """``dataset`` | ``none`` | ``"m1,m2,m3/s1,s2,s3"`` into a :class:`Normalization`."""
    channels = spec.input_shape[0]
    if value == "dataset":
        return Normalization(tuple(spec.mean), tuple(spec.std))
    if value == "none":
        return Normalization((0.0,) * channels, (1.0,) * channels)
    try:
        means_text, stds_text = value.split("/")
        means = tuple(float(v) for v in means_text.split(","))
        stds = tuple(float(v) for v in stds_text.split(","))
    except ValueError:
        raise UsageError(f"input_norm '{value}' is not understood; valid choices: {INPUT_NORM_CHOICES}") from None
    if len(means) == 1:
        means *= channels
    if len(stds) == 1:
        stds *= channels
    if len(means) != channels or len(stds) != channels or any(s <= 0 for s in stds):
        raise UsageError(
            f"input_norm '{value}' needs {channels} mean(s) and {channels} positive std(s) for '{spec.name}'"
        )
    return Normalization(means, stds)


@dataclass
class DataBundle:
    """Normalised tensors for the three splits plus everything needed to reproduce them."""

    spec: DatasetSpec
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    normalization: Normalization
    split: dict  # seed, sizes, a fingerprint of the validation indices (and how a reader split the files)
    source: str

    def split_tensors(self, split: str) -> Tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"{split}_x"), getattr(self, f"{split}_y")

    def head(self, n: Optional[int]) -> "DataBundle":
        """The first ``n`` examples of each split (``max_examples``; None: all). The split record says so,
        so a base model or cached output of the subset never stands in for one of the whole data."""
        if not n:
            return self
        cut = {f"{s}_{t}": getattr(self, f"{s}_{t}")[:n] for s in ("train", "val", "test") for t in ("x", "y")}
        return dataclasses.replace(self, **cut, split={**self.split, "max_examples": int(n)})


@functools.lru_cache(maxsize=8)
def _read_raw(name: str, roots: Tuple, download: bool) -> RawData:
    spec = get_dataset_spec(name)
    return spec.reader(spec, list(roots), download)


def dataset_available(name: str, data_root: Optional[str] = None) -> bool:
    """Whether ``name``'s files are on this machine already (nothing is downloaded)."""
    try:
        _read_raw(name, tuple(data_roots(data_root)), False)
    except UsageError:
        return False
    return True


def missing_data_reason(name: str, data_root: Optional[str] = None) -> Optional[str]:
    """Why a dataset that is never downloaded has no files here (None when found, or downloadable/bundled).

    Only checks that the expected files exist; nothing is read or decoded.
    """
    spec = get_dataset_spec(name)
    if spec.locate is None:
        return None
    try:
        spec.locate(spec, data_roots(data_root))
    except UsageError as exc:
        return str(exc)
    return None


def load_data(
    name: str,
    *,
    data_root: Optional[str] = None,
    download: bool = False,
    val_size: Optional[int] = None,
    split_seed: int = 0,
    input_norm: str = "dataset",
    device: torch.device = torch.device("cpu"),
) -> DataBundle:
    """Read, split and normalise a registered dataset into tensors on ``device``.

    Validation is carved from the train split with ``split_seed`` (``val_size`` inputs), except
    for datasets with an official validation split (speech-commands), which is used as it is.
    uint8 images are scaled to [0, 1] before normalisation; labels are passed through (int64
    classes, or float targets for regression datasets).
    """
    spec = get_dataset_spec(name)
    normalization = parse_input_norm(input_norm, spec)
    raw = _read_raw(name, tuple(data_roots(data_root)), download)

    n_train = len(raw.train_y)
    if raw.val_x is not None:
        official = len(raw.val_y)
        if val_size is not None and int(val_size) not in (official, spec.default_val_size):
            raise UsageError(
                f"'{name}' uses its official validation split ({official} inputs); val_size {val_size} cannot change it, leave it unset"
            )
        train_x, train_y, val_x, val_y = raw.train_x, raw.train_y, raw.val_x, raw.val_y
        val_fingerprint = raw.split_info["val_indices_sha256"]
    else:
        val_size = spec.default_val_size if val_size is None else int(val_size)
        if not 0 < val_size < n_train:
            raise UsageError(f"val_size {val_size} must be between 1 and {n_train - 1} for '{name}' ({n_train} train images)")
        generator = torch.Generator().manual_seed(split_seed)
        order = torch.randperm(n_train, generator=generator)
        val_idx, train_idx = order[:val_size], order[val_size:]
        train_x, train_y = raw.train_x[train_idx], raw.train_y[train_idx]
        val_x, val_y = raw.train_x[val_idx], raw.train_y[val_idx]
        val_fingerprint = hashlib.sha256(val_idx.numpy().tobytes()).hexdigest()[:16]
    split = {
        **raw.split_info,  # empty for the datasets with an official test split and a carved validation split
        "seed": split_seed,
        "train": len(train_y),
        "val": len(val_y),
        "test": len(raw.test_y),
        "val_indices_sha256": val_fingerprint,
    }

    def prepare(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device)
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        else:
            x = x.float().clone()  # never normalise the reader's (cached) tensor in place
        return normalization.apply_(x.contiguous())

    return DataBundle(
        spec=spec,
        train_x=prepare(train_x),
        train_y=train_y.to(device),
        val_x=prepare(val_x),
        val_y=val_y.to(device),
        test_x=prepare(raw.test_x),
        test_y=raw.test_y.to(device),
        normalization=normalization,
        split=split,
        source=raw.source,
    )
