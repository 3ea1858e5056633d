"""``modelhaul cache ls|du|scan|rm|evict|clear``.

``rm``, ``evict`` and ``clear`` never delete without asking: they show what they would
remove and ask (``--yes`` skips the question, ``--dry-run`` only shows); without a terminal
to ask on they refuse. By default they touch only what modelhaul downloaded; ``--all`` adds
the models other tools put in the same caches.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from downloader.cache import ModelCache, RemovalPlan
from downloader.cli import exitcodes
from downloader.cli.options import settings_for
from downloader.cli.output import Output
from downloader.formats import inspect_file
from downloader.progress import format_bytes


async def run_cache(args: argparse.Namespace, out: Output) -> int:
    async with ModelCache(settings_for(args)) as cache:
        action = args.cache_command
        if action == "ls":
            return await _ls(cache, out)
        if action == "du":
            size = await cache.cache_size()
            out.data({"bytes": size}) if out.json else out.say(
                f"{format_bytes(size)} ({size} bytes)"
            )
            return exitcodes.OK
        if action == "scan":
            return await _scan(cache, out)
        if action == "rm":
            plan = await cache.plan_delete(args.specs, others=args.all)
        elif action == "evict":
            plan = await cache.plan_eviction(args.max_size, others=args.all)
        else:
            plan = await cache.plan_clear(others=args.all)
        return await _remove(cache, plan, args, out)


async def _scan(cache: ModelCache, out: Output) -> int:
    """Index both stores' files by SHA-256 and say how many."""
    done = await cache.index()
    if out.json:
        out.data(done.to_dict())
        return exitcodes.OK
    out.say(
        f"indexed {done.indexed} files ({done.hashed} hashed), {done.unchanged} already indexed"
    )
    for path in done.mismatched:
        out.say(f"not indexed: {escape(path)}: its bytes are not the digest its name says")
    return exitcodes.OK


async def _remove(
    cache: ModelCache, plan: RemovalPlan, args: argparse.Namespace, out: Output
) -> int:
    """Show the plan, ask (unless ``--yes``), carry it out and say what went."""
    for why in plan.refused:
        out.error(why)
    code = exitcodes.FAILED if plan.refused else exitcodes.OK
    if args.dry_run:
        if out.json:
            out.data(plan.to_dict())
        elif not out.quiet:
            _show(plan, out.console, args.all)
            out.say("(a dry run: nothing was deleted)")
        return _evict_code(plan.size_after, args, out, code)
    if not plan.removals and args.cache_command != "evict":
        if out.json:
            out.data([])
        elif not out.quiet:
            _show(plan, out.console, args.all)
        return code
    if plan.removals and not args.yes:
        answer = await _confirm(plan, args, out)
        if answer is not None:
            return answer
    removed = await cache.carry_out(plan)
    for r in plan.removals:
        if r.model not in removed:
            out.error(f"kept {r.model.name}: a task started writing to it meanwhile")
            code = exitcodes.FAILED
    if args.cache_command == "evict":
        size = await cache.cache_size()
        if out.json:
            out.data(
                {
                    "evicted": [m.to_dict() for m in removed],
                    "freed": plan.size_before - size,
                    "size_before": plan.size_before,
                    "size_after": size,
                    "fits": size <= args.max_size,
                }
            )
        for m in removed:
            out.say(f"evicted {escape(m.name)} ({format_bytes(m.size)})")
        out.say(f"cache: {format_bytes(plan.size_before)} → {format_bytes(size)}")
        return _evict_code(size, args, out, code)
    if out.json:
        out.data([m.to_dict() for m in removed])
    freed = {r.model.key: r.freed for r in plan.removals}
    if args.cache_command == "rm":
        for m in removed:
            out.say(
                f"deleted {escape(m.name)} ({format_bytes(freed[m.key])}) from "
                f"{escape(str(m.path))}"
            )
    else:
        total = sum(freed[m.key] for m in removed)
        out.say(f"deleted {_models(len(removed))} ({format_bytes(total)})")
    return code


