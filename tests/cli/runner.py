"""The ``parity-ray`` command line and the benchmark scripts, run the ways the tests need.

``cli`` calls ``parity_ray.cli.main(argv)`` in this process and captures what it prints, so a
usage, help or bad-input check costs milliseconds instead of a fresh interpreter importing torch.
``cli_process`` runs ``python -m parity_ray`` as a real subprocess, for what only a process can
show: the entry point itself, exit codes set by the interpreter, signals, a Ray of its own.
Both return a :class:`subprocess.CompletedProcess`, so a test reads the same either way.
``run_benchmark`` calls a ``benchmarks/`` script's ``main(argv)`` in this process.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def process_state_restored(cwd: Optional[Path]):
    """What a command may change for the rest of its (short-lived) process, put back afterwards:
    the working folder, the environment, the torch thread count and the ``parity_ray`` loggers."""
    import torch

    from parity_ray.logs import LOGGER_NAMES

    before_cwd, before_env, before_threads = os.getcwd(), dict(os.environ), torch.get_num_threads()
    loggers = [logging.getLogger(name) for name in LOGGER_NAMES]
    before_loggers = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before_cwd)
        os.environ.clear()
        os.environ.update(before_env)
        torch.set_num_threads(before_threads)
        for logger, (handlers, level, propagate) in zip(loggers, before_loggers):
            logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


def cli(*args: str, cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """``parity-ray ARGS`` in this process: its exit code, stdout and stderr as a subprocess would give them.

    An exception that escapes ``main`` is what a user would see as a traceback and exit code 1, so it
    is returned that way (the traceback in stderr), not raised.
    """
    from parity_ray.cli import main

    out, err = io.StringIO(), io.StringIO()
    with process_state_restored(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help (0) and unparseable flags (2)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:  # noqa: BLE001 - what the user would see: a traceback, exit 1
            traceback.print_exc()
            code = 1
    return subprocess.CompletedProcess(["parity-ray", *args], code or 0, out.getvalue(), err.getvalue())


def process_env(**extra: str) -> dict:
    """The environment of a real ``parity-ray`` subprocess: this one, with the repository importable."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), **extra}


def interruptible() -> None:
    """``preexec_fn`` of a process a test stops with SIGINT (Ctrl-C): SIGINT back to its default. A
    shell starting a job in the background (``nohup ... &``, as CI may run) leaves SIGINT ignored, the
    child inherits that, and Ctrl-C would then never reach it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_process(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m parity_ray ARGS`` as a real subprocess."""
    return subprocess.run([sys.executable, "-m", "parity_ray", *args], cwd=cwd, env=process_env(),
                          capture_output=True, text=True, timeout=timeout)


def assert_usage_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2 with one clear line on stderr, ``parity-ray: error: ...``, holding every fragment."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr  # one clear line
    assert lines[0].startswith("parity-ray: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def run_benchmark(script: str, *argv: str, capsys) -> tuple:
    """``benchmarks/<script> ARGV`` in process: its exit code, stdout, the JSON object of its last
    stdout line (or None) and stderr, as read from ``capsys`` (or ``capfd``)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{Path(script).stem}", REPO / "benchmarks" / script)
    module = importlib.util.module_from_spec(spec)
    with process_state_restored(None):
        spec.loader.exec_module(module)
        code = module.main(list(argv))
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    report = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    return code, out, report, err
