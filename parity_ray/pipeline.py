"""The coded pipeline a run trains and scores: encoder -> workers -> decoder.

:class:`CodePipeline` holds the three modules of one run's code and says which of them train;
:func:`build_code` builds it from a resolved config. The workers are either trained parity models
(:class:`ParityModels`, started by a registered parity initialisation, ``initialization``) or F itself
(:class:`FrozenBaseWorkers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from .coders import create_coders, is_base_worker
from .config import TrainConfig
from .initialization import PARITY_INITS
from .models import create_model
from .tasks import get_task

class ParityModels(nn.Module):
    """Trained workers, one per coded query: (B, m, C, H, W) -> (B, m, n)."""

    def __init__(self, build: Callable[[], nn.Module], count: int):
        super().__init__()
        self.models = nn.ModuleList(build() for _ in range(count))

    def forward(self, coded_queries: torch.Tensor) -> torch.Tensor:
        return torch.stack([model(coded_queries[:, j]) for j, model in enumerate(self.models)], dim=1)


class FrozenBaseWorkers(nn.Module):
    """F itself on every coded query (``parity_model="base"``): frozen, in eval mode, gradients pass
    through to a learned encoder. F is held outside the module's state so checkpoints never copy it
    (its lineage is recorded) and ``train()`` never flips its batch-norm layers."""

    def __init__(self, base_model: nn.Module):
        super().__init__()
        base_model.eval().requires_grad_(False)
        object.__setattr__(self, "base", base_model)

    def forward(self, coded_queries: torch.Tensor) -> torch.Tensor:
        b, m = coded_queries.shape[:2]
        return self.base(coded_queries.flatten(0, 1)).reshape(b, m, -1)


@dataclass
class CodePipeline:
    """Encoder -> workers -> decoder, and what of it is trained."""

    encoder: nn.Module
    workers: nn.Module
    decoder: nn.Module
    systematic: bool
    k: int
    r: int
    task: str = "classification"  # the dataset's: "regression" outputs are boxes, scored by IoU

    @property
    def n(self) -> int:
        return self.k + self.r

    def modules(self) -> Dict[str, nn.Module]:
        return {"parity": self.workers, "encoder": self.encoder, "decoder": self.decoder}

    def trainable_parameters(self) -> List[nn.Parameter]:
        return [p for module in self.modules().values() for p in module.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> None:
        for module in self.modules().values():
            module.train(mode)

    def state(self) -> Dict[str, Dict[str, torch.Tensor]]:
        """``{"parity_state", "encoder_state", "decoder_state"}``: plain CPU state_dicts (empty when fixed).

        Copies, never views of the live weights (on the CPU ``.cpu()`` alone would alias them).
        """
        return {f"{name}_state": {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
                for name, module in self.modules().items()}

    def load_state(self, checkpoint: Dict[str, Any]) -> None:
        for name, module in self.modules().items():
            module.load_state_dict(checkpoint.get(f"{name}_state") or {})

    def worker_outputs(self, queries: torch.Tensor, base_outputs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(outputs of all n workers (B, n, C), outputs of the coded workers (B, m, C))``.

        A systematic code's first k workers are F on the raw queries, whose outputs are cached.
        """
        coded_outputs = self.workers(self.encoder(queries))
        if self.systematic:
            return torch.cat([base_outputs, coded_outputs], dim=1), coded_outputs
        return coded_outputs, coded_outputs


def build_code(config: TrainConfig, spec, base_model: nn.Module, device, train_targets: Optional[torch.Tensor] = None) -> CodePipeline:
    """The code a resolved config asks for; the network it names is the one that runs, with its weights.

    (The original learned-code configurations loaded the base weights into the base model and
    left the worker randomly initialised and frozen; here ``parity_model="base"`` runs F with F's
    weights, and a trained worker is trained.)
    """
    encoder, decoder = create_coders(config, spec.input_shape, spec.num_classes)
    if is_base_worker(config.parity_model):
        workers: nn.Module = FrozenBaseWorkers(base_model)
    else:
        init = PARITY_INITS.get(config.parity_init)

        def build() -> nn.Module:
            model = create_model(config.parity_model, input_shape=spec.input_shape, num_classes=spec.num_classes,
                                 group_size=config.k)
            init(model, base_model)
            return model

        workers = ParityModels(build, encoder.num_coded)
        if init.from_scratch and train_targets is not None:
            get_task(spec.task).prepare_workers(list(workers.models), decoder, train_targets, config.k)
    return CodePipeline(encoder.to(device), workers.to(device), decoder.to(device), encoder.systematic, config.k, config.r, spec.task)
