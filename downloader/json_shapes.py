"""JSON shapes of tasks, files, events and workers: one place, used by the server and the
CLI."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from downloader.progress import DownloadProgress
from storage import EventRecord, FileRecord, TaskRecord, TaskState

if TYPE_CHECKING:  # its module loads SQLAlchemy, which `ls` (storage.glance) does without
    from storage import WorkerRecord

OLLAMA_MODEL = "application/vnd.ollama.image.model"  # the layer that holds the weights
OLLAMA_REGISTRY = "registry.ollama.ai"


def iso(ts: float | None) -> str | None:
    """UNIX seconds → ``2024-01-12T10:00:00Z`` (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def task_json(
    task: TaskRecord,
    progress: DownloadProgress | None = None,
    *,
    files: Sequence[FileRecord] | None = None,
    events: Sequence[EventRecord] | None = None,
) -> dict[str, Any]:
    """A task as the API and ``--json`` show it: its ledger fields, its live progress if
    known, and optionally its files and history."""
    total = task.total_bytes
    done = (
        progress.downloaded_bytes
        if progress and progress.downloaded_bytes is not None
        else (task.downloaded_bytes)
    )
    data: dict[str, Any] = {
        "id": task.id,
        "download_id": str(task.id),
        "state": task.state.value,
        "status": progress.status.value if progress else None,
        "message": progress.message if progress else None,
        "label": task.label,
        "provider": task.provider,
        "source": task.source,
        "revision": task.revision,
        "patterns": list(task.patterns) if task.patterns else None,
        "destination": task.destination,
        "priority": task.priority,
        "error": task.error,
        "total_bytes": total,
        "downloaded_bytes": done,
        "percent": round(100.0 * done / total, 2) if total else None,
        "bytes_per_second": progress.bytes_per_second if progress else 0.0,
        "speed": progress.formatted_speed if progress else None,
        "eta_seconds": progress.eta_seconds if progress else None,
        "eta": progress.formatted_eta if progress else None,
        "current_file": progress.current_file if progress else None,
        "files_completed": task.files_done,
        "total_files": task.files_total,
        "created_at": iso(task.created_at),
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "updated_at": iso(task.updated_at),
        "worker": lease_json(task),
        # The host whose disk holds its files (of a completed task: where they are).
        "files_host": task.files_host,
    }
    if files is not None:
        data["files"] = [file_json(f) for f in files]
        data["paths"] = usable_paths(task, files)
        data["ollama_name"] = ollama_name_of(task)
    if events is not None:
        data["events"] = [event_json(e) for e in events]
    return data


def lease_json(task: TaskRecord) -> dict[str, Any] | None:
    """Which worker runs a task now (None: nobody, it is not downloading)."""
    lease = task.lease
    if lease is None or task.state is not TaskState.DOWNLOADING:
        return None
    return {"owner": lease.owner, "host": lease.host, "pid": lease.pid}


def worker_json(worker: WorkerRecord, *, now: float, stale_after: float) -> dict[str, Any]:
    """A worker (a process running downloads) as its last heartbeat left it; ``gone``: that
    heartbeat is older than ``stale_after`` seconds."""
    return {
        "owner": worker.owner,
        "host": worker.host,
        "pid": worker.pid,
        "tasks": worker.tasks,
        "bytes_per_second": worker.rate,
        "started_at": iso(worker.started_at),
        "heartbeat_at": iso(worker.heartbeat_at),
        "seconds_since_heartbeat": round(max(0.0, now - worker.heartbeat_at), 1),
        "version": worker.version,
        "gone": worker.gone(now, stale_after),
    }


def file_json(f: FileRecord) -> dict[str, Any]:
    """One file of a task."""
    return {
        "path": f.relpath,
        "local_path": f.local_path,
        "url": f.url,
        "size": f.size,
        "downloaded_bytes": f.downloaded_bytes,
        "sha256": f.sha256,
        "expected_sha256": f.expected_sha256,
        "state": f.state.value,
        "error": f.error,
        # what the file's header says (GGUF: architecture, quantization, parameters, …)
        "format": f.meta.get("format"),
    }


def event_json(e: EventRecord) -> dict[str, Any]:
    """One entry of a task's history."""
    return {
        "id": e.id,
        "from": e.from_state.value if e.from_state else None,
        "to": e.to_state.value,
        "at": iso(e.at),
        "reason": e.reason,
        "actor": e.actor,
    }


def local_path(task: TaskRecord, files: Sequence[FileRecord]) -> str:
    """Where the downloaded thing is: the file itself for a one-file task, else its folder."""
    if len(files) == 1 and task.provider == "url":
        return files[0].local_path
    return str(Path(task.destination))


def usable_paths(task: TaskRecord, files: Sequence[FileRecord]) -> list[str]:
    """The files a program can open once the task has completed (none before): a Hugging
    Face file at its path in the snapshot folder (``snapshots/<commit>/<path>``, under
    every name the repo gives those bytes), not its blob; an Ollama model's weights blob;
    any other download's file itself."""
    if task.state is not TaskState.COMPLETED:
        return []
    paths: list[str] = []
    for f in files:
        if task.provider in ("huggingface", "mlx"):
            paths += snapshot_paths(task, f)
        elif task.provider == "ollama":
            if f.meta.get("media_type") == OLLAMA_MODEL:
                paths.append(f.local_path)
        else:
            paths.append(f.local_path)
    return paths


def snapshot_paths(task: TaskRecord, f: FileRecord) -> list[str]:
    """Where a Hugging Face file is found by name: in the cache, ``snapshots/<commit>/``
    plus each repo path sharing its blob; in a plain folder, the file itself."""
    commit, folder = f.meta.get("commit"), task.destination
    if not commit or not f.local_path.startswith(f"{folder}/blobs/"):
        return [f.local_path]
    return [f"{folder}/snapshots/{commit}/{path}" for path in f.meta.get("paths") or [f.relpath]]


def ollama_name(manifest: PurePath) -> str:
    """The name ``ollama run`` knows a model by, from its manifest's path (ending in
    ``<host>/<namespace>/<model>/<tag>``): ``llama3.2:1b`` for the default registry's
    library, else ``host/namespace/model:tag``."""
    host, namespace, model, tag = manifest.parts[-4:]
    if host == OLLAMA_REGISTRY and namespace == "library":
        return f"{model}:{tag}"
    return f"{host}/{namespace}/{model}:{tag}"


def ollama_name_of(task: TaskRecord) -> str | None:
    """An Ollama task's model name (None for other providers): from the manifest it wrote,
    else as it was asked for (a pull through the daemon)."""
    if task.provider != "ollama":
        return None
    manifest = task.options.get("manifest_path")
    if isinstance(manifest, str) and len(PurePath(manifest).parts) >= 4:
        return ollama_name(PurePath(manifest))
    return task.source
