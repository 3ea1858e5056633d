"""A real terminal for CLI tests: ``modelhaul`` in a tmux pane whose screen a test reads and
whose keys (Ctrl-C) it presses."""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from clikit import MODELHAUL, cli_env
from conftest import system_program

EXIT = re.compile(r"^EXIT=(\d+)$", re.MULTILINE)


@dataclass
class Terminal:
    """One tmux pane running one command; the pane stays after the command ends."""

    tmux: list[str]
    session: str

    def screen(self) -> str:
        """What the pane shows now."""
        return subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-t", self.session],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def press(self, *keys: str) -> None:
        """Press keys, e.g. ``press("C-c")``."""
        subprocess.run([*self.tmux, "send-keys", "-t", self.session, *keys], check=True)

    async def exit_code(self, timeout: float = 60) -> tuple[int, str]:
        """Wait for the command to end; its exit code and the last screen."""
        async with asyncio.timeout(timeout):
            while True:
                screen = self.screen()
                found = EXIT.search(screen)
                if found:
                    return int(found[1]), screen
                await asyncio.sleep(0.2)


@contextmanager
def terminal(tmp_path: Path, home: Path, *args: str) -> Iterator[Terminal]:
    """``modelhaul ARGS`` in a 150x30 terminal. The shell around it only waits: it ignores
    Ctrl-C itself (a no-op trap, which the command does not inherit) and prints the exit
    code."""
    tmux = [system_program("tmux"), "-S", str(tmp_path / "tmux.sock")]
    command = shlex.join([MODELHAUL, *args])
    script = f"trap : INT; {command}; echo EXIT=$?; sleep 600"
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "t", "-x", "150", "-y", "30", "sh", "-c", script],
        check=True,
        env=cli_env(home),
    )
    try:
        yield Terminal(tmux, "t")
    finally:
        subprocess.run([*tmux, "kill-server"], check=False, capture_output=True)
