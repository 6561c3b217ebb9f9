"""A plain HTTP client for the serving tests (urllib, one connection a request, real sockets)."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Dict


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: Any, timeout: float = 60.0, raw: bool = False, with_headers: bool = False):
    """``(status, JSON body)``; a body that is not JSON comes back as ``{"text": ...}``. With
    ``with_headers``: ``(status, JSON body, response headers with lower-case names)``."""
    data = body if raw else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text, headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, text, headers = exc.code, exc.read(), exc.headers or {}
    try:
        answer = json.loads(text)
    except ValueError:
        answer = {"text": text.decode(errors="replace")}
    return (status, answer, {k.lower(): v for k, v in headers.items()}) if with_headers else (status, answer)


def instances(pixels) -> Dict[str, Any]:
    return {"instances": [p.tolist() for p in pixels]}


def wait_until_serving(url: str, example, timeout: float = 240.0, process=None) -> None:
    """Poll ``url`` with a valid request until it answers 200 (or the process dies / time runs out)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode} before serving")
        try:
            status, body = post(url, instances([example]), timeout=10)
            if status == 200:
                return
            last = (status, body)
        except OSError as exc:
            last = exc
        time.sleep(1.0)
    raise AssertionError(f"{url} did not serve within {timeout:g} s: {last}")
