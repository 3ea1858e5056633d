"""``modelhaul peers``: which peers (``--peer``, else ``MODELHAUL_PEERS``) answer, and which
of the files this machine holds or still wants they hold, by SHA-256.

The digests asked about are those the ledger knows: every unfinished file's expected
SHA-256 and every one in the content index (``--digest`` narrows them). Exit 0 when at
least one peer answered, 1 when none did, 2 when there is no peer to ask.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from downloader.cli import exitcodes
from downloader.cli.options import settings_for
from downloader.cli.output import Output
from downloader.cli.peerprobe import CONCURRENCY, PeerReport, ask_peers
from downloader.errors import SpecError
from downloader.peers import parse_peers
from downloader.progress import format_bytes
from downloader.settings import Settings
from storage import FileState, open_ledger

_HEX = re.compile(r"[0-9a-f]{64}")
NO_PEERS = (
    "no peers to ask: name one with --peer http://[TOKEN@]host:port (repeatable) "
    "or MODELHAUL_PEERS=URL,URL"
)


async def run_peers(args: argparse.Namespace, out: Output) -> int:
    """Ask the peers; print what each said."""
    settings = settings_for(args)
    try:
        peers = parse_peers(args.peer) if args.peer else parse_peers(list(settings.peers))
    except SpecError as e:
        out.error(f"--peer: {e}")
        return exitcodes.USAGE
    if not peers:
        out.error(NO_PEERS)
        return exitcodes.USAGE
    names = await local_digests(settings)
    digests = list(dict.fromkeys(args.digest)) if args.digest else sorted(names)
    from downloader.engine.http import open_session

    engine = settings.engine(max_connections=CONCURRENCY, max_per_host=CONCURRENCY)
    async with open_session(engine) as session:
        reports = await ask_peers(session, peers, digests)
    if out.json:
        out.data([_json(r, names) for r in reports])
    else:
        _show(reports, names, out)
    return exitcodes.OK if any(r.answers for r in reports) else exitcodes.FAILED


async def local_digests(settings: Settings) -> dict[str, tuple[str, ...]]:
    """Every SHA-256 this machine cares about, with the local file names it stands for:
    files not yet completed that expect one, and the content index. Names are the files'
    own (as their tasks call them) where the ledger has them, else the indexed file's."""
    wanted: set[str] = set()
    named: dict[str, set[str]] = defaultdict(set)
    ledger = await open_ledger(settings.ledger_target)
    try:
        indexed = await ledger.contents.all()
        for task in await ledger.tasks.list():
            for f in await ledger.files.of_task(task.id):
                digest = (f.sha256 or f.expected_sha256 or "").lower()
                if not _HEX.fullmatch(digest):
                    continue
                named[digest].add(f.relpath)
                if f.state is not FileState.COMPLETED:
                    wanted.add(digest)
    finally:
        await ledger.close()
    for entry in indexed:
        if _HEX.fullmatch(entry.sha256):
            wanted.add(entry.sha256)
            if entry.sha256 not in named:  # a file other tools fetched: its own name
                named[entry.sha256].add(Path(entry.path).name)
    return {d: tuple(sorted(named[d])) for d in sorted(wanted)}


def _json(report: PeerReport, names: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    latency = None if report.latency is None else round(report.latency * 1000, 1)
    return {
        "peer": report.base,
        "answers": report.answers,
        "latency_ms": latency,
        "version": report.version,
        "asked": report.asked,
        "held": [
            {"sha256": h.sha256, "size": h.size, "local": list(names.get(h.sha256, ()))}
            for h in report.held
        ],
        "error": report.trouble,
    }


def _show(reports: list[PeerReport], names: dict[str, tuple[str, ...]], out: Output) -> None:
    for report in reports:
        base = escape(report.base)  # the user's own words, but brackets would be markup
        if not report.answers:
            out.say(f"[bold]{base}[/bold]  does not answer: {escape(report.trouble or '?')}")
            continue
        version = f", modelhaul {escape(report.version)}" if report.version else ""
        ms = (report.latency or 0) * 1000
        out.say(
            f"[bold]{base}[/bold]  answers in {ms:.0f} ms{version}; "
            f"holds {len(report.held)} of {report.asked} digests asked about"
        )
        if report.held:
            table = Table(box=None, header_style="bold", padding=(0, 2, 0, 0))
            for column in ("  SHA-256", "SIZE", "LOCAL FILE"):
                table.add_column(column)
            for held in report.held:
                local = ", ".join(names.get(held.sha256, ())) or "-"
                table.add_row(f"  {held.sha256[:12]}", format_bytes(held.size), Text(local))
            out.console.print(table)
        if report.trouble:
            out.say(f"  {escape(report.trouble)}")
    answering = sum(r.answers for r in reports)
    out.say(f"{answering} of {len(reports)} peers answer")
