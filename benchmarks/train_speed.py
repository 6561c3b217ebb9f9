"""Training-core speed: parity_ray's trainer vs the straightforward loop, in one process.

Workload: MNIST, base-mlp, k=2, addition encoder, subtraction decoder, MSE (the paper's).

* parity_ray: tensors preprocessed once, base outputs cached per split, fused Adam.
* reference: a per-sample torchvision MNIST dataset (ToTensor + Normalize) of k-groups
  through a DataLoader, 128 images (64 groups) a batch, the base model run on every batch.

Targets on 2 CPU cores: >= 3x the reference's training images/s, startup <= 5 s, and
degraded-mode accuracy >= 0.90 within 60 s of training.

    python benchmarks/train_speed.py --data-root ../shared/data [--json]
    python benchmarks/train_speed.py --smoke-test    # digits, a few epochs and batches: checks the script
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parity_ray.base import prepare_base_model  # noqa: E402
from parity_ray.coders import create_decoder, create_encoder  # noqa: E402
from parity_ray.config import TrainConfig  # noqa: E402
from parity_ray.data import load_data  # noqa: E402
from parity_ray.models import create_model  # noqa: E402
from parity_ray.trainer import EpochReport, StopTraining, train  # noqa: E402
from parity_ray.machine import cache_dir  # noqa: E402

K, GROUPS_PER_BATCH = 2, 64
# --smoke-test: the same two runs on scikit-learn's digits (no files needed), a few epochs and batches.
SMOKE = {"dataset": "digits", "epochs": 5, "base_epochs": 5, "budget": 5.0, "reference_batches": 5}


def per_sample_dataset(dataset: str) -> torch.utils.data.Dataset:
    """The training images as a per-sample dataset: one PIL image -> ToTensor -> Normalize per item."""
    import torchvision
    from torchvision import transforms

    if dataset == "mnist":
        raw_root = cache_dir("extracted", "mnist")  # holds MNIST/raw, decompressed by parity_ray's reader
        return torchvision.datasets.MNIST(
            str(raw_root),
            train=True,
            download=False,
            transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]),
        )
    if dataset != "digits":
        raise ValueError(f"train_speed's reference reads mnist or digits, not {dataset!r}")
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    from parity_ray.data import get_dataset_spec

    spec = get_dataset_spec("digits")
    bunch = load_digits()
    pixels = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255, as MNIST's bytes
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)])

    class Digits(torch.utils.data.Dataset):
        def __len__(self):
            return len(pixels)

        def __getitem__(self, i):
            return transform(Image.fromarray(pixels[i])), int(bunch.target[i])

    return Digits()


def reference_images_per_second(config: TrainConfig, base_model: torch.nn.Module, batches: int) -> dict:
    """The loop as commonly written: per-sample dataset, DataLoader, base model per batch."""
    started = time.perf_counter()
    dataset = per_sample_dataset(config.dataset)

    class Groups(torch.utils.data.Dataset):
        def __init__(self, images, k, seed):
            self.images, self.k = images, k
            self.order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))

        def __len__(self):
            return len(self.images) // self.k

        def __getitem__(self, i):
            idx = self.order[i * self.k : (i + 1) * self.k]
            samples = [self.images[int(j)] for j in idx]
            return torch.stack([x for x, _ in samples]), torch.tensor([y for _, y in samples])

    loader = torch.utils.data.DataLoader(Groups(dataset, K, config.seed), batch_size=GROUPS_PER_BATCH, shuffle=False)
    setup_seconds = time.perf_counter() - started

    from parity_ray.data import get_dataset_spec

    input_shape = tuple(get_dataset_spec(config.dataset).input_shape)  # (1, 28, 28) for MNIST
    encoder = create_encoder("addition", k=K, r=1, input_shape=input_shape)
    decoder = create_decoder("subtraction", k=K, r=1)
    parity = create_model("base-mlp", input_shape=input_shape, num_classes=10)
    optimizer = torch.optim.Adam(parity.parameters(), lr=1e-3, weight_decay=1e-5)
    base_model.eval()
    images, started = 0, time.perf_counter()
    for step, (queries, _labels) in enumerate(loader):
        if step == batches:
            break
        with torch.no_grad():
            outputs = base_model(queries.flatten(0, 1)).view(queries.shape[0], K, -1)
        parity_out = parity(encoder(queries)[:, 0]).unsqueeze(1)
        loss = torch.nn.functional.mse_loss(parity_out, decoder.target(outputs))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        images += queries.shape[0] * K
    seconds = time.perf_counter() - started
    return {"images_per_second": images / seconds, "setup_seconds": setup_seconds, "batches": batches}


def parity_ray_run(config: TrainConfig, budget_seconds: float, train_images: int) -> dict:
    """Train until ``budget_seconds`` of training; record when degraded accuracy first reaches 0.90."""
    curve = []

    def on_epoch(report: EpochReport) -> None:
        curve.append((report.train_seconds, report.metrics["test"]["overall_top1"]))
        if report.train_seconds >= budget_seconds:
            raise StopTraining

    result = train(config, progress=False, log=lambda _m: None, on_epoch=on_epoch)
    epochs = len(curve)
    groups_per_epoch = train_images // K  # MNIST: 60,000 minus the validation images
    images = epochs * groups_per_epoch * K
    reached = next((t for t, acc in curve if acc >= 0.90), None)
    within = max((acc for t, acc in curve if t <= budget_seconds), default=None)
    return {
        "startup_seconds": result.summary["startup_seconds"],
        "train_seconds": result.summary["train_seconds"],
        "epochs": epochs,
        "images_per_second": images / result.summary["train_seconds"],
        "available_accuracy": result.summary["available_accuracy"],
        "degraded_within_budget": within,
        "seconds_to_degraded_0_90": reached,
        "curve": curve,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--budget", type=float, default=60.0, help="training seconds for the accuracy target")
    parser.add_argument("--reference-batches", type=int, default=150)
    parser.add_argument("--base-weights", help="import a base model instead of training one (needs --input-norm)")
    parser.add_argument("--input-norm", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke-test", action="store_true",
                        help="digits, a few epochs and batches: checks the script, judges nothing")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dataset, smoke = "mnist", {}
    if args.smoke_test:
        dataset, args.data_root, args.budget, args.reference_batches = \
            SMOKE["dataset"], None, SMOKE["budget"], SMOKE["reference_batches"]
        smoke = {"epochs": SMOKE["epochs"], "base_epochs": SMOKE["base_epochs"]}

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig.from_dict(
            {
                "dataset": dataset,
                "model": "base-mlp",
                "k": K,
                "encoder": "addition",
                "decoder": "subtraction",
                "loss": "mse",
                "epochs": 1000,
                "data_root": args.data_root,
                "download": False,
                "device": "cpu",
                "out": out,
                "base_weights": args.base_weights,
                "input_norm": args.input_norm,
                **smoke,
            }
        ).validate()
        # The base model is trained (or imported) once beforehand, as every parity run reuses it.
        warm = time.perf_counter()
        resolved = config.resolved()
        data = load_data(dataset, data_root=args.data_root, val_size=resolved.val_size, split_seed=resolved.seed,
                         input_norm=resolved.input_norm)
        base_model, base_info = prepare_base_model(resolved, data, torch.device("cpu"), log=lambda m: print(m, file=sys.stderr))
        base_seconds = time.perf_counter() - warm

        ours = parity_ray_run(config, args.budget, len(data.train_y))
        reference = reference_images_per_second(config, base_model, args.reference_batches)

    speedup = ours["images_per_second"] / reference["images_per_second"]
    report = {
        "workload": f"{dataset} base-mlp k=2 addition/subtraction mse, 64 groups a batch, {args.threads} CPU thread(s)",
        "base_model": base_info.id,
        "base_model_prepare_seconds": round(base_seconds, 2),
        "parity_ray": {k: v for k, v in ours.items() if k != "curve"},
        "reference": reference,
        "speedup": speedup,
        "targets": {
            "speedup_ge_3x": speedup >= 3.0,
            "startup_le_5s": ours["startup_seconds"] <= 5.0,
            "degraded_ge_0_90_within_budget": (ours["degraded_within_budget"] or 0) >= 0.90,
        },
    }
    print(f"{'':28}{'parity_ray':>14}{'reference':>14}")
    print(f"{'training images/s':28}{ours['images_per_second']:>14.0f}{reference['images_per_second']:>14.0f}   speedup {speedup:.1f}x (target >= 3x)")
    print(f"{'startup s (data + base out)':28}{ours['startup_seconds']:>14.2f}{reference['setup_seconds']:>14.2f}   (target <= 5 s)")
    print(f"{'available accuracy':28}{ours['available_accuracy']:>14.4f}")
    print(f"degraded-mode accuracy within {args.budget:.0f} s of training: {ours['degraded_within_budget']:.4f} "
          f"(target >= 0.90; first reached at {ours['seconds_to_degraded_0_90'] or float('nan'):.1f} s, "
          f"{ours['epochs']} epochs)")
    if args.smoke_test:
        report["smoke_test"] = True
        print("targets (smoke test on digits, not meaningful): "
              + ", ".join(f"{name} {'met' if met else 'MISSED'}" for name, met in report["targets"].items()))
    if args.json:
        print(json.dumps(report))
    return 0 if args.smoke_test or all(report["targets"].values()) else 1


if __name__ == "__main__":
    from parity_ray.errors import exit_on_usage_error

    raise SystemExit(exit_on_usage_error(main))
