"""All tunables in one frozen dataclass, read from the environment or the CLI at the edge."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from downloader.engine.config import EngineConfig
from downloader.engine.network import NetworkConfig
from downloader.engine.retry import RetryPolicy
from storage.location import modelhaul_home

MiB = 1 << 20
# Bounds of what a user (CLI, manifest, request) may ask for a task.
MAX_CONNECTIONS = 64  # per file: more only burdens the server
MAX_PRIORITY = 1000  # priorities run from -MAX_PRIORITY to MAX_PRIORITY
MAX_TRIES = 1000  # tries in a row without progress a task may ask for
MAX_SECONDS = 86_400.0  # the longest timeout a task may ask for
MAX_TASKS = 64  # tasks at once in one process

# ASCII digits only (\d takes "²" too), and a bounded count of them: 400 digits made
# float() infinite and int() of it an OverflowError.
_SIZE = re.compile(
    r"\s*(?P<number>[0-9]{1,19}(?:\.[0-9]{1,9})?)\s*"
    r"(?:(?P<prefix>[kmgt])(?P<binary>i)?)?(?P<bytes>b)?\s*",
    re.IGNORECASE,
)
_WHOLE = re.compile(r"[+-]?[0-9]{1,19}")
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str) -> int:
    """A size as people type it → bytes. ``KB``, ``MB``, ``GB``, ``TB`` are decimal (powers
    of 1000: the units sizes are shown in); ``KiB`` … ``TiB`` and the bare ``K``, ``M``,
    ``G``, ``T`` are binary (powers of 1024, as curl, wget and aria2c read ``10M``); no
    unit (or ``B``) is bytes. Letters in either case; fractions allowed (``1.5GB``).
    Raises ValueError."""
    match = _SIZE.fullmatch(str(text))
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 800K, 10MB, 10MiB, 1.5G)")
    prefix = (match["prefix"] or "").lower()
    decimal = bool(prefix) and match["bytes"] is not None and match["binary"] is None
    base = 1000 if decimal else 1024
    return int(Fraction(match["number"]) * base ** _POWERS[prefix])


def check_proxy(text: str, where: str = "--proxy") -> str:
    """A proxy URL as typed, once it is one modelhaul can use (``ValueError`` naming
    ``where`` otherwise: SOCKS, https://, a path, no host)."""
    from downloader.engine.network import Proxy

    Proxy.parse(text, where)
    return text


def ollama_host_url(value: str) -> str:
    """``OLLAMA_HOST`` as ollama reads it: ``host[:port]`` or ``scheme://host[:port]``,
    default scheme http and port 11434 (``0.0.0.0`` means this machine)."""
    value = value.strip()
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "http", value
    host, _, port = rest.rstrip("/").partition(":")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1"}.get(host, host)
    return f"{scheme}://{host}:{port or (443 if scheme == 'https' else 11434)}"


# The range of every number in Settings. Past these a value is a typo or an attack, and
# some would break the engine: a rate of 0 divides by zero, a chunk of 0 bytes or a
# million connections plans without end. None as the upper end: no upper bound.
BOUNDS: dict[str, tuple[float, float | None]] = {
    "connections": (1, MAX_CONNECTIONS),
    "max_connections": (1, 4096),
    "max_per_host": (1, 4096),
    "max_tasks": (1, MAX_TASKS),
    "max_files": (1, 256),
    "rate_limit": (1, None),
    "block_size": (1, None),
    "min_chunk": (1, None),
    "max_chunk": (1, None),
    "min_steal": (1, None),
    "checkpoint_seconds": (0.001, 3600),
    "checkpoint_bytes": (1, None),
    "read_buffer": (1, 64 << 20),
    "write_size": (1, 1 << 30),
    "stall_timeout": (0.001, 86400),
    "connect_timeout": (0.001, 86400),
    "max_restarts": (0, 1000),
    "slow_fraction": (0.01, 0.9),
    "slow_seconds": (0.2, 3600),
    "max_file_size": (1, None),
    "heartbeat_seconds": (0.001, 3600),
    "watch_seconds": (0.001, 3600),
    "stale_after": (0.001, 86400),
}
# Where a setting comes from in the environment, for the messages.
ENV_NAMES = {
    "connections": "MODELHAUL_CONNECTIONS",
    "max_connections": "MODELHAUL_MAX_CONNECTIONS",
    "max_tasks": "MODELHAUL_MAX_TASKS",
    "max_files": "MODELHAUL_MAX_FILES",
    "stall_timeout": "MODELHAUL_STALL_TIMEOUT",
    "max_file_size": "MODELHAUL_MAX_FILE_SIZE",
    "rate_limit": "MODELHAUL_RATE_LIMIT",
}


@dataclass(frozen=True)
class Settings:
    """How modelhaul downloads. Pass one to the manager; nothing reads globals."""

    home: Path = field(default_factory=lambda: modelhaul_home(os.environ))
    ledger: str | None = None  # a path or SQLAlchemy URL; None: home/ledger.db
    downloads: Path | None = None  # default destination folder; None: home/downloads

    connections: int = 16  # per file
    max_connections: int = 64  # all files of all tasks together
    max_per_host: int = 32
    max_tasks: int = 4  # tasks running at once in one process
    # Files in flight at once within one task. A small file spends most of its time on its
    # probe, ledger writes and fsync rather than its bytes: 50 files of 1 MiB from the local
    # hub took 0.90x the time at 16 as at 8 (the per-host limit still caps connections).
    max_files: int = 16
    rate_limit: int | None = None  # bytes per second for everything, None = unlimited

    block_size: int = 1 * MiB  # unit of XXH3 digests and of durable progress
    min_chunk: int = 2 * MiB  # a 4 MiB file still gets two connections
    max_chunk: int = 64 * MiB
    min_steal: int = 2 * MiB  # never split a remaining range smaller than this
    checkpoint_seconds: float = 1.0
    checkpoint_bytes: int = 32 * MiB
    # aiohttp's read buffer per connection. At aiohttp's 64 KiB a connection paused and
    # resumed its socket at almost every read (two epoll calls each, on the event loop's
    # thread, which is what bounds a fast download here). 1 GiB from nginx on loopback
    # against aria2c + sync: 1.04x its time at 64 KiB, 0.92x at 512 KiB (peak RSS 80 -> 102
    # MiB); 1 MiB was no faster and peaked at 130 MiB. aiohttp pauses reading at twice it.
    # Under a rate limit a body is read through 64 KiB instead (engine/fetch.py says why).
    read_buffer: int = 512 * 1024
    write_size: int = 512 * 1024  # received bytes gathered per write (one thread hop each)
    # SHA-256 is checked wherever the source publishes one (Hugging Face LFS, Ollama). With
    # this on, it is computed for every file, e.g. to record the digest of a plain URL.
    always_sha256: bool = False
    # Reserve the whole file on disk before the first byte (fallocate), so a full disk is
    # found at once instead of mid-download. Off: a sparse .part, as aria2's
    # --file-allocation=none.
    preallocate: bool = True

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    stall_timeout: float = 30.0
    connect_timeout: float = 30.0
    max_restarts: int = 3  # times a file may start over because the remote changed
    # A connection under this share of the median rate of its file's connections for
    # slow_seconds hands its range to a fresh connection (a slow CDN edge, say).
    slow_fraction: float = 0.25
    slow_seconds: float = 3.0
    # Add connections to a file (up to max_per_host) while each raises its total rate.
    adaptive_connections: bool = True
    # The largest file a remote may announce: a size past it is refused before anything is
    # allocated or planned (a hostile or broken server can claim any size). 4 TiB holds
    # the largest single model files published today several times over.
    max_file_size: int = 4 << 40
    # Proxies (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY; MODELHAUL_PROXY) and trusted CAs
    # (MODELHAUL_CA_CERTIFICATE, REQUESTS_CA_BUNDLE, SSL_CERT_FILE): from_env reads them.
    network: NetworkConfig = field(default_factory=NetworkConfig)

    hf_endpoint: str = "https://huggingface.co"  # HF_ENDPOINT
    # More places serving the Hub's files (an internal mirror, say), asked before the Hub
    # itself for a file's bytes: base URLs under which {repo}/resolve/{commit}/{path} is
    # found (MODELHAUL_HF_MIRRORS, comma-separated). Metadata still comes from hf_endpoint.
    hf_mirrors: tuple[str, ...] = ()
    # Other modelhaul servers asked first for any file whose SHA-256 is known
    # (MODELHAUL_PEERS, comma-separated; see downloader.peers). Untrusted: the digest decides.
    peers: tuple[str, ...] = ()
    hf_cache: Path | None = None  # HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub

    ollama_host: str = "http://localhost:11434"  # OLLAMA_HOST: the daemon
    ollama_registry: str = "https://registry.ollama.ai"  # MODELHAUL_OLLAMA_REGISTRY
    ollama_models: Path | None = None  # OLLAMA_MODELS, else ~/.ollama/models

    heartbeat_seconds: float = 2.0
    watch_seconds: float = 0.25  # how often a runner looks for pause/cancel requests
    stale_after: float = 30.0  # a lease from another host expires after this

    def __post_init__(self) -> None:
        """Refuse a number out of its range (``BOUNDS``) with a ``ValueError`` naming the
        setting, its environment variable and the range."""
        for f in fields(self):
            if f.name in BOUNDS:
                _check_number(f.name, getattr(self, f.name), f.type == "float")
        if self.min_chunk > self.max_chunk:
            raise ValueError(
                f"min_chunk ({self.min_chunk}) must not be larger than max_chunk ({self.max_chunk})"
            )

    @property
    def ledger_target(self) -> str:
        """Where the ledger is."""
        return self.ledger or str(self.home / "ledger.db")

    @property
    def hf_cache_dir(self) -> Path:
        """The Hugging Face cache folder (the one ``huggingface_hub`` reads)."""
        return self.hf_cache or Path.home() / ".cache" / "huggingface" / "hub"

    @property
    def ollama_models_dir(self) -> Path:
        """Ollama's model store (the one ``ollama serve`` reads)."""
        return self.ollama_models or Path.home() / ".ollama" / "models"

    @property
    def download_dir(self) -> Path:
        """Where files go when no destination is given."""
        return self.downloads or self.home / "downloads"

    def engine(self, **overrides: Any) -> EngineConfig:
        """The engine's tunables from these settings, with ``overrides`` (a task's own
        connection count, say) checked against their bounds like any setting."""
        names = [f.name for f in fields(EngineConfig)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise TypeError(f"not an engine setting: {', '.join(unknown)}")
        settings = replace(self, **overrides) if overrides else self
        return EngineConfig(**{name: getattr(settings, name) for name in names})

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        proxy: str | None = None,
        ca_certificate: str | Path | None = None,
        insecure: bool = False,
        **overrides: Any,
    ) -> Settings:
        """Settings from ``MODELHAUL_*`` variables (and the proxy and CA variables other
        tools read), then explicit overrides: ``proxy``, ``ca_certificate`` and
        ``insecure`` are the command line's network options."""
        env = os.environ if env is None else env
        insecure = insecure or env.get("MODELHAUL_INSECURE", "").lower() in ("1", "true", "yes")
        values: dict[str, Any] = {
            "home": modelhaul_home(env),
            "network": NetworkConfig.from_env(
                env, proxy=proxy, ca_certificate=ca_certificate, insecure=insecure
            ),
        }
        if env.get("MODELHAUL_LEDGER"):
            values["ledger"] = env["MODELHAUL_LEDGER"]
        if env.get("MODELHAUL_DOWNLOADS"):
            values["downloads"] = Path(env["MODELHAUL_DOWNLOADS"]).expanduser()
        for name, kind in (
            ("connections", _whole),
            ("max_connections", _whole),
            ("max_tasks", _whole),
            ("max_files", _whole),
            ("stall_timeout", _seconds),
            ("max_file_size", parse_size),
            ("rate_limit", parse_size),
        ):
            raw = env.get(ENV_NAMES[name])
            if raw:
                try:
                    values[name] = kind(raw)
                except ValueError as e:
                    raise ValueError(f"{ENV_NAMES[name]}: {e}") from None
        if env.get("MODELHAUL_ALWAYS_SHA256"):
            values["always_sha256"] = env["MODELHAUL_ALWAYS_SHA256"].lower() in ("1", "true", "yes")
        if env.get("OLLAMA_HOST"):
            values["ollama_host"] = ollama_host_url(env["OLLAMA_HOST"])
        if env.get("OLLAMA_MODELS"):
            values["ollama_models"] = Path(env["OLLAMA_MODELS"]).expanduser()
        if env.get("MODELHAUL_OLLAMA_REGISTRY"):
            values["ollama_registry"] = env["MODELHAUL_OLLAMA_REGISTRY"].rstrip("/")
        if env.get("HF_ENDPOINT"):
            values["hf_endpoint"] = env["HF_ENDPOINT"].rstrip("/")
        if env.get("MODELHAUL_HF_MIRRORS") or env.get("MODELHAUL_PEERS"):
            values.update(_far_sources(env))
        if env.get("HF_HUB_CACHE"):
            values["hf_cache"] = Path(env["HF_HUB_CACHE"]).expanduser()
        elif env.get("HF_HOME"):
            values["hf_cache"] = Path(env["HF_HOME"]).expanduser() / "hub"
        return cls(**values).with_(**overrides)


def _far_sources(env: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """MODELHAUL_HF_MIRRORS and MODELHAUL_PEERS, checked (imported here only: most runs
    have neither, and the URL rules pull in the spec parser)."""
    from downloader.errors import SpecError
    from downloader.peers import MAX_PEERS, parse_peers
    from downloader.urls import check_url

    out: dict[str, tuple[str, ...]] = {}
    try:
        if env.get("MODELHAUL_PEERS"):
            out["peers"] = tuple(p.spelled for p in parse_peers(env["MODELHAUL_PEERS"]))
    except SpecError as e:
        raise ValueError(f"MODELHAUL_PEERS: {e}") from None
    try:
        raw = [m.strip() for m in env.get("MODELHAUL_HF_MIRRORS", "").split(",") if m.strip()]
        if len(raw) > MAX_PEERS:
            raise SpecError(f"at most {MAX_PEERS} mirrors, not {len(raw)}")
        mirrors = [_hub_mirror(check_url(m, what="Hub mirror")) for m in raw]
        if mirrors:
            out["hf_mirrors"] = tuple(dict.fromkeys(mirrors))
    except SpecError as e:
        raise ValueError(f"MODELHAUL_HF_MIRRORS: {e}") from None
    return out


def _hub_mirror(url: str) -> str:
    """A Hub mirror's base URL: no credentials (they would be written into the ledger with
    every file's URL: use ~/.netrc), no query or fragment (file paths are appended)."""
    from urllib.parse import urlsplit

    from downloader.errors import SpecError

    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise SpecError(
            f"Hub mirror {parts.hostname!r} has credentials in its URL: they would be stored "
            "with every file; put them in ~/.netrc instead"
        )
    if parts.query or parts.fragment:
        raise SpecError(f"Hub mirror {url!r:.120} must not have a query or fragment")
    return url.rstrip("/")


def _whole(text: str) -> int:
    if not _WHOLE.fullmatch(text.strip()):
        raise ValueError(f"{text!r} is not a whole number")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a number of seconds")
    return value


def _check_number(name: str, value: object, real: bool) -> None:
    """``ValueError`` unless ``value`` is a number within ``BOUNDS[name]`` (or None for the
    rate limit: unlimited)."""
    if value is None and name == "rate_limit":
        return
    low, high = BOUNDS[name]
    where = f" ({ENV_NAMES[name]})" if name in ENV_NAMES else ""
    kind = "a number" if real else "a whole number"
    allowed = (int, float) if real else (int,)
    ok = (
        isinstance(value, allowed)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= low
        and (high is None or value <= high)
    )
    if not ok:
        span = f"at least {low:g}" if high is None else f"from {low:g} to {high:g}"
        raise ValueError(f"{name}{where} must be {kind} {span}, not {value!r}")
