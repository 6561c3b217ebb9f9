"""Codes for coded inference: one interface for every family, one registry per side.

A *code* turns k queries into work for ``n = k + r`` workers and rebuilds the k outputs from
whichever workers answered:

* an **encoder** maps the k queries ``(B, k, C, H, W)`` to ``num_coded`` coded queries. A
  *systematic* code sends the k raw queries to the deployed model F and ``r`` coded queries to
  extra workers (``num_coded == r``); a *non-systematic* code sends coded queries to all
  ``k + r`` workers (``num_coded == k + r``) and every answer is rebuilt.
* each **worker** on a coded query runs a trained parity model, or F itself, frozen
  (``parity_model="base"``); the trainer owns the workers.
* a **decoder** maps the ``n`` worker outputs ``(B, n, C)`` (for a systematic code slots
  ``0..k-1`` are ``F(X_i)`` and slots ``k..`` the coded workers') plus an availability mask
  ``(B, n)`` to estimates of the k outputs ``(B, k, C)``. A decoder whose code is linear in the
  outputs also says what a trained worker should return (:meth:`Decoder.target`).

Families: ``parity-models`` (addition / concatenation encoders, subtraction decoder: linear codes
over outputs, trained parity models), ``learned`` (``mlp`` / ``conv`` / ``projection`` encoders,
``mlp`` / ``corrected-subtraction`` decoders, trained end to end) and ``berrut`` (ApproxIFER's rational-interpolation code; nothing to train).
Registry names are used verbatim in configs and tables.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

from ..errors import UsageError
from ..registry import Registry, Spec, parse_spec, spec_name

Tensor = torch.Tensor

ENCODERS: Registry = Registry("encoder", "encoders", """
    An :class:`Encoder` class built by :func:`create_coders` with what it takes of ``k``, ``r``,
    ``systematic``, ``input_shape``, ``num_classes``; called with ``(B, k, C, H, W)`` queries it
    returns ``(B, num_coded, C, H, W)`` coded queries. ``systematic`` and ``num_coded`` say which
    workers run F on the raw queries and how many coded queries there are.""")
DECODERS: Registry = Registry("decoder", "decoders", """
    A :class:`Decoder` class built by :func:`create_coders` like an encoder; ``decode(outputs,
    available)`` takes the n workers' outputs ``(B, n, C)`` and a bool mask ``(B, n)`` of the
    slots that arrived and returns the k estimates ``(B, k, C)``, a pure function of the available
    outputs (the full contract is on :class:`Decoder`).""")
register_encoder = ENCODERS.register
register_decoder = DECODERS.register


def list_encoders() -> List[str]:
    return ENCODERS.names()


def list_decoders() -> List[str]:
    return DECODERS.names()


def _check_kr(k: int, r: int) -> None:
    if int(k) != k or k < 2:
        raise UsageError(f"k must be an integer >= 2, got {k}")
    if int(r) != r or r < 1:
        raise UsageError(f"r must be an integer >= 1, got {r}")


class Encoder(nn.Module):
    """Base class: ``forward(queries (B, k, C, H, W)) -> coded queries (B, num_coded, C, H, W)``.

    Class attributes a subclass may set: ``family`` (the code family in tables),
    ``default_systematic``, ``supports_non_systematic`` and ``max_r``.
    """

    family = "custom"
    default_systematic = True
    supports_non_systematic = False
    max_r: Optional[int] = None

    def __init__(self, k: int, r: int, input_shape: Sequence[int], systematic: Optional[bool] = None):
        super().__init__()
        _check_kr(k, r)
        self.k, self.r, self.input_shape = int(k), int(r), tuple(input_shape)
        self.systematic = self.default_systematic if systematic is None else bool(systematic)
        name = getattr(type(self), "registry_name", type(self).__name__)
        if not self.systematic and not self.supports_non_systematic:
            raise UsageError(f"encoder '{name}' is systematic only; drop --no-systematic or choose berrut")
        if self.max_r is not None and self.r > self.max_r:
            raise UsageError(f"encoder '{name}' supports r <= {self.max_r}, got r={self.r}")

    @property
    def num_coded(self) -> int:
        return self.r if self.systematic else self.k + self.r

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())


class Decoder(nn.Module):
    """Base class: ``decode(outputs (B, n, C), available (B, n)) -> estimates (B, k, C)``.

    The call contract, the one every caller (trainer, evaluator, Serve frontend) uses:

    * ``decode(outputs, available)`` takes exactly these two arguments. ``outputs`` holds the n
      worker outputs (values of unavailable slots are arbitrary and must not matter);
      ``available`` (bool) marks the slots that arrived. It returns the k estimates and is a pure
      function of the available outputs: it never drops an output it was given (a Byzantine
      decoder locates suspects in a separate step, ``drop_suspects(outputs, available) -> mask``,
      and the caller decodes with the returned mask).
    * ``decode_patterns(outputs (B, n, C), available (P, n)) -> (B, P, k, C)`` equals ``decode``
      under each pattern; override it only to be faster.

    Subclasses implement :meth:`decode` and :meth:`check_encoder`; linear codes also :meth:`target`.
    """

    family = "custom"

    def __init__(self, k: int, r: int, systematic: bool = True):
        super().__init__()
        _check_kr(k, r)
        self.k, self.r, self.systematic = int(k), int(r), bool(systematic)
        self.n = self.k + self.r

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    def check_encoder(self, encoder: Encoder) -> None:
        """Raise :class:`UsageError` when this decoder cannot read ``encoder``'s coded outputs."""

    def target(self, base_outputs: Tensor) -> Optional[Tensor]:
        """What each coded worker should return, ``(B, k, C) -> (B, num_coded, C)``; None if undefined."""
        return None

    def decode(self, outputs: Tensor, available: Tensor) -> Tensor:
        raise NotImplementedError

    def decode_patterns(self, outputs: Tensor, available: Tensor) -> Tensor:
        """Decode every group under every pattern: ``outputs (B, n, C)``, ``available (P, n)`` -> ``(B, P, k, C)``."""
        b, p = outputs.shape[0], available.shape[0]
        expanded = outputs.unsqueeze(1).expand(b, p, *outputs.shape[1:]).reshape(b * p, *outputs.shape[1:])
        masks = available.unsqueeze(0).expand(b, p, available.shape[1]).reshape(b * p, -1)
        return self.decode(expanded, masks).reshape(b, p, self.k, outputs.shape[-1])


