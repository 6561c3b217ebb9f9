"""CI's guard on the default test tier's time: warn past its budget, fail past 1.5x, name the slowest tests.

    python .ci/tier_budget.py JUNIT_XML WALL_SECONDS [BUDGET_SECONDS]

WALL_SECONDS is the tier's measured wall time (install excluded); the five slowest tests come from
pytest's JUnit XML (setup, call and teardown of each test together), so the next test to slim is named
in every CI log.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

DEFAULT_BUDGET_S = 720.0  # the README's `pytest`: <= 12 min on 2 cores
FAIL_FACTOR = 1.5


def slowest(junit_xml: str, n: int = 5) -> list:
    cases = ET.parse(junit_xml).getroot().iter("testcase")
    timed = [(float(c.get("time", 0.0)), f"{c.get('classname', '')}::{c.get('name', '')}") for c in cases]
    return sorted(timed, reverse=True)[:n]


def main(argv: list) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    junit_xml, wall = argv[0], float(argv[1])
    budget = float(argv[2]) if len(argv) == 3 else DEFAULT_BUDGET_S
    verdict = "within budget" if wall <= budget else ("OVER BUDGET (warning)" if wall <= FAIL_FACTOR * budget
                                                      else f"OVER {FAIL_FACTOR:g}x BUDGET (failing)")
    print(f"default tier: {wall:.0f} s against a budget of {budget:.0f} s ({FAIL_FACTOR:g}x: {FAIL_FACTOR * budget:.0f} s): "
          f"{verdict}")
    print("five slowest tests:")
    for seconds, name in slowest(junit_xml):
        print(f"  {seconds:7.1f} s  {name}")
    return 1 if wall > FAIL_FACTOR * budget else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
