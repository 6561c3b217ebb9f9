"""Parity initialisations: how a new parity model's weights start (a registry).

* ``random`` - PyTorch's default initialisation of the architecture (the paper's).
* ``base`` - F's own weights (the parity model must be F's architecture).
"""

from __future__ import annotations

from typing import List

from torch import nn

from .registry import Registry

PARITY_INITS: Registry = Registry("parity initialisation", "parity_inits", """
    A :class:`ParityInit` instance, called as ``init(model, base_model)`` on each freshly built
    parity model (before it moves to the device) to set its starting weights; ``from_scratch``
    says the output layer is left as built, so the task may place it (box regression starts its
    bias at the boxes the decoder expects).""")


class ParityInit:
    """Sets a new parity model's starting weights."""

    from_scratch = True

    def __call__(self, model: nn.Module, base_model: nn.Module) -> None:
        raise NotImplementedError


def register_parity_init(name: str):
    """Class decorator: register an instance of the :class:`ParityInit` subclass under ``name``."""

    def decorator(cls):
        PARITY_INITS.register(name)(cls())
        return cls

    return decorator


def list_parity_inits() -> List[str]:
    return PARITY_INITS.in_order()


@register_parity_init("random")
class RandomInit(ParityInit):
    """PyTorch's default initialisation of the architecture (the paper's)."""

    def __call__(self, model: nn.Module, base_model: nn.Module) -> None:
        pass


@register_parity_init("base")
class BaseInit(ParityInit):
    """F's own weights (the parity model must be F's architecture): F(X1 + X2) is already near
    F(X1) + F(X2) for much of the input space, so training starts close."""

    from_scratch = False

    def __call__(self, model: nn.Module, base_model: nn.Module) -> None:
        model.load_state_dict(base_model.state_dict())


__all__ = ["PARITY_INITS", "ParityInit", "list_parity_inits", "register_parity_init"]
