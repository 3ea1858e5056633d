"""The routes other projects already call, with their exact shapes.

- the Downloads API of a local model server: ``POST /local/download`` (``repo_id`` +
  ``filename``), ``GET /local/download/status`` (SSE of its ``DownloadStatus``),
  ``DELETE /local/download/{download_id}``;
- the Download Progress API of an inference server (Kolosal): ``GET /download-progress/{id}`` and
  ``/v1/download-progress/{id}``, ``GET /downloads`` and ``/v1/downloads``.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from downloader.errors import SpecError
from downloader.json_shapes import iso, local_path, snapshot_paths
from downloader.manager import DownloadManager
from downloader.progress import DownloadProgress
from downloader.server import validation
from downloader.server.context import EVENTS, MANAGER
from downloader.server.errors import RequestError, error_response
from downloader.specs import repo_spec
from storage import UNDERWAY, TaskNotFoundError, TaskRecord, TaskState

routes = web.RouteTableDef()

# The Downloads API knows five statuses; a paused download is waiting again, as its
# "pending" is.
DOWNLOADS_API_STATUS = {
    TaskState.PENDING: "pending",
    TaskState.PAUSED: "pending",
    TaskState.DOWNLOADING: "downloading",
    TaskState.COMPLETED: "completed",
    TaskState.FAILED: "failed",
    TaskState.CANCELLED: "cancelled",
}


@routes.post("/local/download")
async def local_download(request: web.Request) -> web.Response:
    """Downloads API: start downloading ``filename`` of the Hugging Face repo ``repo_id``."""
    data = await validation.json_object(request)
    repo_id = data.get("repo_id")
    filename = data.get("filename")
    for field, value in (("repo_id", repo_id), ("filename", filename)):
        if not isinstance(value, str) or not value.strip():
            raise validation.invalid(field, "must be a non-empty string")
    # A file's path in the repo (or a glob): never "..", absolute, a backslash or NUL.
    pattern = validation.repo_path(filename.strip(), "filename")
    try:
        spec = repo_spec("huggingface", repo_id, patterns=(pattern,))
    except SpecError as e:
        raise validation.invalid("repo_id", str(e)) from e
    task = await request.app[MANAGER].add(spec)
    return web.json_response(
        {"download_id": str(task.id), "message": f"Download started for {repo_id}/{filename}"},
        status=202,
    )


async def downloads_api_status(
    manager: DownloadManager, progress: DownloadProgress
) -> dict[str, Any] | None:
    """The Downloads API's ``DownloadStatus`` of one download."""
    if progress.task_id is None:
        return None
    try:
        task = await manager.get(progress.task_id)
    except TaskNotFoundError:
        return None
    files = await manager.files(task.id)
    filename = task.patterns[0] if task.patterns else (files[0].relpath if files else None)
    total = progress.total_bytes if progress.total_bytes is not None else task.total_bytes
    done = progress.downloaded_bytes if progress.downloaded_bytes is not None else 0
    return {
        "download_id": str(task.id),
        "repo_id": task.source,
        "filename": filename,
        "status": DOWNLOADS_API_STATUS[task.state],
        "progress_percent": progress.percent
        or (100.0 if task.state is TaskState.COMPLETED else 0.0),
        "bytes_downloaded": done,
        "total_bytes": total,
        "download_speed_mbps": round(progress.bytes_per_second / 1_000_000, 3),
        "eta_seconds": progress.eta_seconds,
        "error_message": task.error,
        "started_at": iso(task.started_at),
        "completed_at": iso(task.finished_at) if task.state is TaskState.COMPLETED else None,
        "local_file_path": _downloads_api_local_path(task, files),
        "state": task.state.value,  # ours, beside its fields: says "paused" plainly
    }


def _downloads_api_local_path(task: TaskRecord, files: list) -> str | None:  # type: ignore[type-arg]
    if task.state is not TaskState.COMPLETED:
        return None
    if task.provider in ("huggingface", "mlx") and len(files) == 1:
        return snapshot_paths(task, files[0])[0]
    return local_path(task, files)