async def _confirm(plan: RemovalPlan, args: argparse.Namespace, out: Output) -> int | None:
    """Ask on the terminal whether to go ahead: None to go on, else the exit code (a
    refusal, or no terminal to ask on)."""
    what = f"{_models(len(plan.removals))} ({format_bytes(plan.freed)})"
    if not sys.stdin.isatty():
        out.error(
            f"would delete {what}: not without a confirmation, and there is no terminal to "
            "ask on; pass --yes to delete, or --dry-run to see what would go"
        )
        return exitcodes.FAILED
    _show(plan, out.errors if out.json or out.quiet else out.console, args.all)
    answer = await asyncio.to_thread(_ask, f"Delete {what}? [y/N] ")
    if answer.strip().lower() in ("y", "yes"):
        return None
    out.error("nothing deleted")
    return exitcodes.FAILED


def _ask(question: str) -> str:
    """One line from the terminal (the question on stderr, as ``rm -i`` asks)."""
    sys.stderr.write(question)
    sys.stderr.flush()
    return sys.stdin.readline()


def _show(plan: RemovalPlan, console: Console, everything: bool) -> None:
    """What a plan removes: a model a row, then what that frees."""
    whose = "" if everything else " (only what modelhaul downloaded; --all for other tools' too)"
    if not plan.removals:
        console.print(Text(f"nothing to delete{whose}"), soft_wrap=True)
        return
    console.print(Text(f"to delete, {_models(len(plan.removals))}{whose}:"), soft_wrap=True)
    table = Table(box=None, show_header=False, padding=(0, 1, 0, 2))
    for r in plan.removals:
        where = str(r.model.path) + ("" if r.whole else " (modelhaul's files of it)")
        table.add_row(Text(r.model.name), r.model.provider, format_bytes(r.freed), Text(where))
    console.print(table)
    console.print(
        Text(
            f"frees {format_bytes(plan.freed)}: the caches go from "
            f"{format_bytes(plan.size_before)} to {format_bytes(plan.size_after)}"
        ),
        soft_wrap=True,
    )


def _models(n: int) -> str:
    return f"{n} model{'' if n == 1 else 's'}"


def _evict_code(size: int, args: argparse.Namespace, out: Output, code: int) -> int:
    """``evict``: whether what is left fits (else say why and fail)."""
    if args.cache_command != "evict" or size <= args.max_size:
        return code
    out.error(
        f"still {format_bytes(size)}, over {format_bytes(args.max_size)}: the rest is held by "
        "pending, running or paused tasks"
        + ("" if args.all else ", or was downloaded by other tools (--all includes them)")
    )
    return exitcodes.FAILED


async def _ls(cache: ModelCache, out: Output) -> int:
    models = await cache.cached_models()
    headers = await asyncio.gather(*(asyncio.to_thread(_header, m.path, m.format) for m in models))
    if out.json:
        out.data([{**m.to_dict(), "header": h} for m, h in zip(models, headers, strict=True)])
        return exitcodes.OK
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "PROVIDER", "BY", "FORMAT", "SIZE", "LAST USED", "MODEL", "PATH"):
        table.add_column(column)
    for m, h in zip(models, headers, strict=True):
        model = ""
        if h:
            params = h.get("parameters") or 0
            model = " ".join(
                str(x)
                for x in (
                    h.get("architecture"),
                    h.get("quantization"),
                    f"{params / 1e9:.2f}B params" if params else "",
                )
                if x
            )
        when = datetime.datetime.fromtimestamp(m.last_used).strftime("%Y-%m-%d %H:%M")
        held = f" (task {m.held_by})" if m.held_by else ""
        table.add_row(
            escape(m.name) + held,
            m.provider,
            m.by,
            m.format or "",
            format_bytes(m.size),
            when,
            model,
            escape(str(m.path)),
        )
    out.console.print(table)
    return exitcodes.OK


def _header(path, fmt: str | None) -> dict | None:  # type: ignore[type-arg]
    """What the largest GGUF of an entry says about the model (None if there is none)."""
    if fmt != "gguf":
        return None
    candidates = [path] if path.is_file() else [p for p in path.rglob("*.gguf") if p.is_file()]
    if not candidates:
        return None
    biggest = max(candidates, key=lambda p: p.stat().st_size)
    try:
        info = inspect_file(biggest, biggest.name if biggest.suffix else None)
    except Exception:
        return None
    return info.summary() if info is not None else None
