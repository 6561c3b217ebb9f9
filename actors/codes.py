"""The one place the Serve layer touches a run's encoder and decoder.

Written for the one coder contract (``parity_ray.coders.Encoder`` / ``Decoder``):

* an encoder has ``systematic`` and ``num_coded`` (``r`` when systematic, ``k + r`` when not) and maps
  queries ``(B, k, C, H, W)`` to coded queries ``(B, num_coded, C, H, W)``;
* a decoder's ``decode(outputs (B, n, C), available (B, n) bool)`` returns ``(B, k, C)``, with
  ``n = k + r`` worker slots: for a systematic code slots ``0..k-1`` hold ``F(X_i)`` of the k data
  queries and slots ``k..n-1`` the r coded workers' outputs; for a non-systematic code all n slots
  are coded workers' outputs. Nothing here inspects a signature: every decoder is called the same way.

Learned coders get their weights from the run's ``best.pt`` (``encoder_state`` / ``decoder_state``).

Speed: the frontend encodes once per group and decodes once per straggling group, on a CPU it shares
with the replicas. An encoder that mixes the k queries pixel by pixel with fixed weights (addition,
the Berrut codes) and a decoder that mixes the n outputs class by class with fixed weights per
availability pattern (subtraction, Berrut) are each a small matrix; the adapter finds those
matrices by probing the coder once (and checks them against the coder on random inputs, so a
nonlinear or learned coder is never approximated) and then encodes and decodes with one small
numpy product. Everything else goes through the coder's own torch code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import torch

PROBE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class CodeLayout:
    """What the app builder and the modes need to know about a run's code, before any replica starts."""

    k: int
    r: int
    systematic: bool
    num_coded: int  # coded queries per group, one coded worker each

    @property
    def n(self) -> int:
        """Worker outputs per group (decoder slots)."""
        return self.k + self.r

    def coded_slot(self, j: int) -> int:
        """Decoder slot of coded worker ``j``."""
        return self.k + j if self.systematic else j


def _run_dict(run) -> Dict[str, Any]:
    return run if isinstance(run, Mapping) else run.as_dict()


def _build_coders(run, load_weights: bool = True):
    from parity_ray.coders import create_coders
    from parity_ray.config import TrainConfig
    from parity_ray.data import get_dataset_spec

    run = _run_dict(run)
    config = TrainConfig.from_dict(run["config"]).resolved()
    spec = get_dataset_spec(config.dataset)
    # The same builder as the trainer's: systematic or not, Byzantine count, learned decoder sizes.
    encoder, decoder = create_coders(config, spec.input_shape, spec.num_classes)
    if load_weights:
        state = _coder_states(run)
        for name, module in (("encoder_state", encoder), ("decoder_state", decoder)):
            if state.get(name):
                module.load_state_dict(state[name])
    return encoder.eval(), decoder.eval()


def _coder_states(run: Dict[str, Any]) -> Dict[str, Any]:
    """``encoder_state`` / ``decoder_state`` of the run's best.pt (empty when the run has none)."""
    from parity_ray import storage

    uri = run.get("parity_checkpoint_uri")
    if not uri or not storage.exists(uri):
        return {}
    from parity_ray.serving import read_torch_file

    checkpoint = read_torch_file(uri)
    return {key: checkpoint.get(key) for key in ("encoder_state", "decoder_state")}


def _layout_of(encoder, k: int, r: int) -> CodeLayout:
    if hasattr(encoder, "num_coded"):
        systematic = bool(getattr(encoder, "systematic", True))
        return CodeLayout(k, r, systematic, int(encoder.num_coded))
    return CodeLayout(k, r, True, r)  # the earlier interface: r parity queries, always systematic


def code_layout(run) -> CodeLayout:
    """The run's code layout (built from its config; no weights read)."""
    config = _run_dict(run)["config"]
    encoder, _ = _build_coders(run, load_weights=False)
    return _layout_of(encoder, int(config["k"]), int(config["r"]))


