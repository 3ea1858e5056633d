"""`python -m benchmarks --quick` end to end, so the report and its charts never rot."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import REPO, python_env, system_program

PNG = b"\x89PNG\r\n\x1a\n"


def test_quick_benchmarks_write_json_a_table_per_scenario_and_png_charts(tmp_path):
    for program in ("nginx", "aria2c", "curl", "time"):  # the engine scenario's peers
        system_program(program)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (result,) = tmp_path.glob("????-??-??-*.json")
    results = json.loads(result.read_text())
    ran = {n: o for n, o in results["scenarios"].items() if "result" in o}
    # Every scenario of --quick ran, the engine's beside aria2c, curl and dd among them.
    assert set(ran) == {"engine", "hub", "small-files", "kill", "startup", "ledger"}
    assert {r["tool"] for r in ran["engine"]["result"]} >= {"modelhaul", "aria2c", "curl", "dd"}
    report = (tmp_path / "REPORT.md").read_text()
    for name in ran:
        section = report.split(f"## {name}:", 1)[1].split("\n## ", 1)[0]
        rows = [line for line in section.splitlines() if re.match(r"\| [^-]", line)]
        assert len(rows) >= 2, f"{name}: no table rows in\n{section}"  # a header and a row
    charts = re.findall(r"!\[[^]]*\]\((charts/[^)]+\.png)\)", report)
    assert len(charts) >= 5
    for chart in charts:
        assert (tmp_path / chart).read_bytes().startswith(PNG), chart
