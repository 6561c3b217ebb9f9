"""The README is a test (issue 29): every shell block of README.md and docs/ runs, in order, in a
fresh clone's layout, each command as written (plus its smoke setting, ``readme.SMOKE_FLAGS``), and
must exit 0 and print what the text around it says it prints. A block that is not meant to run says
so in its first line, visibly. The default tier checks the marks and the stated times; the
end-to-end tier runs the blocks (about 10 min on 2 cores: each command is a process of its own,
as a reader would start it).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from tests.docs.readme import (NOT_RUN, REPO, SHELL_LANGUAGES, Block, Outcome, blocks, documents, fresh_layout,
                               run_python, run_shell, stated_minutes)

# What the text says each command prints: (pattern of the command as written, patterns its output
# holds; "not:PATTERN", one it must not hold). Every runnable command matches at least one entry (checked below), so a new README
# command needs its claim here.
CLAIMS: List[Tuple[str, List[str]]] = [
    (r"^parity-ray quickstart", [r"8 trials \(completed 8\)", r"available +degraded", r"\nmnist +2 addition",
                                 r"coded +[\d.]+ +[\d.]+", r"replication +[\d.]+ +[\d.]+",
                                 r"report +\S+/results/q1/report/index\.html"]),
    (r"^parity-ray train .*--base-weights", [r"available accuracy +0\.9793\b", r"base model +imported-"]),
    (r"^parity-ray train .*--json", [r'"run_dir": ', r'"available_accuracy": ', r'"degraded_accuracy": ',
                                     r'"reconstruction_accuracy": ', r'"startup_seconds": ', r'"train_seconds": ']),
    (r"^parity-ray train .*--byzantine", [r"byzantine"]),
    (r"^parity-ray train ", [r"available accuracy +0\.\d+", r"degraded-mode accuracy +0\.\d+"]),
    (r"^parity-ray export ", [r"exported run \S+", r"parity_0\.json"]),
    (r"^parity-ray tune search_spaces/quick\.py", [r"trials +8 +completed 8", r"best run +mnist-",
                                                    # progress: one line per trial event, not Tune's tables
                                                    r"\nmnist-base-mlp-k2-r1-addition-\w+ +epoch 1/1 +val recon [\d.]+ +val degraded [\d.]+",
                                                    r"not:│|Trial name"]),
    (r"^python -c .*read_parquet", [r"\[8 rows x \d+ columns\]", r"\n0 +q2 "]),
    (r"^parity-ray serve .*--write-config", [r"wrote serve\.yaml: run mnist-"]),
    (r"^parity-ray simulate ", [r"p50", r"p99\.9", r"coded", r"replication"]),
    (r"^parity-ray sweep .*--preset parm-fig9a", [r'"headline": ']),
    (r"^parity-ray sweep ", [r"sweep sweep-\S+ +\d+ cells", r"p99\.9 +[\d.]+"]),
    (r"^parity-ray report \S+ \S+ --out", [r"report +\S+index\.html"]),
    (r"^parity-ray report runs/", [r"runs +\d+ +completed \d+", r"report +\S+/runs/report/index\.html"]),
    (r"^parity-ray report ", [r"runs +\d+ +completed \d+", r"report +\S+index\.html"]),
    (r"^python benchmarks/serve_tail", [r"deadline 50\.0 ms \(given\)", r"\ncoded +[\d.]+", r"\nreplication +[\d.]+",
                                        r"\nhedged +[\d.]+", r"tail gap, replication / coded: [\d.]+x",
                                        r"frontend encode \+ decode per coded query"]),
    (r"^python benchmarks/tune_overhead", [r"trials completed under Tune +2/2", r"median per-trial overhead \(b\)",
                                           r"target: median overhead \(vs_inprocess\) <= 3 s: .*\(smoke test, not meaningful\)"]),
    (r"^python benchmarks/quickstart_time", [r"quickstart end to end:", r"target <= 300 s", r"smoke test, not meaningful"]),
    (r"^python benchmarks/sweep", [r"speed: 20,000 queries over 100 replicas", r"validation \("]),
    (r"^python benchmarks/codes", [r"berrut non-systematic \(F\)", r"learned mlp/mlp \(F\)"]),
    (r"^python benchmarks/time_to_accuracy", [r"published@2", r"final selected accuracy, fast", r"goals: "]),
    (r"^python benchmarks/gpu_throughput", [r"images/s"]),
    (r"^python benchmarks/train_speed", [r"training images/s", r"targets \(smoke test on digits, not meaningful\)"]),
]


def runnable(block: Block) -> bool:
    return block.skip_reason is None and block.language in SHELL_LANGUAGES + ("python",)


def claims_for(command: str) -> List[str]:
    return next((wanted for pattern, wanted in CLAIMS if re.search(pattern, command)), [])


# --------------------------------------------------------------------------- default tier: the marks


def test_every_shell_block_runs_or_says_why_not():
    """A block is run, or its first line says why not; commands sit in tagged blocks only; every
    command the test runs has its claim; a mark that says nothing is refused."""
    known = re.compile(r"^(parity-ray|python3?|pytest|pip|ray|serve|curl|jupyter|tensorboard) ")
    problems = []
    for path in documents():
        for block in blocks(path):
            if block.language == "" and any(known.match(line.strip()) for line in block.lines):
                problems.append(f"{block.where}: commands in a fence without a language (tag it bash)")
            if block.language not in SHELL_LANGUAGES:
                continue
            if block.skip_reason is not None:
                if len(block.skip_reason) < 12:
                    problems.append(f"{block.where}: '{NOT_RUN}' needs a reason")
                continue
            for command in block.commands():
                if not known.match(command.code + " "):
                    problems.append(f"{block.where}: '{command.code[:60]}' is not a command the test can run")
                elif not claims_for(command.code):
                    problems.append(f"{block.where}: '{command.code[:60]}' has no claim in CLAIMS")
                if re.match(r"^(ray|serve|curl|jupyter|pip) ", command.code):
                    problems.append(f"{block.where}: '{command.code[:40]}' needs a machine or a server: mark its block")
    assert not problems, "\n".join(problems)


LONG = re.compile(r"^parity-ray (quickstart|tune|simulate)|^parity-ray sweep .*(--calibrate|--preset|--queries)|"
                  r"^parity-ray train .*--epochs [1-9]\d|^python benchmarks/(?!gpu_throughput)")  # (that one needs a GPU)


def test_every_long_command_states_its_time():
    """A command that takes minutes as written (a grid, a Serve run, a sweep at scale, 10+ epochs, a
    benchmark) states its time on 2 cores in its own comment."""
    problems = []
    for path in documents():
        for block in blocks(path):
            if not runnable(block) or block.language == "python":
                continue
            for command in block.commands():
                if LONG.search(command.code) and not stated_minutes(command.text[len(command.code):]):
                    problems.append(f"{block.where}: '{command.code[:70]}' states no time")
    assert not problems, "\n".join(problems)


def test_ci_installs_the_way_the_readme_says():
    """The README's install block is marked as run by .ci/run: .ci/run holds its commands."""
    install = next(b for b in blocks(REPO / "README.md") if b.skip_reason and ".ci/run" in b.skip_reason
                   and any("pip install" in c.code for c in b.commands()))
    ci = (REPO / ".ci" / "run").read_text()
    assert "python3 -m venv .venv" in ci and ". .venv/bin/activate" in ci
    assert re.search(r'pip install( -q)? -e "\.\[dev\]"', ci)
    assert [c.code for c in install.commands()] == ['python3 -m venv .venv && . .venv/bin/activate',
                                                   'pip install -e ".[dev]"']
    tests = next(b for b in blocks(REPO / "README.md") if any(c.code.startswith("pytest") for c in b.commands()))
    assert [c.code for c in tests.commands()] == ["pytest", 'pytest -m "slow or cluster"']
    assert "\npytest --durations" in ci and '\npytest -m "slow or cluster"' in ci


