"""Scoring a code: k-groups of a split, every erasure pattern decoded, Byzantine outputs located.

The validation and test groups are the same every epoch (:func:`fixed_groups`); every pattern of
e = 1..r unavailable workers is decoded and scored by the run's task (``metrics``); a code that
locates Byzantine workers is also scored with E injected wrong outputs.
"""

from __future__ import annotations

from typing import Dict

import torch

from .coders import erasure_patterns, rebuilt_slots
from .config import TrainConfig
from .losses import LossInputs
from .metrics import MetricAccumulator
from .pipeline import CodePipeline


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


@torch.no_grad()
def evaluate(groups, x, labels, base_outputs, code: CodePipeline, loss_fn, config) -> Dict[str, float]:
    """Loss, and both measures under every erasure pattern of e = 0..r workers (and Byzantine ones).

    e = 0 (every worker back) gives ``all_accuracy_e0``: what the code costs with no failure (a
    non-systematic code decodes every answer even then)."""
    code.train(False)
    metrics = MetricAccumulator(task=code.task)
    singles = erasure_patterns(code.n, 1).to(x.device)
    byzantine = getattr(code.decoder, "byzantine", 0)
    generator = torch.Generator().manual_seed(config.seed * 104_729 + 17)
    for idx in groups.split(max(1, config.eval_batch_size // config.k)):
        loss, batch = forward_groups(idx, x, base_outputs, labels, code, loss_fn, singles)
        metrics.add_loss(loss, len(idx))
        outputs, group_labels = base_outputs[idx], labels[idx]
        all_outputs, _ = code.worker_outputs(x[idx], outputs)
        for e in range(0, code.r + 1):
            patterns = erasure_patterns(code.n, e).to(x.device)
            for chunk in _pattern_chunks(patterns, len(idx), code.k, outputs.shape[-1]):
                decoded = batch.decoded if (e == 1 and chunk.shape == singles.shape) else decode_under(code, all_outputs, chunk)
                metrics.add_patterns(e, decoded, rebuilt_slots(chunk, code.k, code.systematic), outputs, group_labels)
        if byzantine:
            score_byzantine(metrics, code, all_outputs, outputs, group_labels, byzantine, generator)
    return metrics.result()


BYZANTINE_NOISE = 5.0  # scale of an injected wrong output's error, in standard deviations of the outputs


def score_byzantine(metrics: MetricAccumulator, code: CodePipeline, all_outputs, base_outputs, labels, errors: int, generator) -> None:
    """E wrong outputs among the returned ones, with as many stragglers S as the locator tolerates
    (``decoder.tolerated_stragglers``: r minus what the locator needs): answers with and without locating.

    A wrong output is the worker's output plus Gaussian noise ``BYZANTINE_NOISE`` times the spread
    of the outputs. Located workers are treated as unavailable. This is the only place the locator
    runs: the erasure figures never locate.
    """
    b, n, c = all_outputs.shape
    stragglers = int(getattr(code.decoder, "tolerated_stragglers", code.r - 2 * errors))
    patterns = erasure_patterns(n, stragglers).to(all_outputs.device) if stragglers else torch.ones(1, n, dtype=torch.bool, device=all_outputs.device)
    for pattern in patterns:
        scores = torch.rand(b, n, generator=generator).to(all_outputs.device)
        scores[:, ~pattern] = 2.0  # never pick an unavailable worker
        bad = scores.topk(errors, dim=1, largest=False).indices  # (B, E)
        corrupted = all_outputs.clone()
        noise = torch.randn(b, errors, c, generator=generator).to(all_outputs.device) * (BYZANTINE_NOISE * all_outputs.std())
        corrupted.scatter_add_(1, bad.unsqueeze(-1).expand(b, errors, c), noise)
        available = pattern.unsqueeze(0).expand(b, n)
        kept = code.decoder.drop_suspects(corrupted, available)
        located = (~kept).gather(1, bad)  # (B, E): each injected output was left out
        served = []
        for mask in (kept, available):
            estimates = code.decoder.decode(corrupted, mask)
            rebuilt = rebuilt_slots(mask, code.k, code.systematic)
            returned = corrupted[:, : code.k] if code.systematic else estimates
            served.append(torch.where(rebuilt.unsqueeze(-1), estimates, returned).argmax(-1).unsqueeze(1))
        metrics.add_byzantine(served[0], served[1], labels, located, b * errors)
