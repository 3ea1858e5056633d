"""Where the CLI writes: JSON for scripts, rich for terminals, plain lines for pipes."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

from rich.console import Console

# Control characters (escape sequences among them) in anything a remote said (an error from
# a daemon, a file name) would drive the user's terminal: they are shown, never sent.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _shown(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


@dataclass(frozen=True)
class Output:
    """How this run of the CLI prints."""

    json: bool
    quiet: bool
    console: Console  # stdout; rich honours NO_COLOR and non-terminals by itself
    errors: Console

    @classmethod
    def create(cls, *, json: bool = False, quiet: bool = False) -> Output:
        return cls(json=json, quiet=quiet, console=Console(), errors=Console(stderr=True))

    @property
    def live(self) -> bool:
        """Whether to draw live progress (a terminal, and nobody asked for quiet or JSON)."""
        return self.console.is_terminal and not self.quiet and not self.json

    @property
    def lines(self) -> bool:
        """Whether to print progress as plain lines (not a terminal, not quiet, not JSON)."""
        return not self.console.is_terminal and not self.quiet and not self.json

    def data(self, value: Any) -> None:
        """Print data as JSON (for ``--json``)."""
        sys.stdout.write(json.dumps(value, indent=2) + "\n")
        sys.stdout.flush()

    def say(self, text: str) -> None:
        """A line for people (nothing with ``--quiet`` or ``--json``)."""
        if not self.quiet and not self.json:
            self.console.print(_shown(text), highlight=False, soft_wrap=True)

    def plain(self, text: str) -> None:
        """A progress line for pipes and logs."""
        print(_shown(text), flush=True)

    def error(self, text: str) -> None:
        """One line on stderr, always."""
        self.errors.print(
            f"modelhaul: {_shown(text)}", highlight=False, soft_wrap=True, markup=False
        )
