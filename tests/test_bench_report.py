"""`python -m benchmarks --quick` end to end, so the report and its charts never rot; and the
netem scenario, which --quick leaves out, run small through the runner's own code."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import REPO, python_env, system_program

PNG = b"\x89PNG\r\n\x1a\n"
VERDICTS = {"met", "missed", "not run", "(for reference)"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One `python -m benchmarks --quick` for the tests below: its JSON and its REPORT.md."""
    for program in ("nginx", "aria2c", "curl", "time"):  # the engine scenario's peers
        system_program(program)
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=REPO,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (result,) = out.glob("????-??-??-*.json")
    return out, json.loads(result.read_text()), (out / "REPORT.md").read_text()


def section(report: str, heading: str) -> list[str]:
    """The Markdown table rows (header included) under ``## heading``."""
    text = report.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    return [line for line in text.splitlines() if re.match(r"\| [^-]", line)]


def test_quick_benchmarks_write_json_a_table_per_scenario_and_png_charts(quick):
    out, results, report = quick
    ran = {n: o for n, o in results["scenarios"].items() if "result" in o}
    assert set(ran) == {
        "engine",
        "hub",
        "small-files",
        "kill",
        "startup",
        "ledger",
        "slow-edge",
        "hostile",
    }
    for name in ran:
        assert len(section(report, f"{name}:")) >= 2, name  # a header and a row
    charts = re.findall(r"!\[[^]]*\]\((charts/[^)]+\.png)\)", report)
    assert "charts/slow-edge.png" in charts
    assert len(charts) >= 6
    for chart in charts:
        assert (out / chart).read_bytes().startswith(PNG), chart


def test_quick_engine_runs_beside_aria2c_parfive_curl_to_dev_null_and_dd(quick):
    _, results, report = quick
    rows = results["scenarios"]["engine"]["result"]
    tools = {(r["tool"], r["scenario"]) for r in rows}
    for tool in ("modelhaul", "aria2c + sync", "parfive + sync"):
        assert {(tool, "unthrottled"), (tool, "throttled")} <= tools, tool
    assert {("dd + sync", "unthrottled"), ("curl → /dev/null", "unthrottled")} <= tools
    assert all(r["MB/s"] > 0 and r["size_MB"] == 64 * 2**20 / 1e6 for r in rows)
    table = "\n".join(section(report, "engine:"))
    assert "| unthrottled | parfive + sync |" in table
    assert "| unthrottled | curl → /dev/null |" in table


def test_report_opens_with_the_issues_targets_met_missed_or_not_run(quick):
    _, results, report = quick
    assert report.index("## Targets") < report.index("## engine:")
    header, *rows = [[c.strip() for c in r.strip("|").split("|")] for r in section(report, "T")]
    assert header == ["target", "measured", "verdict"]
    verdicts = {target: (measured, verdict) for target, measured, verdict in rows}
    assert {v for _, v in verdicts.values()} <= VERDICTS
    # --quick leaves engine-2g out: its targets, the peak RSS among them, are "not run".
    two = {t: v for t, v in verdicts.items() if t.startswith("engine-2g")}
    assert len(two) >= 6
    assert all(v == ("not run", "not run") for v in two.values()), two
    # What ran is measured and judged against its threshold, from the run's own figures.
    kill = results["scenarios"]["kill"]["result"]["ratio"]
    expected = "met" if kill <= 1.25 else "missed"
    assert verdicts["kill: bytes served ÷ file size ≤ 1.25"] == (f"{kill:.3f}", expected)
    engine = {
        (r["tool"], r["scenario"]): r["MB/s"] for r in results["scenarios"]["engine"]["result"]
    }
    ratio = engine[("modelhaul", "unthrottled")] / engine[("parfive + sync", "unthrottled")]
    (parfive,) = [
        v
        for t, v in verdicts.items()
        if t.startswith("engine,") and "parfive" in t and "unthrottled" in t
    ]
    assert parfive == (f"{ratio:.2f}x", "met" if ratio >= 4 else "missed")
    # The scenarios --quick leaves out say so in the JSON and in the report.
    for name in ("engine-2g", "netem", "peer", "fleet"):
        assert results["scenarios"][name]["skipped"] == "not part of --quick"
        assert "Skipped: not part of --quick" in report.split(f"## {name}:", 1)[1]


def test_netem_scenario_measures_50_ms_round_trips_or_says_why_it_was_skipped(tmp_path):
    """Through the runner's own run(): a result where the kernel has netem and we are root,
    elsewhere "skipped" with the script's reason (exit 3), and no namespace left behind."""
    for program in ("ip", "tc", "aria2c", "curl", "time"):
        system_program(program)
    before = namespaces()
    code = (
        "import dataclasses, json\n"
        "from benchmarks.__main__ import run\n"
        "from benchmarks._scenarios import SCENARIOS\n"
        "(netem,) = [s for s in SCENARIOS if s.name == 'netem']\n"
        "small = dataclasses.replace(netem, full='--size 1M --runs 1')\n"
        "print(json.dumps(run(small, quick=False)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=python_env(TMPDIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert "failed" not in outcome, outcome
    if "skipped" in outcome:
        assert outcome["skipped"] and outcome["skipped"] != "not part of --quick"
        assert "\n" not in outcome["skipped"]
    else:
        rows = outcome["result"]
        assert {r["tool"] for r in rows} == {"modelhaul", "aria2c + sync", "curl + sync"}
        assert all(r["rtt_ms"] >= 45 for r in rows), rows  # netem's 2 x 25 ms took effect
    assert namespaces() <= before


def namespaces() -> set[str]:
    """The benchmark's network namespaces on this machine (their names start with mhb)."""
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return {line.split()[0] for line in done.stdout.splitlines() if line.startswith("mhb")}