class LinearDecoder(Decoder):
    """A decoder whose estimates are a linear map of the worker outputs for each erasure pattern.

    Subclasses give :meth:`decode_matrix` (``(k, n)`` for one availability row); decoding a batch
    is then one matrix product per distinct pattern, cached.
    """

    def decode_matrix(self, available: Sequence[bool]) -> Tensor:
        raise NotImplementedError

    def _matrix(self, available: Tensor) -> Tensor:
        key = tuple(bool(a) for a in available.tolist())
        cache = self.__dict__.setdefault("_decode_matrices", {})  # plain attribute: not module state
        if key not in cache:
            cache[key] = self.decode_matrix(key).to(torch.float64)
        return cache[key]

    def decode_patterns(self, outputs: Tensor, available: Tensor) -> Tensor:
        mats = torch.stack([self._matrix(row) for row in available]).to(outputs.device, outputs.dtype)  # (P, k, n)
        return torch.einsum("pkn,bnc->bpkc", mats, outputs)

    def decode(self, outputs: Tensor, available: Tensor) -> Tensor:
        available = available.bool()
        patterns, inverse = torch.unique(available, dim=0, return_inverse=True)
        mats = torch.stack([self._matrix(row) for row in patterns]).to(outputs.device, outputs.dtype)
        return torch.einsum("bkn,bnc->bkc", mats[inverse.to(outputs.device)], outputs)


# --------------------------------------------------------------------------- building a code


def create_encoder(spec: Spec, *, k: int, r: int, input_shape: Sequence[int], systematic: Optional[bool] = None) -> Encoder:
    return ENCODERS.create(spec, k=k, r=r, input_shape=tuple(input_shape), systematic=systematic)


def create_decoder(spec: Spec, *, k: int, r: int, systematic: bool = True, input_shape: Sequence[int] = (),
                   num_outputs: Optional[int] = None, byzantine: int = 0) -> Decoder:
    context: Dict[str, Any] = {"k": k, "r": r, "systematic": systematic, "input_shape": tuple(input_shape)}
    if num_outputs is not None:
        context["num_outputs"] = context["num_classes"] = num_outputs  # class-spec decoders may use either name
    if byzantine:
        context["byzantine"] = byzantine
    decoder = DECODERS.create(spec, **context)
    if byzantine and getattr(decoder, "byzantine", 0) != byzantine:
        raise UsageError(f"decoder '{spec_name(spec)}' cannot locate Byzantine workers; choose berrut or byzantine=0")
    return decoder