class GroupCode:
    """A run's encoder and decoder for one group at a time, as numpy in and out."""

    def __init__(self, run, fast: bool = True):
        config = _run_dict(run)["config"]
        self.k, self.r = int(config["k"]), int(config["r"])
        self.encoder, self.decoder = _build_coders(run)
        self.layout = _layout_of(self.encoder, self.k, self.r)
        self.systematic, self.num_coded, self.n = self.layout.systematic, self.layout.num_coded, self.layout.n
        self.fast = fast
        self._encode_matrix: Optional[np.ndarray] = None
        self._decode_matrices: Dict[bytes, Optional[np.ndarray]] = {}
        self._decoder_linear = True  # until a probe shows otherwise
        self._rng = np.random.default_rng(0)

    def warm(self, input_shape, classes: int, max_workers: int = 10) -> None:
        """Probe the encoder and every decodable availability pattern now, off the serving path."""
        queries = np.zeros((self.k,) + tuple(input_shape), dtype=np.float32)
        self.encode_group(queries)
        self._torch_encode(queries)
        if not (self.fast and self.n <= max_workers):
            return
        outputs = np.zeros((self.n, classes), dtype=np.float32)
        for bits in range(1 << self.n):
            available = np.array([(bits >> slot) & 1 for slot in range(self.n)], dtype=bool)
            if self.decodable(available):
                self.decode_group(outputs, available)
            if not self._decoder_linear:
                break

    # ------------------------------------------------------------------ decodability
    def decodable(self, available: np.ndarray) -> bool:
        """Whether the group's k answers can be rebuilt from the outputs marked available (n,)."""
        return int(np.count_nonzero(available)) >= self.k

    # ------------------------------------------------------------------ encode
    def encode_group(self, queries: np.ndarray) -> np.ndarray:
        """``(k, C, H, W)`` float32 -> ``(num_coded, C, H, W)`` coded queries."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.fast and self._encode_matrix is None:
            self._encode_matrix = self._probe_encoder(queries.shape[1:])
        if self.fast and self._encode_matrix is not False:
            coded = self._encode_matrix @ queries.reshape(self.k, -1)
            return coded.reshape((self.num_coded,) + queries.shape[1:])
        return self._torch_encode(queries)

    def _torch_encode(self, queries: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            coded = self.encoder(torch.from_numpy(queries)[None])[0]
        return coded.numpy().astype(np.float32, copy=False)

    def _probe_encoder(self, shape) -> Any:
        """The (num_coded, k) matrix of a pixel-wise linear encoder, or False for any other encoder."""
        basis = np.zeros((self.k, self.k) + tuple(shape), dtype=np.float32)
        for i in range(self.k):
            basis[i, i] = 1.0
        with torch.no_grad():
            columns = self.encoder(torch.from_numpy(basis)).numpy()  # (k probes, num_coded, C, H, W)
        flat = columns.reshape(self.k, self.num_coded, -1)
        matrix = flat[:, :, 0].T.copy()  # (num_coded, k)
        if not np.allclose(flat, matrix.T[:, :, None], atol=PROBE_TOLERANCE):
            return False  # weights differ by pixel (e.g. tiling): not a pixel-wise mix
        sample = self._rng.random((self.k,) + tuple(shape), dtype=np.float32)
        expected = self._torch_encode(sample)
        if not np.allclose(matrix @ sample.reshape(self.k, -1), expected.reshape(self.num_coded, -1),
                           atol=PROBE_TOLERANCE, rtol=PROBE_TOLERANCE):
            return False
        return matrix.astype(np.float32)

    # ------------------------------------------------------------------ decode
    def decode_group(self, outputs: np.ndarray, available: np.ndarray) -> np.ndarray:
        """Rebuild the group's k outputs ``(k, C)`` from worker outputs ``(n, C)``.

        ``available`` (n,) marks the slots that arrived (the others' values are ignored). The caller
        checks :meth:`decodable` first.
        """
        outputs = np.asarray(outputs, dtype=np.float32)
        available = np.asarray(available, dtype=bool)
        if self.fast and self._decoder_linear:
            key = available.tobytes()
            matrix = self._decode_matrices.get(key)
            if key not in self._decode_matrices:
                matrix = self._decode_matrices[key] = self._probe_decoder(available, outputs.shape[1])
            if matrix is not None:
                return matrix @ np.where(available[:, None], outputs, 0.0).astype(np.float32, copy=False)
        return self._torch_decode(outputs[None], available[None])[0]

    def _torch_decode(self, outputs: np.ndarray, available: np.ndarray) -> np.ndarray:
        """Batched ``(B, n, C), (B, n) -> (B, k, C)`` through the decoder's own code."""
        outputs = np.where(available[:, :, None], outputs, 0.0).astype(np.float32)
        with torch.no_grad():
            out = torch.from_numpy(outputs)
            mask = torch.from_numpy(available)
            decoded = self.decoder.decode(out, mask)
        return decoded.numpy().astype(np.float32, copy=False)

    def _probe_decoder(self, available: np.ndarray, classes: int) -> Optional[np.ndarray]:
        """The (k, n) matrix the decoder applies class by class for this availability pattern, or None."""
        slots = np.flatnonzero(available)
        probes = np.zeros((len(slots), self.n, classes), dtype=np.float32)
        for row, slot in enumerate(slots):
            probes[row, slot] = 1.0
        masks = np.repeat(available[None], len(slots), axis=0)
        columns = self._torch_decode(probes, masks)  # (probes, k, C)
        matrix = np.zeros((self.k, self.n), dtype=np.float32)
        matrix[:, slots] = columns[:, :, 0].T
        sample = np.where(available[:, None], self._rng.standard_normal((self.n, classes)).astype(np.float32), 0.0)
        fits = np.allclose(columns, columns[:, :, :1], atol=PROBE_TOLERANCE) and np.allclose(
            matrix @ sample, self._torch_decode(sample[None], available[None])[0], atol=PROBE_TOLERANCE, rtol=PROBE_TOLERANCE)
        if not fits:
            self._decoder_linear = False  # a learned (nonlinear) decoder: always its own code
            return None
        return matrix


__all__ = ["CodeLayout", "GroupCode", "code_layout"]
