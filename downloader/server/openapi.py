"""The OpenAPI 3.1 description of every route (served at ``/api/v1/openapi.json``).

It is the contract the fuzz test holds the server to (``tests/test_server_fuzz.py``): every
status a route can answer is listed with its body's schema, errors included.
"""

from __future__ import annotations

from typing import Any

from downloader.progress import DownloadStatus
from storage import TaskState

STATES = [s.value for s in TaskState]
STATUSES = [s.value for s in DownloadStatus]
ERROR_WORDS = {
    400: "Malformed JSON, a bad id format, or a missing or malformed Host header",
    401: "Missing or wrong bearer token",
    403: "Another web site's request (Origin, Sec-Fetch-Site) or a Host this server does not "
    "answer to (DNS rebinding)",
    404: "No such download",
    409: "The state machine forbids this now",
    413: "Body larger than 64 KiB",
    415: "A body (or a browser form's media type) that is not application/json",
    422: "A field is wrong (named in the body's field)",
}
# Every route can meet these: the Host, Origin and token checks run before any handler.
ALWAYS = (400, 401, 403)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ref("Error"), ERROR_WORDS[s]) for s in sorted({*statuses, *ALWAYS})}


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


def _object(required: list[str], properties: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties, **more}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _sse(event: str) -> dict[str, Any]:
    # Before OpenAPI 3.2's itemSchema, an event stream's schema describes one event.
    return {
        "description": "Server-Sent Events, each with an id and JSON data; Last-Event-ID is "
        "honoured on reconnect; a comment every 15 s keeps the stream alive.",
        "content": {
            "text/event-stream": {
                "schema": _object(
                    ["id", "data"],
                    {
                        "id": {"type": "string", "pattern": "^[0-9]+$"},
                        "event": {"const": "message"},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": _ref(event),
                        },
                    },
                )
            }
        },
    }


ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "A download id (an integer up to 2^63 - 1)",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
RECONNECT = [
    {
        "name": "Last-Event-ID",
        "in": "header",
        "description": "The last event id seen: what came after it is replayed (anything "
        "else: the current state of every download is sent)",
        "schema": {"type": "string"},
    },
    {"name": "lastEventId", "in": "query", "schema": {"type": "string"}},
]


