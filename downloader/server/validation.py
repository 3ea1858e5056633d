"""Reading and checking request bodies and parameters; everything a client sends is checked
here before any of it reaches the manager."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from downloader.errors import ModelhaulError, UnsafePathError
from downloader.limits import Schedule, check_rate, parse_rate, parse_schedule
from downloader.manager.tunables import check_mirrors, check_peers
from downloader.paths import check_relpath
from downloader.server.errors import RequestError, invalid
from downloader.settings import MAX_CONNECTIONS, MAX_PRIORITY
from downloader.specs import Spec, check_url, parse_spec, spec_for
from storage import TaskState

MAX_ID = 2**63 - 1  # SQLite's largest integer: no task id can be larger
MAX_DEPTH = 32  # our bodies are two levels deep; anything much deeper is an attack
MAX_DIGITS = 100  # integers longer than this are no field's value (and slow to convert)
_ID_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
TEXT_OPTIONS = ("revision", "via", "base_url")
PROVIDER_OPTIONS = ("filename", "allow_patterns", "insecure", *TEXT_OPTIONS)
VIAS = ("daemon", "registry")  # how an Ollama model is fetched

T = TypeVar("T")


@dataclass(frozen=True)
class NewDownload:
    """A checked request to download something."""

    spec: Spec
    dest: str | None  # absolute, inside the root; a trailing "/" still means "a folder"
    priority: int
    connections: int | None
    token: str | None
    label: str | None  # a client's own name for it (the progress API's model id)


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object: UTF-8, no duplicate keys, no NaN, no lone surrogates, at
    most ``MAX_DEPTH`` deep (400 if not, naming why; 422 if it is not an object)."""
    raw = await request.read()
    if not raw.strip():
        raise RequestError(400, "INVALID_JSON", "malformed JSON: the body is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(
            400, "INVALID_JSON", f"the body is not UTF-8 text ({e.reason} at byte {e.start})"
        ) from e
    try:
        data = json.loads(
            text, object_pairs_hook=_unique_keys, parse_constant=_no_constant, parse_int=_int
        )
    except json.JSONDecodeError:
        raise  # a 400 naming the parse error (errors.respond_to)
    except RecursionError as e:
        raise _too_deep() from e
    except ValueError as e:
        raise RequestError(400, "INVALID_JSON", f"JSON refused: {e}") from e
    _check_tree(data)
    if not isinstance(data, dict):
        raise RequestError(422, "INVALID_BODY", "the body must be a JSON object")
    return data


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two values for one key are read differently by different parsers: refuse, don't guess.
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"the key {key!r} appears more than once")
        data[key] = value
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_DIGITS:
        raise ValueError(f"a number has more than {MAX_DIGITS} digits")
    return int(digits)


def _too_deep() -> RequestError:
    return RequestError(400, "INVALID_JSON", f"JSON nested more than {MAX_DEPTH} levels deep")


def _check_tree(data: Any) -> None:
    """Depth and text of everything in ``data``, without recursion (it may be deep)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_deep()
        if isinstance(value, dict):
            stack += [(k, depth) for k in value] + [(v, depth + 1) for v in value.values()]
        elif isinstance(value, list):
            stack += [(v, depth + 1) for v in value]
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                # "\ud800" parses, but no file name, URL or ledger row can hold it.
                raise RequestError(
                    400, "INVALID_JSON", f"a string has a lone surrogate ({e.object[e.start]!r})"
                ) from e


def new_download(data: Mapping[str, Any], root: Path) -> NewDownload:
    """``{"spec": …}``, ``{"url": …}`` or ``{"provider": …, "model": …, …}``, plus ``dest``,
    ``priority``, ``connections``, ``peers``, and for a URL ``mirrors``."""
    forms = [k for k in ("spec", "url", "provider") if k in data]
    if len(forms) != 1:
        raise RequestError(
            422,
            "INVALID_BODY",
            "give exactly one of: spec, url, or provider with model",
        )
    if forms[0] != "provider":
        # Said but unused is a mistake the client should hear about, not a silent default.
        for key in PROVIDER_OPTIONS:
            if data.get(key) is not None:
                raise invalid(key, "applies only with provider and model")
    if forms[0] == "spec":
        spec = _checked("spec", parse_spec, _text(data, "spec"))
    elif forms[0] == "url":
        spec = Spec("url", _checked("url", check_url, _text(data, "url")))
    else:
        spec = _provider_spec(data)
    if data.get("mirrors") is not None:
        if spec.provider != "url":
            raise invalid("mirrors", "applies only to one URL (url, or a spec that is a URL)")
        mirrors = _checked("mirrors", check_mirrors, data["mirrors"])
        spec = replace(spec, options={**spec.options, "mirrors": mirrors})
    if data.get("peers") is not None:
        peers = _checked("peers", check_peers, data["peers"])
        spec = replace(spec, options={**spec.options, "peers": peers})
    return NewDownload(
        spec=spec,
        dest=destination(data.get("dest"), root),
        priority=_integer(data, "priority", 0, -MAX_PRIORITY, MAX_PRIORITY),
        connections=_integer(data, "connections", None, 1, MAX_CONNECTIONS),
        token=_text(data, "token") if data.get("token") is not None else None,
        label=_label(data.get("model_id")),
    )


def _provider_spec(data: Mapping[str, Any]) -> Spec:
    options: dict[str, Any] = {k: _text(data, k) for k in TEXT_OPTIONS if data.get(k) is not None}
    if data.get("filename") is not None:
        options["filename"] = repo_path(_text(data, "filename"), "filename")
    if data.get("allow_patterns") is not None:
        options["allow_patterns"] = _patterns(data["allow_patterns"])
    if data.get("insecure") is not None:
        if not isinstance(data["insecure"], bool):
            raise invalid("insecure", "must be true or false")
        options["insecure"] = data["insecure"]
    if options.get("via", "daemon") not in VIAS:
        raise invalid("via", f"must be one of: {', '.join(VIAS)}")
    if "base_url" in options:
        _checked("base_url", check_url, options["base_url"])
    # An unknown provider is reported on "model" too: the pair names what to fetch.
    return _checked("model", spec_for, _text(data, "provider"), _text(data, "model"), **options)


def _checked(field: str, parse: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``parse(*args, **kwargs)``, its refusal (or a parser's ValueError, such as
    ``urlsplit``'s on ``http://[::1``) a 422 naming ``field``."""
    try:
        return parse(*args, **kwargs)
    except ModelhaulError as e:
        raise invalid(field, str(e)) from e
    except ValueError as e:
        raise invalid(field, f"cannot be read: {e}") from e


