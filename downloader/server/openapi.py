"""The OpenAPI 3.1 description of every route (served at ``/api/v1/openapi.json``).

It is the contract the fuzz test holds the server to (``tests/test_server_fuzz.py``): every
status a route can answer is listed with its body's schema, errors included.
"""

from __future__ import annotations

from typing import Any

from downloader.server.schemas import object_schema, ref, schemas

ERROR_WORDS = {
    400: "Malformed JSON, a bad id or digest format, or a missing or malformed Host header",
    401: "Missing or wrong bearer token",
    403: "Another web site's request (Origin, Sec-Fetch-Site) or a Host this server does not "
    "answer to (DNS rebinding)",
    404: "No such download",
    409: "The state machine forbids this now",
    416: "A range the server will not serve",
    413: "Body larger than 64 KiB",
    415: "A body (or a browser form's media type) that is not application/json",
    422: "A field is wrong (named in the body's field)",
}
# Every route can meet these: the Host, Origin and token checks run before any handler.
ALWAYS = (400, 401, 403)


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(ref("Error"), ERROR_WORDS[s]) for s in sorted({*statuses, *ALWAYS})}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _sse(event: str) -> dict[str, Any]:
    # Before OpenAPI 3.2's itemSchema, an event stream's schema describes one event.
    return {
        "description": "Server-Sent Events, each with an id and JSON data; Last-Event-ID is "
        "honoured on reconnect; a comment every 15 s keeps the stream alive.",
        "content": {
            "text/event-stream": {
                "schema": object_schema(
                    ["id", "data"],
                    {
                        "id": {"type": "string", "pattern": "^[0-9]+$"},
                        "event": {"const": "message"},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": ref(event),
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


def _control(action: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": f"{action.capitalize()} a download",
            "parameters": [ID],
            "responses": {
                "200": _json(ref("Download"), "The download afterwards"),
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
                "200": _json(ref("ProgressApiItem"), "Progress"),
                **_errors(404),
            },
        }
    }


def _progress_api_active() -> dict[str, Any]:
    return {
        "get": {
            "summary": "Download Progress API: downloads still under way",
            "responses": {"200": _json(ref("ProgressApiActive"), "Active downloads"), **_errors()},
        }
    }


def _health() -> dict[str, Any]:
    return {
        "get": {
            "summary": "Alive, with the number of downloads in each state",
            "responses": {"200": _json(ref("Health"), "OK"), **_errors()},
        }
    }


def _blob() -> dict[str, Any]:
    digest = {
        "name": "digest",
        "in": "path",
        "required": True,
        "description": "The file's SHA-256: 64 lowercase hex digits",
        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    }
    headers = {
        "ETag": {"description": '"sha256:<hex>" (strong)', "schema": {"type": "string"}},
        "X-Content-Sha256": {"schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
    }
    binary = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    ranged = {"Content-Range": {"schema": {"type": "string"}}, **headers}
    responses = {
        "200": {"description": "The whole file", "headers": headers, "content": binary},
        "206": {"description": "One byte range (Range)", "headers": ranged, "content": binary},
        **_errors(404, 416),
    }
    responses["404"] = _json(ref("Error"), "No finished file with this SHA-256 here")
    responses["416"] = _json(
        ref("Error"), "A range past the end, malformed, or more than one range"
    )

    def operation(summary: str) -> dict[str, Any]:
        return {"summary": summary, "parameters": [digest], "responses": responses}

    return {
        "get": operation(
            "A finished file by its SHA-256, for peers (Range with one range, If-Range)"
        ),
        "head": operation("The file's size and ETag, without its bytes"),
    }


def _paths() -> dict[str, Any]:
    return {
        "/api/v1/downloads": {
            "post": {
                "summary": "Queue a download",
                "requestBody": _body(ref("NewDownload")),
                "responses": {
                    "202": _json(ref("Accepted"), "Queued"),
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
                    "200": _json(ref("DownloadList"), "A page of downloads"),
                    **_errors(422),
                },
            },
        },
        "/api/v1/downloads/{id}": {
            "get": {
                "summary": "One download, with its files and history",
                "parameters": [ID],
                "responses": {"200": _json(ref("Download"), "The download"), **_errors(404, 422)},
            },
            "delete": {
                "summary": "Cancel (purge=true also deletes its partial files)",
                "parameters": [ID, {"name": "purge", "in": "query", "schema": {"type": "boolean"}}],
                "responses": {
                    "200": _json(ref("Download"), "Cancelled"),
                    **_errors(404, 409, 415, 422),
                },
            },
        },
        **{f"/api/v1/downloads/{{id}}/{a}": _control(a) for a in ("pause", "resume", "retry")},
        "/api/v1/limits": {
            "get": {
                "summary": "The live bandwidth limit: global (rate or schedule), now, per task",
                "responses": {"200": _json(ref("Limits"), "The limits"), **_errors()},
            },
            "put": {
                "summary": "Set the global limit or its schedule (followed within a second)",
                "requestBody": _body(ref("LimitChange")),
                "responses": {
                    "200": _json(ref("Limits"), "The limits afterwards"),
                    **_errors(413, 415, 422),
                },
            },
        },
        "/api/v1/downloads/{id}/limit": {
            "get": {
                "summary": "One download's own limit (the global one applies too)",
                "parameters": [ID],
                "responses": {"200": _json(ref("TaskLimit"), "Its limit"), **_errors(404, 422)},
            },
            "put": {
                "summary": "Set one download's own limit (followed within a second)",
                "parameters": [ID],
                "requestBody": _body(ref("TaskLimitChange")),
                "responses": {
                    "200": _json(ref("TaskLimit"), "Its limit afterwards"),
                    **_errors(404, 413, 415, 422),
                },
            },
        },
        "/api/v1/workers": {
            "get": {
                "summary": "The processes running downloads on this ledger (gone ones marked)",
                "responses": {"200": _json(ref("WorkerList"), "The workers"), **_errors()},
            }
        },
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
        "/api/v1/blobs/sha256/{digest}": _blob(),
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
                "requestBody": _body(ref("DownloadsApiRequest")),
                "responses": {
                    "202": _json(ref("DownloadsApiAccepted"), "Started"),
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
                    "200": _json(ref("Message"), "Cancelled"),
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
            "schemas": schemas(),
        },
        "security": [{"bearer": []}, {"access_token": []}],
        "paths": _paths(),
    }
