"""What the engine may be tuned by: one frozen value, handed in.

``Settings.engine()`` builds it from the user's settings (``settings.engine(connections=8)``
for a task that asks for its own connection count); the engine reads nothing else, so a
test or a tool can build one directly. The defaults are ``Settings``' own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from downloader.engine.network import NetworkConfig
from downloader.engine.retry import RetryPolicy


@dataclass(frozen=True)
class EngineConfig:
    """The engine's tunables: how a file is cut and fetched, how often progress becomes
    durable, and the limits of the one HTTP session a process shares."""

    connections: int = 16  # per file
    block_size: int = 1 << 20  # unit of XXH3 digests and of durable progress
    min_chunk: int = 2 << 20  # a 4 MiB file still gets two connections
    max_chunk: int = 64 << 20
    min_steal: int = 2 << 20  # never split a remaining range smaller than this
    checkpoint_seconds: float = 1.0
    checkpoint_bytes: int = 32 << 20
    read_buffer: int = 512 * 1024  # aiohttp's read buffer per connection (Settings says why)
    write_size: int = 512 * 1024  # received bytes gathered per write (one thread hop each)
    always_sha256: bool = False  # a SHA-256 for every file, not only where one is published
    preallocate: bool = True  # reserve the whole .part up front (fallocate), else sparse
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    stall_timeout: float = 30.0  # no byte for this long and a request is abandoned
    connect_timeout: float = 30.0
    max_connections: int = 64  # all files of all tasks together
    max_per_host: int = 32  # also how far a file's connections may grow
    # A connection under ``slow_fraction`` of the median rate of the file's streaming
    # connections for ``slow_seconds`` has its range moved to a fresh connection.
    slow_fraction: float = 0.25
    slow_seconds: float = 3.0
    adaptive_connections: bool = True  # add connections while they raise the file's total
    rate_limit: int | None = None  # bytes per second for everything, None = unlimited
    max_restarts: int = 3  # times a file may start over because the remote changed
    max_file_size: int = 4 << 40  # a larger announced size is refused before anything
    network: NetworkConfig = field(default_factory=NetworkConfig)  # proxies, trusted CAs
