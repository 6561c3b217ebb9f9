"""Progress of long steps (parity_ray.progress): a bar on a terminal, whole lines in a file or a pipe."""

from __future__ import annotations

import io
import time

import pytest

from parity_ray import progress as progress_module
from parity_ray.progress import LineProgress, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_and_a_pipe_gets_lines():
    assert type(progress(range(3), desc="x", stream=Terminal())).__module__.startswith("tqdm")
    assert isinstance(progress(range(3), desc="x", stream=io.StringIO()), LineProgress)


def test_no_progress_writes_nothing_anywhere():
    for stream in (Terminal(), io.StringIO()):
        assert list(progress(range(5), desc="x", enabled=False, stream=stream)) == list(range(5))
        assert stream.getvalue() == ""


def test_lines_come_at_most_every_few_seconds_with_an_estimate(monkeypatch):
    stream = io.StringIO()
    bar = LineProgress(total=100, desc="coded", unit="query", stream=stream, every_s=0.05)
    for _ in range(4):
        bar.update(10)  # quicker than every_s: no line
    assert stream.getvalue() == ""
    time.sleep(0.06)
    bar.update(10)
    time.sleep(0.06)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert lines[0].startswith("coded: 50/100 query in ") and "s left)" in lines[0]
    assert lines[1].startswith("coded: 50/100 query in ") and lines[1].endswith("done)")


def test_a_short_step_writes_no_line(monkeypatch):
    monkeypatch.setattr(progress_module, "EVERY_S", 60.0)
    stream = io.StringIO()
    assert sum(progress(range(1000), desc="epoch 1/1", unit="batch", stream=stream)) == sum(range(1000))
    assert stream.getvalue() == ""


@pytest.mark.parametrize("every_s", [0.0])
def test_training_piped_into_a_file_logs_lines_not_frames(tmp_path, monkeypatch, every_s):
    """``train`` in process with stderr captured (not a terminal): each epoch's progress is whole lines."""
    from tests.cli.runner import cli

    monkeypatch.setattr(progress_module, "EVERY_S", every_s)
    result = cli("train", "--dataset", "digits", "--base-epochs", "1", "--epochs", "1", "--out", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    assert any(line.startswith("epoch 1/1: ") and " batch in " in line for line in result.stderr.splitlines()), result.stderr
