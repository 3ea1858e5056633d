"""`modelhaul get`'s start-up: the ledger opens while the first request waits on the network,
so a slow origin and a new ledger cost the slower of the two, not both."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from aiohttp import web
from clikit import finish, start

from storage.migrate import HEAD_REVISION

BODY = bytes(range(256)) * 4096  # 1 MiB


def _ledger_revision(path: Path) -> str | None:
    """The ledger's schema revision, or None while it does not exist or is being built."""
    if not path.exists():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.1) as db:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


async def test_the_ledger_is_built_while_the_origin_holds_the_first_answer(tmp_path: Path):
    held: list[web.Request] = []
    release = asyncio.Event()

    async def serve(request: web.Request) -> web.StreamResponse:
        held.append(request)
        await release.wait()  # every request waits until the test has seen the ledger
        response = web.Response(body=BODY, headers={"ETag": '"v1"', "Accept-Ranges": "bytes"})
        if request.http_range.start is not None:
            part = BODY[request.http_range]
            start_at = request.http_range.start
            response = web.Response(
                status=206,
                body=part,
                headers={
                    "ETag": '"v1"',
                    "Content-Range": f"bytes {start_at}-{start_at + len(part) - 1}/{len(BODY)}",
                },
            )
        return response

    app = web.Application()
    app.router.add_route("*", "/model.bin", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    home = tmp_path / "home"
    dest = tmp_path / "out" / "model.bin"
    try:
        proc = await start(home, "get", f"http://127.0.0.1:{port}/model.bin", "-o", str(dest))
        # While the origin has not answered anything, the new ledger gets built at head.
        for _ in range(600):
            if _ledger_revision(home / "ledger.db") == HEAD_REVISION:
                break
            assert proc.returncode is None, "get ended before the origin answered"
            await asyncio.sleep(0.1)
        assert _ledger_revision(home / "ledger.db") == HEAD_REVISION, (
            "the ledger was not opened while the first request waited"
        )
        assert held, "the origin was never asked"
        release.set()
        result = await finish(proc)
        assert result.code == 0, result.stderr
        assert dest.read_bytes() == BODY
    finally:
        release.set()
        await runner.cleanup()
