"""REPORT.md and its PNG charts from one run's results (matplotlib, Agg: no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks._scenarios import SCENARIOS, Chart, Row
from benchmarks._targets import summary

BY_NAME = {s.name: s for s in SCENARIOS}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value).replace("|", "\\|")


def table(rows: list[Row]) -> list[str]:
    """A Markdown table of ``rows`` (columns in the first row's order)."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return lines


def chart(rows: list[Row], spec: Chart, path: Path) -> None:
    """One horizontal bar per row; rows without a number are left out."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    points = [r for r in rows if isinstance(r.get(spec.column), int | float)]
    labels = [" / ".join(str(r[c]) for c in spec.label) for r in points]
    figure, axes = pyplot.subplots(figsize=(7, 0.4 * len(points) + 1.2))
    bars = axes.barh(labels, [r[spec.column] for r in points], color="#4878a8")
    axes.bar_label(bars, fmt="%.3g", padding=3, fontsize=8)
    axes.invert_yaxis()  # the first row on top, as in the table
    axes.set_title(spec.title)
    axes.margins(x=0.15)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=90)
    pyplot.close(figure)


def write_report(results: dict[str, Any], out: Path) -> Path:
    """Writes ``out/REPORT.md`` and ``out/charts/<scenario>.png``; returns the report's path."""
    (out / "charts").mkdir(parents=True, exist_ok=True)
    mode = "quick (small sizes, one run)" if results["quick"] else "full"
    lines = [
        f"# Benchmark report: {results['date']} on {results['host']}",
        "",
        f"`python -m benchmarks{' --quick' if results['quick'] else ''}`: {mode}; "
        f"raw figures in `{results['json']}`. Ratios are the figures to compare; the "
        "absolute numbers move with the disk and the machine's load.",
        "",
        "## Targets",
        "",
        'The issue\'s targets (issue 20); a figure this run did not measure is "not run".',
        "",
        *table(summary(results)),
        "",
    ]
    for name, outcome in results["scenarios"].items():
        scenario = BY_NAME[name]
        lines += [f"## {name}: {scenario.title}", "", f"`{' '.join(outcome['command'])}`", ""]
        if "skipped" in outcome:
            lines += [f"Skipped: {outcome['skipped']}", ""]
            continue
        if "failed" in outcome:
            lines += [f"Failed: {outcome['failed']}", ""]
            continue
        rows = scenario.rows(outcome["result"])
        lines += [*table(rows), "", f"({outcome['seconds']:.1f} s)", ""]
        if scenario.chart is not None and rows:
            chart(rows, scenario.chart, out / "charts" / f"{name}.png")
            lines += [f"![{name}](charts/{name}.png)", ""]
    report = out / "REPORT.md"
    report.write_text("\n".join(lines))
    return report
