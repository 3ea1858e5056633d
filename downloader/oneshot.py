"""``download_model``: AbstractCore's provider-agnostic call, as an async generator.

    async for progress in download_model("url", "https://host/model.gguf"):
        print(progress.status.value, progress.message, progress.percent)

Errors never escape the iterator: they arrive as one ``DownloadStatus.ERROR`` progress with
a message a user can act on. Calling it again for the same model and destination resumes the
existing task. If the caller stops iterating early, the task is paused (not lost).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from downloader.errors import ModelhaulError
from downloader.manager import DownloadManager
from downloader.peers import parse_peers
from downloader.progress import DownloadProgress, DownloadStatus, report
from downloader.settings import Settings
from downloader.specs import spec_for
from storage import TaskRecord

log = logging.getLogger(__name__)


async def download_model(
    provider: str,
    model: str,
    *,
    token: str | None = None,
    base_url: str | None = None,
    dest: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
    **opts: Any,
) -> AsyncIterator[DownloadProgress]:
    """Download ``model`` from ``provider``, yielding progress until it completes or fails.

    ``provider``: ``"url"`` (``model`` is an http(s) URL), ``"huggingface"`` or ``"mlx"``
    (``model`` is ``owner/repo``; ``filename=``, ``allow_patterns=``, ``revision=`` pick
    what to fetch, all of it by default), ``"ollama"`` (``model`` is ``name[:tag]``;
    ``base_url`` is the Ollama server, ``via="daemon"|"registry"`` chooses the way).
    ``token`` is used in memory only (for the Hub, ``huggingface_hub.get_token()`` when
    absent). ``dest``: a file path or folder (a plain
    folder instead of the Hugging Face cache for repos). Other options: ``connections``,
    ``priority``, ``peers`` (other modelhaul servers, ``http://[TOKEN@]host:port``, asked
    first for any file whose SHA-256 is known; their tokens stay in memory).
    """
    try:
        peers = parse_peers(opts.pop("peers", None) or ())
        if peers:
            # These peers and the process's own (MODELHAUL_PEERS), tokens in memory only.
            settings = settings or Settings.from_env()
            known = {p.base: p for p in parse_peers(settings.peers)}
            known.update({p.base: p for p in peers})
            settings = settings.with_(peers=tuple(p.spelled for p in known.values()))
        spec = spec_for(provider, model, base_url=base_url, **opts)
        if peers:  # kept with the task (without tokens), so a resume asks them too
            spec = dataclasses.replace(
                spec, options={**spec.options, "peers": [p.base for p in peers]}
            )
    except (ModelhaulError, ValueError) as e:
        yield _error(str(e))
        return
    priority = int(opts.get("priority", 0))
    connections = opts.get("connections")
    try:
        async with DownloadManager(settings) as manager:
            task = await manager.add(
                spec, dest=dest, token=token, priority=priority, connections=connections
            )
            # AbstractCore's stream always opens with STARTING, even when the runner has already
            # moved on by the time we subscribe (a fast start) or the task finished earlier.
            yield _starting(task)
            finished = False
            try:
                async for progress in manager.subscribe(task.id):
                    finished = progress.status.is_final
                    yield progress
                    if finished:
                        return
            finally:
                if not finished:  # the caller stopped listening: keep the work, paused
                    await manager.release(task.id)
    except (ModelhaulError, OSError) as e:
        yield _error(str(e))
    except Exception as e:  # never an exception from the iterator: download_model's contract
        log.exception("download_model(%r, %r) failed", provider, model)
        yield _error(f"internal error: {type(e).__name__}: {e}")


def _starting(task: TaskRecord) -> DownloadProgress:
    return report(
        DownloadStatus.STARTING,
        f"Starting {task.label}",
        done=task.downloaded_bytes,
        total=task.total_bytes,
        files_completed=task.files_done,
        total_files=task.files_total,
        task_id=task.id,
        state=task.state,
    )


def _error(message: str) -> DownloadProgress:
    return DownloadProgress(DownloadStatus.ERROR, message)
