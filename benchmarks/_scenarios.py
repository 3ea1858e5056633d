"""Which scripts ``python -m benchmarks`` runs, with what sizes, and how their JSON becomes
table rows and a chart. The scripts stay stand-alone: each runs as a subprocess with --json,
so a script's own imports (``_timing`` as a sibling) and its CLI are untouched."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = dict[str, Any]


@dataclass(frozen=True)
class Chart:
    """A bar chart of one numeric column, one bar per row labelled by ``label`` columns."""

    column: str
    label: tuple[str, ...]
    title: str


@dataclass(frozen=True)
class Scenario:
    """One script and how to read its output."""

    name: str
    title: str
    script: str
    full: str  # the script's flags (besides --json), split at spaces
    quick: str | None  # None: left out of --quick (too slow or needs a daemon)
    needs: tuple[str, ...]  # programs that must be on PATH (or in /usr/sbin)
    rows: Callable[[Any], list[Row]]
    chart: Chart | None


def missing(programs: tuple[str, ...]) -> list[str]:
    """The programs of ``programs`` this machine lacks (``hf`` lives beside our Python)."""
    places = (Path("/usr/sbin"), Path(sys.executable).parent)
    return [p for p in programs if not (shutil.which(p) or any((d / p).exists() for d in places))]


def _engine(data: list[Row]) -> list[Row]:
    ours = {r["scenario"]: r["MB/s"] for r in data if r["tool"] == "modelhaul"}
    return [
        {
            "scenario": r["scenario"],
            "tool": r["tool"],
            "MB/s": r["MB/s"],
            "modelhaul ÷ tool": ours[r["scenario"]] / r["MB/s"] if r["scenario"] in ours else None,
            "CPU s/GiB": r["cpu_s_per_GiB"],
            "peak RSS MB": r["peak_rss_MB"],
        }
        for r in sorted(data, key=lambda r: (r["scenario"] != "unthrottled", r["tool"]))
    ]


def _netem(data: list[Row]) -> list[Row]:
    ours = next((r["MB/s"] for r in data if r["tool"] == "modelhaul"), None)
    return [
        {
            "tool": r["tool"],
            "MB/s": r["MB/s"],
            "seconds": r["wall_s"],
            "modelhaul ÷ tool": ours / r["MB/s"] if ours else None,
            "CPU s/GiB": r["cpu_s_per_GiB"],
            "peak RSS MB": r["peak_rss_MB"],
            "RTT ms": r["rtt_ms"],
        }
        for r in data
    ]


def _kill(data: Row) -> list[Row]:
    rows = [
        {"kill": str(i), "MiB served and not recorded": cost}
        for i, cost in enumerate(data["kill_costs_MiB"], 1)
    ]
    rows.append(
        {
            "kill": f"total: served/size {data['ratio']:.3f}",
            "MiB served and not recorded": data["refetched_MiB"],
        }
    )
    return rows


def _ledger(data: dict[str, float]) -> list[Row]:
    return [{"figure": name, "value": value} for name, value in data.items()]


def _peer(data: dict[str, Row]) -> list[Row]:
    return [
        {
            "from": name,
            "seconds": r["wall_s"],
            "MB/s": r["MB/s"],
            "CPU s": r["cpu_s"],
            "peak RSS MB": r["peak_rss_MB"],
        }
        for name, r in data.items()
    ]


def _columns(headings: dict[str, str], *, lenient: bool = False) -> Callable[[Any], list[Row]]:
    """Rows of a script's JSON (a list, or a dict's values) as table rows: each heading takes
    its key's value (with ``lenient``, None where a row lacks the key)."""

    def rows(data: Any) -> list[Row]:
        items = data.values() if isinstance(data, dict) else data
        return [{h: r.get(k) if lenient else r[k] for h, k in headings.items()} for r in items]

    return rows


_slow_edge = _columns(
    {
        "tool": "tool",
        "even s": "even_s",
        "slow-edged s": "slow_edged_s",
        "slow-edged ÷ even": "ratio",
    }
)
_hostile = _columns(
    {
        "attack": "attack",
        "exit": "exit",
        "seconds": "wall_s",
        "CPU s": "cpu_s",
        "peak RSS MiB": "peak_rss_MiB",
        "served MiB": "served_MiB",
        "outcome": "outcome",
    },
    lenient=True,
)
_hub = _columns(
    {
        "tool": "tool",
        "seconds": "wall_s",
        "MB/s": "MB/s",
        "speed-up over huggingface_hub": "speedup_vs_huggingface_hub",
    }
)
_startup = _columns(
    {
        "command": "modelhaul",
        "seconds": "modelhaul_s",
        "hf": "hf",
        "hf seconds": "hf_s",
        "ratio": "ratio",
        "target ≤": "target",
    }
)
_fleet = _columns(
    {"ledger": "ledger", "workers": "workers", "claims/s": "claims_per_s", "tasks/s": "tasks_per_s"}
)


