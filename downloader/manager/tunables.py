"""A task's own way of being fetched: options stored with the task (so that whichever process
runs it honours them) that tune its engine: connections, a rate limit of its own, how many
tries, timeouts, and headers that carry no credentials.

Credentials never enter the ledger: a header that could carry one (``Authorization``,
``Cookie``, anything naming a token, key or secret) is kept in memory by the process that
was given it, like ``--token``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from downloader.engine.context import EngineContext
from downloader.engine.ratelimit import TokenBucket
from downloader.errors import SpecError
from downloader.headers import is_credential, parse_header
from downloader.peers import Peer, parse_peers
from downloader.settings import MAX_CONNECTIONS, MAX_SECONDS, MAX_TRIES, Settings
from downloader.specs import check_url

# Options a request for the same download again may change (what it fetches and where may
# not: that is the task's identity).
RUN_OPTIONS = (
    "connections",
    "overwrite",
    "rate_limit",
    "max_tries",
    "timeout",
    "connect_timeout",
    "extra_headers",
    "mirrors",
    "peers",
)
MAX_MIRRORS = 16  # more URLs of one file than any mirror list needs


def checked(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the tunables among them checked (``SpecError`` naming the bad one)."""
    out = dict(options)
    if "connections" in out:
        out["connections"] = _whole(out["connections"], "connections", 1, MAX_CONNECTIONS)
    if "rate_limit" in out:
        out["rate_limit"] = _whole(out["rate_limit"], "rate_limit", 1024, 1 << 50)
    if "max_tries" in out:
        out["max_tries"] = _whole(out["max_tries"], "max_tries", 1, MAX_TRIES)
    for name in ("timeout", "connect_timeout"):
        if name in out:
            out[name] = _seconds(out[name], name)
    if "sha256" in out and not (
        isinstance(out["sha256"], str) and re.fullmatch(r"[0-9a-f]{64}", out["sha256"])
    ):
        raise SpecError(f"sha256 must be 64 lowercase hex digits, not {out['sha256']!r:.80}")
    if "mirrors" in out:
        out["mirrors"] = check_mirrors(out["mirrors"])
    if "peers" in out:
        out["peers"] = check_peers(out["peers"])
    if "extra_headers" in out:
        headers = out["extra_headers"]
        if not isinstance(headers, Mapping):
            raise SpecError("extra_headers must map header names to values")
        for name, value in headers.items():
            parse_header(f"{name}: {value}")
            if is_credential(str(name)):
                raise SpecError(
                    f"header {name!r} may carry a credential: it is never stored with a task "
                    "(give it to the process that runs the task)"
                )
    return out


def check_mirrors(mirrors: Any) -> list[str]:
    """More URLs of one URL's file: a list of http(s) URLs, each checked like any URL,
    at most ``MAX_MIRRORS``, duplicates dropped."""
    if isinstance(mirrors, str) or not isinstance(mirrors, (list, tuple)):
        raise SpecError(f"mirrors must be a list of URLs, not {mirrors!r:.80}")
    if len(mirrors) > MAX_MIRRORS:
        raise SpecError(f"at most {MAX_MIRRORS} mirrors per file, not {len(mirrors)}")
    return list(dict.fromkeys(check_url(m, what="mirror URL") for m in mirrors))


def check_peers(peers: Any) -> list[str]:
    """Peers kept with a task: their base URLs. A token is a credential, never stored: the
    process that runs the task knows it (``MODELHAUL_PEERS``, ``get --peer``)."""
    if isinstance(peers, str) or not isinstance(peers, (list, tuple)):
        raise SpecError(f"peers must be a list of URLs, not {peers!r:.80}")
    parsed = parse_peers(peers)
    if any(p.token for p in parsed):
        raise SpecError(
            "a peer's token is a credential and is never stored with a task: give it to the "
            "process that runs the task (MODELHAUL_PEERS, or get --peer)"
        )
    return [p.base for p in parsed]


def peers_for(options: Mapping[str, Any], settings: Settings) -> tuple[Peer, ...]:
    """The peers a task's files are asked for first: this process's (with their tokens),
    then the task's own."""
    known = {p.base: p for p in parse_peers(settings.peers)}
    for base in options.get("peers") or ():
        known.setdefault(base, Peer(base))
    return tuple(known.values())


def retuned(options: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A task's ``options`` with ``changes`` to its tunables (``SpecError`` for anything
    else: what a task fetches and where cannot change)."""
    unknown = sorted(set(changes) - set(RUN_OPTIONS))
    if unknown:
        raise SpecError(f"not a setting a task can change: {', '.join(unknown)}")
    return checked({**options, **changes})


def engine_for(
    base: EngineContext,
    settings: Settings,
    options: Mapping[str, Any],
    lane: TokenBucket | None = None,
) -> EngineContext:
    """The engine context of a task with ``options``: ``base`` itself when they tune
    nothing, else its own config (and a rate limit of its own inside the global one).
    ``lane``: the task's own bucket (``manager.limits``), used as its limiter."""
    overrides: dict[str, Any] = {}
    if "connections" in options:
        overrides["connections"] = int(options["connections"])
    if "max_tries" in options:
        # "tries" counts the first one too; the policy counts the failures it tolerates.
        overrides["retry"] = dataclasses.replace(
            settings.retry, attempts=int(options["max_tries"]) - 1
        )
    if "timeout" in options:
        overrides["stall_timeout"] = float(options["timeout"])
    if "connect_timeout" in options:
        overrides["connect_timeout"] = float(options["connect_timeout"])
    rate = options.get("rate_limit")
    if not overrides and rate is None and lane is None:
        return base
    config = settings.engine(**overrides) if overrides else base.config
    limiter = lane or (
        TokenBucket(int(rate), within=base.limiter) if rate is not None else base.limiter
    )
    return EngineContext(base.session, config, limiter, base.rng, base.unreachable)


def _whole(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(f"{name} must be a whole number from {low} to {high}, not {value!r:.40}")
    return value


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{name} must be a number of seconds, not {value!r:.40}")
    if not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        raise SpecError(f"{name} must be more than 0 and at most {MAX_SECONDS:.0f} seconds")
    return float(value)
