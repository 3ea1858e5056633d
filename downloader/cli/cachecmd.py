"""``modelhaul cache ls|du|rm|evict|clear``."""

from __future__ import annotations

import argparse
import asyncio
import datetime

from rich.table import Table

from downloader.cache import CacheError, ModelCache
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
        if action == "rm":
            code, removed = exitcodes.OK, []
            for spec in args.specs:
                try:
                    model = await cache.delete(spec)
                except CacheError as e:
                    out.error(str(e))
                    code = exitcodes.FAILED
                    continue
                removed.append(model.to_dict())
                out.say(f"deleted {model.name} ({format_bytes(model.size)}) from {model.path}")
            if out.json:
                out.data(removed)
            return code
        if action == "evict":
            result = await cache.evict_to_fit(args.max_size)
            if out.json:
                out.data(
                    {
                        "evicted": [m.to_dict() for m in result.evicted],
                        "freed": result.freed,
                        "size_before": result.size_before,
                        "size_after": result.size_after,
                        "fits": result.fits,
                    }
                )
            for m in result.evicted:
                out.say(f"evicted {m.name} ({format_bytes(m.size)})")
            out.say(
                f"cache: {format_bytes(result.size_before)} → {format_bytes(result.size_after)}"
            )
            if not result.fits:
                out.error(
                    f"still {format_bytes(result.size_after)}, over {format_bytes(args.max_size)}: "
                    "the rest is held by pending, running or paused tasks"
                )
                return exitcodes.FAILED
            return exitcodes.OK
        removed = await cache.clear_cache()
        if out.json:
            out.data([m.to_dict() for m in removed])
        out.say(f"deleted {len(removed)} models ({format_bytes(sum(m.size for m in removed))})")
        return exitcodes.OK


async def _ls(cache: ModelCache, out: Output) -> int:
    models = await cache.cached_models()
    headers = await asyncio.gather(*(asyncio.to_thread(_header, m.path, m.format) for m in models))
    if out.json:
        out.data([{**m.to_dict(), "header": h} for m, h in zip(models, headers, strict=True)])
        return exitcodes.OK
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "PROVIDER", "FORMAT", "SIZE", "LAST USED", "MODEL", "PATH"):
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
            m.name + held,
            m.provider,
            m.format or "",
            format_bytes(m.size),
            when,
            model,
            str(m.path),
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
