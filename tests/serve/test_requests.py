"""The HTTP door's request handling, in process (no Ray Serve): bodies are bounded before they are
parsed and no body of any kind is answered 500.

The handler under test is the real one: ``Frontend.__call__`` (the class under Serve's deployment
wrapper) with its ``RequestReader``, fed real Starlette requests built from an ASGI scope and a
``receive`` that hands the body over in chunks (possibly cut off, possibly lying about its length).
Only the answering of the parsed queries (the replicas) is replaced by a fixed record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from parity_ray.actors.frontend import (BadRequest, BodyTooLarge, Frontend, RequestReader,
                                        default_max_body_bytes)

SHAPE = (1, 8, 8)  # digits
MAX_INSTANCES = 4
LIMIT = default_max_body_bytes(SHAPE, MAX_INSTANCES)
SMALL_LIMIT = 2048


# --------------------------------------------------------------------------- harness


def make_frontend(max_body_bytes: Optional[int] = None, max_instances: int = MAX_INSTANCES):
    """The real Frontend class (Serve's wrapper taken off) with its real reader; the replicas left out."""
    frontend = object.__new__(Frontend.func_or_class)
    frontend.reader = RequestReader(SHAPE, max_instances, max_body_bytes, name="digits")
    frontend.mean = np.zeros((1, 1, 1), dtype=np.float32)
    frontend.inv_std = np.ones((1, 1, 1), dtype=np.float32)
    frontend.answered = []

    async def answer(query: np.ndarray) -> Dict[str, Any]:
        frontend.answered.append(query)
        return {"prediction": 3, "path": "direct"}

    frontend._answer = answer
    return frontend


class Receiver:
    """An ASGI ``receive``: the chunks, then the end of the body (or a disconnect, or more forever)."""

    def __init__(self, chunks: Sequence[bytes], end: str = "complete", forever: Optional[bytes] = None):
        self.messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
        if end == "complete":
            self.messages.append({"type": "http.request", "body": b"", "more_body": False})
        elif end == "disconnect":
            self.messages.append({"type": "http.disconnect"})
        self.forever = forever
        self.calls = 0

    async def __call__(self) -> Dict[str, Any]:
        self.calls += 1
        if self.calls <= len(self.messages):
            return self.messages[self.calls - 1]
        if self.forever is not None:
            return {"type": "http.request", "body": self.forever, "more_body": True}
        await asyncio.sleep(3600)  # a client that sends nothing more: the handler must not wait for it
        raise AssertionError("unreachable")


def make_request(receive: Receiver, content_length: Any = "auto", body_length: int = 0, method: str = "POST"):
    headers = [(b"content-type", b"application/json")]
    if content_length == "auto":
        content_length = str(body_length)
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode("latin-1")))
    scope = {"type": "http", "method": method, "path": "/", "raw_path": b"/", "root_path": "", "query_string": b"",
             "headers": headers, "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 8000),
             "client": ("127.0.0.1", 50000)}
    return Request(scope, receive)


def chunked(body: bytes, size: int) -> List[bytes]:
    return [body[i:i + size] for i in range(0, len(body), size)] or [b""]


def call(frontend, body: bytes = b"", chunk: int = 4096, content_length: Any = "auto", end: str = "complete",
         receive: Optional[Receiver] = None, method: str = "POST"):
    """``(status, JSON answer)`` of the real handler for one request (at most 5 s: nothing may hang)."""
    receive = receive or Receiver(chunked(body, chunk), end=end)
    request = make_request(receive, content_length, len(body), method)

    async def run():
        return await asyncio.wait_for(frontend(request), timeout=5)

    response = asyncio.run(run())
    answer = json.loads(response.body)
    if response.status_code != 200:
        assert isinstance(answer.get("error"), str) and answer["error"] and "\n" not in answer["error"], answer
    return response.status_code, answer


