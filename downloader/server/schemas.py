"""The JSON schemas of every body the server answers with (``components/schemas`` of its
OpenAPI document): what the fuzz test checks each answer against."""

from __future__ import annotations

from typing import Any

from downloader.progress import DownloadStatus
from storage import TaskState

STATES = [s.value for s in TaskState]
STATUSES = [s.value for s in DownloadStatus]


def ref(name: str) -> dict[str, str]:
    """A reference to the schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str) -> dict[str, Any]:
    """``kind`` or null."""
    return {"type": [kind, "null"]}


def object_schema(required: list[str], properties: dict[str, Any], **more: Any) -> dict[str, Any]:
    """An object with ``properties``, ``required`` of them."""
    return {"type": "object", "required": required, "properties": properties, **more}


def schemas() -> dict[str, Any]:
    """Every schema, by name."""
    return {
        "Error": object_schema(
            ["code", "message"],
            {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "the request field that is wrong"},
            },
            additionalProperties=False,
        ),
        "NewDownload": {
            "type": "object",
            "description": "Exactly one of spec, url, or provider with model.",
            "properties": {
                "spec": {"type": "string", "examples": ["hf://org/repo/model.gguf"]},
                "url": {"type": "string", "format": "uri", "description": "http(s) only"},
                "provider": {
                    "type": "string",
                    "enum": ["url", "huggingface", "hf", "mlx", "ollama"],
                },
                "model": {"type": "string"},
                "filename": {"type": "string", "description": "a path (or glob) in the repo"},
                "allow_patterns": {
                    "oneOf": [
                        {"type": "string"},
                        {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    ]
                },
                "revision": {"type": "string"},
                "via": {"type": "string", "enum": ["daemon", "registry"]},
                "insecure": {"type": "boolean"},
                "base_url": {"type": "string", "format": "uri"},
                "token": {"type": "string", "description": "kept in memory only"},
                "dest": {
                    "type": "string",
                    "description": "a relative path inside the download root (a trailing / "
                    "means a folder); no '..', backslash or control character",
                },
                "priority": {"type": "integer", "minimum": -1000, "maximum": 1000},
                "connections": {"type": "integer", "minimum": 1, "maximum": 64},
                "mirrors": {
                    "type": "array",
                    "items": {"type": "string", "format": "uri"},
                    "maxItems": 16,
                    "description": "more URLs of the same file (only with one URL): its "
                    "chunks are spread over them by speed",
                },
                "peers": {
                    "type": "array",
                    "items": {"type": "string", "format": "uri"},
                    "maxItems": 16,
                    "description": "other modelhaul servers (base URLs, no token: a token is "
                    "given to the process that runs the task) asked first for any file whose "
                    "SHA-256 is known; the digest decides",
                },
                "model_id": {
                    "type": "string",
                    "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
                    "description": "your own name for it (the Download Progress API's model id)",
                },
            },
        },
        "Accepted": object_schema(
            ["download_id", "id", "state", "message", "progress_endpoint", "events_endpoint"],
            {
                "download_id": {"type": "string"},
                "id": {"type": "integer"},
                "state": {"type": "string", "enum": STATES},
                "message": {"type": "string"},
                "progress_endpoint": {"type": "string"},
                "events_endpoint": {"type": "string"},
            },
        ),
        "File": object_schema(
            ["path", "local_path", "url", "size", "downloaded_bytes", "state"],
            {
                "path": {"type": "string"},
                "local_path": {"type": "string"},
                "url": {"type": "string"},
                "size": nullable("integer"),
                "downloaded_bytes": {"type": "integer"},
                "sha256": nullable("string"),
                "expected_sha256": nullable("string"),
                "state": {"type": "string"},
                "error": nullable("string"),
                "format": {"type": ["object", "null"]},
            },
        ),
        "Event": object_schema(
            ["id", "from", "to", "at"],
            {
                "id": {"type": "integer"},
                "from": {"type": ["string", "null"], "enum": [*STATES, None]},
                "to": {"type": "string", "enum": STATES},
                "at": nullable("string"),
                "reason": nullable("string"),
                "actor": nullable("string"),
            },
        ),
        "Download": object_schema(
            ["id", "download_id", "state", "provider", "source", "total_bytes", "downloaded_bytes"],
            {
                "id": {"type": "integer"},
                "download_id": {"type": "string"},
                "state": {"type": "string", "enum": STATES},
                "status": nullable("string"),
                "message": nullable("string"),
                "label": nullable("string"),
                "provider": {"type": "string"},
                "source": {"type": "string"},
                "revision": nullable("string"),
                "patterns": {"type": ["array", "null"], "items": {"type": "string"}},
                "destination": nullable("string"),
                "priority": {"type": "integer"},
                "error": nullable("string"),
                "total_bytes": nullable("integer"),
                "downloaded_bytes": {"type": "integer"},
                "percent": nullable("number"),
                "bytes_per_second": {"type": "number"},
                "speed": nullable("string"),
                "eta_seconds": nullable("number"),
                "eta": nullable("string"),
                "current_file": nullable("string"),
                "files_completed": {"type": "integer"},
                "total_files": {"type": "integer"},
                "created_at": nullable("string"),
                "started_at": nullable("string"),
                "finished_at": nullable("string"),
                "updated_at": nullable("string"),
                "worker": {
                    "oneOf": [ref("WorkerRef"), {"type": "null"}],
                    "description": "the worker running it (null unless downloading)",
                },
                "files_host": {
                    **nullable("string"),
                    "description": "the host whose disk holds its files",
                },
                "files": {"type": "array", "items": ref("File")},
                "events": {"type": "array", "items": ref("Event")},
                "paths": {"type": "array", "items": {"type": "string"}},
                "ollama_name": nullable("string"),
            },
        ),
        "DownloadList": object_schema(
            ["downloads", "total", "limit", "offset"],
            {
                "downloads": {"type": "array", "items": ref("Download")},
                "total": {"type": "integer", "minimum": 0},
                "limit": {"type": "integer"},
                "offset": {"type": "integer"},
            },
        ),
        "Health": object_schema(
            ["status", "version", "downloads"],
            {
                "status": {"const": "ok"},
                "version": {"type": "string"},
                "downloads": {
                    "type": "object",
                    "properties": {s: {"type": "integer", "minimum": 0} for s in STATES},
                    "additionalProperties": False,
                },
            },
            description="No paths: any page the user opens could read this.",
            additionalProperties=False,
        ),
        "DownloadProgress": object_schema(
            ["status", "message", "task_id", "state"],
            {
                "status": {"type": "string", "enum": STATUSES},
                "message": {"type": "string"},
                "percent": nullable("number"),
                "downloaded_bytes": nullable("integer"),
                "total_bytes": nullable("integer"),
                "bytes_per_second": {"type": "number"},
                "formatted_speed": nullable("string"),
                "eta_seconds": nullable("number"),
                "formatted_eta": nullable("string"),
                "current_file": nullable("string"),
                "files_completed": {"type": "integer"},
                "total_files": {"type": "integer"},
                "task_id": nullable("integer"),
                "state": {"type": ["string", "null"], "enum": [*STATES, None]},
                "at": {"type": "number"},
                "note": nullable("string"),
            },
            description="One progress report (the SSE events of our API)",
        ),
        "DownloadStatus": object_schema(
            ["download_id", "repo_id", "status", "progress_percent", "bytes_downloaded"],
            {
                "download_id": {"type": "string"},
                "repo_id": {"type": "string"},
                "filename": nullable("string"),
                "status": {
                    "type": "string",
                    "enum": ["pending", "downloading", "completed", "failed", "cancelled"],
                },
                "progress_percent": {"type": "number"},
                "bytes_downloaded": {"type": "integer"},
                "total_bytes": nullable("integer"),
                "download_speed_mbps": {"type": "number"},
                "eta_seconds": nullable("number"),
                "error_message": nullable("string"),
                "started_at": nullable("string"),
                "completed_at": nullable("string"),
                "local_file_path": nullable("string"),
                "state": {"type": "string", "enum": STATES},
            },
            description="The Downloads API's DownloadStatus (its SSE events), with our state",
        ),
        "DownloadsApiRequest": object_schema(
            ["repo_id", "filename"],
            {
                "repo_id": {"type": "string", "description": "owner/name"},
                "filename": {"type": "string", "description": "a path (or glob) in the repo"},
            },
        ),
        "DownloadsApiAccepted": object_schema(
            ["download_id", "message"],
            {"download_id": {"type": "string"}, "message": {"type": "string"}},
        ),
        "Message": object_schema(["message"], {"message": {"type": "string"}}),
        "ProgressApiItem": object_schema(
            ["model_id", "status", "state", "url", "local_path", "progress", "timing"],
            {
                "model_id": {"type": "string"},
                "status": {
                    "type": "string",
                    "enum": ["downloading", "completed", "failed", "cancelled"],
                },
                "state": {"type": "string", "enum": STATES},
                "url": {"type": "string"},
                "local_path": {"type": "string"},
                "progress": object_schema(
                    ["downloaded_bytes", "total_bytes", "percentage", "download_speed_bps"],
                    {
                        "downloaded_bytes": {"type": "integer"},
                        "total_bytes": nullable("integer"),
                        "percentage": {"type": "number"},
                        "download_speed_bps": {"type": "integer"},
                    },
                ),
                "timing": object_schema(
                    ["start_time", "elapsed_seconds", "estimated_remaining_seconds"],
                    {
                        "start_time": {"type": "integer"},
                        "elapsed_seconds": {"type": "integer"},
                        "estimated_remaining_seconds": nullable("integer"),
                    },
                ),
            },
        ),
        "ProgressApiActive": object_schema(
            ["active_downloads", "total_active", "timestamp"],
            {
                "active_downloads": {"type": "array", "items": ref("ProgressApiItem")},
                "total_active": {"type": "integer"},
                "timestamp": {"type": "integer"},
            },
        ),
        **_limit_schemas(),
        **_worker_schemas(),
    }


RATE_IN = {
    "description": 'bytes per second: a size as typed ("8M" binary, "8MB" decimal; '
    'at least 1K) or a number; "off" or null: no limit',
    "oneOf": [
        {"type": "string", "maxLength": 40, "examples": ["8M", "off"]},
        {"type": "integer", "minimum": 1024, "maximum": 1 << 50},
        {"type": "null"},
    ],
}


def _rate_out() -> dict[str, Any]:
    return {"rate": nullable("integer"), "rate_text": {"type": "string"}}


def _limit_schemas() -> dict[str, Any]:
    return {
        "Limits": object_schema(
            ["rate", "rate_text", "schedule", "now", "process_rate", "tasks"],
            {
                **_rate_out(),
                "schedule": {
                    **nullable("string"),
                    "description": "HH:MM-HH:MM=RATE,... local time (rate is null then)",
                },
                "now": object_schema(
                    ["rate", "rate_text", "rule"], {**_rate_out(), "rule": nullable("string")}
                ),
                "process_rate": {
                    **nullable("integer"),
                    "description": "this server's own limit (serve --limit-rate)",
                },
                "tasks": {"type": "array", "items": ref("TaskLimit")},
            },
            additionalProperties=False,
        ),
        "TaskLimit": object_schema(
            ["id", "rate", "rate_text"],
            {"id": {"type": "integer"}, **_rate_out()},
            additionalProperties=False,
        ),
        "LimitChange": {
            "type": "object",
            "description": "Exactly one of rate and schedule.",
            "properties": {
                "rate": RATE_IN,
                "schedule": {
                    **nullable("string"),
                    "maxLength": 2000,
                    "examples": ["08:00-18:00=2M,18:00-08:00=off"],
                    "description": "rules covering the day once, local time; null: none",
                },
            },
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": False,
        },
        "TaskLimitChange": object_schema(["rate"], {"rate": RATE_IN}, additionalProperties=False),
    }


def _worker_schemas() -> dict[str, Any]:
    worker = {  # every field is always there
        "owner": {"type": "string", "description": "its lease owner, host:pid:start:id"},
        "host": {"type": "string"},
        "pid": {"type": "integer"},
        "tasks": {"type": "integer", "minimum": 0},
        "bytes_per_second": {"type": "integer", "minimum": 0},
        "started_at": nullable("string"),
        "heartbeat_at": nullable("string"),
        "seconds_since_heartbeat": {"type": "number", "minimum": 0},
        "version": {"type": "string"},
        "gone": {"type": "boolean", "description": "its heartbeat is older than stale_after"},
    }
    return {
        "WorkerRef": object_schema(
            ["owner", "host", "pid"],
            {"owner": {"type": "string"}, "host": {"type": "string"}, "pid": {"type": "integer"}},
            additionalProperties=False,
        ),
        "Worker": object_schema(list(worker), worker, additionalProperties=False),
        "WorkerList": object_schema(
            ["workers", "stale_after"],
            {
                "workers": {"type": "array", "items": ref("Worker")},
                "stale_after": {"type": "number"},
            },
            additionalProperties=False,
        ),
    }
