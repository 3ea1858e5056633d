"""The checked value types of ``modelhaul``'s options: each turns what was typed into a
bounded value, or a usage error naming what is wrong (argparse's ``ArgumentTypeError``).

Loaded by every run, ``--help`` included: the standard library and plain-Python checks only.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from downloader.limits import parse_rate, parse_schedule
from downloader.settings import MAX_SECONDS, check_proxy, parse_size
from downloader.weborigin import parse_web_origin

MAX_TASK_ID = 2**63 - 1  # SQLite's largest rowid: a larger id is no task
MIN_RATE = 1024  # --limit-rate: below 1 KiB/s one read of 64 KiB waits over a minute
MAX_PORT = 65535
DEMO_SIZES = (1 << 20, 16 << 30)  # demo --size: what makes a demo, and what fits a disk
# How a typed size reads (parse_size); shown under every command that takes one.
SIZES = (
    "Sizes and rates: 10MB is 10,000,000 bytes (decimal, the units modelhaul shows); "
    "10MiB and a bare 10M are 10,485,760 (binary, as curl, wget and aria2c read 10M). "
    "K, G and T alike."
)
# ASCII digits only: int() also takes other scripts' digits and "1_000"
_WHOLE = re.compile(r"[+-]?[0-9]{1,20}")
_ID = re.compile(r"[0-9]{1,19}")
_SHA256 = re.compile(r"(?:sha256[:-])?([0-9a-fA-F]{64})")


def size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``."""

    def parse(text: str) -> int:
        if not _WHOLE.fullmatch(text.strip()) or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number of at least {low} and at most {high}"
            )
        return int(text)

    return parse


def web_origin(text: str) -> str:
    try:
        return parse_web_origin(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def rate(text: str) -> int:
    value = size(text)
    if value < MIN_RATE:
        raise argparse.ArgumentTypeError(
            f"{text!r} is too slow to download at: a rate must be at least 1K (1024 bytes/s)"
        )
    return value


def live_rate(text: str) -> str:
    """``limit``'s RATE: a rate or ``off``, kept as typed (``off`` is not "none given")."""
    try:
        parse_rate(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
    return text


def schedule(text: str) -> str:
    if text.strip().lower() != "off":
        try:
            parse_schedule(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from e
    return text


def demo_size(text: str) -> int:
    value = size(text)
    low, high = DEMO_SIZES
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size from 1M to 16G")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds from more than 0 to {MAX_SECONDS:.0f}"
        )
    return value


def proxy(text: str) -> str:
    try:
        return check_proxy(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--proxy: ")) from None


def existing_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file")
    return path


def task_id(text: str) -> int:
    if not _ID.fullmatch(text) or not 1 <= int(text) <= MAX_TASK_ID:
        raise argparse.ArgumentTypeError(f"{text!r} is not a task id: 'modelhaul ls' lists them")
    return int(text)


def sha256_digest(text: str) -> str:
    """A SHA-256 as 64 lowercase hex digits (``sha256:`` or ``sha256-`` before it is fine)."""
    match = _SHA256.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text[:80]!r} is not a SHA-256 (64 hex digits)")
    return match[1].lower()


def peer(text: str) -> str:
    """A peer's URL, checked (``downloader.peers``, loaded only when a peer is given)."""
    from downloader.errors import SpecError
    from downloader.peers import parse_peer

    try:
        parse_peer(text)
    except SpecError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


class VersionAction(argparse.Action):
    """``--version``: the installed version, looked up only when asked for (reading the
    package metadata costs every other run its time)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.update(nargs=0, default=argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> NoReturn:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("modelhaul")
        except PackageNotFoundError:
            number = "unknown"
        sys.stdout.write(f"modelhaul {number}\n")
        parser.exit()
