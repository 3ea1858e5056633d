"""Our own API under ``/api/v1``."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from downloader.json_shapes import task_json, worker_json
from downloader.limits import Schedule, format_rate
from downloader.manager import DownloadManager
from downloader.progress import DownloadProgress
from downloader.server import validation
from downloader.server.context import EVENTS, MANAGER, ROOT
from storage import TaskRecord, TaskState

routes = web.RouteTableDef()
PREFIX = "/api/v1"


async def _task(manager: DownloadManager, task_id: int, *, detail: bool = False) -> dict[str, Any]:
    task = await manager.get(task_id)
    progress = await manager.progress(task_id)
    if not detail:
        return task_json(task, progress)
    return task_json(
        task, progress, files=await manager.files(task_id), events=await manager.history(task_id)
    )


@routes.post(f"{PREFIX}/downloads")
async def create(request: web.Request) -> web.Response:
    """Queue a download: 202 with where to follow it."""
    manager = request.app[MANAGER]
    wanted = validation.new_download(await validation.json_object(request), request.app[ROOT])
    options = {"model_id": wanted.label} if wanted.label else {}
    task = await manager.add(
        wanted.spec,
        dest=wanted.dest,
        priority=wanted.priority,
        connections=wanted.connections,
        token=wanted.token,
        **options,
    )
    body = {
        "download_id": str(task.id),
        "id": task.id,
        "state": task.state.value,
        "message": f"Download queued: {task.label}",
        "progress_endpoint": f"{PREFIX}/downloads/{task.id}",
        "events_endpoint": f"{PREFIX}/downloads/{task.id}/events",
    }
    return web.json_response(body, status=202)


@routes.get(f"{PREFIX}/downloads")
async def listing(request: web.Request) -> web.Response:
    """Downloads, newest first: ``?state=a,b&limit=&offset=``."""
    manager = request.app[MANAGER]
    states = validation.states(request)
    limit, offset = validation.paging(request)
    tasks = await manager.list(states, limit=limit, offset=offset)
    total = await manager.count(states)
    items = [task_json(t, await manager.progress(t.id)) for t in tasks]
    return web.json_response({"downloads": items, "total": total, "limit": limit, "offset": offset})


@routes.get(f"{PREFIX}/downloads/{{id}}")
async def show(request: web.Request) -> web.Response:
    """One download with its files and its history."""
    task_id = validation.task_id(request)
    return web.json_response(await _task(request.app[MANAGER], task_id, detail=True))


@routes.post(f"{PREFIX}/downloads/{{id}}/{{action:pause|resume|retry}}")
async def control(request: web.Request) -> web.Response:
    """Pause, resume or retry (409 when the state machine forbids it)."""
    manager = request.app[MANAGER]
    task_id = validation.task_id(request)
    await getattr(manager, request.match_info["action"])(task_id)
    return web.json_response(await _task(manager, task_id))


@routes.delete(f"{PREFIX}/downloads/{{id}}")
async def cancel(request: web.Request) -> web.Response:
    """Cancel for good; ``?purge=true`` deletes its partial files too."""
    manager = request.app[MANAGER]
    task_id = validation.task_id(request)
    await manager.cancel(task_id, purge=validation.flag(request, "purge"))
    return web.json_response(await _task(manager, task_id))


async def _progress_json(progress: DownloadProgress) -> dict[str, Any]:
    return progress.to_dict()


@routes.get(f"{PREFIX}/events")
async def events(request: web.Request) -> web.StreamResponse:
    """SSE of every download's progress (``DownloadProgress`` fields)."""
    return await request.app[EVENTS].stream(request, _progress_json)


@routes.get(f"{PREFIX}/downloads/{{id}}/events")
async def download_events(request: web.Request) -> web.StreamResponse:
    """SSE of one download's progress."""
    task_id = validation.task_id(request)
    return await request.app[EVENTS].stream(request, _progress_json, task_id=task_id)


@routes.get(f"{PREFIX}/limits")
async def limits(request: web.Request) -> web.Response:
    """The live bandwidth limit: global (rate or schedule), in force now, tasks' own."""
    return web.json_response((await request.app[MANAGER].get_limits()).to_dict())


@routes.put(f"{PREFIX}/limits")
async def set_limits(request: web.Request) -> web.Response:
    """Set the global limit: ``{"rate": "8M"}`` / ``{"rate": null}`` or ``{"schedule": …}``;
    every process running downloads follows within a second."""
    manager = request.app[MANAGER]
    kind, value = validation.limit_change(await validation.json_object(request))
    if kind == "rate":
        assert not isinstance(value, Schedule)
        done = await manager.set_limit(value)
    else:
        assert not isinstance(value, int)
        done = await manager.set_schedule(value)
    return web.json_response(done.to_dict())


def _task_limit(task: TaskRecord) -> dict[str, Any]:
    rate = task.options.get("rate_limit")
    return {"id": task.id, "rate": rate, "rate_text": format_rate(rate)}


@routes.get(f"{PREFIX}/downloads/{{id}}/limit")
async def task_limit(request: web.Request) -> web.Response:
    """One download's own limit (null: none; the global one still applies)."""
    task = await request.app[MANAGER].get(validation.task_id(request))
    return web.json_response(_task_limit(task))


@routes.put(f"{PREFIX}/downloads/{{id}}/limit")
async def set_task_limit(request: web.Request) -> web.Response:
    """Set one download's own limit: ``{"rate": "2M"}`` / ``{"rate": null}``."""
    manager = request.app[MANAGER]
    task_id = validation.task_id(request)
    rate = validation.limit_rate(await validation.json_object(request))
    await manager.set_limit(rate, task_id=task_id)
    return web.json_response(_task_limit(await manager.get(task_id)))


@routes.get(f"{PREFIX}/workers")
async def workers(request: web.Request) -> web.Response:
    """The processes running downloads on this ledger: live ones first, gone ones marked."""
    manager = request.app[MANAGER]
    stale_after = manager.settings.stale_after
    now = time.time()
    rows = [
        worker_json(w, now=now, stale_after=stale_after)
        for w in await manager.ledger.workers.list()
    ]
    rows.sort(key=lambda w: w["gone"])
    return web.json_response({"workers": rows, "stale_after": stale_after})


@routes.get(f"{PREFIX}/health")
@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """Alive, with the ledger's counts (and no paths: a page may read this)."""
    from importlib.metadata import PackageNotFoundError, version

    manager = request.app[MANAGER]
    try:
        release = version("modelhaul")
    except PackageNotFoundError:
        release = "unknown"
    counts = {state.value: await manager.count(state) for state in TaskState}
    return web.json_response(
        {
            "status": "ok",
            "version": release,
            "downloads": counts,
        }
    )
