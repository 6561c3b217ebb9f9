"""What a finished run leaves for analysts: per-instance predictions and the run's summary."""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from .base import BaseModelInfo
from .checkpoints import RunState, load_checkpoint
from .coders import code_family, is_base_worker, rebuilt_slots, scored_patterns
from .data import DataBundle
from .evaluation import decode_under
from .pipeline import CodePipeline
from .registry import spec_name
from .tasks import get_task


@torch.no_grad()
def predictions_frame(code: CodePipeline, groups, data: DataBundle, base_outputs, config):
    """Per test group x erasure pattern x rebuilt slot: labels, predictions, top-5 scores, KL(base || decoded)
    (regression: the true, base and decoded boxes and their IoUs instead).

    Every single-erasure pattern is listed (a seeded sample where there are over ``max_patterns``); for
    e = 2..r one seeded random pattern per group, drawn from the patterns the metrics score (listing
    them all would grow as C(k + r, e)). This is what
    lets an analyst ask *which* predictions break under erasure.
    """
    import numpy as np
    import pandas as pd

    code.train(False)
    task = get_task(code.task)
    generator = torch.Generator().manual_seed(config.seed * 15_485_863 + 5)
    frames = []
    step = max(1, config.eval_batch_size // config.k)
    for offset in range(0, len(groups), step):
        chunk = groups[offset : offset + step]
        outputs = base_outputs[chunk]  # (B, k, n)
        all_outputs, _ = code.worker_outputs(data.test_x[chunk], outputs)
        b = len(chunk)
        for e in range(1, code.r + 1):
            patterns = scored_patterns(code.n, e, config.max_patterns, config.seed).to(chunk.device)
            if e == 1:
                per_group = patterns.unsqueeze(0).expand(b, *patterns.shape)
            else:
                pick = torch.randint(0, len(patterns), (b,), generator=generator).to(chunk.device)
                per_group = patterns[pick].unsqueeze(1)
            decoded = decode_under(code, all_outputs, per_group)  # (B, P, k, n)
            rebuilt = rebuilt_slots(per_group, code.k, code.systematic)  # (B, P, k)
            group_idx, pattern_idx, position = rebuilt.nonzero(as_tuple=True)
            dec = decoded[group_idx, pattern_idx, position]
            base = outputs[group_idx, position]
            test_index = chunk[group_idx, position].cpu()
            lost = ~per_group[group_idx, pattern_idx]  # (N, n)
            pattern_text = [",".join(map(str, row.nonzero().flatten().tolist())) for row in lost.cpu()]
            common = {
                "group_id": (group_idx + offset).cpu().numpy().astype("int64"),
                "erasures": np.full(len(group_idx), e, dtype="int16"),
                "pattern": pattern_text,
                "position": position.cpu().numpy().astype("int16"),
                "test_index": test_index.numpy().astype("int64"),
            }
            labels = data.test_y[chunk[group_idx, position]]
            frames.append(pd.DataFrame({**common, **task.prediction_columns(dec, base, labels)}))
    return pd.concat(frames, ignore_index=True)


def write_predictions(run_dir, code: CodePipeline, groups, data, base_outputs, config) -> None:
    """``predictions.parquet`` of the best checkpoint, written once the run reaches its last epoch."""
    from .storage import write_parquet

    current = code.state()
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt", data.test_x.device)
    code.load_state(best)
    try:
        frame = predictions_frame(code, groups, data, base_outputs, config)
    finally:
        code.load_state(current)
    write_parquet(frame, str(run_dir / "predictions.parquet"), {"parity_ray.best_epoch": best["epoch"]})


def erasure_summary(row: Dict[str, Any], r: int) -> Dict[str, Optional[float]]:
    """``all_accuracy_e0``, then ``degraded_accuracy_e<e>`` and ``all_accuracy_e<e>`` for e = 1..r, from one
    split's metrics row."""
    out: Dict[str, Optional[float]] = {"all_accuracy_e0": row.get("all_accuracy_e0")}
    for e in range(1, r + 1):
        out[f"degraded_accuracy_e{e}"] = row.get(f"degraded_accuracy_e{e}")
        out[f"all_accuracy_e{e}"] = row.get(f"all_accuracy_e{e}")
        if row.get(f"patterns_scored_e{e}") is not None:
            out[f"patterns_scored_e{e}"] = int(row[f"patterns_scored_e{e}"])
    for key in ("byzantine_accuracy", "byzantine_accuracy_unlocated", "byzantine_located"):
        if key in row:
            out[key] = row[key]
    return out


def data_task(config) -> str:
    from .data import get_dataset_spec

    return get_dataset_spec(config.dataset).task


def summarize(config, run_dir, state: RunState, base_info: BaseModelInfo, available, startup_seconds, device) -> dict:
    def row(epoch: int, split: str) -> dict:
        return next((r for r in state.history if r["epoch"] == epoch and r["split"] == split), {})

    best_test, final_test = row(state.best_epoch, "test"), row(state.epoch, "test")
    best_val = row(state.best_epoch, "val")
    return {
        "run_dir": str(run_dir),
        "dataset": config.dataset,
        "model": spec_name(config.model),
        "parity_model": spec_name(config.parity_model),
        "k": config.k,
        "r": config.r,
        "encoder": spec_name(config.encoder),
        "decoder": spec_name(config.decoder),
        "systematic": config.systematic,
        "code_family": code_family(config.encoder, config.decoder),
        "worker": "base" if is_base_worker(config.parity_model) else "trained",
        "loss": spec_name(config.loss),
        "seed": config.seed,
        "available_accuracy": available["test"],
        "majority_accuracy": best_test.get("majority_accuracy"),
        "degraded_accuracy": best_test.get("overall_top1"),
        "reconstruction_accuracy": best_test.get("reconstruction_top1"),
        "degraded_top5": best_test.get("overall_top5"),
        "reconstruction_top5": best_test.get("reconstruction_top5"),
        "task": data_task(config),
        **({"degraded_mean_iou": best_test.get("mean_iou"), "reconstruction_mean_iou": best_test.get("reconstruction_mean_iou")}
           if "mean_iou" in best_test else {}),
        **erasure_summary(best_test, config.r),
        "best_epoch": state.best_epoch,
        "best_val_reconstruction": state.best_score,
        "val_degraded_accuracy": best_val.get("overall_top1"),
        "final_degraded_accuracy": final_test.get("overall_top1"),
        "final_reconstruction_accuracy": final_test.get("reconstruction_top1"),
        "epochs": state.epoch,
        "startup_seconds": round(startup_seconds, 3),
        "train_seconds": round(state.train_seconds, 3),
        "base_model_id": base_info.id,
        "base_model_source": base_info.source,
        "device": str(device),
        "checkpoint": str(run_dir / "checkpoints" / "best.pt"),
    }
