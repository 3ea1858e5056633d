"""``modelhaul``: the one place errors become exit codes and one-line messages, and Ctrl-C
becomes a clean stop.

This module is what every run imports, ``--help`` and usage errors included, so it loads
only the standard library and ``cli.parser``; a command's own modules (the ledger, aiohttp,
rich) are imported once it runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, NoReturn

from downloader.cli import exitcodes
from downloader.cli.parser import build_parser

if TYPE_CHECKING:
    from downloader.cli.output import Output


def run() -> NoReturn:
    """The ``modelhaul`` program: runs the command line and exits with its code. Once the
    command has ended and said how, SIGINT stays ignored while Python tears down: Ctrl-C
    there could only turn that into a traceback or a death by signal."""
    raise SystemExit(_guarded(None))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``modelhaul`` in this process (tests, scripts); returns the exit code. Ctrl-C ends
    it with exit 130 and one line, never a traceback: while its modules load, during a
    command's checks, or during a download (which it pauses first). The caller's SIGINT
    handling is as it was afterwards (an ignored SIGINT would pass to its child processes)."""
    before = signal.getsignal(signal.SIGINT)
    try:
        return _guarded(argv)
    finally:
        signal.signal(signal.SIGINT, before)


def _guarded(argv: Sequence[str] | None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Before the command's event loop ran: parsing, loading the command's modules.
        sys.stderr.write("modelhaul: interrupted before it started; nothing was changed\n")
        return exitcodes.INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    import asyncio
    import logging

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not debug:
        logging.getLogger("alembic").setLevel(logging.WARNING)
    from downloader.cli.commands import COMMANDS
    from downloader.cli.output import Output
    from downloader.errors import ModelhaulError

    out = Output.create(json=getattr(args, "json", False), quiet=getattr(args, "quiet", False))
    insecure = os.environ.get("MODELHAUL_INSECURE", "").lower() in ("1", "true", "yes")
    if insecure or getattr(args, "insecure", False):
        # Loud on purpose, every time: the bytes of this run can be changed by anyone on the way.
        out.error(
            "warning: certificates are not checked (--insecure): anyone on the way can change "
            "the bytes; only digests the source publishes still hold them"
        )
    try:
        return asyncio.run(_until_interrupted(COMMANDS[args.command](args, out), out))
    except KeyboardInterrupt:
        # As the event loop started or closed, outside the command's own handling.
        out.error("interrupted")
        return exitcodes.INTERRUPTED
    except (ModelhaulError, ValueError, OSError) as e:
        if debug:
            raise
        out.error(str(e))
        return exitcodes.code_for(e)
    except Exception as e:
        if debug:
            raise
        out.error(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)")
        return exitcodes.FAILED
    finally:
        # The command has ended and said how: Ctrl-C from here on (Python tearing down) could
        # only turn that into a traceback or a death by signal.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


async def _until_interrupted(command: Awaitable[int], out: Output) -> int:
    """Run a command; the first Ctrl-C cancels it. A command that follows downloads takes
    that as its cue to pause them (``cli.follow``) and says how to go on; anywhere else the
    command ends here, with one line. Ctrl-C again is ignored: a clean stop is under way,
    and cutting it short would leave tasks half-stopped."""
    import asyncio

    job = asyncio.current_task()
    assert job is not None
    presses = 0

    def interrupt() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            job.cancel()

    loop = asyncio.get_running_loop()
    # Not where SIGINT is ignored (nohup, a background job): that stays as it was. No
    # handlers in another thread or on Windows: there KeyboardInterrupt does. The handler
    # stays until the loop closes, after the command's last task ended.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, interrupt)
    try:
        return await command
    except asyncio.CancelledError:
        if not presses:
            raise
        job.uncancel()
        out.error("interrupted; run the same command again to continue")
        return exitcodes.INTERRUPTED


if __name__ == "__main__":
    run()
