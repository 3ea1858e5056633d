"""A real nginx (Debian's package) serving a folder on 127.0.0.1, for tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CONFIG = """
{user}
daemon off;
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format ranges '$request_method $uri $status "$http_range" $body_bytes_sent';
    access_log {run}/access.log ranges;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /slow/ {{
            alias {root}/;
            limit_rate {slow_rate};
        }}
    }}
}}
"""


@dataclass
class Nginx:
    """A running nginx; ``url(name)`` for full speed, ``url(name, slow=True)`` throttled."""

    root: Path
    run: Path
    port: int
    process: subprocess.Popen[bytes]

    def url(self, name: str, *, slow: bool = False) -> str:
        return f"http://127.0.0.1:{self.port}/{'slow/' if slow else ''}{name}"

    def log(self) -> list[tuple[str, str, int, str, int]]:
        """(method, uri, status, range, body bytes) for every request so far."""
        rows = []
        for line in (self.run / "access.log").read_text().splitlines():
            method, uri, status, rng, sent = line.split(" ")
            rows.append((method, uri, int(status), rng.strip('"'), int(sent)))
        return rows

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if not found:
        raise RuntimeError(
            "nginx is not installed (apt-get install nginx-light); .ci/run installs it"
        )
    return found


def start_nginx(root: Path, run: Path, *, slow_rate: str = "20m") -> Nginx:
    """Start nginx on a free port serving ``root``; its logs and temp files go to ``run``."""
    run.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = run / "nginx.conf"
    # As root, nginx's workers would drop to nobody, who cannot read pytest's private tmp.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(CONFIG.format(user=user, run=run, root=root, port=port, slow_rate=slow_rate))
    process = subprocess.Popen(
        [nginx_binary(), "-c", str(conf), "-p", str(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {process.stderr.read().decode()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return Nginx(root, run, port, process)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("nginx did not start listening within 10 s")


def write_random_file(path: Path, size: int, seed: int = 0) -> None:
    """``size`` bytes that never repeat at any offset that matters (random, seeded)."""
    import random

    rng = random.Random(seed)
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 16 << 20)
            f.write(rng.randbytes(n))
            left -= n
