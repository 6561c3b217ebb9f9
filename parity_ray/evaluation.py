"""Scoring a code: k-groups of a split, every erasure pattern decoded, Byzantine outputs located.

The validation and test groups are the same every epoch (:func:`fixed_groups`); the patterns of
e = 1..r unavailable workers (every one, or a seeded sample of ``max_patterns`` where there are more)
are decoded and scored by the run's task (``metrics``); a code that locates Byzantine workers is
also scored with E injected wrong outputs.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch

from .coders import erasure_patterns, rebuilt_slots, scored_patterns
from .config import TrainConfig
from .losses import LossInputs
from .metrics import MetricAccumulator
from .pipeline import CodePipeline
from .progress import progress as progress_bar


def fixed_groups(n: int, config: TrainConfig, split: str, device: torch.device) -> torch.Tensor:
    """The same k-groups every epoch; the last group wraps around so every image is scored."""
    generator = torch.Generator().manual_seed(config.seed * 7919 + (1 if split == "val" else 2))
    order = torch.randperm(n, generator=generator)
    pad = (-n) % config.k
    return torch.cat([order, order[:pad]]).view(-1, config.k).to(device)


def decode_under(code: CodePipeline, outputs: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """Estimates ``(B, P, k, C)`` under patterns shared by every group ``(P, n)`` or per group ``(B, P, n)``."""
    if patterns.dim() == 2:
        return code.decoder.decode_patterns(outputs, patterns)
    b, p, n = patterns.shape
    expanded = outputs.unsqueeze(1).expand(b, p, *outputs.shape[1:]).flatten(0, 1)
    return code.decoder.decode(expanded, patterns.flatten(0, 1)).reshape(b, p, code.k, -1)


def forward_groups(groups, x, base_outputs, labels, code: CodePipeline, loss_fn, patterns: torch.Tensor):
    """:func:`forward_batch` on the groups' queries and F's cached answers to them."""
    return forward_batch(x[groups], base_outputs[groups], labels[groups], code, loss_fn, patterns)


def forward_batch(queries, outputs, labels, code: CodePipeline, loss_fn, patterns: torch.Tensor):
    """Encode the queries, run the workers, decode under each erasure pattern, compute the loss.

    ``queries`` ``(B, k, ...)``, ``outputs`` F's answers to exactly those queries ``(B, k, C)``;
    ``patterns``: availability masks, shared ``(P, n)`` or per group ``(B, P, n)``.
    """
    all_outputs, coded_outputs = code.worker_outputs(queries, outputs)
    decoded = decode_under(code, all_outputs, patterns)
    rebuilt = rebuilt_slots(patterns.to(decoded.device), code.k, code.systematic)
    batch = LossInputs(
        parity_outputs=coded_outputs,
        parity_targets=code.decoder.target(outputs),
        decoded=decoded,
        rebuilt=rebuilt.expand(decoded.shape[:-1]),
        base_outputs=outputs,
        labels=labels,
    )
    return loss_fn(batch), batch


DECODE_CHUNK_ELEMENTS = 1 << 24  # bounds (groups x patterns x k x classes) held at once when scoring


def _pattern_chunks(patterns: torch.Tensor, groups: int, k: int, classes: int):
    step = max(1, DECODE_CHUNK_ELEMENTS // max(1, groups * k * classes))
    return patterns.split(step)


def patterns_to_score(code: CodePipeline, config, device) -> Dict[int, torch.Tensor]:
    """e -> the ``(P, n)`` patterns scored for e = 0..r (:func:`scored_patterns`: all, or a seeded sample)."""
    return {e: scored_patterns(code.n, e, config.max_patterns, config.seed).to(device) for e in range(code.r + 1)}


@torch.no_grad()
def evaluate(groups, x, labels, base_outputs, code: CodePipeline, loss_fn, config, *, progress: bool = False,
             desc: str = "scoring") -> Dict[str, float]:
    """Loss, and both measures under the erasure patterns of e = 0..r workers (and Byzantine ones).

    e = 0 (every worker back) gives ``all_accuracy_e0``: what the code costs with no failure (a
    non-systematic code decodes every answer even then). Every pattern of e is scored while there
    are at most ``config.max_patterns``, a seeded uniform sample of that many beyond; the result
    holds how many as ``patterns_scored_e<e>``."""
    code.train(False)
    metrics = MetricAccumulator(task=code.task)
    singles = erasure_patterns(code.n, 1).to(x.device)
    scored = patterns_to_score(code, config, x.device)
    byzantine = getattr(code.decoder, "byzantine", 0)
    stragglers = scored_patterns(code.n, code.decoder.tolerated_stragglers, config.max_patterns,
                                 config.seed).to(x.device) if byzantine else None
    generator = torch.Generator().manual_seed(config.seed * 104_729 + 17)
    held = []  # (worker outputs, F's outputs, labels) of every batch, for the Byzantine pass
    batches = groups.split(max(1, config.eval_batch_size // config.k))
    for idx in progress_bar(batches, desc=f"{desc}: {sum(len(p) for p in scored.values())} erasure patterns",
                            unit="batch", enabled=progress):
        loss, batch = forward_groups(idx, x, base_outputs, labels, code, loss_fn, singles)
        metrics.add_loss(loss, len(idx))
        outputs, group_labels = base_outputs[idx], labels[idx]
        all_outputs, _ = code.worker_outputs(x[idx], outputs)
        for e, patterns in scored.items():
            for chunk in _pattern_chunks(patterns, len(idx), code.k, outputs.shape[-1]):
                reuse = e == 1 and chunk.shape == singles.shape and bool((chunk == singles).all())
                decoded = batch.decoded if reuse else decode_under(code, all_outputs, chunk)
                metrics.add_patterns(e, decoded, rebuilt_slots(chunk, code.k, code.systematic), outputs, group_labels)
        if byzantine:
            held.append((all_outputs, outputs, group_labels))
    if byzantine:  # once over every group: the locator's per-pattern fits are then built once per pattern
        score_byzantine(metrics, code, *(torch.cat(parts) for parts in zip(*held)), byzantine, generator, stragglers)
    result = metrics.result()
    result.update({f"patterns_scored_e{e}": float(len(p)) for e, p in scored.items() if e})
    return result


BYZANTINE_NOISE = 5.0  # scale of an injected wrong output's error, in standard deviations of the outputs


def score_byzantine(metrics: MetricAccumulator, code: CodePipeline, all_outputs, base_outputs, labels, errors: int,
                    generator, stragglers: Optional[torch.Tensor] = None) -> None:
    """E wrong outputs among the returned ones, with as many stragglers S as the locator tolerates
    (``decoder.tolerated_stragglers``: half of r beyond what the locator needs): answers with and without locating.
    ``stragglers``: the ``(P, n)`` straggler patterns (default: every pattern of S), dealt out over the
    groups (one pattern a group).

    A wrong output is the worker's output plus Gaussian noise ``BYZANTINE_NOISE`` times the spread
    of the outputs. Located workers are treated as unavailable. This is the only place the locator
    runs: the erasure figures never locate.
    """
    b, n, c = all_outputs.shape
    if stragglers is None:
        stragglers = erasure_patterns(n, int(getattr(code.decoder, "tolerated_stragglers", code.r - 2 * errors)))
    patterns = stragglers.to(all_outputs.device)
    # Each group meets one straggler pattern, the patterns dealt out in turn over the groups in a seeded
    # order: every pattern is scored on about b / P groups, and the locator fits each group once (every
    # pattern for every group cost minutes at k = 12, r = 12, E = 2 for the same estimate).
    dealt = patterns[torch.randperm(b, generator=generator).to(patterns.device) % len(patterns)]  # (B, n)
    scores = torch.rand(b, n, generator=generator).to(all_outputs.device)
    scores[~dealt] = 2.0  # never pick an unavailable worker
    bad = scores.topk(errors, dim=1, largest=False).indices  # (B, E)
    corrupted = all_outputs.clone()
    noise = torch.randn(b, errors, c, generator=generator).to(all_outputs.device) * (BYZANTINE_NOISE * all_outputs.std())
    corrupted.scatter_add_(1, bad.unsqueeze(-1).expand(b, errors, c), noise)
    kept = code.decoder.drop_suspects(corrupted, dealt)
    located = (~kept).gather(1, bad)  # (B, E): each injected output was left out
    served = []
    for mask in (kept, dealt):
        estimates = code.decoder.decode(corrupted, mask)
        rebuilt = rebuilt_slots(mask, code.k, code.systematic)
        returned = corrupted[:, : code.k] if code.systematic else estimates
        served.append(torch.where(rebuilt.unsqueeze(-1), estimates, returned).argmax(-1).unsqueeze(1))
    metrics.add_byzantine(served[0], served[1], labels, located, b * errors)
