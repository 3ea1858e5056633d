"""All tunables in one frozen dataclass, read from the environment or the CLI at the edge."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from downloader.engine.retry import RetryPolicy
from storage.location import modelhaul_home

MiB = 1 << 20
# Bounds of what a user (CLI, manifest, request) may ask for a task.
MAX_CONNECTIONS = 64  # per file: more only burdens the server
MAX_PRIORITY = 1000  # priorities run from -MAX_PRIORITY to MAX_PRIORITY

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``10M``, ``1.5GiB``, ``800k``, ``123`` → bytes (binary multiples). Raises ValueError."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 800K, 10M, 1.5G)")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit])


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
    max_files: int = 8  # files in flight at once within one task
    rate_limit: int | None = None  # bytes per second for everything, None = unlimited

    block_size: int = 1 * MiB  # unit of XXH3 digests and of durable progress
    min_chunk: int = 2 * MiB  # a 4 MiB file still gets two connections
    max_chunk: int = 64 * MiB
    min_steal: int = 2 * MiB  # never split a remaining range smaller than this
    checkpoint_seconds: float = 1.0
    checkpoint_bytes: int = 32 * MiB
    read_buffer: int = 64 * 1024  # aiohttp's default; larger buffers only cost memory here
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
    # The largest file a remote may announce: a size past it is refused before anything is
    # allocated or planned (a hostile or broken server can claim any size). 4 TiB holds
    # the largest single model files published today several times over.
    max_file_size: int = 4 << 40

    hf_endpoint: str = "https://huggingface.co"  # HF_ENDPOINT
    hf_cache: Path | None = None  # HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub

    ollama_host: str = "http://localhost:11434"  # OLLAMA_HOST: the daemon
    ollama_registry: str = "https://registry.ollama.ai"  # MODELHAUL_OLLAMA_REGISTRY
    ollama_models: Path | None = None  # OLLAMA_MODELS, else ~/.ollama/models

    heartbeat_seconds: float = 2.0
    watch_seconds: float = 0.25  # how often a runner looks for pause/cancel requests
    stale_after: float = 30.0  # a lease from another host expires after this

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

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``MODELHAUL_*`` variables, then explicit overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {"home": modelhaul_home(env)}
        if env.get("MODELHAUL_LEDGER"):
            values["ledger"] = env["MODELHAUL_LEDGER"]
        if env.get("MODELHAUL_DOWNLOADS"):
            values["downloads"] = Path(env["MODELHAUL_DOWNLOADS"]).expanduser()
        for name, kind in (
            ("connections", int),
            ("max_connections", int),
            ("max_tasks", int),
            ("max_files", int),
            ("stall_timeout", float),
        ):
            raw = env.get(f"MODELHAUL_{name.upper()}")
            if raw:
                values[name] = kind(raw)
        if env.get("MODELHAUL_ALWAYS_SHA256"):
            values["always_sha256"] = env["MODELHAUL_ALWAYS_SHA256"].lower() in ("1", "true", "yes")
        if env.get("MODELHAUL_MAX_FILE_SIZE"):
            values["max_file_size"] = parse_size(env["MODELHAUL_MAX_FILE_SIZE"])
        if env.get("MODELHAUL_RATE_LIMIT"):
            values["rate_limit"] = parse_size(env["MODELHAUL_RATE_LIMIT"])
        if env.get("OLLAMA_HOST"):
            values["ollama_host"] = ollama_host_url(env["OLLAMA_HOST"])
        if env.get("OLLAMA_MODELS"):
            values["ollama_models"] = Path(env["OLLAMA_MODELS"]).expanduser()
        if env.get("MODELHAUL_OLLAMA_REGISTRY"):
            values["ollama_registry"] = env["MODELHAUL_OLLAMA_REGISTRY"].rstrip("/")
        if env.get("HF_ENDPOINT"):
            values["hf_endpoint"] = env["HF_ENDPOINT"].rstrip("/")
        if env.get("HF_HUB_CACHE"):
            values["hf_cache"] = Path(env["HF_HUB_CACHE"]).expanduser()
        elif env.get("HF_HOME"):
            values["hf_cache"] = Path(env["HF_HOME"]).expanduser() / "hub"
        return cls(**values).with_(**overrides)