def body_of(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def pixels(n: int = 1, shape: Sequence[int] = SHAPE, value: float = 0.5) -> List[Any]:
    return [np.full(shape, value).tolist() for _ in range(n)]


# --------------------------------------------------------------------------- examples


def test_a_valid_body_streamed_in_small_chunks_is_answered():
    frontend = make_frontend()
    status, answer = call(frontend, body_of({"instances": pixels(3)}), chunk=7)
    assert status == 200, answer
    assert [entry["class"] for entry in answer["predictions"]] == [3, 3, 3]
    assert len(frontend.answered) == 3 and frontend.answered[0].shape == SHAPE
    assert frontend.answered[0].dtype == np.float32


def test_the_default_limit_takes_max_instances_pretty_printed_full_precision_inputs():
    shape = (1, 28, 28)
    reader = RequestReader(shape, 64)
    assert reader.max_body_bytes == default_max_body_bytes(shape, 64) < 2_500_000
    values = np.random.default_rng(0).random((64,) + shape) * 1e-3  # long reprs such as 0.00012345678901234567
    body = json.dumps({"instances": values.tolist()}, indent=2).encode()
    assert len(body) <= reader.max_body_bytes
    assert len(reader.parse(body)) == 64


def test_a_declared_length_past_the_limit_is_413_with_nothing_read():
    frontend = make_frontend()
    receive = Receiver([b"{"], end="more", forever=b" " * 65536)
    status, answer = call(frontend, receive=receive, content_length=200_000_000)
    assert status == 413 and str(LIMIT) in answer["error"], answer
    assert receive.calls == 0


def test_a_streamed_length_past_the_limit_is_413_without_reading_the_rest():
    frontend = make_frontend()
    receive = Receiver([b'{"instances": ['], end="more", forever=b" " * 1024)  # no content-length, and no end
    status, answer = call(frontend, receive=receive, content_length=None)
    assert status == 413, answer
    assert receive.calls <= LIMIT // 1024 + 2


def test_a_declared_length_smaller_than_the_stream_does_not_lift_the_limit():
    frontend = make_frontend(max_body_bytes=SMALL_LIMIT)
    body = body_of({"instances": pixels(1)}) + b" " * SMALL_LIMIT
    status, answer = call(frontend, body, content_length=10)
    assert status == 413, answer


@pytest.mark.parametrize("header", ["abc", "-1", "1e3", "12, 13", "\u00b2"])
def test_a_malformed_content_length_is_400(header):
    status, answer = call(make_frontend(), body_of({"instances": pixels(1)}), content_length=header)
    assert status == 400 and "content-length" in answer["error"], answer


@pytest.mark.parametrize("body, fragment", [
    (b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nests 5001 levels"),
    (b"[" * 50_000, "nests 50000 levels"),
    (b'{"a": "' + b"]" * 3000 + b'", "instances": ' + b"[" * 3000 + b"]" * 3000 + b"}", "deep"),  # json's own limit or the rank check, by the interpreter's recursion limit
    (b'{"a": "' + b"]" * 990 + b'", "instances": ' + b"[" * 990 + b"]" * 990 + b"}", "400"),  # hidden by "]"s
    (b'{"a": "' + b"]" * 9 + b'", "instances": [[[[[[0.5]]]]]]}', "nested deeper than the input's rank"),
    (body_of({"instances": [[[[[0.5] * 8] * 8]]]}), "nests 6 levels"),  # one deeper than the input's rank
    (body_of({"instances": [[[0.5] * 8] * 8], "extra": {"a": {"b": {"c": [[]]}}}}), "nests 6 levels"),
    (body_of({"instances": pixels(1, value=True)}), "boolean"),
    (body_of({"instances": [[[[0.5] * 7 + [False]] + [[0.5] * 8] * 7]]}), "boolean"),  # one among numbers
    (body_of({"instances": [[[[0.5] * 7 + [None]] + [[0.5] * 8] * 7]]}), "holds null"),
    (body_of({"instances": [[[["0.5"] * 8] * 8]]}), "holds a string"),
    (body_of({"instances": [[[[{"v": 0.5}] * 8] * 8]]}), "nests 6 levels"),  # an object for a pixel
    (body_of({"instances": [[[{"v": 0.5}] * 8]]}), "holds an object"),  # an object for a row
    (body_of({"instances": [[[[0.5] * 8, [0.5] * 3]]]}), "is not a numeric array of shape 1x8x8"),
    (body_of({"instances": [[[[0.5] * 8] * 8]] * 5}), "5 instances in one request; at most 4"),
    (body_of({"instances": [[[[2.0] * 8] * 8]]}), "values outside [0, 1]"),
    (body_of({"instances": [[[[10 ** 400] * 8] * 8]]}), "values outside [0, 1]"),
    (b'{"instances": [[[' + b",".join([b"[" + b",".join([b"1e999"] * 8) + b"]"] * 8) + b"]]]}", "values outside [0, 1]"),
    (b'{"instances": [[[' + b",".join([b"[" + b",".join([b"NaN"] * 8) + b"]"] * 8) + b"]]]}", "values outside [0, 1]"),
    (b'{"instances": [[[[' + b"9" * 5000 + b"]]]]}", "not valid JSON"),
    (json.dumps({"instances": pixels(1)}).encode("utf-16"), "not UTF-8"),
    ('{"instances": "é"}'.encode("latin-1"), "not UTF-8"),
    (b'{"instances": [[[[0.5, \xff]]]]}', "not UTF-8"),
    (body_of({"instances": pixels(1)})[:-9], "not valid JSON"),
    (b"", "not valid JSON"),
    (body_of({"instances": {"a": 1}}), "non-empty list"),
])
def test_bad_bodies_are_400_with_one_line_naming_the_problem(body, fragment):
    status, answer = call(make_frontend(), body)
    assert status == 400, answer
    assert fragment == "400" or fragment in answer["error"], answer


def test_a_client_gone_before_its_body_ended_is_400():
    body = body_of({"instances": pixels(1)})
    status, answer = call(make_frontend(), body[:50], content_length=len(body), end="disconnect")
    assert status == 400 and "went away" in answer["error"], answer


def test_other_methods_are_405():
    status, answer = call(make_frontend(), method="GET")
    assert status == 405


def test_the_reader_raises_its_own_errors():
    reader = RequestReader(SHAPE, MAX_INSTANCES, SMALL_LIMIT)
    with pytest.raises(BodyTooLarge):
        reader.parse(b" " * (SMALL_LIMIT + 1))
    with pytest.raises(BadRequest, match="boolean"):
        reader.parse(body_of({"instances": pixels(1, value=True)}))


def test_max_body_bytes_is_a_flag_that_states_its_default():
    from parity_ray.actors.options import AppOptions
    from parity_ray.cli.options import add_option_flags

    parser = argparse.ArgumentParser()
    add_option_flags(parser, AppOptions)
    text = " ".join(parser.format_help().split())
    assert "--max-body-bytes" in text and "--max-instances inputs of the run's shape" in text
    assert parser.parse_args(["--max-body-bytes", "1000"]).max_body_bytes == 1000
    assert AppOptions(max_body_bytes=1000).frontend_options()["max_body_bytes"] == 1000


@pytest.mark.parametrize("value", [0, -5, 1.5, True])
def test_a_max_body_bytes_that_is_not_a_positive_integer_is_refused(value):
    from parity_ray import UsageError
    from parity_ray.actors.app import check_options
    from parity_ray.actors.options import AppOptions

    with pytest.raises(UsageError, match="--max-body-bytes"):
        check_options(AppOptions(max_body_bytes=value))


# --------------------------------------------------------------------------- properties

LEAVES = st.one_of(
    st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.integers(0, 1),  # mostly valid pixels
    st.booleans(), st.none(), st.text(max_size=3), st.floats(), st.integers(-2 ** 70, 2 ** 70),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1), st.just([]), st.just([0.5]),
)


def nest(flat: List[Any], shape: Sequence[int]) -> Any:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat[:shape[0]]
    step = math.prod(shape[1:])
    return [nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


@st.composite
def instances(draw):
    shape = draw(st.sampled_from([SHAPE] * 4 + [(8, 8), (1, 8, 7), (1, 8, 8, 1), (1, 1, 8, 8), (), (2, 8, 8)]))
    size = math.prod(shape)
    base = draw(st.sampled_from([0.0, 0.25, 1.0]))
    flat = [base] * size
    for index in draw(st.lists(st.integers(0, size - 1), max_size=3)):  # a few leaves of any kind
        flat[index] = draw(LEAVES)
    return nest(flat, shape)


def is_valid(instance: Any) -> bool:
    def ok(value, shape):
        if not shape:
            return type(value) in (int, float) and math.isfinite(value) and 0 <= value <= 1
        return isinstance(value, list) and len(value) == shape[0] and all(ok(v, shape[1:]) for v in value)
    return ok(instance, SHAPE)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=20,
)


def _one_pixel(value: float) -> list:
    return [[[[value] + [0.0] * 7] + [[0.0] * 8] * 7]]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(instances(), min_size=0, max_size=MAX_INSTANCES + 1), chunk=st.integers(1, 5000),
       indent=st.sampled_from([None, None, 1]))
