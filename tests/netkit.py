"""Networks as users have them, on loopback: a real HTTP proxy (Debian's tinyproxy) whose log
says what went through it, and a private CA (trustme) for HTTPS origins."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trustme
from conftest import system_program

_REQUEST = re.compile(r"Request \(file descriptor \d+\): (\S+) (\S+) HTTP/")


@dataclass
class Tinyproxy:
    """``tinyproxy`` in the foreground on a free port; ``user``/``password``: it asks for
    them (407 without)."""

    folder: Path
    user: str | None = None
    password: str | None = None
    port: int = 0
    _process: asyncio.subprocess.Process | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url_with_credentials(self) -> str:
        return f"http://{self.user}:{self.password}@127.0.0.1:{self.port}"

    def requests(self) -> list[tuple[str, str]]:
        """(method, target) of every request it was asked to carry, in order."""
        log = self.folder / "tinyproxy.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return _REQUEST.findall(text)

    async def __aenter__(self) -> Tinyproxy:
        program = system_program("tinyproxy")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 60",
            f'LogFile "{self.folder / "tinyproxy.log"}"',
            "LogLevel Info",
            "MaxClients 200",
            "Allow 127.0.0.1",
        ]
        if self.user is not None:
            lines.append(f"BasicAuth {self.user} {self.password}")
        conf = self.folder / "tinyproxy.conf"
        conf.write_text("\n".join(lines) + "\n")
        self._process = await asyncio.create_subprocess_exec(
            program,
            "-d",
            "-c",
            str(conf),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(10):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                return self

    async def __aexit__(self, *exc: object) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()


@dataclass
class PrivateCA:
    """A CA of our own and a certificate for 127.0.0.1 signed by it."""

    folder: Path

    def __post_init__(self) -> None:
        self.ca = trustme.CA()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.bundle = self.folder / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.bundle))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        return context


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
