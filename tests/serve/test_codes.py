"""The coder adapter (actors/codes.py): every kind of code through one encode/decode pair, no Ray."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from parity_ray.actors.codes import GroupCode, code_layout
from tests.serve.runs import make_run, reference_coders, spec

# name -> (encoder, decoder, k, r, make_run options): the registered coders, systematic and not,
# linear and learned, r > 1, and a user's class-spec code.
CODES = {
    "addition": ("addition", "subtraction", 2, 1, {}),
    "addition-r2": ("addition", "subtraction", 3, 2, {}),
    "concatenation": ("concatenation", "subtraction", 2, 1, {}),
    "berrut": ("berrut", "berrut", 3, 1, {"parity_model": "base"}),
    "berrut-r2": ("berrut", "berrut", 3, 2, {"parity_model": "base"}),
    "berrut-systematic": ("berrut", "berrut", 3, 2, {"systematic": True}),
    "berrut-byzantine": ("berrut", "berrut", 3, 4, {"parity_model": "base", "byzantine": 1}),
    "learned": ("mlp", "mlp", 2, 1, {}),
    "learned-conv": ("conv", "mlp", 2, 2, {"parity_model": "base"}),
    "projection": ("projection", "subtraction", 2, 1, {"parity_model": "slot-mlp"}),
    "projection-corrected": ("projection", "corrected-subtraction", 3, 2, {"parity_model": "slot-mlp"}),
    "class-spec-r2": (spec("LinearSystematicEncoder"), spec("LinearSystematicDecoder"), 2, 2, {}),
}
NON_SYSTEMATIC = {"berrut", "berrut-r2", "berrut-byzantine"}
NONLINEAR_ENCODERS = {"concatenation", "learned", "learned-conv", "projection", "projection-corrected"}
NONLINEAR_DECODERS = {"learned", "learned-conv", "projection-corrected"}


def test_every_registered_coder_is_covered():
    from parity_ray.coders import list_decoders, list_encoders

    named = {side for encoder, decoder, *_ in CODES.values() for side in (encoder, decoder) if isinstance(side, str)}
    assert set(list_encoders()) | set(list_decoders()) <= named


@pytest.fixture(params=sorted(CODES))
def code(request, tmp_path):
    encoder, decoder, k, r, options = CODES[request.param]
    return request.param, make_run(tmp_path / request.param, encoder, decoder, k=k, r=r, **options)


def _patterns(n, k):
    for bits in range(1 << n):
        available = np.array([(bits >> s) & 1 for s in range(n)], dtype=bool)
        if available.sum() >= k:
            yield available


def test_layout(code):
    name, run = code
    layout = code_layout(run)
    non_systematic = name in NON_SYSTEMATIC
    assert layout.systematic == (not non_systematic)
    assert layout.num_coded == (run.k + run.r if non_systematic else run.r)
    assert [layout.coded_slot(j) for j in range(layout.num_coded)] == (
        list(range(layout.n)) if non_systematic else list(range(run.k, run.k + run.r)))


def test_encode_and_decode_match_the_coders_own_code(code):
    """The adapter's fast (numpy) path gives what the coder's own torch code gives, for every pattern."""
    name, run = code
    fast, slow = GroupCode(run), GroupCode(run, fast=False)
    fast.warm((1, 8, 8), 10)
    enc, dec = reference_coders(run)
    rng = np.random.default_rng(1)
    queries = rng.random((run.k, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        expected = enc(torch.from_numpy(queries)[None])[0].numpy()
    assert np.allclose(fast.encode_group(queries), expected, atol=1e-5)
    assert np.allclose(slow.encode_group(queries), expected, atol=1e-5)
    outputs = rng.standard_normal((run.k + run.r, 10)).astype(np.float32)
    for available in _patterns(run.k + run.r, run.k):
        a, b = fast.decode_group(outputs, available), slow.decode_group(outputs, available)
        assert a.shape == (run.k, 10)
        assert np.allclose(a, b, atol=1e-4), (name, available)
    # the fast path is taken exactly for the linear coders
    assert (fast._encode_matrix is not False) == (name not in NONLINEAR_ENCODERS)
    assert fast._decoder_linear == (name not in NONLINEAR_DECODERS)


def test_systematic_codes_rebuild_a_missing_output_exactly(tmp_path):
    """Linear codes, r = 2: any two of the four outputs missing, the k outputs come back."""
    for encoder, decoder in [("addition", "subtraction"),
                             (spec("LinearSystematicEncoder"), spec("LinearSystematicDecoder"))]:
        run = make_run(tmp_path / str(hash(str(encoder))), encoder, decoder, k=2, r=2)
        code = GroupCode(run)
        rng = np.random.default_rng(0)
        truth = rng.standard_normal((2, 10)).astype(np.float32)
        generator = np.array([[1, 1], [1, 2]], dtype=np.float32)
        outputs = np.concatenate([truth, generator @ truth])
        for available in _patterns(4, 2):
            assert np.allclose(code.decode_group(outputs, available), truth, atol=1e-4)


def test_learned_coders_load_their_weights(tmp_path):
    run = make_run(tmp_path / "learned", "mlp", "mlp", seed=3)
    torch.manual_seed(99)  # a different initialisation: only the checkpoint can make them agree
    code = GroupCode(run)
    enc, dec = reference_coders(run)
    queries = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        assert np.allclose(code.encode_group(queries), enc(torch.from_numpy(queries)[None])[0].numpy(), atol=1e-6)


def test_every_codes_coded_workers_load_as_served(code):
    """Each coded worker is rebuilt from the run alone, as a Serve replica builds it (a parity model that
    reads k slots is built for the run's k), and answers a coded query."""
    from parity_ray.serving import load_model

    name, run = code
    coded = torch.randn(2, 1, 8, 8)
    num_coded = code_layout(run).num_coded
    for j in range(num_coded):
        assert load_model(run, "parity", j)(coded).shape == (2, 10), (name, j)