# found by Hypothesis in CI: values that float32 rounds into [0, 1] (-> -0.0, -> 1.0) are still outside it
@example(batch=_one_pixel(-2.2250738585e-313), chunk=1, indent=None)
@example(batch=_one_pixel(1.0000000001), chunk=1, indent=None)
def test_well_formed_bodies_are_200_exactly_when_every_instance_is_valid(batch, chunk, indent):
    body = json.dumps({"instances": batch}, indent=indent).encode()
    status, answer = call(make_frontend(), body, chunk=chunk)
    valid = 1 <= len(batch) <= MAX_INSTANCES and all(is_valid(instance) for instance in batch)
    assert status == (200 if valid else 400), (status, answer)
    if valid:
        assert len(answer["predictions"]) == len(batch)


@st.composite
def bodies(draw):
    kind = draw(st.sampled_from(["value", "instances-value", "deep", "batch", "bytes"]))
    if kind == "value":
        text = json.dumps(draw(JSON_VALUES))
    elif kind == "instances-value":
        text = json.dumps({"instances": draw(JSON_VALUES)})
    elif kind == "deep":
        n = draw(st.integers(1, 6000))
        inner = "[" * n + draw(st.sampled_from(["0.5", "true", "", '"x"'])) + "]" * draw(st.sampled_from([n, 0, n // 2]))
        text = draw(st.sampled_from(['{"instances": %s}', "%s", '{"instances": [%s]}'])) % inner
        if draw(st.booleans()):  # brackets in a string: no nesting, but they may hide some from a count
            text = '{"s": "%s", "instances": %s}' % (draw(st.sampled_from(["[", "]"])) * draw(st.integers(1, 3000)), inner)
    elif kind == "batch":
        text = json.dumps({"instances": draw(st.lists(instances(), max_size=3))})
    else:
        return draw(st.binary(max_size=300))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "utf-32", "latin-1", "utf-8-sig"]))
    body = text.encode(encoding, errors="replace")
    pad = draw(st.sampled_from([0, 0, 0, 100, SMALL_LIMIT]))
    if pad:
        body = draw(st.sampled_from([body + b" " * pad, b" " * pad + body]))
    if draw(st.booleans()):
        body = body[:draw(st.integers(0, len(body)))]  # truncated
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=4)) + body[at:]  # stray bytes
    return body


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies(), chunk=st.integers(1, 3000), small=st.booleans(),
       declared=st.sampled_from(["auto", "auto", None, "short", "long", "huge", "junk"]),
       end=st.sampled_from(["complete", "complete", "complete", "disconnect"]))