# --------------------------------------------------------------------------- end to end: the README runs


def readme_env(layout: Path) -> Dict[str, str]:
    """A reader's shell: this interpreter's ``bin`` first (``parity-ray``, ``python``), their own
    cache folder, and no ``$PARITY_RAY_DATA`` (the README names its data root where it needs one)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PARITY_RAY_DATA", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PARITY_RAY_CACHE"] = str(layout / "cache")
    return env


def check(outcome: Outcome, claims: List[str]) -> List[str]:
    text = outcome.stdout + outcome.stderr
    problems = []
    if outcome.returncode != 0:
        problems.append(f"exit {outcome.returncode}: {outcome.stderr.strip()[-1500:]}")
    problems += [f"output lacks /{claim}/" for claim in claims if not claim.startswith("not:") and not re.search(claim, text)]
    problems += [f"output holds /{claim[4:]}/" for claim in claims if claim.startswith("not:") and re.search(claim[4:], text)]
    if " --json" in outcome.command and outcome.returncode == 0:
        last = outcome.stdout.strip().splitlines()[-1] if outcome.stdout.strip() else ""
        try:
            json.loads(last)
        except ValueError:
            problems.append(f"--json, but the last stdout line is not JSON: {last[:200]}")
    return problems


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_readme_runs_as_written(tmp_path, data_root):
    """Every runnable block of README.md, then docs/, in order, in a fresh clone's layout."""
    repo = fresh_layout(tmp_path, Path(data_root).resolve().parent)
    env = readme_env(tmp_path)
    failures, timings = [], []
    for path in documents():
        for block in blocks(path):
            if not runnable(block):
                continue
            if block.language == "python":
                outcome = run_python("\n".join(block.lines), repo, env, block.where, sys.executable)
                timings.append(f"{outcome.seconds:6.1f} s  {block.where} (python)")
                print(timings[-1], file=sys.stderr, flush=True)
                problems = check(outcome, [])
                failures += [f"{block.where} python block: {p}" for p in problems]
                continue
            for command in block.commands():
                outcome = run_shell(command.smoke(), repo, env, f"{block.where}")
                timings.append(f"{outcome.seconds:6.1f} s  {path.name}:{command.line}  {outcome.command[:100]}")
                print(timings[-1], file=sys.stderr, flush=True)  # progress, with -s
                problems = check(outcome, claims_for(command.code))
                failures += [f"{path.name}:{command.line} `{outcome.command}`: {p}" for p in problems]
    print("\n".join(timings))
    assert not failures, "\n".join(failures)
    # and what the text says of the tables the commands left: nothing lost, the quickstart's MNIST run served
    from parity_ray import results

    tables = results.load(str(repo / "results" / "q1"))
    assert set(tables.runs.status) == {"COMPLETED"} and set(tables.runs.dataset) == {"digits", "mnist"}
    sims = tables.simulations
    assert (sims.direct + sims.decoded + sims.failed == sims.measured).all() and (sims.sent >= sims.measured).all()
    # the README's simulations serve MNIST; serve_tail's smoke test serves digits
    assert "mnist" in set(sims.dataset) <= {"digits", "mnist"} and set(tables.runs.experiment) == set(sims.experiment) == {"q1"}
    assert results.load(str(repo / "runs")).runs.status.eq("COMPLETED").all()
