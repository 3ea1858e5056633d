"""The disk check before a download: its margin grows with the download from a small floor to
a cap, on a real small filesystem."""

from __future__ import annotations

from pathlib import Path

from clikit import run
from managerkit import manager_settings

from downloader.preflight import margin, validate
from downloader.settings import MiB
from downloader.testing.origin import Origin


def test_the_margin_is_one_percent_of_the_download_plus_4_mib_at_most_1_gib() -> None:
    assert margin(0) == margin(6) == 4 * MiB
    assert margin(10**9) == 4 * MiB + 10**7
    assert margin(500 * 10**9) == 1024 * MiB


async def test_a_six_byte_file_downloads_to_a_disk_with_a_few_mib_free(
    tmp_path: Path, tmpfs
) -> None:
    disk = tmpfs("8m")  # far less than the fixed 256 MiB margin there used to be
    async with Origin({"tiny.txt": b"hello\n"}) as origin:
        got = await run(tmp_path / "home", "get", origin.url("tiny.txt"), "--dest", f"{disk}/")
    assert got.code == 0, got.stderr
    assert (disk / "tiny.txt").read_bytes() == b"hello\n"


async def test_a_download_that_would_leave_less_than_its_margin_is_refused(
    tmp_path: Path, tmpfs
) -> None:
    disk = tmpfs("16m")
    settings = manager_settings(tmp_path / "home")
    fits, tight = b"f" * (11 * MiB), b"t" * (13 * MiB)  # 11 + 4.1 MiB fit, 13 + 4.1 do not
    async with Origin({"fits.bin": fits, "tight.bin": tight}) as origin:
        ok = await validate(origin.url("fits.bin"), settings=settings, dest=f"{disk}/")
        refused = await validate(origin.url("tight.bin"), settings=settings, dest=f"{disk}/")
    assert ok.ok, ok.problems
    assert ok.needed_bytes == len(fits) + margin(len(fits)) <= ok.free_bytes
    assert not refused.ok and refused.free_bytes > len(tight)  # the file alone would fit
    [problem] = refused.problems
    assert f"needs {refused.needed_bytes / 1e6:.1f} MB" in problem
    assert f"with a margin of {margin(len(tight)) / 1e6:.1f} MB" in problem
