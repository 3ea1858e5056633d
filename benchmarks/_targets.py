"""The issue's targets (issue 20) held against one run's results: the summary table at the
top of REPORT.md. A figure the run does not hold (a scenario left out of --quick, skipped
or failed, a peer not installed) is "not run", never a guess."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks._scenarios import SCENARIOS, Row

BY_NAME = {s.name: s for s in SCENARIOS}
ENGINES = ("engine", "engine-2g")  # smallest first: the peak RSS target is at the largest


@dataclass(frozen=True)
class Verdict:
    """One target, the figure measured for it (None: not run) and whether it was met."""

    target: str
    measured: float | None
    shown: str  # the measured figure as the table shows it
    met: bool | None  # None: no threshold, the figure stands beside a peer's

    def row(self) -> Row:
        if self.measured is None:
            verdict = "not run"
        elif self.met is None:
            verdict = "(for reference)"
        else:
            verdict = "met" if self.met else "missed"
        return {"target": self.target, "measured": self.shown, "verdict": verdict}


def _result(results: dict[str, Any], name: str) -> Any:
    return results["scenarios"].get(name, {}).get("result")


def _size(results: dict[str, Any], name: str) -> str:
    """The engine run's --size: as the run had it, or as a full run would."""
    outcome = results["scenarios"].get(name, {})
    flags = outcome.get("command") or BY_NAME[name].full.split()
    return flags[flags.index("--size") + 1] if "--size" in flags else "?"


def _ratio(target: str, ours: float | None, theirs: float | None, goal: float) -> Verdict:
    if ours is None or not theirs:
        return Verdict(target, None, "not run", None)
    ratio = ours / theirs
    return Verdict(target, ratio, f"{ratio:.2f}x", ratio >= goal)


def _engine(results: dict[str, Any], name: str) -> list[Verdict]:
    data = _result(results, name) or []
    speed = {(r["tool"], r["scenario"]): r["MB/s"] for r in data}
    cpu = {(r["tool"], r["scenario"]): r["cpu_s_per_GiB"] for r in data}
    size = _size(results, name)
    verdicts = []
    for scenario in ("unthrottled", "throttled"):
        ours = speed.get(("modelhaul", scenario))
        where = f"{name}, {size} {scenario}: modelhaul ÷"
        verdicts.append(
            _ratio(f"{where} aria2c + sync ≥ 1.0", ours, speed.get(("aria2c + sync", scenario)), 1)
        )
        if scenario == "unthrottled":
            theirs = speed.get(("dd + sync", scenario))
            verdicts.append(_ratio(f"{where} dd + sync ≥ 0.8 (within 1.25x)", ours, theirs, 0.8))
        theirs = speed.get(("parfive + sync", scenario))
        verdicts.append(_ratio(f"{where} parfive + sync ≥ 4", ours, theirs, 4))
    mine, aria = cpu.get(("modelhaul", "unthrottled")), cpu.get(("aria2c", "unthrottled"))
    target = f"{name}, {size}: CPU s/GiB beside aria2c's"
    if mine is None or aria is None:
        verdicts.append(Verdict(target, None, "not run", None))
    else:
        verdicts.append(Verdict(target, mine, f"{mine:.2f} (aria2c {aria:.2f})", None))
    return verdicts


def _peak_rss(results: dict[str, Any]) -> Verdict:
    name = ENGINES[-1]
    target = f"{name}, {_size(results, name)}: modelhaul's peak RSS < 150 MB"
    rss = [r["peak_rss_MB"] for r in _result(results, name) or [] if r["tool"] == "modelhaul"]
    if not rss:
        return Verdict(target, None, "not run", None)
    return Verdict(target, max(rss), f"{max(rss):.0f} MB", max(rss) < 150)


def _hub(results: dict[str, Any]) -> Verdict:
    target = "hub: modelhaul ≥ 8x huggingface_hub"
    rows = [r for r in _result(results, "hub") or [] if r["tool"] == "modelhaul"]
    if not rows:
        return Verdict(target, None, "not run", None)
    speedup = rows[0]["speedup_vs_huggingface_hub"]
    return Verdict(target, speedup, f"{speedup:.2f}x", speedup >= 8)


def _kill(results: dict[str, Any]) -> Verdict:
    target = "kill: bytes served ÷ file size ≤ 1.25"
    data = _result(results, "kill")
    if not data:
        return Verdict(target, None, "not run", None)
    return Verdict(target, data["ratio"], f"{data['ratio']:.3f}", data["ratio"] <= 1.25)


def summary(results: dict[str, Any]) -> list[Row]:
    """A row per target of the issue: what it asks, the figure measured, met or missed."""
    verdicts = [v for name in ENGINES for v in _engine(results, name)]
    verdicts += [_peak_rss(results), _hub(results), _kill(results)]
    return [v.row() for v in verdicts]
