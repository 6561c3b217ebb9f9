"""Optimisers, learning-rate schedules and the weight average of the coded models' training.

A config names one optimiser and one schedule (``optimizer``, ``lr_schedule``: two registries);
the trainer builds them once per run and steps the schedule once per epoch. With ``ema_decay``
the run is scored with an exponential moving average of its weights (:class:`WeightAverage`). Register another with :func:`register_optimizer` or
:func:`register_lr_schedule`; ``parity-ray list`` shows them.
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, List, Optional

import torch

from .errors import UsageError
from .registry import Registry

OPTIMIZERS: Registry = Registry("optimizer", "optimizers", """
    A function ``(parameters, config) -> torch.optim.Optimizer`` over the trained parameters,
    reading what it needs of the run's ``TrainConfig`` (``lr``, ``weight_decay``, ``momentum``).""")
LR_SCHEDULES: Registry = Registry("learning-rate schedule", "lr_schedules", """
    A function ``(optimizer, config) -> scheduler or None``; the trainer calls ``step()`` on the
    scheduler after every epoch and checkpoints its ``state_dict()``. None keeps the rate constant.""")
register_optimizer = OPTIMIZERS.register
register_lr_schedule = LR_SCHEDULES.register


def list_optimizers() -> List[str]:
    return OPTIMIZERS.in_order()


def list_lr_schedules() -> List[str]:
    return LR_SCHEDULES.in_order()


@register_optimizer("adam")
def adam(parameters, config) -> torch.optim.Optimizer:
    """The paper's. The fused kernel is ~1.6x faster per step for the small parity models of the paper."""
    return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=True)


@register_optimizer("sgd")
def sgd(parameters, config) -> torch.optim.Optimizer:
    """SGD with (heavy-ball) ``momentum``."""
    return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


@register_lr_schedule("none")
def constant(optimizer, config) -> Optional[object]:
    """The paper's: a constant rate."""
    return None


@register_lr_schedule("cosine")
def cosine(optimizer, config):
    """To 0 over the run's epochs."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)


@register_lr_schedule("step")
def step(optimizer, config):
    """Times ``lr_gamma`` every ``lr_step`` epochs."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)


class WeightAverage:
    """An exponential moving average (Polyak) of a code's weights, updated after every optimiser step.

    Late in training the weights wander around a good point with the optimiser's noise; their
    average sits nearer it, so it scores higher sooner and moves less from epoch to epoch (which
    also steadies the choice of the best epoch). Evaluation, ``best.pt`` and predictions use the
    average; ``latest.pt`` keeps the live weights and the average, so a resumed run is exact.
    The decay warms up as ``min(decay, (1 + t) / (10 + t))`` so that early averages are not
    dominated by the initial weights.
    """

    def __init__(self, code, decay: float):  # code: a pipeline.CodePipeline
        self.decay, self.steps = decay, 0
        # state_dict tensors share storage with the parameters and buffers, which the optimiser
        # and batch norm update in place: this list always holds the live values.
        trained = [m for m in code.modules().values() if any(p.requires_grad for p in m.parameters())]
        live = [t for module in trained for t in module.state_dict().values()]
        self.live = [t for t in live if t.is_floating_point()]
        self.average = [t.detach().clone() for t in self.live]

    @torch.no_grad()
    def update(self) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        torch._foreach_lerp_(self.average, self.live, 1.0 - decay)

    @contextlib.contextmanager
    def applied(self):
        """The averaged weights in place of the live ones, for the duration of the block."""
        with torch.no_grad():
            live = [t.clone() for t in self.live]
            torch._foreach_copy_(self.live, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.live, live)

    def state(self) -> Dict[str, Any]:
        return {"weight_average": {"steps": self.steps, "tensors": [t.detach().cpu() for t in self.average]}}

    def load_state(self, checkpoint: Dict[str, Any]) -> None:
        saved = checkpoint.get("weight_average")
        if saved is None:
            raise UsageError("the checkpoint holds no weight average (it was trained with ema_decay 0)")
        self.steps = int(saved["steps"])
        with torch.no_grad():
            torch._foreach_copy_(self.average, [t.to(a.device) for t, a in zip(saved["tensors"], self.average)])


def averaged(average: Optional[WeightAverage]):
    return average.applied() if average is not None else contextlib.nullcontext()


def make_optimizer(config, parameters) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(config.optimizer)(parameters, config)


def make_scheduler(config, optimizer):
    return LR_SCHEDULES.get(config.lr_schedule)(optimizer, config)


__all__ = ["LR_SCHEDULES", "OPTIMIZERS", "WeightAverage", "averaged", "list_lr_schedules", "list_optimizers", "make_optimizer", "make_scheduler",
           "register_lr_schedule", "register_optimizer"]
