"""Argument parsing and dispatch for ``modelhaul``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from downloader.errors import ModelhaulError
from storage import LedgerError, TaskState, open_ledger


def _version() -> str:
    try:
        return version("modelhaul")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelhaul", description="Download model files.")
    parser.add_argument("--version", action="version", version=f"modelhaul {_version()}")
    parser.add_argument("--home", help="ledger folder (default: $MODELHAUL_HOME)")
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="list tasks")
    ls.add_argument("--state", choices=[s.value for s in TaskState])
    ls.add_argument("--json", action="store_true")
    serve = sub.add_parser("serve", help="run the REST + SSE server and its web page")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--token", default=os.environ.get("MODELHAUL_TOKEN"))
    return parser


async def _serve(args: argparse.Namespace) -> int:
    from downloader.server import serve
    from downloader.settings import Settings

    settings = Settings.from_env(**({"home": Path(args.home)} if args.home else {}))
    print(f"modelhaul serving on http://{args.host}:{args.port}/", flush=True)
    await serve(settings, host=args.host, port=args.port, token=args.token)
    return 0


async def _ls(args: argparse.Namespace) -> int:
    target = None if args.home is None else f"{args.home}/ledger.db"
    async with await open_ledger(target) as ledger:
        states = None if args.state is None else [TaskState(args.state)]
        tasks = await ledger.tasks.list(states)
    if args.json:
        print(json.dumps([{"id": t.id, "state": t.state.value, "label": t.label} for t in tasks]))
    else:
        for t in tasks:
            print(f"{t.id:>6}  {t.state.value:<11}  {t.label}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``modelhaul``; returns the exit code."""
    args = build_parser().parse_args(argv)
    command = {"ls": _ls, "serve": _serve}[args.command]
    try:
        return asyncio.run(command(args))
    except KeyboardInterrupt:
        return 130
    except (LedgerError, ModelhaulError) as e:
        print(f"modelhaul: {e}", file=sys.stderr)
        return 1
