"""Real HTTP clients against the running app on loopback.

Many concurrent requests with a slow replica and with a crashing one: every request is answered
(200) or failed with a reason (503), none is lost or stuck; bad requests get 400 with one line;
the same image gets the same class through HTTP as through ``parity-ray simulate``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from parity_ray.actors.app import AppOptions, build_app
from parity_ray.actors.frontend import default_max_body_bytes
from parity_ray.actors.simulation import SimulationOptions, run_simulation
from parity_ray import results
from parity_ray.data import load_data
from parity_ray.serving import resolve_run
from tests.conftest import experiment_copy
from tests.serve.http_client import free_port, instances, post, wait_until_serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(trained_experiment, local_ray):
    """Serve on a free loopback port; apps are added under their own route prefixes."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="module")
def run(trained_experiment):
    return resolve_run(trained_experiment, "best")


@pytest.fixture(scope="module")
def pixels(run):
    data = load_data("digits", val_size=run.config["val_size"], split_seed=run.config["seed"], input_norm="none")
    return data.test_x.numpy(), data.test_y.numpy()


@contextlib.contextmanager
def _app(server, run, name, **options):
    """An app at ``/<name>`` for the duration of a test (2 CPUs hold one app's replicas at a time)."""
    from ray import serve

    # One frontend unless asked (CI time on 2 CPUs); two frontends under load: tests/serve/test_faults.py.
    serve.run(build_app(run, AppOptions(**{"frontend_replicas": 1, **options})), name=name, route_prefix=f"/{name}")
    try:
        yield f"{server}/{name}"
    finally:
        serve.delete(name)


def _hammer(url, images, per_request=1, workers=24, with_headers=False):
    bodies = [instances(images[i:i + per_request]) for i in range(0, len(images), per_request)]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda body: post(url, body, timeout=60, with_headers=with_headers), bodies)), bodies


def test_a_request_is_answered_in_the_kserve_v1_shape(server, run, pixels):
    with _app(server, run, "shape", mode="coded") as url:
        status, body = post(url, instances(pixels[0][:3]))
    assert status == 200, body
    assert len(body["predictions"]) == 3
    for entry in body["predictions"]:
        assert set(entry) == {"class", "path", "latency_ms"}
        assert isinstance(entry["class"], int) and 0 <= entry["class"] < 10
        assert entry["path"] in ("direct", "decoded") and entry["latency_ms"] > 0


BAD_REQUESTS = [
    (b"{not json", "body is not valid JSON"),
    ({"inputs": []}, "'instances' list"),
    ([1, 2], "'instances' list"),
    ({"instances": []}, "non-empty list"),
    ({"instances": [[[0.5] * 8] * 8]}, "instance 0 has shape 8x8; expected 1x8x8"),
    ({"instances": [[[[0.5] * 8] * 7]]}, "instance 0 has shape 1x7x8; expected 1x8x8"),
    ({"instances": [[[[0.5] * 8, [0.5] * 3]]]}, "instance 0 is not a numeric array of shape 1x8x8"),
    ({"instances": [[[["a"] * 8] * 8]]}, "instance 0 is not a numeric array"),
    ({"instances": [[[[2.0] * 8] * 8]]}, "values outside [0, 1]"),
    ({"instances": [[[[0.1] * 8] * 8]] * 65}, "65 instances in one request; at most 64"),
]