def _schemas() -> dict[str, Any]:
    return {
        "Error": _object(
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
                "model_id": {
                    "type": "string",
                    "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
                    "description": "your own name for it (the Download Progress API's model id)",
                },
            },
        },
        "Accepted": _object(
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
        "File": _object(
            ["path", "local_path", "url", "size", "downloaded_bytes", "state"],
            {
                "path": {"type": "string"},
                "local_path": {"type": "string"},
                "url": {"type": "string"},
                "size": _nullable("integer"),
                "downloaded_bytes": {"type": "integer"},
                "sha256": _nullable("string"),
                "expected_sha256": _nullable("string"),
                "state": {"type": "string"},
                "error": _nullable("string"),
                "format": {"type": ["object", "null"]},
            },
        ),
        "Event": _object(
            ["id", "from", "to", "at"],
            {
                "id": {"type": "integer"},
                "from": {"type": ["string", "null"], "enum": [*STATES, None]},
                "to": {"type": "string", "enum": STATES},
                "at": _nullable("string"),
                "reason": _nullable("string"),
                "actor": _nullable("string"),
            },
        ),
        "Download": _object(
            ["id", "download_id", "state", "provider", "source", "total_bytes", "downloaded_bytes"],
            {
                "id": {"type": "integer"},
                "download_id": {"type": "string"},
                "state": {"type": "string", "enum": STATES},
                "status": _nullable("string"),
                "message": _nullable("string"),
                "label": _nullable("string"),
                "provider": {"type": "string"},
                "source": {"type": "string"},
                "revision": _nullable("string"),
                "patterns": {"type": ["array", "null"], "items": {"type": "string"}},
                "destination": _nullable("string"),
                "priority": {"type": "integer"},
                "error": _nullable("string"),
                "total_bytes": _nullable("integer"),
                "downloaded_bytes": {"type": "integer"},
                "percent": _nullable("number"),
                "bytes_per_second": {"type": "number"},
                "speed": _nullable("string"),
                "eta_seconds": _nullable("number"),
                "eta": _nullable("string"),
                "current_file": _nullable("string"),
                "files_completed": {"type": "integer"},
                "total_files": {"type": "integer"},
                "created_at": _nullable("string"),
                "started_at": _nullable("string"),
                "finished_at": _nullable("string"),
                "updated_at": _nullable("string"),
                "files": {"type": "array", "items": _ref("File")},
                "events": {"type": "array", "items": _ref("Event")},
            },
        ),
        "DownloadList": _object(
            ["downloads", "total", "limit", "offset"],
            {
                "downloads": {"type": "array", "items": _ref("Download")},
                "total": {"type": "integer", "minimum": 0},
                "limit": {"type": "integer"},
                "offset": {"type": "integer"},
            },
        ),
        "Health": _object(
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
        "DownloadProgress": _object(
            ["status", "message", "task_id", "state"],
            {
                "status": {"type": "string", "enum": STATUSES},
                "message": {"type": "string"},
                "percent": _nullable("number"),
                "downloaded_bytes": _nullable("integer"),
                "total_bytes": _nullable("integer"),
                "bytes_per_second": {"type": "number"},
                "formatted_speed": _nullable("string"),
                "eta_seconds": _nullable("number"),
                "formatted_eta": _nullable("string"),
                "current_file": _nullable("string"),
                "files_completed": {"type": "integer"},
                "total_files": {"type": "integer"},
                "task_id": _nullable("integer"),
                "state": {"type": ["string", "null"], "enum": [*STATES, None]},
                "at": {"type": "number"},
                "note": _nullable("string"),
            },
            description="One progress report (the SSE events of our API)",
        ),
        "DownloadStatus": _object(
            ["download_id", "repo_id", "status", "progress_percent", "bytes_downloaded"],
            {
                "download_id": {"type": "string"},
                "repo_id": {"type": "string"},
                "filename": _nullable("string"),
                "status": {
                    "type": "string",
                    "enum": ["pending", "downloading", "completed", "failed", "cancelled"],
                },
                "progress_percent": {"type": "number"},
                "bytes_downloaded": {"type": "integer"},
                "total_bytes": _nullable("integer"),
                "download_speed_mbps": {"type": "number"},
                "eta_seconds": _nullable("number"),
                "error_message": _nullable("string"),
                "started_at": _nullable("string"),
                "completed_at": _nullable("string"),
                "local_file_path": _nullable("string"),
                "state": {"type": "string", "enum": STATES},
            },
            description="The Downloads API's DownloadStatus (its SSE events), with our state",
        ),
        "DownloadsApiRequest": _object(
            ["repo_id", "filename"],
            {
                "repo_id": {"type": "string", "description": "owner/name"},
                "filename": {"type": "string", "description": "a path (or glob) in the repo"},
            },
        ),
        "DownloadsApiAccepted": _object(
            ["download_id", "message"],
            {"download_id": {"type": "string"}, "message": {"type": "string"}},
        ),
        "Message": _object(["message"], {"message": {"type": "string"}}),
        "ProgressApiItem": _object(
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
                "progress": _object(
                    ["downloaded_bytes", "total_bytes", "percentage", "download_speed_bps"],
                    {
                        "downloaded_bytes": {"type": "integer"},
                        "total_bytes": _nullable("integer"),
                        "percentage": {"type": "number"},
                        "download_speed_bps": {"type": "integer"},
                    },
                ),
                "timing": _object(
                    ["start_time", "elapsed_seconds", "estimated_remaining_seconds"],
                    {
                        "start_time": {"type": "integer"},
                        "elapsed_seconds": {"type": "integer"},
                        "estimated_remaining_seconds": _nullable("integer"),
                    },
                ),
            },
        ),
        "ProgressApiActive": _object(
            ["active_downloads", "total_active", "timestamp"],
            {
                "active_downloads": {"type": "array", "items": _ref("ProgressApiItem")},
                "total_active": {"type": "integer"},
                "timestamp": {"type": "integer"},
            },
        ),
    }


def _control(action: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": f"{action.capitalize()} a download",
            "parameters": [ID],
            "responses": {
                "200": _json(_ref("Download"), "The download afterwards"),
                **_errors(404, 409, 415, 422),
            },
        }
    }


def _progress_api_item() -> dict[str, Any]:
    model_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "The download id or the model_id given at creation",
        "schema": {"type": "string"},
    }
    return {
        "get": {
            "summary": "Download Progress API: progress of one download",
            "parameters": [model_id],
            "responses": {
                "200": _json(_ref("ProgressApiItem"), "Progress"),
                **_errors(404),
            },
        }
    }


def _progress_api_active() -> dict[str, Any]:
    return {
        "get": {
            "summary": "Download Progress API: downloads still under way",
            "responses": {"200": _json(_ref("ProgressApiActive"), "Active downloads"), **_errors()},
        }
    }


