"""Learned codes (Kosaian et al., "Learning-Based Coded Computation"): encoder and decoder networks.

Trained end to end by the one trainer, with the deployed model F frozen on the coded queries
(``parity_model="base"``) or with trained parity models; the loss is computed on the rebuilt
outputs. The layer shapes follow the published networks; the decoder also sees which workers
answered (the published one saw only zeroed outputs), which costs n inputs and tells it apart
a zero output from a missing one.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..errors import UsageError
from . import Decoder, Encoder, register_decoder, register_encoder
from .linear import MAX_LINEAR_R, SubtractionDecoder, code_matrix, coded_sums

Tensor = torch.Tensor


class StartsAtTheSums(Encoder):
    """A learned encoder that adds the linear code's sums ``sum_i G[j, i] X_i`` (addition's coded
    queries) to its network's output, the network's last layer starting at zero: the code is addition
    on step one and learns a residual from there (why: ``MLPEncoder``). Row j of ``G`` is scaled to a
    largest entry of 1 (``(i + 1) ** j / k ** j``): the same sums for r = 1, still every r x r minor
    invertible, and no 12 ** 13 factor at k = 12, r = 14, where a learned decoder needs no exact
    arithmetic. A checkpoint written before the sums existed has no ``sum_skip`` and loads with the
    sums off, as it was trained."""

    def _start_at_the_sums(self, last_layer: nn.Module) -> None:
        nn.init.zeros_(last_layer.weight)
        nn.init.zeros_(last_layer.bias)
        generator = code_matrix(self.k, self.r)
        self.register_buffer("generator", generator / generator.amax(dim=1, keepdim=True), persistent=False)
        self.register_buffer("sum_skip", torch.ones(()))  # 0 for checkpoints trained without the sums

    def _plus_the_sums(self, residual: Tensor, queries: Tensor) -> Tensor:
        return residual + self.sum_skip * coded_sums(self.generator, queries)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.setdefault(prefix + "sum_skip", torch.zeros(()))  # written before the sums: they stay off
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@register_encoder("mlp")
class MLPEncoder(StartsAtTheSums):
    """The k queries flattened and concatenated -> Linear(kD, kD) -> ReLU -> Linear(kD, rD) -> r coded
    queries, added to the linear code's sums ``sum_i G[j, i] X_i`` (addition's coded queries).

    Why the sums: the published network starts as random noise over k * D inputs. F on such a coded
    query answers about the same whatever the k queries were, so the decoder sees no signal and the
    gradient through the frozen F carries none: at k = 12 (MNIST, F = LeNet-5) the loss stayed at ln 10
    for 5 epochs, and neither standardising the coded queries nor 1/k Adam steps for the encoder moved
    it (3 epochs each, measured). Started at the sums (the last layer zero), the code is addition on
    step one and learns a residual from there; at k = 12 it left chance in the first epoch.
    """

    family = "learned"

    def __init__(self, k: int, r: int, input_shape: Sequence[int], systematic=None):
        super().__init__(k, r, input_shape, systematic)
        size = math.prod(self.input_shape)
        self.net = nn.Sequential(nn.Linear(self.k * size, self.k * size), nn.ReLU(), nn.Linear(self.k * size, self.r * size))
        self._start_at_the_sums(self.net[-1])

    def forward(self, queries: Tensor) -> Tensor:
        batch = queries.shape[0]
        return self._plus_the_sums(self.net(queries.reshape(batch, -1)).reshape(batch, self.r, *self.input_shape), queries)


@register_encoder("conv")
class ConvEncoder(StartsAtTheSums):
    """The k queries stacked as channels -> 3x3 convolutions, dilations 1, 1, 2, 4, 8, 1, 20k channels -> 1x1 to r,
    added to addition's coded queries (the 1x1 starting at zero), for the reason ``MLPEncoder`` gives."""

    family = "learned"
    DILATIONS = (1, 1, 2, 4, 8, 1)

    def __init__(self, k: int, r: int, input_shape: Sequence[int], systematic=None):
        super().__init__(k, r, input_shape, systematic)
        channels = self.input_shape[0]
        width = 20 * self.k
        layers, previous = [], self.k * channels
        for i, dilation in enumerate(self.DILATIONS):
            layers.append(nn.Conv2d(previous, width, 3, padding=dilation, dilation=dilation))
            layers.append(nn.ReLU())
            previous = width
        layers.append(nn.Conv2d(previous, self.r * channels, 1))
        # channels_last: 20k channels at full resolution suit oneDNN's NHWC kernels (13% faster a batch
        # of 64 groups at k = 2 on 2 CPU cores, forward and backward: 143 vs 165 ms); same values.
        self.net = nn.Sequential(*layers).to(memory_format=torch.channels_last)
        self._start_at_the_sums(self.net[-1])

    def forward(self, queries: Tensor) -> Tensor:
        batch, k, channels, height, width = queries.shape
        stacked = queries.reshape(batch, k * channels, height, width).contiguous(memory_format=torch.channels_last)
        residual = self.net(stacked).contiguous().reshape(batch, self.r, channels, height, width)
        return self._plus_the_sums(residual, queries)