def repo_path(value: str, field: str) -> str:
    """``value`` if it can be a file's path (or glob) inside a repository: relative, no
    ``..``, no backslash, NUL or control character, not too long (422 naming ``field``)."""
    try:
        check_relpath(value, what=field)
    except UnsafePathError as e:
        raise RequestError(422, "INVALID_FIELD", str(e), field) from e
    return value


def destination(value: Any, root: Path) -> str | None:
    """A destination inside ``root``: a relative path (see ``check_relpath``; a trailing
    ``/`` means a folder), no escape by a symlink."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise invalid("dest", "must be a non-empty string (a path inside the download root)")
    folder = value.endswith("/")
    repo_path(value[:-1] if folder else value, "dest")
    base = root.resolve()
    try:
        target = (base / value).resolve()  # follows symlinks: one pointing out is caught below
    except (OSError, RuntimeError) as e:  # a symlink loop is a RuntimeError before 3.13
        raise invalid("dest", f"{value!r} cannot be resolved: {e}") from e
    if target != base and base not in target.parents:
        raise invalid("dest", f"{value!r} leads outside the download root")
    return f"{target}/" if folder else str(target)


def parse_id(raw: str) -> int | None:
    """``raw`` as a possible task id: ASCII digits up to ``MAX_ID``; else None."""
    if not (raw.isascii() and raw.isdigit()) or len(raw.lstrip("0")) > len(str(MAX_ID)):
        return None
    value = int(raw)
    return value if value <= MAX_ID else None


def task_id(request: web.Request) -> int:
    """The ``{id}`` of the path as a task id (422 if it is not one)."""
    raw = request.match_info["id"]
    value = parse_id(raw)
    if value is None:
        raise RequestError(422, "INVALID_ID", f"{raw[:100]!r} is not a download id", "id")
    return value


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
    if _CONTROL.search(value):
        raise invalid(key, "must not contain NUL or other control characters")
    return value.strip()


def _patterns(value: Any) -> list[str]:
    if isinstance(value, str) and value.strip():
        values = [value]
    elif isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        values = value
    else:
        raise invalid("allow_patterns", "must be a pattern or a list of patterns")
    return [repo_path(v.strip(), "allow_patterns") for v in values]


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
    # Length first: int() of thousands of digits is slow, and refused past 4,300.
    if (
        not (raw.isascii() and raw.isdigit())
        or len(raw.lstrip("0")) > len(str(high))
        or not low <= int(raw) <= high
    ):
        raise invalid(key, f"must be an integer from {low} to {high}")
    return int(raw)


def _label(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _ID_LABEL.fullmatch(value):
        raise invalid("model_id", "letters, digits, '.', '_', ':' and '-', up to 128")
    return value


def valid_label(value: str) -> bool:
    """Whether ``value`` is a possible model id (the Download Progress API: else 400)."""
    return bool(_ID_LABEL.fullmatch(value))


def limit_rate(data: Mapping[str, Any]) -> int | None:
    """``{"rate": "8M" | 8388608 | "off" | null}`` → bytes per second or None (422 naming
    ``rate`` or the unknown field)."""
    _only(data, ("rate",))
    if "rate" not in data:
        raise invalid("rate", 'is required (a rate such as "8M", or null for no limit)')
    return _rate(data["rate"])


def limit_change(data: Mapping[str, Any]) -> tuple[str, int | Schedule | None]:
    """The body of ``PUT /api/v1/limits``: exactly one of ``rate`` (as ``limit_rate``) and
    ``schedule`` (``"08:00-18:00=2M,18:00-08:00=off"`` or null)."""
    _only(data, ("rate", "schedule"))
    if ("rate" in data) == ("schedule" in data):
        raise invalid("rate", "give exactly one of rate and schedule")
    if "rate" in data:
        return "rate", _rate(data["rate"])
    value = data["schedule"]
    if value is None:
        return "schedule", None
    if not isinstance(value, str):
        raise invalid("schedule", 'must be text such as "08:00-18:00=2M,18:00-08:00=off"')
    return "schedule", _checked("schedule", parse_schedule, value)


def _only(data: Mapping[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise invalid(unknown[0][:60], f"unknown field (known: {', '.join(known)})")


def _rate(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _checked("rate", parse_rate, value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid("rate", 'must be a rate such as "8M", a number of bytes/s, or null')
    return _checked("rate", check_rate, value)