def create_coders(config, input_shape: Sequence[int], num_outputs: int):
    """The encoder and decoder a (resolved) :class:`~parity_ray.config.TrainConfig` asks for, checked together.

    (The code as a whole, encoder -> workers -> decoder, is ``pipeline.CodePipeline``; its shape
    alone, k, r and which workers are systematic, is ``actors.codes.CodeLayout``.)"""
    encoder = create_encoder(config.encoder, k=config.k, r=config.r, input_shape=input_shape, systematic=config.systematic)
    systematic = bool(getattr(encoder, "systematic", True))  # a class-spec encoder may not say: systematic
    decoder = create_decoder(config.decoder, k=config.k, r=config.r, systematic=systematic,
                             input_shape=input_shape, num_outputs=num_outputs, byzantine=config.byzantine)
    check = getattr(decoder, "check_encoder", None)
    if check is not None:
        check(encoder)
    return encoder, decoder


def check_slot_layout(encoder: Encoder, config, reads_slots: bool) -> None:
    """A parity model that reads the k queries as slots side by side (``slot-mlp``, ``reads_slots``)
    reads only an encoder that lays them out so (``projection``, ``packs_slots``); on any other coded
    query its slots mean nothing. Raises :class:`UsageError` naming the encoders that do."""
    if reads_slots and not getattr(encoder, "packs_slots", False):
        packers = [name for name in list_encoders() if getattr(ENCODERS.resolve(name)[0], "packs_slots", False)]
        raise UsageError(f"parity model '{spec_name(config.parity_model)}' reads the k queries as slots side by side, "
                         f"which encoder '{spec_name(config.encoder)}' does not lay out; choose encoder "
                         f"{' or '.join(repr(p) for p in packers)}, or another parity model")


def default_systematic(spec: Spec) -> bool:
    """Whether a code is systematic unless told otherwise (berrut: no, as in ApproxIFER)."""
    factory, _ = ENCODERS.resolve(spec)
    return bool(getattr(factory, "default_systematic", True))


def evaluates_with_base(spec: Spec) -> bool:
    """Whether an evaluate-only run (``epochs 0``) of this encoder's code that names no worker runs F
    itself on the coded queries (berrut: ApproxIFER's scheme needs no training)."""
    try:
        factory, _ = ENCODERS.resolve(spec)
    except UsageError:
        return False
    return bool(getattr(factory, "evaluates_with_base", False))


def code_family(encoder: Spec, decoder: Spec) -> str:
    """``learned`` if either side is learned, else the encoder's family; ``custom`` for unknown classes."""
    families = []
    for registry, spec in ((ENCODERS, encoder), (DECODERS, decoder)):
        try:
            factory, _ = registry.resolve(spec)
            families.append(getattr(factory, "family", "custom"))
        except UsageError:
            families.append("custom")
    return "learned" if "learned" in families else families[0]


def code_label(config) -> str:
    """A short name for a code as configured: ``berrut (non-systematic, F)``, ``addition (systematic, trained)``,
    ``addition (systematic, trained lenet5-wide)`` (a parity model not of F's architecture),
    ``berrut (non-systematic, F, byzantine 1)``. ``analysis.tables.code_label`` gives the same from a runs row."""
    enc, dec = spec_name(config.encoder).rsplit(".", 1)[-1], spec_name(config.decoder).rsplit(".", 1)[-1]
    name = enc if enc == dec or dec == "subtraction" else f"{enc}/{dec}"
    worker = "F" if is_base_worker(config.parity_model) else "trained"
    if worker == "trained" and config.parity_model is not None and spec_name(config.parity_model) != spec_name(config.model):
        worker += f" {spec_name(config.parity_model)}"  # a parity model of another architecture is another code
    byzantine = f", byzantine {config.byzantine}" if getattr(config, "byzantine", 0) else ""
    return f"{name} ({'systematic' if config.systematic else 'non-systematic'}, {worker}{byzantine})"


def is_base_worker(parity_model: Optional[Spec]) -> bool:
    """``parity_model="base"``: workers on coded queries run the deployed model F itself, frozen."""
    return isinstance(parity_model, str) and parity_model == "base"


# --------------------------------------------------------------------------- erasure patterns