@register_encoder("projection")
class ProjectionEncoder(Encoder):
    """A learned downsample-and-concatenate: each of the k queries through one shared network
    (D -> 512 -> ReLU -> D // k), the k results laid side by side in one coded query of the input's
    shape (the remainder zero). Built for a parity model that reads those slots (``slot-mlp``), so the
    coded worker returns a sum of one function of each query, which the subtraction decoder reads.
    Coded query j scales slot i by the linear code's ``G[j, i]`` (all ones for r = 1); a parity model
    that is positively homogeneous in each slot (``slot-mlp``) then returns ``sum_i G[j, i] f(X_i)``,
    so any r <= 4 erasures decode as for addition.

    Why: one image of D values has room for k compressed queries (MNIST keeps its class in far fewer
    than 98 learned features), where addition superimposes them and concatenation keeps k tiles of
    14 x 7 pixels at k = 8. The frontend pays ``D * 512 + 512 * D / k`` multiply-adds a query to
    encode (0.45 M on MNIST at k = 8; ``(k + r) * D * D``, 5.5 M, for the ``mlp`` encoder).
    """

    family = "learned"
    max_r = MAX_LINEAR_R
    packs_slots = True
    HIDDEN = 512

    def __init__(self, k: int, r: int, input_shape: Sequence[int], systematic=None):
        super().__init__(k, r, input_shape, systematic)
        self.size = math.prod(self.input_shape)
        self.slot_size = self.size // self.k
        if self.slot_size < 1:
            raise UsageError(f"encoder 'projection' cannot lay k={self.k} queries into an input of {self.size} values")
        self.net = nn.Sequential(nn.Linear(self.size, self.HIDDEN), nn.ReLU(), nn.Linear(self.HIDDEN, self.slot_size))
        self.register_buffer("generator", code_matrix(self.k, self.r), persistent=False)

    def forward(self, queries: Tensor) -> Tensor:
        batch = queries.shape[0]
        slots = self.net(queries.reshape(batch, self.k, self.size))  # (B, k, D // k)
        coded = torch.einsum("rk,bkd->brkd", self.generator.to(slots.dtype), slots).reshape(batch, self.r, -1)
        coded = nn.functional.pad(coded, (0, self.size - self.k * self.slot_size))
        return coded.reshape(batch, self.r, *self.input_shape)


