"""Base-model registry (``base-mlp``, ``lenet5``, ``resnet18``, ``vgg11``, ``vit``, ``tv-resnet18``, ...) and weight import.

Every constructor takes ``input_shape=(C, H, W)`` and ``num_classes``; the parity
model defaults to the same architecture, built with the same arguments.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from .errors import UsageError
from .registry import Registry, Spec, spec_name

MODELS: Registry = Registry("model", "models", """
    An ``nn.Module`` class or factory called with ``input_shape=(C, H, W)`` and ``num_classes``
    (each only if it takes it); ``forward`` maps a batch ``(B, C, H, W)`` to ``(B, num_classes)``
    outputs. Serves as the deployed model F and, by default, as each parity model. A parity model is
    also offered ``group_size`` (the k queries one coded query stands for), again only if it takes it.""")
register_model = MODELS.register


def list_models() -> List[str]:
    return MODELS.names()


def create_model(spec: Spec, *, input_shape: Sequence[int], num_classes: int, group_size: Optional[int] = None) -> nn.Module:
    """Build a registered model or a class-spec ``{"cls": "pkg.mod.Class", **kwargs}``; ``group_size`` (k)
    is given when the model is built as a parity model."""
    context: Dict[str, Any] = {"input_shape": tuple(input_shape), "num_classes": num_classes}
    if group_size is not None:
        context["group_size"] = int(group_size)
    model = MODELS.create(spec, **context)
    if not isinstance(model, nn.Module):
        raise UsageError(f"model '{spec_name(spec)}' built a {type(model).__name__}, not a torch.nn.Module")
    return model


@register_model("base-mlp")
class BaseMLP(nn.Module):
    """The parity-models paper's MNIST MLP: in-200-100-classes with ReLU.

    The layers live in ``self.nn`` so that state_dicts of the published artifact
    (keys ``nn.0.weight`` ... ``nn.4.bias``) load as they are.
    """

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        in_features = math.prod(input_shape)
        self.nn = nn.Sequential(
            nn.Linear(in_features, 200),
            nn.ReLU(),
            nn.Linear(200, 100),
            nn.ReLU(),
            nn.Linear(100, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nn(x.flatten(1))


@register_model("lenet5")
class LeNet5(nn.Module):
    """LeNet-5 (6 and 16 5x5 conv filters, 120-84 dense), sized to any input of >= 8 pixels;
    ``width`` multiplies every layer's width (``lenet5-wide``: 4)."""

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, width: int = 1):
        super().__init__()
        c1, c2, d1, d2 = 6 * width, 16 * width, 120 * width, 84 * width
        channels, height, width = input_shape
        # Small inputs (8x8 digits) keep their size through the second conv with padding.
        pad2 = 2 if min(height, width) < 20 else 0
        self.features = nn.Sequential(
            nn.Conv2d(channels, c1, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=pad2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, channels, height, width)).numel()
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, d1),
            nn.ReLU(),
            nn.Linear(d1, d2),
            nn.ReLU(),
            nn.Linear(d2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("lenet5-wide")
def lenet5_wide(input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10) -> nn.Module:
    """LeNet-5 four times as wide (24 and 64 filters, 480-336 dense; ~16x the FLOPs): a larger parity
    model for a LeNet-5 F, to measure what capacity buys (the runs table shows its cost)."""
    return LeNet5(input_shape, num_classes, width=4)


def _cifar_resnet(depth: int, input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """A torchvision ResNet with the CIFAR stem (3x3 stride-1 conv, no max-pool); any channel count."""
    import torchvision

    model = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@register_model("slot-mlp")
class SlotMLP(nn.Module):
    """A parity model that reads a coded query as ``group_size`` slots side by side (the flattened
    input cut into k equal parts, as encoder ``projection`` lays out k compressed queries): one shared
    ``hidden``-wide ReLU layer per slot, without bias, the slots' features summed, one linear layer to
    the outputs. Without the hidden bias each slot's term is positively homogeneous (a slot scaled by
    c > 0 scales its term by c), so a coded query whose slot i the encoder scaled by ``G[j, i]``
    returns ``sum_i G[j, i] f(slot_i)`` plus one bias: what the subtraction decoder reads for any r
    (``F(X_e) = P - sum of the others`` for r = 1). With ``group_size`` 1 it is a plain MLP, and can
    serve as F. Parameters shrink with k (a slot holds D / k values); FLOPs per coded query stay about
    ``2 * D * hidden``."""

    reads_slots = True

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, group_size: int = 1,
                 hidden: int = 512):
        super().__init__()
        self.size, self.slots = math.prod(input_shape), int(group_size)
        self.slot_size = self.size // self.slots
        if self.slot_size < 1:
            raise UsageError(f"slot-mlp cannot cut an input of {self.size} values into {self.slots} slots")
        self.slot = nn.Sequential(nn.Linear(self.slot_size, hidden, bias=False), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slots = x.flatten(1)[:, : self.slots * self.slot_size].reshape(x.shape[0], self.slots, self.slot_size)
        return self.head(self.slot(slots).sum(dim=1))


@register_model("resnet18")
def resnet18(input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10) -> nn.Module:
    """ResNet-18, CIFAR stem: the paper's model for CIFAR-10 (and MNIST, 1-channel)."""
    return _cifar_resnet(18, input_shape, num_classes)


@register_model("resnet152")
def resnet152(input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 100) -> nn.Module:
    """ResNet-152, CIFAR stem: the paper's model for CIFAR-100."""
    return _cifar_resnet(152, input_shape, num_classes)


# VGG-11 as configured for Speech Commands (adiyoss/GCommandsPytorch, used by the parity-models artifact).
_VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


@register_model("vgg11")
class VGG11(nn.Module):
    """VGG-11 with batch norm for any channel count and input size: the paper's Speech Commands model.

    3x3 conv + BN + ReLU blocks (64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M), then two
    linear layers (features -> 512 -> classes, no activation between, as in the speech model the
    artifact used). On 1 x 161 x 101 spectrograms the features are 512 x 5 x 3 (7,680 numbers).
    The classifier is sized from ``input_shape``; an adaptive average pool to that feature-map
    size (the identity for inputs of that shape) lets other input sizes through. Max-pools that
    would shrink a side below 1 pixel are left out, so 8 x 8 digits work too. Outputs are logits.
    """

    def __init__(self, input_shape: Sequence[int] = (1, 161, 101), num_classes: int = 30):
        super().__init__()
        channels, height, width = input_shape
        layers: List[nn.Module] = []
        for value in _VGG11:
            if value == "M":
                if min(height, width) >= 2:
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                    height, width = height // 2, width // 2
                continue
            layers += [nn.Conv2d(channels, value, kernel_size=3, padding=1), nn.BatchNorm2d(value), nn.ReLU(inplace=True)]
            channels = value
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d((height, width))
        self.classifier = nn.Sequential(nn.Linear(channels * height * width, 512), nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register_model("vit")
class ViT(nn.Module):
    """A small vision transformer: the image cut into non-overlapping patches (zero-padded to whole
    patches), each embedded linearly, a learned class token and position embeddings, ``depth``
    pre-norm encoder blocks, and the class token's output through a linear head.

    Any ``(C, H, W)``: the patch side defaults to ``ceil(min(H, W) / 4)``, so an image is about
    4 x 4 patches whatever its size (MNIST: 7-pixel patches, 16 tokens; 8x8 digits: 2-pixel ones;
    224x224: 56-pixel ones), which keeps a CPU epoch of MNIST in tens of seconds. ~0.14 M
    parameters at the defaults (dim 64, 4 blocks of 4 heads).
    """

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, dim: int = 64,
                 depth: int = 4, heads: int = 4, mlp_ratio: int = 2, patch: int = 0):
        super().__init__()
        channels, height, width = input_shape
        self.patch = patch or -(-min(height, width) // 4)
        rows, cols = -(-height // self.patch), -(-width // self.patch)
        self.pad = (0, cols * self.patch - width, 0, rows * self.patch - height)
        self.embed = nn.Conv2d(channels, dim, self.patch, stride=self.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.zeros(1, rows * cols + 1, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        block = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=dim * mlp_ratio, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = nn.functional.pad(x, self.pad)
        tokens = self.embed(x).flatten(2).transpose(1, 2)  # (B, patches, dim)
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1) + self.position
        return self.head(self.blocks(tokens)[:, 0])


@register_model("vit-wide")
def vit_wide(input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10) -> nn.Module:
    """The small ViT at twice the width (dim 128, 4 blocks of 4 heads; ~0.5 M parameters): a larger
    parity model for a ``vit`` F."""
    return ViT(input_shape, num_classes, dim=128)


@register_model("tv-resnet18")
def tv_resnet18(input_shape: Sequence[int] = (3, 224, 224), num_classes: int = 2) -> nn.Module:
    """torchvision's ResNet-18 as it is (ImageNet stem: 7x7 stride-2 conv and max-pool), random init.

    The artifact's model for Cats vs Dogs (2 classes) and, with ``num_classes`` = 4 outputs, its
    CUB-200 box regressor (``cub-localization`` gives 4). A first conv for other channel counts.
    """
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if input_shape[0] != 3:
        model.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class ModelCost:
    """What one forward pass of a model costs: trainable and frozen parameters, and FLOPs for one
    input (a multiply-add counts 2, as ``torch.utils.flop_counter`` counts)."""

    params: int
    flops: int


@lru_cache(maxsize=128)
def _cost(spec_json: str, input_shape: Tuple[int, ...], num_classes: int, group_size: Optional[int]) -> ModelCost:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):  # shapes only: no weights allocated, a ResNet-152 costs milliseconds
        model = create_model(json.loads(spec_json), input_shape=input_shape, num_classes=num_classes, group_size=group_size)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model.eval()(torch.empty(1, *input_shape))
    return ModelCost(params=sum(p.numel() for p in model.parameters()), flops=int(counter.get_total_flops()))


def model_cost(spec: Spec, *, input_shape: Sequence[int], num_classes: int, group_size: Optional[int] = None) -> Optional[ModelCost]:
    """Parameters and FLOPs per query of a model (the parity model's are shown beside the accuracy it
    buys, so a wider parity model is never a hidden win); None where the model cannot be built on the
    meta device. Registered models only: a class-spec names user code, and costing a run read from an
    experiment folder must never import it."""
    if spec_name(spec) not in MODELS.names():
        return None
    try:
        return _cost(json.dumps(spec, sort_keys=True), tuple(int(d) for d in input_shape), int(num_classes),
                     None if group_size is None else int(group_size))
    except Exception:  # noqa: BLE001 - a cost column is informative; an unusual user model leaves it null
        return None


def _unwrap_state_dict(obj: Any) -> Mapping[str, torch.Tensor]:
    """Accept a plain state_dict or the common wrappers ({'state_dict': ...}, {'model': ...})."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(torch.is_tensor(v) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise UsageError("weights file does not hold a state_dict (a mapping of parameter names to tensors)")
    # Checkpoints saved from nn.DataParallel prefix every key with "module."
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def load_state_dict_file(path: str) -> Mapping[str, torch.Tensor]:
    """Load a state_dict saved on any device by any PyTorch version, without unpickling classes."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"weights file '{path}' does not exist")
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)  # never runs code a tampered file names
    except Exception as exc:
        from .torch_files import _load_error

        raise UsageError(f"weights file '{path}' is not a readable PyTorch state_dict ({_load_error(exc)[:160]})") from None
    return _unwrap_state_dict(obj)


def load_weights(model: nn.Module, path: str, model_label: str) -> None:
    """Load ``path`` into ``model`` strictly; mismatches are named in one line."""
    state = load_state_dict_file(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_short(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch {_short(shapes)}")
        raise UsageError(f"weights file '{path}' does not match model '{model_label}': {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)


def _short(items: List[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}]"



__all__ = [
    "MODELS",
    "BaseMLP",
    "LeNet5",
    "ModelCost",
    "VGG11",
    "create_model",
    "list_models",
    "load_state_dict_file",
    "load_weights",
    "model_cost",
    "register_model",
    "resnet152",
    "resnet18",
    "tv_resnet18",
]
