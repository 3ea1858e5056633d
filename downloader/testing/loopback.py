"""What a test origin has served that its client has not read yet, on loopback.

The origin logs a piece as served when its write returns, which is when the bytes enter
the kernel, not when the client takes them. On loopback the client's receive queue grows
to about a megabyte per connection (``tcp_rmem`` autotuning), and Linux reopens a full
window only once it has doubled, so the sender refills it in bursts: measured by the
origin's log alone, a steady 6 MiB/s reads as 4.9 to 7.1 MiB/s over single seconds, and
16 connections whose 2 MiB requests fit in those queues as 0 to 27 MiB/s. The bytes still
held on the way (the origin's transport buffer and socket, the client's socket) are in
``/proc/net/tcp``; served minus those is what the client has taken off the network, the
rate its limiter sets.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def track(
    transport: asyncio.BaseTransport,
    name: str,
    send_buffer: int | None,
    connections: dict[int, tuple[str, asyncio.BaseTransport]],
) -> None:
    """Before a response's body: set its socket's send buffer (None: leave the system's)
    and note its connection in ``connections`` (client port -> file, transport)."""
    sock = transport.get_extra_info("socket")
    if send_buffer is not None and sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    peer = transport.get_extra_info("peername")
    if peer is not None:
        connections[peer[1]] = (name, transport)


def kernel_queues(port: int) -> dict[int, int]:
    """Bytes queued in the kernel on each TCP connection to local ``port``, by the
    client's port: the server socket's unacknowledged send queue plus the client socket's
    unread receive queue (both ends are on this machine)."""
    queued: dict[int, int] = {}
    for table in _TABLES:
        # Read at once, not in a thread: the snapshot must match the origin's counters,
        # which cannot move while this runs on the origin's event loop.
        try:
            lines = table.read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, remote = _port(fields[1]), _port(fields[2])
            tx, rx = (int(n, 16) for n in fields[4].split(":"))
            if local == port:
                queued[remote] = queued.get(remote, 0) + tx
            elif remote == port:
                queued[local] = queued.get(local, 0) + rx
    if not any(table.exists() for table in _TABLES):
        raise RuntimeError("measuring what a client has read needs Linux's /proc/net/tcp")
    return queued


def unread(
    connections: dict[int, tuple[str, asyncio.BaseTransport]], port: int, name: str | None
) -> int:
    """Bytes served on ``connections`` (client port -> file served last, its transport)
    of file ``name`` (None: all) that the client has not read yet."""
    queues = kernel_queues(port)
    total = 0
    for client_port, (served, transport) in connections.items():
        if name not in (None, served):
            continue
        total += queues.get(client_port, 0)
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            total += transport.get_write_buffer_size()
    return total


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)
