"""``parity-ray serve`` as a user runs it: in the foreground until Ctrl-C, and through a Serve
config file started with Ray's own ``serve run``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import yaml

from parity_ray.data import load_data
from tests.cli.runner import REPO, assert_usage_error, cli, interruptible
from tests.serve.http_client import free_port, instances, post, wait_until_serving

@pytest.fixture(scope="module")
def image():
    return load_data("digits", val_size=300, split_seed=0, input_norm="none").test_x[:1].numpy()


def _env():
    # A Ray of the server's own (never another one running on this machine), workers that import actors.
    return {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": "local", "RAY_AUTH_MODE": "disabled"}


def _stop(process, timeout=90):
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@pytest.mark.slow
def test_serve_in_the_foreground_until_ctrl_c(trained_experiment, image, tmp_path):
    port = free_port()
    log = open(tmp_path / "serve.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "parity_ray", "serve", "--experiment", trained_experiment, "--run", "best",
         "--mode", "coded", "--port", str(port), "--frontend-replicas", "1"],  # two: test_faults.py, `serve run` below
        cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT, text=True, preexec_fn=interruptible)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_serving(url, image[0], process=process)
        status, body = post(url, instances(image))
        assert status == 200 and body["predictions"][0]["path"] in ("direct", "decoded")
    finally:
        code = _stop(process)
    log.seek(0)
    output = log.read()
    assert code == 0, output
    assert f"at http://127.0.0.1:{port}/" in output and "stopping" in output


@pytest.mark.slow
def test_write_config_then_serve_run_starts_the_same_app(trained_experiment, image, tmp_path):
    port = free_port()
    config_file = tmp_path / "serve.yaml"
    result = cli("serve", "--experiment", trained_experiment, "--run", "best", "--mode", "coded-hedged",
                 "--port", str(port), "--deadline-ms", "30", "--write-config", str(config_file))
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(config_file.read_text())
    app = config["applications"][0]
    assert app["import_path"] == "parity_ray.actors.app:app_builder" and app["route_prefix"] == "/"
    assert app["args"]["mode"] == "coded-hedged" and app["args"]["deadline_ms"] == 30
    assert app["args"]["frontend_replicas"] == 2  # written at its default too: `serve run` starts two frontends
    assert app["args"]["run"].startswith("digits-") and os.path.isabs(app["args"]["experiment"])
    assert config["http_options"]["port"] == port

    serve_cli = os.path.join(os.path.dirname(sys.executable), "serve")
    log = open(tmp_path / "serve-run.log", "w+")
    process = subprocess.Popen([serve_cli, "run", str(config_file)], cwd=tmp_path, env=_env(), stdout=log,
                               stderr=subprocess.STDOUT, text=True, preexec_fn=interruptible)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_serving(url, image[0], process=process)
        status, body = post(url, instances([image[0]] * 3))
        assert status == 200 and len(body["predictions"]) == 3
        status, body = post(url, {"instances": [[[0.5]]]})
        assert status == 400 and "expected 1x8x8" in body["error"]
    finally:
        _stop(process)


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--mode", "teleport"], ["unknown mode 'teleport'"]),
        (["--port", "0"], ["--port must be in 1..65535"]),
        (["--deadline-ms", "0"], ["--deadline-ms must be > 0"]),
        (["--straggler", "slowish:p=1"], ["unknown straggler model 'slowish'"]),
        (["--frontend-replicas", "0"], ["--frontend-replicas must be an integer >= 1, got 0"]),
        (["--frontend-replicas", "-2"], ["--frontend-replicas must be an integer >= 1, got -2"]),
    ],
)
def test_bad_serve_flags(tmp_path, args, fragments):
    result = cli("serve", "--experiment", str(tmp_path), *args, "--write-config", str(tmp_path / "x.yaml"))
    assert_usage_error(result, *fragments)
    assert not (tmp_path / "x.yaml").exists()


def test_frontend_replicas_is_a_serve_flag_written_into_the_serve_config(tmp_path):
    from parity_ray.actors.app import serve_config
    from parity_ray.actors.options import AppOptions
    from tests.serve.runs import make_run

    help_text = cli("serve", "--help").stdout
    assert "--frontend-replicas" in help_text and "frontend (HTTP ingress) replicas" in " ".join(help_text.split())
    run = make_run(tmp_path / "run", "addition", "subtraction")
    for replicas in (2, 1, 3):  # the default is written too
        args = serve_config(run, AppOptions(frontend_replicas=replicas))["applications"][0]["args"]
        assert args["frontend_replicas"] == replicas
