"""Debian's Chromium driven by Playwright (no browser download: ``executable_path``), and
small pages served from another origin for it to open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from conftest import system_program
from serverkit import free_port

# Flags the probe of this machine found necessary: no GPU, no calls home, no first-run UI.
ARGS = [
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@asynccontextmanager
async def chromium(args: list[str] | None = None) -> AsyncIterator:
    """A headless Chromium (skipped, naming the package, where it is not installed)."""
    program = system_program("chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=program, chromium_sandbox=False, args=args or ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def page_server(html: str) -> AsyncIterator[int]:
    """``html`` at ``/`` on 127.0.0.1, on a free port (yielded): another origin."""

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()
