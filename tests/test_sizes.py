"""Sizes typed and sizes shown use the same units, and say which: ``10MB`` is decimal (as
every size modelhaul prints), ``10MiB`` binary, and a bare ``10M`` binary too, as curl, wget
and aria2c read it."""

from __future__ import annotations

from pathlib import Path

import pytest
from clikit import run

from downloader.progress import format_bytes
from downloader.settings import parse_size


@pytest.mark.parametrize(
    ("typed", "size"),
    [
        ("10MB", 10_000_000),
        ("10mb", 10_000_000),
        ("10 MB", 10_000_000),
        ("1.5GB", 1_500_000_000),
        ("800kB", 800_000),
        ("2TB", 2 * 10**12),
        ("10MiB", 10 * 2**20),
        ("10Mi", 10 * 2**20),
        ("1.5GiB", 3 * 2**29),
        ("10M", 10 * 2**20),
        ("10m", 10 * 2**20),
        ("800K", 800 * 1024),
        ("1T", 2**40),
        ("123", 123),
        ("123B", 123),
    ],
)
def test_a_size_reads_as_documented(typed: str, size: int) -> None:
    assert parse_size(typed) == size


@pytest.mark.parametrize("typed", ["", "MB", "10iB", "10MBB", "10KiBB", "1e5", "-1M", "10 X"])
def test_anything_else_is_not_a_size(typed: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(typed)


def test_a_size_typed_in_decimal_units_is_shown_as_typed() -> None:
    for typed in ("10MB", "1.5GB", "800KB", "2TB"):
        assert format_bytes(parse_size(typed)).replace(" ", "").replace(".0", "") == typed


async def test_the_command_line_reads_a_bare_k_as_binary_and_kb_as_decimal(
    tmp_path: Path,
) -> None:
    home, url = tmp_path / "home", "http://127.0.0.1:9/m.bin"
    get = ("get", "--detach", "--no-check", url, "--dest", f"{tmp_path / 'out'}/")
    for typed in ("1K", "1KiB", "1.024KB"):  # 1024 bytes/s: the lowest rate allowed
        got = await run(home, *get, "--limit-rate", typed)
        assert got.code == 0, (typed, got.stderr)
    refused = await run(home, *get, "--limit-rate", "1KB")  # 1000 bytes/s
    assert refused.code == 2
    assert "'1KB' is too slow to download at: a rate must be at least 1K" in refused.stderr


async def test_help_says_what_the_units_mean(tmp_path: Path) -> None:
    for argv in (["--help"], ["get", "--help"], ["worker", "--help"], ["cache", "evict", "--help"]):
        got = await run(tmp_path, *argv)
        text = " ".join(got.stdout.split())
        assert got.code == 0, got.stderr
        assert "10MB is 10,000,000 bytes (decimal" in text, argv
        assert "10MiB and a bare 10M are 10,485,760 (binary" in text, argv