def erasure_patterns(n: int, e: int) -> Tensor:
    """Every availability mask of n workers with exactly e unavailable: ``(C(n, e), n)`` bool."""
    rows = []
    for lost in itertools.combinations(range(n), e):
        row = [True] * n
        for i in lost:
            row[i] = False
        rows.append(row)
    return torch.tensor(rows, dtype=torch.bool).reshape(-1, n)


def pattern_count(n: int, e: int) -> int:
    """How many erasure patterns of exactly e unavailable workers among n there are: C(n, e)."""
    return math.comb(n, e)


def scored_patterns(n: int, e: int, limit: int, seed: int) -> Tensor:
    """The erasure patterns scored for e unavailable of n workers: every one while C(n, e) <= ``limit``,
    else a seeded uniform sample of ``limit`` distinct ones (lexicographic order, the same for every
    batch and epoch of a run). ``(P, n)`` bool.

    Why a sample: C(n, e) grows past ten million at k = 12, r = 14 (C(26, 13)), and an accuracy
    averaged over uniformly drawn patterns estimates the same mean as over all of them.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    total = pattern_count(n, e)
    if total <= limit:
        return erasure_patterns(n, e)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + n * 1_009 + e)
    chosen = set()
    while len(chosen) < limit:  # C(n, e) > limit, so this ends; rejections stay rare unless C(n, e) ~ limit
        chosen.add(tuple(sorted(torch.randperm(n, generator=generator)[:e].tolist())))
    rows = torch.ones(limit, n, dtype=torch.bool)
    for row, lost in enumerate(sorted(chosen)):
        rows[row, list(lost)] = False
    return rows


def rebuilt_slots(available: Tensor, k: int, systematic: bool) -> Tensor:
    """Which of the k outputs the decoder had to rebuild under each pattern: ``(..., n) -> (..., k)``.

    Systematic: the data workers that are unavailable; non-systematic: all k.
    """
    if systematic:
        return ~available[..., :k]
    return torch.ones(*available.shape[:-1], k, dtype=torch.bool, device=available.device)


def training_patterns(batch: int, k: int, r: int, systematic: bool, generator: torch.Generator) -> Tensor:
    """``(B, k, n)`` availability masks: the erasure patterns each training group is decoded under.

    A systematic code with r = 1 uses its k single data erasures (the published training signal:
    each output rebuilt once from the others and the parity). Otherwise each group draws k random
    patterns: e uniform in 1..r, then a uniform pattern of e workers; for a systematic code each
    takes at least one data worker, so every pattern leaves an output to rebuild (the loss is
    computed on rebuilt slots).
    """
    n = k + r
    if systematic and r == 1:
        return erasure_patterns(n, 1)[:k].unsqueeze(0).expand(batch, k, n)
    e = torch.randint(1, r + 1, (batch, k, 1), generator=generator)
    scores = torch.rand(batch, k, n, generator=generator)
    if systematic:
        first = torch.randint(0, k, (batch, k), generator=generator)
        scores.scatter_(2, first.unsqueeze(-1), -1.0)  # this data worker always ranks first to go
    ranks = scores.argsort(dim=2).argsort(dim=2)
    return ranks >= e  # the e lowest scores are unavailable


# Importing the families registers them.
from . import berrut, learned, linear  # noqa: E402,F401
from .berrut import BerrutDecoder, BerrutEncoder, berrut_points, berrut_weights  # noqa: E402
from .learned import ConvEncoder, MLPDecoder, MLPEncoder  # noqa: E402
from .linear import (  # noqa: E402
    AdditionEncoder,
    ConcatenationEncoder,
    SubtractionDecoder,
    code_matrix,
    concatenation_grid,
    valid_concatenation_ks,
)

__all__ = [
    "AdditionEncoder", "BerrutDecoder", "BerrutEncoder", "ConcatenationEncoder", "ConvEncoder", "DECODERS", "Decoder",
    "ENCODERS", "Encoder", "LinearDecoder", "MLPDecoder", "MLPEncoder", "SubtractionDecoder", "berrut_points",
    "berrut_weights", "code_family", "code_label", "code_matrix", "concatenation_grid", "create_coders", "create_decoder",
    "check_slot_layout", "create_encoder", "default_systematic", "erasure_patterns", "is_base_worker", "list_decoders", "list_encoders",
    "rebuilt_slots", "register_decoder", "register_encoder", "training_patterns", "valid_concatenation_ks",
]