def _health() -> dict[str, Any]:
    return {
        "get": {
            "summary": "Alive, with the number of downloads in each state",
            "responses": {"200": _json(_ref("Health"), "OK"), **_errors()},
        }
    }


def _paths() -> dict[str, Any]:
    return {
        "/api/v1/downloads": {
            "post": {
                "summary": "Queue a download",
                "requestBody": _body(_ref("NewDownload")),
                "responses": {
                    "202": _json(_ref("Accepted"), "Queued"),
                    **_errors(404, 413, 415, 422),
                },
            },
            "get": {
                "summary": "List downloads, newest first",
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "description": "comma-separated states",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {
                        "name": "offset",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 10**9},
                    },
                ],
                "responses": {
                    "200": _json(_ref("DownloadList"), "A page of downloads"),
                    **_errors(422),
                },
            },
        },
        "/api/v1/downloads/{id}": {
            "get": {
                "summary": "One download, with its files and history",
                "parameters": [ID],
                "responses": {"200": _json(_ref("Download"), "The download"), **_errors(404, 422)},
            },
            "delete": {
                "summary": "Cancel (purge=true also deletes its partial files)",
                "parameters": [ID, {"name": "purge", "in": "query", "schema": {"type": "boolean"}}],
                "responses": {
                    "200": _json(_ref("Download"), "Cancelled"),
                    **_errors(404, 409, 415, 422),
                },
            },
        },
        **{f"/api/v1/downloads/{{id}}/{a}": _control(a) for a in ("pause", "resume", "retry")},
        "/api/v1/events": {
            "get": {
                "summary": "Progress of every download (SSE of DownloadProgress)",
                "parameters": RECONNECT,
                "responses": {"200": _sse("DownloadProgress"), **_errors()},
            }
        },
        "/api/v1/downloads/{id}/events": {
            "get": {
                "summary": "Progress of one download (SSE of DownloadProgress)",
                "parameters": [ID, *RECONNECT],
                "responses": {"200": _sse("DownloadProgress"), **_errors(404, 422)},
            }
        },
        "/api/v1/health": _health(),
        "/health": _health(),
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1"), **_errors()},
            }
        },
        "/local/download": {
            "post": {
                "summary": "Downloads API: download a file of a Hugging Face repo",
                "requestBody": _body(_ref("DownloadsApiRequest")),
                "responses": {
                    "202": _json(_ref("DownloadsApiAccepted"), "Started"),
                    **_errors(413, 415, 422),
                },
            }
        },
        "/local/download/status": {
            "get": {
                "summary": "Downloads API: SSE of every download's DownloadStatus",
                "parameters": RECONNECT,
                "responses": {"200": _sse("DownloadStatus"), **_errors()},
            }
        },
        "/local/download/{download_id}": {
            "delete": {
                "summary": "Downloads API: cancel (404 DOWNLOAD_NOT_FOUND for an unknown id)",
                "parameters": [
                    {
                        "name": "download_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _json(_ref("Message"), "Cancelled"),
                    **_errors(404, 409, 415),
                },
            }
        },
        "/download-progress/{id}": _progress_api_item(),
        "/v1/download-progress/{id}": _progress_api_item(),
        "/downloads": _progress_api_active(),
        "/v1/downloads": _progress_api_active(),
        "/": {
            "get": {
                "summary": "The web page",
                "responses": {
                    "200": {"description": "HTML", "content": {"text/html": {"schema": {}}}},
                    **_errors(),
                },
            }
        },
        "/static/{name}": {
            "get": {
                "summary": "The page's script and style sheet",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "The file",
                        "content": {
                            media: {"schema": {}}
                            for media in ("text/javascript", "text/css", "image/svg+xml")
                        },
                    },
                    **_errors(404),
                },
            }
        },
    }


def openapi() -> dict[str, Any]:
    """The document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "modelhaul",
            "version": "1",
            "description": "Queue, follow and control downloads. With a token set, send "
            "'Authorization: Bearer <token>' (or ?access_token= for EventSource). Requests "
            "must name a loopback or the configured Host; other sites' Origins are refused; "
            "bodies are application/json. Errors are {code, message, field?}.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "access_token": {"type": "apiKey", "in": "query", "name": "access_token"},
            },
            "schemas": _schemas(),
        },
        "security": [{"bearer": []}, {"access_token": []}],
        "paths": _paths(),
    }
