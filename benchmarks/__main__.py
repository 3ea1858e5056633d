"""Every benchmark scenario against every peer program this machine has, in one command.

    python -m benchmarks [--quick] [--out DIR] [--only NAME[,NAME]]

Runs each script of benchmarks/ as its own process with ``--json`` (so each stays a
stand-alone script), skips a scenario whose programs are missing with the reason, and writes
``DIR/<YYYY-MM-DD>-<host>.json`` (every figure) and ``DIR/REPORT.md`` with a table per
scenario and PNG charts in ``DIR/charts/`` (matplotlib: ``pip install -e '.[bench]'``).
DIR defaults to benchmarks/results. ``--only`` re-runs the scenarios named and keeps the
others of the day's run (of the same kind, quick or full) in the JSON and the report.
``--quick`` runs small sizes, one run each, and leaves out the scenarios that need minutes
or a daemon of their own (peer, fleet): under a minute on a 2-core machine. A script that
finds it cannot run here (exit 3, the reason on stderr: ``_skip.py``) is recorded as
skipped with that reason. Exits 1 if a scenario failed (its error is in the report).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._report import write_report
from benchmarks._scenarios import SCENARIOS, Scenario, missing
from benchmarks._skip import SKIPPED

HERE = Path(__file__).resolve().parent


def run(scenario: Scenario, quick: bool) -> dict[str, Any]:
    """One scenario's outcome: its command, and its JSON or why there is none."""
    flags = scenario.quick if quick else scenario.full
    command = [sys.executable, scenario.script, *(flags or "").split(), "--json"]
    outcome: dict[str, Any] = {"command": ["python", *command[1:]]}
    if quick and scenario.quick is None:
        outcome["skipped"] = "not part of --quick"
        return outcome
    if lacking := missing(scenario.needs):
        outcome["skipped"] = f"{', '.join(lacking)} not installed"
        return outcome
    # The scripts import the package from the checkout and `_timing` as a sibling.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    began = time.monotonic()
    done = subprocess.run(command, cwd=HERE, env=env, capture_output=True, text=True)
    outcome["seconds"] = time.monotonic() - began
    last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    if done.returncode == SKIPPED:  # the script found it cannot run here (_skip.py)
        outcome["skipped"] = last[:300]
        return outcome
    if done.returncode != 0:
        outcome["failed"] = f"exit {done.returncode}: {last[:300]}"
        return outcome
    try:
        outcome["result"] = json.loads(done.stdout)
    except json.JSONDecodeError as error:
        outcome["failed"] = f"its output is not JSON ({error})"
    return outcome


def _earlier(path: Path, quick: bool) -> dict[str, Any]:
    """The scenarios of an earlier run written to ``path`` (same day and host), if it was of
    the same kind (quick or full); nothing otherwise."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(earlier, dict) or earlier.get("quick") != quick:
        return {}
    scenarios = earlier.get("scenarios")
    return scenarios if isinstance(scenarios, dict) else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where results go")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    args = parser.parse_args()
    names = [s.name for s in SCENARIOS]
    only = [n for n in args.only.split(",") if n]
    if unknown := sorted(set(only) - set(names)):
        parser.error(f"unknown scenario {', '.join(unknown)} (known: {', '.join(names)})")
    host = socket.gethostname().split(".")[0] or "host"
    date = datetime.date.today().isoformat()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{date}-{host}.json"
    results: dict[str, Any] = {
        "date": date,
        "host": host,
        "quick": args.quick,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "json": path.name,
        "scenarios": {},
    }
    if only:
        # Re-running some scenarios keeps the others of the day's run of the same kind.
        earlier = _earlier(path, args.quick)
        results["scenarios"] = {n: o for n, o in earlier.items() if n not in only}
    for scenario in SCENARIOS:
        if only and scenario.name not in only:
            continue
        print(f"{scenario.name}: ", end="", flush=True)
        outcome = run(scenario, args.quick)
        results["scenarios"][scenario.name] = outcome
        print(outcome.get("skipped") or outcome.get("failed") or f"{outcome['seconds']:.1f} s")
    # In SCENARIOS' order, whichever run each outcome came from.
    results["scenarios"] = {
        s.name: results["scenarios"][s.name] for s in SCENARIOS if s.name in results["scenarios"]
    }
    path.write_text(json.dumps(results, indent=1) + "\n")
    report = write_report(results, args.out)
    print(f"wrote {path} and {report}")
    if any("failed" in o for o in results["scenarios"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