@routes.get("/local/download/status")
async def local_status(request: web.Request) -> web.StreamResponse:
    """Downloads API: SSE of every download's ``DownloadStatus``."""
    manager = request.app[MANAGER]

    async def fmt(progress: DownloadProgress) -> dict[str, Any] | None:
        return await downloads_api_status(manager, progress)

    return await request.app[EVENTS].stream(request, fmt)


@routes.delete("/local/download/{download_id}")
async def local_cancel(request: web.Request) -> web.Response:
    """Downloads API: cancel (404 ``DOWNLOAD_NOT_FOUND`` for an unknown id)."""
    task_id = validation.parse_id(request.match_info["download_id"])
    if task_id is None:
        return error_response(404, "DOWNLOAD_NOT_FOUND", "Download not found")
    try:
        await request.app[MANAGER].cancel(task_id)
    except TaskNotFoundError:
        return error_response(404, "DOWNLOAD_NOT_FOUND", "Download not found")
    return web.json_response({"message": "Download cancelled successfully"})


# --- the Download Progress API ---------------------------------------------------------------

PROGRESS_API_STATUS = {
    TaskState.PENDING: "downloading",  # queued downloads count as in progress there
    TaskState.DOWNLOADING: "downloading",
    TaskState.PAUSED: "downloading",
    TaskState.COMPLETED: "completed",
    TaskState.FAILED: "failed",
    TaskState.CANCELLED: "cancelled",
}


async def progress_api_item(manager: DownloadManager, task: TaskRecord) -> dict[str, Any]:
    """The Download Progress API's object for one download."""
    progress = await manager.progress(task.id)
    files = await manager.files(task.id)
    total = progress.total_bytes if progress.total_bytes is not None else task.total_bytes
    done = progress.downloaded_bytes or 0
    started = task.started_at or task.created_at
    end = task.finished_at or time.time()
    return {
        "model_id": task.options.get("model_id") or str(task.id),
        "status": PROGRESS_API_STATUS[task.state],
        "state": task.state.value,
        "url": files[0].url if len(files) == 1 else task.source,
        "local_path": local_path(task, files),
        "progress": {
            "downloaded_bytes": done,
            "total_bytes": total,
            "percentage": round(100.0 * done / total, 2) if total else 0.0,
            "download_speed_bps": round(progress.bytes_per_second),
        },
        "timing": {
            "start_time": int(started * 1000),
            "elapsed_seconds": int(max(0.0, end - started)),
            "estimated_remaining_seconds": (
                int(progress.eta_seconds) if progress.eta_seconds is not None else None
            ),
        },
    }


async def _by_model_id(manager: DownloadManager, raw: str) -> TaskRecord:
    task_id = validation.parse_id(raw)
    if task_id is not None:
        return await manager.get(task_id)
    for task in await manager.list(limit=1000):
        if task.options.get("model_id") == raw:
            return task
    raise TaskNotFoundError(-1)


@routes.get("/download-progress/{id}")
@routes.get("/v1/download-progress/{id}")
async def download_progress(request: web.Request) -> web.Response:
    """Download Progress API: one download's progress by id (or the ``model_id`` given at
    creation)."""
    raw = request.match_info["id"]
    if not validation.valid_label(raw):
        raise RequestError(400, "INVALID_ID", f"invalid model ID format: {raw[:100]!r}")
    try:
        task = await _by_model_id(request.app[MANAGER], raw)
    except TaskNotFoundError:
        return error_response(404, "DOWNLOAD_NOT_FOUND", f"no download found for {raw!r}")
    return web.json_response(await progress_api_item(request.app[MANAGER], task))


@routes.get("/downloads")
@routes.get("/v1/downloads")
async def active_downloads(request: web.Request) -> web.Response:
    """Download Progress API: every download still under way."""
    manager = request.app[MANAGER]
    active = await manager.list(UNDERWAY)
    items = [await progress_api_item(manager, t) for t in active]
    return web.json_response(
        {
            "active_downloads": items,
            "total_active": len(items),
            "timestamp": int(time.time() * 1000),
        }
    )
