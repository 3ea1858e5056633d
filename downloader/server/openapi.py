"""The OpenAPI 3.1 description of every route (served at ``/api/v1/openapi.json``)."""

from __future__ import annotations

from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "Malformed JSON or a bad id format",
        401: "Missing or wrong bearer token",
        404: "No such download",
        409: "The state machine forbids this now",
        413: "Body larger than 64 KiB",
        422: "A field is wrong (named in the body)",
    }
    return {str(s): _json(ERROR, words[s]) for s in (*statuses, 401)}


SSE = {
    "description": "A stream of Server-Sent Events; every event has an id and honours "
    "Last-Event-ID on reconnect; a comment every 15 s keeps it alive.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}


def openapi() -> dict[str, Any]:
    """The document."""
    task_ref = {"$ref": "#/components/schemas/Download"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "modelhaul",
            "version": "1",
            "description": "Queue, follow and control downloads. With a token set, send "
            "'Authorization: Bearer <token>' (or ?access_token= for EventSource).",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": "string"},
                    },
                },
                "NewDownload": {
                    "type": "object",
                    "description": "Exactly one of spec, url, or provider with model.",
                    "properties": {
                        "spec": {"type": "string", "examples": ["hf://org/repo/model.gguf"]},
                        "url": {"type": "string", "format": "uri"},
                        "provider": {
                            "type": "string",
                            "enum": ["url", "huggingface", "hf", "mlx", "ollama"],
                        },
                        "model": {"type": "string"},
                        "filename": {"type": "string"},
                        "allow_patterns": {
                            "oneOf": [
                                {"type": "string"},
                                {"type": "array", "items": {"type": "string"}},
                            ]
                        },
                        "revision": {"type": "string"},
                        "via": {"type": "string", "enum": ["daemon", "registry"]},
                        "insecure": {"type": "boolean"},
                        "base_url": {"type": "string"},
                        "token": {"type": "string", "description": "kept in memory only"},
                        "dest": {"type": "string", "description": "inside the download root"},
                        "priority": {"type": "integer", "minimum": -1000, "maximum": 1000},
                        "connections": {"type": "integer", "minimum": 1, "maximum": 64},
                        "model_id": {"type": "string", "description": "your own name for it"},
                    },
                },
                "Accepted": {
                    "type": "object",
                    "required": ["download_id", "message", "progress_endpoint"],
                    "properties": {
                        "download_id": {"type": "string"},
                        "id": {"type": "integer"},
                        "state": {"type": "string"},
                        "message": {"type": "string"},
                        "progress_endpoint": {"type": "string"},
                        "events_endpoint": {"type": "string"},
                    },
                },
                "Download": {
                    "type": "object",
                    "required": ["id", "state", "total_bytes", "downloaded_bytes"],
                    "properties": {
                        "id": {"type": "integer"},
                        "download_id": {"type": "string"},
                        "state": {
                            "type": "string",
                            "enum": [
                                "pending",
                                "downloading",
                                "paused",
                                "completed",
                                "failed",
                                "cancelled",
                            ],
                        },
                        "status": {"type": ["string", "null"]},
                        "error": {"type": ["string", "null"]},
                        "total_bytes": {"type": ["integer", "null"]},
                        "downloaded_bytes": {"type": "integer"},
                        "percent": {"type": ["number", "null"]},
                        "bytes_per_second": {"type": "number"},
                        "eta_seconds": {"type": ["number", "null"]},
                        "files": {"type": "array", "items": {"type": "object"}},
                        "events": {"type": "array", "items": {"type": "object"}},
                    },
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/downloads": {
                "post": {
                    "summary": "Queue a download",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/NewDownload"}
                            }
                        },
                    },
                    "responses": {
                        "202": _json({"$ref": "#/components/schemas/Accepted"}, "Queued"),
                        **_errors(400, 404, 413, 422),
                    },
                },
                "get": {
                    "summary": "List downloads, newest first",
                    "parameters": [
                        {"name": "state", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                        {
                            "name": "offset",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0},
                        },
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "downloads": {"type": "array", "items": task_ref},
                                    "total": {"type": "integer"},
                                },
                            },
                            "A page of downloads",
                        ),
                        **_errors(422),
                    },
                },
            },
            "/api/v1/downloads/{id}": {
                "get": {
                    "summary": "One download, with its files and history",
                    "parameters": [ID],
                    "responses": {"200": _json(task_ref, "The download"), **_errors(404, 422)},
                },
                "delete": {
                    "summary": "Cancel (purge=true also deletes its partial files)",
                    "parameters": [
                        ID,
                        {"name": "purge", "in": "query", "schema": {"type": "boolean"}},
                    ],
                    "responses": {"200": _json(task_ref, "Cancelled"), **_errors(404, 409, 422)},
                },
            },
            **{
                f"/api/v1/downloads/{{id}}/{action}": {
                    "post": {
                        "summary": f"{action.capitalize()} a download",
                        "parameters": [ID],
                        "responses": {"200": _json(task_ref, "Done"), **_errors(404, 409, 422)},
                    }
                }
                for action in ("pause", "resume", "retry")
            },
            "/api/v1/events": {
                "get": {"summary": "Progress of every download (SSE)", "responses": {"200": SSE}}
            },
            "/api/v1/downloads/{id}/events": {
                "get": {
                    "summary": "Progress of one download (SSE)",
                    "parameters": [ID],
                    "responses": {"200": SSE, **_errors(404, 422)},
                }
            },
            "/api/v1/health": {
                "get": {"summary": "Alive", "responses": {"200": _json({"type": "object"}, "OK")}}
            },
            "/health": {
                "get": {"summary": "Alive", "responses": {"200": _json({"type": "object"}, "OK")}}
            },
            "/local/download": {
                "post": {
                    "summary": "Seed 002: download a file of a Hugging Face repo",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["repo_id", "filename"],
                                    "properties": {
                                        "repo_id": {"type": "string"},
                                        "filename": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": _json({"type": "object"}, "Started"),
                        **_errors(400, 413, 422),
                    },
                }
            },
            "/local/download/status": {
                "get": {"summary": "Seed 002: SSE of DownloadStatus", "responses": {"200": SSE}}
            },
            "/local/download/{download_id}": {
                "delete": {
                    "summary": "Seed 002: cancel",
                    "parameters": [
                        {
                            "name": "download_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _json({"type": "object"}, "Cancelled"),
                        **_errors(404, 409),
                    },
                }
            },
            **{
                path: {
                    "get": {
                        "summary": "Seed 004: progress of one download",
                        "parameters": [
                            {
                                "name": "id",
                                "in": "path",
                                "required": True,
                                "schema": {"type": "string"},
                            }
                        ],
                        "responses": {
                            "200": _json({"type": "object"}, "Progress"),
                            **_errors(400, 404),
                        },
                    }
                }
                for path in ("/download-progress/{id}", "/v1/download-progress/{id}")
            },
            **{
                path: {
                    "get": {
                        "summary": "Seed 004: active downloads",
                        "responses": {"200": _json({"type": "object"}, "Active downloads")},
                    }
                }
                for path in ("/downloads", "/v1/downloads")
            },
        },
    }