@register_decoder("mlp")
class MLPDecoder(Decoder):
    """The n outputs (unavailable ones zeroed) and the availability mask -> Linear((n)C + n, nC) -> ReLU
    -> Linear(nC, kC) -> ReLU -> Linear(kC, kC) -> the k estimates."""

    family = "learned"

    def __init__(self, k: int, r: int, systematic: bool = True, num_outputs: int = 0):
        super().__init__(k, r, systematic)
        if num_outputs < 1:
            raise UsageError("decoder 'mlp' needs the number of outputs per query (num_outputs) to size its layers")
        self.num_outputs = int(num_outputs)
        width_in, c = self.n * self.num_outputs, self.num_outputs
        self.net = nn.Sequential(
            nn.Linear(width_in + self.n, width_in), nn.ReLU(),
            nn.Linear(width_in, self.k * c), nn.ReLU(),
            nn.Linear(self.k * c, self.k * c),
        )

    def check_encoder(self, encoder: Encoder) -> None:
        if encoder.k != self.k or encoder.r != self.r:
            raise UsageError(f"decoder 'mlp' sized for k={self.k} r={self.r} cannot read an encoder with k={encoder.k} r={encoder.r}")
        if encoder.systematic != self.systematic:
            raise UsageError("decoder 'mlp' was built for a code of the other kind (systematic vs non-systematic)")

    def decode(self, outputs: Tensor, available: Tensor) -> Tensor:
        if outputs.shape[-1] != self.num_outputs:
            raise UsageError(f"decoder 'mlp' was sized for {self.num_outputs} outputs per query, got {outputs.shape[-1]}")
        mask = available.to(outputs.dtype)
        features = torch.cat([(outputs * mask.unsqueeze(-1)).flatten(1), mask], dim=1)
        return self.net(features).reshape(outputs.shape[0], self.k, self.num_outputs)


@register_decoder("corrected-subtraction")
class CorrectedSubtractionDecoder(SubtractionDecoder):
    """Subtraction with a learned correction of each available output: ``F(X_i) + c(F(X_i))``, with
    ``c`` one small MLP (C -> 256 -> ReLU -> C) shared by the k slots and starting at zero, stands in
    for the available queries' terms of the coded output before the linear code is solved. Each
    query's own output is returned as it arrived; only unavailable ones are rebuilt.

    Why: a trained coded worker returns ``sum_i g(X_i)``, and subtraction takes F's outputs for the
    available ``g(X_i)``, so a rebuilt output carries every available query's mismatch ``g - F``.
    With the ``projection`` code at k = 8 on Fashion-MNIST (cross-entropy, 240 epochs), ``g`` alone
    classifies as well as F (0.906 against 0.904), yet the rebuilt outputs reach only 0.84: the
    seven mismatches are the loss. Much of a mismatch is a function of F's output itself, which the
    frontend holds: an MLP fitted to it afterwards took the rebuilt accuracy from 0.838 to 0.848;
    trained with the code it does better (README, codes section). Costs the frontend one
    ``C x 256 x C`` MLP per answered query of the group.
    """

    family = "learned"
    HIDDEN = 256

    def __init__(self, k: int, r: int, systematic: bool = True, num_outputs: int = 0):
        super().__init__(k, r, systematic)
        if num_outputs < 1:
            raise UsageError("decoder 'corrected-subtraction' needs the number of outputs per query (num_outputs) to size its correction")
        self.correction = nn.Sequential(nn.Linear(num_outputs, self.HIDDEN), nn.ReLU(), nn.Linear(self.HIDDEN, num_outputs))
        nn.init.zeros_(self.correction[-1].weight)  # starts as plain subtraction
        nn.init.zeros_(self.correction[-1].bias)

    def _corrected(self, outputs: Tensor) -> Tensor:
        own = outputs[:, : self.k]
        return torch.cat([own + self.correction(own), outputs[:, self.k:]], dim=1)

    def decode(self, outputs: Tensor, available: Tensor) -> Tensor:
        own_arrived = available[:, : self.k].bool().unsqueeze(-1)
        arrived = torch.where(available.bool().unsqueeze(-1), outputs, torch.zeros_like(outputs))  # unavailable values never matter
        return torch.where(own_arrived, outputs[:, : self.k], super().decode(self._corrected(arrived), available))

    def decode_patterns(self, outputs: Tensor, available: Tensor) -> Tensor:
        own_arrived = available[:, : self.k].bool().view(1, available.shape[0], self.k, 1)
        return torch.where(own_arrived, outputs[:, None, : self.k], super().decode_patterns(self._corrected(outputs), available))