def _raw_post(url, chunks, content_length=None, timeout=30.0):
    """``(status, JSON answer)`` of a POST whose body is ``chunks``, sent as they come (with
    ``content_length`` declared, else in chunked transfer encoding), read back however early the
    server answers: a bounded read answers before the client has sent what it declared."""
    parts = urllib.parse.urlsplit(url)
    head = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
            "Connection: close",
            f"Content-Length: {content_length}" if content_length is not None else "Transfer-Encoding: chunked"]
    data = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            for chunk in chunks:
                sock.sendall(chunk if content_length is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking the rest
        while True:  # until the answer's head and its content-length of body are in
            header, _, body = data.partition(b"\r\n\r\n")
            lengths = [line.split(b":", 1)[1] for line in header.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            if lengths and len(body) >= int(lengths[0]):
                break
            try:
                got = sock.recv(65536)
            except ConnectionResetError:
                got = b""
            if not got:
                break
            data += got
    header, _, body = data.partition(b"\r\n\r\n")
    return int(header.split()[1]), json.loads(body)


def _check_bounded_bodies(url, pixels):
    """413 for a body past --max-body-bytes (declared: answered with next to nothing sent; streamed);
    400 for 5,000-deep nesting and for booleans; all with the one-line {"error": ...}."""
    limit = default_max_body_bytes((1, 8, 8), 64)  # the default for 64 digits instances
    status, answer = _raw_post(url, [b'{"instances": [' + b" " * 65536], content_length=200_000_000)
    assert status == 413 and str(limit) in answer["error"] and "\n" not in answer["error"], (status, answer)
    status, answer = _raw_post(url, [b'{"instances": ['] + [b" " * 65536] * (limit // 65536 + 2))
    assert status == 413 and str(limit) in answer["error"], (status, answer)
    status, answer = post(url, b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}", raw=True)
    assert status == 400 and "nests 5001 levels" in answer["error"] and "\n" not in answer["error"], (status, answer)
    status, answer = post(url, {"instances": [(pixels[0][0] > 0.5).tolist()]})
    assert status == 400 and "boolean" in answer["error"], (status, answer)


def test_bad_requests_get_400_with_one_line(server, run, pixels):
    with _app(server, run, "bad", mode="coded") as url:
        for body, fragment in BAD_REQUESTS:
            status, answer = post(url, body, raw=isinstance(body, bytes))
            assert status == 400, (body, answer)
            assert fragment in answer["error"] and "\n" not in answer["error"], answer
        _check_bounded_bodies(url, pixels)
        # and the app goes on answering (nothing stuck behind the bad requests)
        status, answer = post(url, instances(pixels[0][:1]))
        assert status == 200, answer


@pytest.mark.parametrize("mode", ["coded", "coded-hedged", "replication"])
def test_concurrent_clients_with_a_slow_replica_lose_nothing(server, run, pixels, mode):
    images, labels = pixels[0][:240], pixels[1][:240]
    with _app(server, run, f"slow-{mode}", mode=mode, deadline_ms=40, timeout_s=20,
              straggler="slow:replica=0,p=0.3,delay_ms=150") as url:
        answers, bodies = _hammer(url, images, per_request=2)
    assert len(answers) == len(bodies) == 120
    statuses = [status for status, _ in answers]
    assert statuses.count(200) == 120, [a for a in answers if a[0] != 200][:3]
    predictions = [entry for _status, body in answers for entry in body["predictions"]]
    assert len(predictions) == 240
    paths = {entry["path"] for entry in predictions}
    assert paths <= {"direct", "decoded"}
    if mode.startswith("coded"):
        assert "decoded" in paths  # the slow replica's queries were decoded
    accuracy = np.mean([entry["class"] == label for entry, label in zip(predictions, labels)])
    assert accuracy > 0.7


def test_concurrent_clients_with_a_crashing_replica_get_answers_or_reasons(server, run, pixels):
    """Replica 1 dies after 40 requests (Serve restarts it): every request comes back, 200 or 503 with a reason."""
    images = pixels[0][:200]
    with _app(server, run, "crash", mode="coded", deadline_ms=40, timeout_s=15,
              straggler="crash:replica=1,after=40") as url:
        answers, bodies = _hammer(url, images, per_request=1, workers=16, with_headers=True)
        wait_until_serving(url, images[0], timeout=120)  # after the crash the app serves again
    assert len(answers) == 200
    for status, body, headers in answers:
        assert status in (200, 503), (status, body)
        if status == 503:
            assert body["error"] and body["predictions"][0]["path"] == "failed" and body["predictions"][0]["reason"]
            assert headers.get("retry-after") == "1", headers  # try again: the replica is replaced, or decoded around
        else:
            assert body["predictions"][0]["path"] in ("direct", "decoded")
    assert sum(status == 200 for status, _, _ in answers) >= 150
    assert any(body["predictions"][0]["path"] == "decoded" for status, body, _ in answers if status == 200)


def test_the_same_image_gets_the_same_class_through_http_and_simulate(server, run, pixels, trained_experiment, tmp_path):
    trained_experiment = experiment_copy(trained_experiment, tmp_path)  # the simulation writes into it
    # A deadline far above any answer time, even on a busy machine: every answer is the image's own (direct).
    summary = run_simulation(SimulationOptions(experiment=trained_experiment, modes=["coded"], rate=40, queries=60,
                                               warmup=0, deadline_ms=10000, timeout_s=60, progress=False),
                             log=lambda _m: None)
    queries = results.load(trained_experiment).queries
    queries = queries[queries.simulation_id == summary["simulation_id"]]
    assert (queries.path == "direct").all()
    images = pixels[0][queries.test_index.to_numpy()]
    with _app(server, run, "same", mode="coded", deadline_ms=10000) as url:
        answers, _ = _hammer(url, images, per_request=4, workers=4)
    classes = [entry["class"] for status, body in answers for entry in body["predictions"]]
    assert classes == list(queries.prediction) == list(queries.base_prediction)
