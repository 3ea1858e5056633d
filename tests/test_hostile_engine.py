"""A hostile origin against the engine: advertised sizes, endless bodies, encoded bytes,
redirects nowhere, waits forever, and an HTML page where a model should be. Each is refused
with words that say what happened (or survived byte-exact), in bounded time and memory, and
a user's file is never replaced by bytes that did not pass every check."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from pathlib import Path

import pytest
from hostilekit import assert_untouched, cli, failed, make_roots, run_one, snapshot

from downloader import DownloadManager
from downloader.testing.hostile import HostileOrigin, OriginAttack
from downloader.testing.modelfiles import gguf_bytes
from downloader.testing.origin import Origin
from storage import FileState, TaskState

MiB = 1 << 20
PEAK_RSS = 250 * MiB  # a bounded process: far below what reading an endless body costs


@pytest.fixture(scope="module")
def blob() -> bytes:
    return random.Random(14).randbytes(24 * MiB)


async def test_an_absurd_advertised_size_is_refused_before_anything_is_planned(
    tmp_path: Path,
) -> None:
    roots = make_roots(tmp_path)
    before = snapshot(tmp_path)
    async with HostileOrigin(OriginAttack.SIZE_HUGE, {"m.bin": b"x" * 1000}) as origin:
        code, _, err, rss = await asyncio.to_thread(
            cli, roots.home, "get", origin.url("m.bin"), "--dest", f"{roots.dest}/", timeout=60
        )
    assert code == 1, err
    assert "1000000000000000000 bytes" in err and "more than the largest file allowed" in err
    assert "MODELHAUL_MAX_FILE_SIZE" in err and "Traceback" not in err
    assert rss < PEAK_RSS, f"peak RSS {rss >> 20} MiB"
    assert not list(roots.dest.iterdir())  # nothing allocated, not even a .part
    assert_untouched(roots, before)


@pytest.mark.parametrize("attack", [OriginAttack.ENDLESS_PROBE, OriginAttack.ENDLESS_RANGES])
async def test_a_body_that_runs_past_its_range_is_cut_and_the_file_is_still_exact(
    tmp_path: Path, blob: bytes, attack: OriginAttack
) -> None:
    roots = make_roots(tmp_path)
    async with HostileOrigin(attack, {"m.bin": blob}) as origin:
        code, _, err, rss = await asyncio.to_thread(
            cli,
            roots.home,
            "get",
            origin.url("m.bin"),
            "--dest",
            f"{roots.dest}/",
            "--connections",
            "4",
            timeout=120,
        )
        served = origin.served
    assert code == 0, err
    assert (roots.dest / "m.bin").read_bytes() == blob
    assert rss < PEAK_RSS, f"peak RSS {rss >> 20} MiB"
    # What was read past each range is what sat in buffers when the connection was dropped.
    assert served < len(blob) + 256 * MiB


async def test_range_bodies_with_a_content_encoding_are_never_written_as_file_bytes(
    tmp_path: Path, blob: bytes
) -> None:
    roots = make_roots(tmp_path)
    async with HostileOrigin(OriginAttack.GZIP_RANGES, {"m.bin": blob}) as origin:
        task, error = await run_one(
            roots.settings(), origin.url("m.bin"), dest=f"{roots.dest}/", timeout=30
        )
    assert failed(task), error
    assert "Content-Encoding 'gzip'" in error and "nothing of them was written" in error
    assert not (roots.dest / "m.bin").exists()
    assert not (roots.dest / "m.bin.part").exists()


@pytest.mark.parametrize(
    ("attack", "words"),
    [
        (OriginAttack.REDIRECT_FILE, "file:///etc/passwd', which is not an http(s) URL"),
        (OriginAttack.REDIRECT_BAD_PORT, "redirects to 'http://127.0.0.1:99999/x'"),
    ],
)
async def test_a_redirect_no_retry_can_follow_fails_at_once(
    tmp_path: Path, attack: OriginAttack, words: str
) -> None:
    roots = make_roots(tmp_path)
    async with HostileOrigin(attack, {"m.bin": b"x"}) as origin:
        task, error = await run_one(
            roots.settings(), origin.url("m.bin"), dest=f"{roots.dest}/", timeout=30
        )
        asked = len(origin.requests)
    assert failed(task), error
    assert words in error
    assert asked == 1  # not retried: no attempt could ever succeed


def _name_does_not_exist(host: str) -> bool:
    try:
        socket.getaddrinfo(host, 80)
    except socket.gaierror as e:
        return e.errno == socket.EAI_NONAME
    return False


async def test_a_host_that_does_not_exist_fails_at_once(tmp_path: Path) -> None:
    host = "no-such-host.invalid"  # RFC 2606: never resolves
    if not _name_does_not_exist(host):
        pytest.skip(f"this machine's resolver does not answer 'no such name' for {host}")
    roots = make_roots(tmp_path)
    task, error = await run_one(
        roots.settings(), f"http://{host}/model.gguf", dest=f"{roots.dest}/", timeout=30
    )
    assert failed(task), error
    assert f"the host {host} does not exist (DNS)" in error


@pytest.mark.parametrize(
    "attack", [OriginAttack.RETRY_AFTER_HUGE, OriginAttack.RETRY_AFTER_YEAR_9999]
)
async def test_a_retry_after_of_years_is_capped_and_the_wait_is_shown(
    tmp_path: Path, attack: OriginAttack
) -> None:
    roots = make_roots(tmp_path)
    async with (
        HostileOrigin(attack, {"m.bin": b"x"}) as origin,
        DownloadManager(roots.settings()) as manager,
    ):
        task = await manager.add(origin.url("m.bin"), dest=f"{roots.dest}/")
        async with asyncio.timeout(30):
            async for progress in manager.subscribe(task.id):
                if progress.note:
                    break
        assert "server asked to wait" in progress.note
        assert "trying again in 600 s" in progress.note  # the 10-minute cap, not years
        assert "HTTP 503" in progress.note
        async with asyncio.timeout(10):  # the wait gives way to a pause at once
            await manager.pause(task.id)
            paused = await manager.wait(task.id)
    assert paused.state is TaskState.PAUSED


async def test_an_html_page_never_replaces_the_users_model_file(tmp_path: Path) -> None:
    roots = make_roots(tmp_path)
    mine = roots.dest / "model.gguf"
    mine.write_bytes(gguf_bytes(size=4096, seed=1))
    kept = mine.read_bytes()
    async with HostileOrigin(OriginAttack.HTML_PAGE) as origin:
        url = origin.url("model.gguf")
        task, error = await run_one(roots.settings(), url, dest=f"{roots.dest}/")
        assert failed(task), error
        assert f"{mine} already exists and is not this download" in error
        assert "--overwrite" in error
        assert mine.read_bytes() == kept
        assert not (roots.dest / "model.gguf.part").exists()

        # Allowed to overwrite, the bytes must still pass the format check first: they don't.
        task, error = await run_one(roots.settings(), url, dest=f"{roots.dest}/", overwrite=True)
        assert failed(task), error
        assert "not a valid GGUF: model.gguf:" in error
        assert mine.read_bytes() == kept
        assert not (roots.dest / "model.gguf.part").exists()


async def test_a_failed_format_check_leaves_nothing_under_the_final_name(tmp_path: Path) -> None:
    roots = make_roots(tmp_path)
    async with HostileOrigin(OriginAttack.HTML_PAGE) as origin:
        settings = roots.settings()
        task, error = await run_one(settings, origin.url("model.gguf"), dest=f"{roots.dest}/")
        assert failed(task), error
        assert "not a valid GGUF: model.gguf:" in error
    assert list(roots.dest.iterdir()) == []
    async with DownloadManager(settings, autostart=False) as manager:
        [record] = await manager.files(task.id)
    assert record.state is not FileState.COMPLETED and record.downloaded_bytes == 0


async def test_the_same_download_again_finds_its_own_finished_file_and_keeps_it(
    tmp_path: Path,
) -> None:
    roots = make_roots(tmp_path)
    model = gguf_bytes(size=3 * MiB, seed=4)
    async with HostileOrigin(OriginAttack.HONEST, {"model.gguf": model}) as origin:
        url = origin.url("model.gguf")
        first, error = await run_one(roots.settings(), url, dest=f"{roots.dest}/")
        assert first is not None and first.state is TaskState.COMPLETED, error
        served = origin.served
        again, error = await run_one(roots.settings(), url, dest=f"{roots.dest}/")
    assert again is not None and again.state is TaskState.COMPLETED, error
    assert origin.served == served  # its own result: nothing fetched, nothing replaced
    assert (roots.dest / "model.gguf").read_bytes() == model


async def test_a_ledger_whose_disk_fills_stops_the_download_with_one_error_and_resumes(
    tmp_path: Path, tmpfs, blob: bytes
) -> None:
    roots = make_roots(tmp_path)
    home = tmpfs("16m")  # the ledger's own small disk; the file goes to roots.dest
    async with Origin({"m.bin": blob}, throttle=4 * MiB) as origin:
        args = ("get", origin.url("m.bin"), "--dest", f"{roots.dest}/", "--connections", "2")
        getting = asyncio.create_task(asyncio.to_thread(cli, home, *args, timeout=60))
        part = roots.dest / "m.bin.part"
        while not part.exists() and not getting.done():
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        filler = home / "filler"
        with filler.open("wb") as f, contextlib.suppress(OSError):
            f.write(b"\0" * (64 << 20))  # another program fills the ledger's disk
        code, _, err, _ = await getting
        assert code == 1, err
        assert f"cannot write the ledger at {home / 'ledger.db'}: database or disk is full" in err
        assert "never retrieved" not in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err  # one clear error
        # Reading still works on the full disk.
        code, out, err, _ = await asyncio.to_thread(cli, home, "ls", "--json")
        assert code == 0 and '"state": "downloading"' in out, err
        filler.unlink()
        code, _, err, _ = await asyncio.to_thread(cli, home, *args, timeout=120)
    assert code == 0, err
    assert (roots.dest / "m.bin").read_bytes() == blob


async def test_overwrite_replaces_a_users_file_only_with_bytes_that_passed_every_check(
    tmp_path: Path,
) -> None:
    roots = make_roots(tmp_path)
    mine = roots.dest / "model.gguf"
    mine.write_bytes(b"an older model of the user's\n")
    model = gguf_bytes(size=3 * MiB, seed=5)
    async with HostileOrigin(OriginAttack.HONEST, {"model.gguf": model}) as origin:
        url = origin.url("model.gguf")
        task, error = await run_one(roots.settings(), url, dest=f"{roots.dest}/")
        assert failed(task) and "already exists" in error
        # Asked again with the overwrite allowed: the same task, now allowed to replace it.
        again, error = await run_one(roots.settings(), url, dest=f"{roots.dest}/", overwrite=True)
    assert again is not None and again.state is TaskState.COMPLETED, error
    assert again.id == task.id
    assert mine.read_bytes() == model


async def test_get_keeps_a_users_file_and_names_overwrite_then_replaces_it_when_told(
    tmp_path: Path,
) -> None:
    roots = make_roots(tmp_path)
    mine = roots.dest / "model.gguf"
    mine.write_bytes(b"the user's own notes, not a model\n")
    model = gguf_bytes(size=2 * MiB, seed=6)
    async with HostileOrigin(OriginAttack.HONEST, {"model.gguf": model}) as origin:
        args = ("get", origin.url("model.gguf"), "--dest", f"{roots.dest}/")
        code, _, err, _ = await asyncio.to_thread(cli, roots.home, *args)
        assert code == 1, err
        assert f"{mine} already exists and is not this download" in err and "--overwrite" in err
        assert mine.read_bytes() == b"the user's own notes, not a model\n"
        code, _, err, _ = await asyncio.to_thread(cli, roots.home, *args, "--overwrite")
    assert code == 0, err
    assert mine.read_bytes() == model
