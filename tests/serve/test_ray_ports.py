"""The ports of a Ray that ``parity-ray serve`` starts, read from the machine's socket table.

The server runs as a user gets it: Ray's token authentication as Ray sets it (this test removes the
suite's ``RAY_AUTH_MODE=disabled`` from the server's environment). What must hold (docs/security.md):
the Serve HTTP port listens on loopback only, and every port of that Ray which listens beyond
loopback refuses an unauthenticated job submission, so nothing runs.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from parity_ray.data import load_data
from tests.cli.runner import REPO, interruptible
from tests.serve.http_client import free_port, wait_until_serving

pytestmark = pytest.mark.slow

LOOPBACK = ("127.0.0.1", "[::1]", "::1")


def descendants(pid: int) -> set:
    """``pid`` and every process below it (from /proc: Ray's daemons and workers are the server's children)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = {pid}, [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier and child not in found]
        found.update(children)
        frontier = children
    return found


def listeners(pids: set) -> list:
    """``(address, port, process)`` of every TCP socket the processes listen on (``ss -ltnpH``)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        owners = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            address, port = fields[3].rsplit(":", 1)
            found.append((address, int(port), line.split("users:")[-1]))
    return found


def submit_job(host: str, port: int, canary: Path) -> str:
    """An unauthenticated job submission, as an attacker on the network would send it: the outcome."""
    body = json.dumps({"entrypoint": f"touch {canary}", "submission_id": "probe"}).encode()
    outcomes = []
    for path in ("/api/job_agent/jobs/", "/api/jobs/"):
        request = urllib.request.Request(f"http://{host}:{port}{path}", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                outcomes.append(f"HTTP {response.status}")
        except urllib.error.HTTPError as exc:
            outcomes.append(f"HTTP {exc.code}")
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:  # a gRPC port: not HTTP/1.1 at all
            outcomes.append(f"no HTTP ({type(exc).__name__})")
    return ", ".join(outcomes)


def machine_address() -> str:
    import ray._private.services as services

    return services.get_node_ip_address()


def test_a_served_rays_ports_refuse_unauthenticated_jobs(trained_experiment, tmp_path):
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "RAY_AUTH_MODE"}
    env.update(PYTHONPATH=str(REPO), RAY_ADDRESS="local")
    log = open(tmp_path / "serve.log", "w+")
    process = subprocess.Popen([sys.executable, "-m", "parity_ray", "serve", "--experiment", trained_experiment,
                                "--run", "best", "--mode", "coded", "--port", str(port)],
                               cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=interruptible)
    canary = tmp_path / "canary"
    try:
        image = load_data("digits", val_size=300, split_seed=0, input_norm="none").test_x[:1].numpy()
        wait_until_serving(f"http://127.0.0.1:{port}/", image[0], process=process)
        table = listeners(descendants(process.pid))
        exposed = [(address, p, owner) for address, p, owner in table if address not in LOOPBACK]
        outcomes = {}
        for address, p, owner in exposed:
            host = machine_address() if address in ("*", "0.0.0.0", "[::]") else address.strip("[]")
            outcomes[(address, p, owner)] = submit_job(host, p, canary)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    print("\n".join(f"{a}:{p} {o} -> {outcomes.get((a, p, o), 'loopback')}" for a, p, o in table))  # the socket table, for the record
    assert any(p == port for _a, p, _o in table), "the Serve port is not among the server's listeners"
    assert all(address in LOOPBACK for address, p, _o in table if p == port)  # HTTP ingress: loopback only
    assert exposed, "expected Ray's gRPC ports beyond loopback (Ray 2.60 binds them to every interface)"
    assert not any("HTTP 2" in outcome for outcome in outcomes.values()), outcomes  # nothing accepted a job
    assert any("HTTP 401" in outcome for outcome in outcomes.values()), outcomes  # the job agent asks for the token
    assert not canary.exists()  # and nothing ran