def test_no_body_of_any_kind_is_answered_other_than_200_400_or_413(body, chunk, small, declared, end):
    limit = SMALL_LIMIT if small else None
    frontend = make_frontend(max_body_bytes=limit)
    header = {"auto": "auto", None: None, "short": str(len(body) // 2), "long": str(len(body) + 10),
              "huge": str(10 ** 12), "junk": "12abc"}[declared]
    status, answer = call(frontend, body, chunk=chunk, content_length=header, end=end)
    assert status in (200, 400, 413), (status, answer)
    limit = frontend.reader.max_body_bytes
    if declared != "junk" and (len(body) > limit or declared == "huge"):
        assert status == 413, (status, answer)
    if status == 200:
        assert answer["predictions"] and all(entry["class"] == 3 for entry in answer["predictions"])


def test_each_instance_carries_its_own_latency():
    """A batch whose second instance is answered 0.3 s after the first: each latency_ms is its own."""
    frontend = make_frontend()
    delays = iter([0.0, 0.3])

    async def answer(query: np.ndarray) -> Dict[str, Any]:
        await asyncio.sleep(next(delays))
        return {"prediction": 3, "path": "direct"}

    frontend._answer = answer
    status, answer = call(frontend, body_of({"instances": pixels(2)}))
    assert status == 200
    fast, slow = (p["latency_ms"] for p in answer["predictions"])
    assert fast < 150 and slow >= 300
