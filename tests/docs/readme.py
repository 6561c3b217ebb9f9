"""The README and docs/ as a script: their shell and Python blocks, the commands in them, and how the
README test runs each one.

A fenced block tagged ``bash`` is run, command by command, unless its first line says why not:
``# not run by the README test: <reason>``, visible to every reader. A ``python`` block is run as one
program unless it is marked the same way. Commands run with ``bash`` in a fresh clone's layout
(the repository, with ``../shared/data`` and ``../shared/models`` beside it), in order, so that each
sees what the earlier ones wrote, as a reader following the text would.

Where the README says how to make a command small (``--smoke-test``), the test adds that flag; every
other word of the command is the README's (``SMOKE_FLAGS`` is the whole list of changes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[2]
NOT_RUN = "# not run by the README test: "
SHELL_LANGUAGES = ("bash", "sh", "shell")

# (pattern of a command, the flags appended to it): the first match wins. Commands that match
# nothing run exactly as written.
SMOKE_FLAGS: List[Tuple[str, str]] = [
    # the imported base model's published accuracy is a full test-set figure: the parity model is
    # made small (one epoch of two batches) instead of the data
    (r"^parity-ray train .*--base-weights", "--epochs 1 --max-train-batches 2 --max-eval-groups 64"),
    (r"^parity-ray (quickstart|train|tune|simulate|sweep) ", "--smoke-test"),
    (r"^python benchmarks/gpu_throughput\.py", "--smoke-test --device cpu"),  # as its comment says, anywhere
    (r"^python benchmarks/", "--smoke-test"),
]


@dataclass
class Command:
    text: str  # one logical command, continuation lines joined
    line: int  # where it starts in its file

    @property
    def code(self) -> str:
        """The command without its trailing comment."""
        return strip_comment(self.text)

    def smoke(self) -> str:
        """The command as the test runs it: the README's words plus its smoke setting."""
        for pattern, flags in SMOKE_FLAGS:
            if re.search(pattern, self.code):
                return f"{self.code} {flags}"
        return self.code


@dataclass
class Block:
    path: Path
    language: str
    line: int  # the opening fence's line
    lines: List[str] = field(default_factory=list)

    @property
    def skip_reason(self) -> Optional[str]:
        first = self.lines[0].strip() if self.lines else ""
        return first[len(NOT_RUN):].strip() if first.startswith(NOT_RUN) else None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    def commands(self) -> List[Command]:
        """The block's logical commands: comment lines dropped, ``\\`` continuations joined."""
        commands, pending, start = [], "", 0
        for offset, raw in enumerate(self.lines, start=self.line + 1):
            line = raw.rstrip()
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if not pending:
                start = offset
            if line.endswith("\\"):
                pending += line[:-1].rstrip() + " "
                continue
            commands.append(Command((pending + line.strip()).strip(), start))
            pending = ""
        return commands


def blocks(path: Path) -> List[Block]:
    """Every fenced block of a markdown file, with its language tag ('' when it has none)."""
    found, current = [], None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("```"):
            if current is None:
                current = Block(path, line[3:].strip().split(" ")[0], number)
            else:
                found.append(current)
                current = None
        elif current is not None:
            current.lines.append(line)
    assert current is None, f"{path}: a code fence opened at line {current.line} is never closed"
    return found


def documents() -> List[Path]:
    """What the test reads, in the order it runs them: the README, then docs/ by name."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def strip_comment(command: str) -> str:
    """``command  # comment`` -> ``command``, leaving a ``#`` inside quotes alone."""
    quote = None
    for index, char in enumerate(command):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or command[index - 1].isspace()):
            return command[:index].rstrip()
    return command.rstrip()


def stated_minutes(text: str) -> Optional[str]:
    """The time a README line states for its command on this kind of machine, if any."""
    match = re.search(r"(~|about )?\d+(\.\d+)?(-\d+)? ?(s|min|minutes|seconds)\b", text)
    return match.group(0) if match else None



@dataclass
class Outcome:
    command: str  # as run
    where: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def fresh_layout(folder: Path, shared: Path) -> Path:
    """A fresh clone's layout under FOLDER: ``repo/`` (the tracked files, as ``git clone`` gives them)
    and ``shared/`` beside it linking the real data and models. Returns the repository folder."""
    import subprocess

    import shutil

    repo = folder / "repo"
    cloned = subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(repo)], capture_output=True)
    if cloned.returncode != 0:  # not a git checkout (an unpacked archive): its files, without what runs leave
        shutil.rmtree(repo, ignore_errors=True)
        shutil.copytree(REPO, repo, symlinks=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "*.egg-info", "results", "runs", ".pytest_cache"))
        changed = []
    else:  # what this checkout changed and has not committed is what is under test
        changed = subprocess.run(["git", "ls-files", "-m", "-o", "--exclude-standard"], cwd=REPO, check=True,
                                 capture_output=True, text=True).stdout.split()
    for name in changed:
        source, target = REPO / name, repo / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    (folder / "shared").mkdir()
    for part in ("data", "models"):
        if (shared / part).exists():
            (folder / "shared" / part).symlink_to(shared / part)
    return repo


def run_shell(command: str, cwd: Path, env: Dict[str, str], where: str, timeout: float = 900) -> Outcome:
    import subprocess
    import time

    started = time.monotonic()
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return Outcome(command, where, done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def run_python(source: str, cwd: Path, env: Dict[str, str], where: str, python: str) -> Outcome:
    import subprocess
    import time

    started = time.monotonic()
    done = subprocess.run([python, "-c", source], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return Outcome(f"python <<block {where}>>", where, done.returncode, done.stdout, done.stderr,
                   time.monotonic() - started)
