"""Every error a request can meet, mapped to an HTTP status and a JSON body, in one place.

Bodies are ``{"code": "...", "message": "...", "field": "..."?}``.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from downloader.errors import (
    AuthRequiredError,
    DestinationError,
    ModelhaulError,
    NotFoundError,
    SpecError,
)
from storage import (
    IllegalTransitionError,
    TaskNotFoundError,
    TransitionConflictError,
)

log = logging.getLogger(__name__)


class RequestError(Exception):
    """A request the server refuses, with the status, code and field to report."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        self.status = status
        self.code = code
        self.field = field
        super().__init__(message)


def invalid(field: str, message: str) -> RequestError:
    """422 for one bad field, named in the body."""
    return RequestError(422, "INVALID_FIELD", f"{field}: {message}", field)


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    """The JSON error body."""
    body = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status)


def respond_to(error: BaseException) -> web.Response:
    """The response for ``error``, whatever raised it."""
    match error:
        case RequestError():
            return error_response(error.status, error.code, str(error), error.field)
        case json.JSONDecodeError():
            return error_response(400, "INVALID_JSON", f"malformed JSON: {error}")
        case TaskNotFoundError():
            return error_response(404, "DOWNLOAD_NOT_FOUND", str(error))
        case IllegalTransitionError() | TransitionConflictError():
            return error_response(409, "INVALID_STATE", str(error))
        case DestinationError():
            return error_response(422, "INVALID_FIELD", str(error), "dest")
        case SpecError():
            return error_response(422, "INVALID_SPEC", str(error))
        case NotFoundError():
            return error_response(404, "NOT_FOUND", str(error))
        case AuthRequiredError():
            return error_response(401, "AUTH_REQUIRED", str(error))
        case ModelhaulError():
            return error_response(400, "REQUEST_FAILED", str(error))
        case web.HTTPRequestEntityTooLarge():
            return error_response(413, "BODY_TOO_LARGE", f"request body too large: {error.text}")
        case web.HTTPException():
            response = error_response(
                error.status, error.reason.upper().replace(" ", "_"), error.reason
            )
            if "Allow" in error.headers:  # a 405 says which methods the route takes
                response.headers["Allow"] = error.headers["Allow"]
            return response
    log.exception("unexpected error in a request", exc_info=error)
    return error_response(500, "INTERNAL", f"internal error: {type(error).__name__}")