ENGINE_CHART = Chart("MB/s", ("scenario", "tool"), "Throughput (MB/s, higher is better)")

SCENARIOS = (
    Scenario(
        name="engine",
        title="One file of 1 GiB (64 MiB in --quick) from nginx, unthrottled and at 20 MB/s "
        "per connection",
        script="engine_bench.py",
        full="--size 1G --runs 3",
        quick="--size 64M --runs 1",
        needs=("nginx", "aria2c", "curl", "time"),
        rows=_engine,
        chart=ENGINE_CHART,
    ),
    Scenario(
        name="engine-2g",
        title="One file of 2 GiB from nginx, unthrottled and at 20 MB/s per connection",
        script="engine_bench.py",
        full="--size 2G --runs 3",
        quick=None,  # --quick's engine run is small already; a second size says nothing new
        needs=("nginx", "aria2c", "curl", "time"),
        rows=_engine,
        chart=ENGINE_CHART,
    ),
    Scenario(
        name="netem",
        title="Latency with loss: 50 ms round trips, ~1 % of packets lost (netem, a namespace)",
        script="netem_bench.py",
        full="--size 256M --runs 1",
        quick=None,  # needs root and sch_netem, and one connection at 1 % loss takes minutes
        needs=("ip", "tc", "aria2c", "curl", "time"),
        rows=_netem,
        chart=Chart("MB/s", ("tool",), "Through 50 ms RTT and 1 % loss (MB/s)"),
    ),
    Scenario(
        name="slow-edge",
        title="Every fourth connection capped at 1/20 of 16 MB/s, beside none capped",
        script="slow_edge_bench.py",
        full="--size 512M --runs 1",
        # A 32 MB file takes a second: modelhaul's 3 s default wait would be all of it.
        quick="--size 32M --slow-seconds 1",
        needs=("aria2c", "curl", "time"),
        rows=_slow_edge,
        chart=Chart("slow-edged ÷ even", ("tool",), "Slow-edged time over even (lower is better)"),
    ),
    Scenario(
        name="hostile",
        title="modelhaul get against each size and endless-body attack of the hostile origin",
        script="hostile_bench.py",
        full="--size 24M",
        quick="--size 4M --timeout 30",
        needs=("time",),
        rows=_hostile,
        chart=None,  # exit codes and outcomes: a table says it, bars would not
    ),
    Scenario(
        name="hub",
        title="A hub repo behind a CDN at 10 MB/s per connection",
        script="hub_bench.py",
        full="--small 20 --small-size 4M --big 1 --big-size 256M --cdn-rate 10M --runs 3",
        quick="--small 10 --small-size 1M --big 1 --big-size 32M --cdn-rate 10M --runs 1",
        needs=("time",),
        rows=_hub,
        chart=Chart("seconds", ("tool",), "Whole repo (seconds, lower is better)"),
    ),
    Scenario(
        name="small-files",
        title="Many small files of 1 MiB (200; 50 in --quick) from the local hub",
        script="hub_bench.py",
        full="--small 200 --small-size 1M --big 0 --cdn-rate 10M --runs 3",
        quick="--small 50 --small-size 1M --big 0 --cdn-rate 10M --runs 1",
        needs=("time",),
        rows=_hub,
        chart=Chart("seconds", ("tool",), "Small files (seconds, lower is better)"),
    ),
    Scenario(
        name="kill",
        title="Resume after SIGKILLs on a slow link",
        script="kill_bench.py",
        full="--size 96M --throttle 300KB --kills 3",
        quick="--size 64M --throttle 1MB --connections 8 --kills 2",
        needs=(),
        rows=_kill,
        chart=Chart("MiB served and not recorded", ("kill",), "Bytes fetched again (MiB)"),
    ),
    Scenario(
        name="startup",
        title="Start-up beside the Hugging Face CLI",
        script="startup_bench.py",
        full="--runs 15",
        quick="--runs 2",
        needs=("time", "hf"),
        rows=_startup,
        chart=Chart("seconds", ("command",), "modelhaul start-up (seconds)"),
    ),
    Scenario(
        name="ledger",
        title="The ledger (SQLite)",
        script="ledger_bench.py",
        full="--rounds 5",
        quick="--rounds 1",
        needs=(),
        rows=_ledger,
        chart=None,  # figures in five different units: a table says more than bars
    ),
    Scenario(
        name="peer",
        title="A file from a peer beside from its origin",
        script="peer_bench.py",
        full="--size 1G --runs 3",
        quick=None,
        needs=("nginx", "time"),
        rows=_peer,
        chart=Chart("MB/s", ("from",), "Peer vs origin (MB/s)"),
    ),
    Scenario(
        name="fleet",
        title="Claims and tasks per second with 1, 2 and 4 workers",
        script="fleet_bench.py",
        full="",
        quick=None,
        needs=(),
        rows=_fleet,
        chart=Chart("tasks/s", ("ledger", "workers"), "Fleet tasks per second"),
    ),
)
