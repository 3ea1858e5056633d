"""Reading and checking request bodies and parameters; everything a client sends is checked
here before any of it reaches the manager."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import web

from downloader.api import spec_for
from downloader.errors import ModelhaulError
from downloader.server.errors import RequestError, invalid
from downloader.specs import Spec, check_url, parse_spec
from storage import TaskState

MAX_PRIORITY = 1000
MAX_CONNECTIONS = 64
_ID_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
OPTION_FIELDS = ("filename", "allow_patterns", "revision", "via", "insecure", "base_url")


@dataclass(frozen=True)
class NewDownload:
    """A checked request to download something."""

    spec: Spec
    dest: str | None  # absolute, inside the root; a trailing "/" still means "a folder"
    priority: int
    connections: int | None
    token: str | None
    label: str | None  # a client's own name for it (seed 004's model id)


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (400 if it is not JSON, 422 if not an object)."""
    raw = await request.read()
    if not raw.strip():
        raise RequestError(400, "INVALID_JSON", "malformed JSON: the body is empty")
    data = json.loads(raw)  # a JSONDecodeError becomes a 400 naming the parse error
    if not isinstance(data, dict):
        raise RequestError(422, "INVALID_BODY", "the body must be a JSON object")
    return data


def new_download(data: Mapping[str, Any], root: Path) -> NewDownload:
    """``{"spec": …}``, ``{"url": …}`` or ``{"provider": …, "model": …, …}``, plus ``dest``,
    ``priority``, ``connections``."""
    forms = [k for k in ("spec", "url", "provider") if k in data]
    if len(forms) != 1:
        raise RequestError(
            422,
            "INVALID_BODY",
            "give exactly one of: spec, url, or provider with model",
        )
    try:
        if forms[0] == "spec":
            spec = parse_spec(_text(data, "spec"))
        elif forms[0] == "url":
            spec = Spec("url", check_url(_text(data, "url"), what="url"))
        else:
            options = {k: data[k] for k in OPTION_FIELDS if data.get(k) is not None}
            for key in ("filename", "revision", "via", "base_url"):
                if key in options:
                    options[key] = _text(data, key)
            if "allow_patterns" in options:
                options["allow_patterns"] = _patterns(data["allow_patterns"])
            if "base_url" in options:
                check_url(options["base_url"], what="base_url")
            spec = spec_for(_text(data, "provider"), _text(data, "model"), **options)
    except ModelhaulError as e:
        raise invalid(forms[0] if forms[0] != "provider" else "model", str(e)) from e
    return NewDownload(
        spec=spec,
        dest=destination(data.get("dest"), root),
        priority=_integer(data, "priority", 0, -MAX_PRIORITY, MAX_PRIORITY),
        connections=_integer(data, "connections", None, 1, MAX_CONNECTIONS),
        token=_text(data, "token") if data.get("token") is not None else None,
        label=_label(data.get("model_id")),
    )


def destination(value: Any, root: Path) -> str | None:
    """A destination inside ``root``: relative, no escape by ``..`` or by a symlink."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise invalid("dest", "must be a non-empty string (a path inside the download root)")
    if "\x00" in value:
        raise invalid("dest", "must not contain NUL bytes")
    pure = PurePosixPath(value)
    if pure.is_absolute() or Path(value).is_absolute():
        raise invalid("dest", f"{value!r} is absolute; give a path inside the download root")
    base = root.resolve()
    target = (base / value).resolve()  # follows symlinks: one pointing out is caught below
    if target != base and base not in target.parents:
        raise invalid("dest", f"{value!r} leads outside the download root")
    return f"{target}/" if value.endswith("/") else str(target)


def task_id(request: web.Request) -> int:
    """The ``{id}`` of the path as a task id (422 if it is not one)."""
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise RequestError(422, "INVALID_ID", f"{raw!r} is not a download id", "id")
    return int(raw)


def states(request: web.Request) -> list[TaskState] | None:
    """``?state=a,b`` → states (422 naming the bad one)."""
    raw = request.query.get("state")
    if not raw:
        return None
    out = []
    for part in raw.split(","):
        try:
            out.append(TaskState(part.strip()))
        except ValueError as e:
            names = ", ".join(s.value for s in TaskState)
            raise invalid("state", f"{part!r} is not a state ({names})") from e
    return out


def paging(request: web.Request) -> tuple[int, int]:
    """``?limit=&offset=`` with bounds."""
    return (
        _query_int(request, "limit", 100, 1, 1000),
        _query_int(request, "offset", 0, 0, 10**9),
    )


def flag(request: web.Request, name: str) -> bool:
    """``?purge=true``-style switches."""
    raw = request.query.get(name, "false").strip().lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise invalid(name, f"{raw!r} is not true or false")
    return raw in ("true", "1", "yes")


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise invalid(key, "must be a non-empty string")
    return value.strip()


def _patterns(value: Any) -> list[str]:
    if isinstance(value, str) and value.strip():
        return [value.strip()]
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return [v.strip() for v in value]
    raise invalid("allow_patterns", "must be a pattern or a list of patterns")


def _integer(data: Mapping[str, Any], key: str, default: Any, low: int, high: int) -> Any:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(key, f"must be an integer from {low} to {high}")
    return value


def _query_int(request: web.Request, key: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(key)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise invalid(key, f"must be an integer from {low} to {high}")
    return int(raw)


def _label(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _ID_LABEL.match(value):
        raise invalid("model_id", "letters, digits, '.', '_', ':' and '-', up to 128")
    return value


def valid_label(value: str) -> bool:
    """Whether ``value`` is a possible model id (seed 004: else 400)."""
    return bool(_ID_LABEL.match(value))
