"""An experiment stored on S3: a real S3 protocol server (moto) on loopback, pyarrow's S3 client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from parity_ray import results, storage
from parity_ray.tune.experiment import TuneOptions, run_experiment
from tests.conftest import own_ray, start_local_ray


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        import pyarrow.fs as pafs

        admin = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", region="us-east-1",
                                  access_key="testing", secret_key="testing", allow_bucket_creation=True)
        admin.create_dir("parity-bucket")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_storage_roundtrip_on_s3(s3_server):
    uri = "s3://parity-bucket/unit/a.bin"
    storage.write_bytes(uri, b"hello")
    assert storage.exists(uri) and storage.read_bytes(uri) == b"hello"
    assert storage.list_dir("s3://parity-bucket/unit") == ["a.bin"]


def test_experiment_on_s3_and_load_from_s3(s3_server):
    opts = TuneOptions(space="quick", name="s3exp", storage="s3://parity-bucket/experiments", progress=False,
                       overrides=["dataset=digits", "base_epochs=5", "encoder=addition", "k=2", "epochs=3"])
    with own_ray():  # the trials' workers must see the S3 server's settings: a Ray started after they are set
        start_local_ray()
        summary = run_experiment(opts, log=lambda _m: None)
    assert summary["status"] == {"COMPLETED": 1}
    assert summary["tables"] == "s3://parity-bucket/experiments/s3exp/tables"
    tables = results.load("s3://parity-bucket/experiments/s3exp")
    assert len(tables.runs) == 1 and tables.runs.status.iloc[0] == "COMPLETED"
    assert tables.runs.checkpoint_uri.iloc[0].startswith("s3://parity-bucket/experiments/s3exp/")
    assert len(tables.epochs) > 0 and len(tables.predictions) > 0
    assert tables.base_models.weights_uri.iloc[0].startswith("s3://parity-bucket/experiments/s3exp/base_models/")
    assert storage.exists(tables.base_models.weights_uri.iloc[0])
