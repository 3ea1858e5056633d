"""What one file's download is doing now, as live counters whoever reports progress reads."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field


class Phase(enum.StrEnum):
    """What one file is doing now, for progress reports ("verifying" is not a ledger state)."""

    PENDING = "pending"
    PROBING = "probing"
    CHECKING = "checking"  # re-hashing written blocks after an unclean stop
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"  # the SHA-256 tail after the last byte
    DONE = "done"


@dataclass
class FileProgress:
    """Live counters of one file, read by whoever reports progress; ``on_phase`` (if set)
    hears each phase change at once, so no phase is missed between two samples."""

    file_id: int
    relpath: str
    size: int | None
    written: int = 0  # bytes in place (the .part, or the final file)
    fetched: int = 0  # bytes this process received from the network for it
    checked: int = 0  # written bytes re-hashed because the last stop was not clean
    phase: Phase = Phase.PENDING
    note: str | None = None  # what a user should know now ("server asked to wait 120 s")
    on_phase: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def enter(self, phase: Phase) -> None:
        """Move to ``phase`` and tell the listener."""
        if phase is not self.phase:
            self.phase = phase
            if self.on_phase is not None:
                self.on_phase()

    def announce(self, note: str | None) -> None:
        """Show ``note`` (a long wait before a retry) until the next one; None withdraws it."""
        self.note = note
        if self.on_phase is not None:
            self.on_phase()

    def done(self, size: int) -> None:
        """The file is in place with ``size`` bytes."""
        self.size = size
        self.written = size
        self.enter(Phase.DONE)
