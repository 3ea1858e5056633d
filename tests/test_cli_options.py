"""The options users of hf download, aria2c and curl reach for, through the real ``modelhaul``
script: where files go (``--dest`` a folder, ``-o`` a file), headers and credentials (and
where they are never kept), ``--checksum``, ``--max-tries``, timeouts, ``--dry-run``, and a
task's own settings honoured by whichever process runs it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
from pathlib import Path

from clikit import run
from hubkit import build_hub

from downloader.engine.context import EngineContext
from downloader.engine.http import open_session
from downloader.engine.ratelimit import TokenBucket
from downloader.manager.tunables import engine_for
from downloader.settings import MiB, Settings
from downloader.testing.origin import Fault, FaultKind, Origin
from storage import open_ledger


async def _tasks(home: Path):
    ledger = await open_ledger(home / "ledger.db")
    try:
        return await ledger.tasks.list()
    finally:
        await ledger.close()


def _gets(origin: Origin, name: str) -> list:
    return [r for r in origin.log if r.method == "GET" and r.path.endswith("/" + name)]


async def test_dest_is_always_a_folder_and_o_names_the_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    data = random.Random(1).randbytes(MiB)
    async with Origin({"m.bin": data}) as origin:
        into = await run(home, "get", origin.url("m.bin"), "--dest", str(tmp_path / "models"))
        assert into.code == 0, into.stderr
        assert (tmp_path / "models" / "m.bin").read_bytes() == data
        named = await run(home, "get", origin.url("m.bin"), "-o", str(tmp_path / "x.bin"))
        assert named.code == 0, named.stderr
        assert (tmp_path / "x.bin").read_bytes() == data
        both = await run(home, "get", origin.url("m.bin"), "-o", "a", "--dest", "b")
    assert both.code == 2 and "give one" in both.stderr
    repo = await run(home, "get", "hf://org/repo", "-o", str(tmp_path / "f"))
    assert repo.code == 2 and "use --dest for a folder" in repo.stderr


async def test_headers_go_to_every_request_and_credential_headers_only_to_the_origin_host(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    data = random.Random(2).randbytes(3 * MiB)
    async with Origin({"m.bin": data}) as origin:
        got = await run(
            home,
            "get",
            origin.url("m.bin", signed=True),
            "--dest",
            str(tmp_path / "out"),
            "-H",
            "X-Team: lab 7",
            "-H",
            "Authorization: Bearer s3cret",
        )
        assert got.code == 0, got.stderr
        gets = [r for r in origin.log if r.method == "GET"]
    asked = [r for r in gets if r.path.startswith("/redirect/")]  # the URL given: its host
    signed = [r for r in gets if r.path.startswith("/signed/")]  # where it redirected
    assert asked and signed
    assert all(r.headers.get("X-Team") == "lab 7" for r in gets)
    assert all(r.headers.get("Authorization") == "Bearer s3cret" for r in asked)
    assert not any("Authorization" in r.headers for r in signed)  # never past a redirect
    [task] = await _tasks(home)
    assert task.options["extra_headers"] == {"X-Team": "lab 7"}  # the credential is not kept
    assert "s3cret" not in (home / "ledger.db").read_bytes().decode("latin-1")


async def test_a_token_for_a_plain_url_goes_to_its_host_and_netrc_serves_when_none_is_given(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login ann password pw\n")
    netrc.chmod(0o600)
    async with Origin({"t.bin": b"t" * 5000, "n.bin": b"n" * 5000}) as origin:
        token = await run(
            home, "get", origin.url("t.bin"), "--dest", str(tmp_path), "--token", "tok"
        )
        assert token.code == 0, token.stderr
        netrced = await run(
            home, "get", origin.url("n.bin"), "--dest", str(tmp_path), NETRC=str(netrc)
        )
        assert netrced.code == 0, netrced.stderr
    assert {r.headers.get("Authorization") for r in _gets(origin, "t.bin")} == {"Bearer tok"}
    basic = "Basic " + base64.b64encode(b"ann:pw").decode()
    assert {r.headers.get("Authorization") for r in _gets(origin, "n.bin")} == {basic}


async def test_a_detached_download_says_where_the_worker_finds_credentials(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    got = await run(
        home,
        "get",
        "http://127.0.0.1:9/x.bin",
        "--detach",
        "--no-check",
        "--token",
        "tok",
        "--dest",
        str(tmp_path),
    )
    assert got.code == 0, got.stderr
    assert "never stored with a task" in got.stderr and "~/.netrc" in got.stderr
    [task] = await _tasks(home)
    assert "tok" not in str(task.options)


async def test_checksum_completes_a_matching_file_and_refuses_another(tmp_path: Path) -> None:
    home = tmp_path / "home"
    data = random.Random(3).randbytes(2 * MiB)
    good = hashlib.sha256(data).hexdigest()
    async with Origin({"c.bin": data}) as origin:
        ok = await run(
            home,
            "get",
            origin.url("c.bin"),
            "-o",
            str(tmp_path / "ok"),
            "--checksum",
            f"sha256={good}",
        )
        bad = await run(
            home,
            "get",
            origin.url("c.bin"),
            "-o",
            str(tmp_path / "bad"),
            "--checksum",
            "sha256=" + "0" * 64,
        )
    assert ok.code == 0, ok.stderr
    assert (tmp_path / "ok").read_bytes() == data
    assert bad.code == 1 and "SHA-256" in bad.stderr and not (tmp_path / "bad").exists()
    malformed = await run(home, "get", "http://127.0.0.1:9/x", "--checksum", "md5=1")
    assert malformed.code == 2 and "expected sha256=HEX" in malformed.stderr
    short = await run(home, "get", "http://127.0.0.1:9/x", "--checksum", "sha256=abc")
    assert short.code == 2 and "64 hex digits" in short.stderr


async def test_max_tries_gives_up_after_that_many_tries(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with Origin({"f.bin": b"f" * 5000}) as origin:
        origin.inject(Fault(FaultKind.STATUS, status=503, times=-1))
        got = await run(
            home,
            "get",
            origin.url("f.bin"),
            "--dest",
            str(tmp_path),
            "--max-tries",
            "2",
            "--no-check",  # the checks' own request is not one of the download's tries
        )
        asked = len(_gets(origin, "f.bin"))
    assert got.code == 1 and "after 2 attempts" in got.stderr
    assert asked == 2


async def test_dry_run_says_what_where_and_how_much_and_fetches_nothing(tmp_path: Path) -> None:
    home, hubdir = tmp_path / "home", tmp_path / "hub"
    hub = await asyncio.to_thread(build_hub, hubdir)
    async with hub:
        got = await run(
            home,
            "get",
            "hf://org/tiny",
            "--include",
            "*.json",
            "--exclude",
            "tokenizer/*",
            "--dry-run",
            "--json",
            HF_ENDPOINT=hub.endpoint,
            HF_HUB_CACHE=str(tmp_path / "cache"),
        )
        fetched = [r for r in hub.log if "/resolve/" in r.path] + hub.cdn.log
    assert got.code == 0, got.stderr
    plan = got.json()
    assert {f["path"] for f in plan["files"]} == {"config.json"}
    assert plan["total_bytes"] == sum(f["size"] for f in plan["files"])
    assert plan["destination"].endswith("models--org--tiny")
    assert fetched == [] and await _tasks(home) == []
    # nothing written, not even the repo's folders (hf cache ls would list an empty repo)
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").rglob("*")) == []


async def test_a_tasks_own_settings_are_kept_and_resume_can_change_them(tmp_path: Path) -> None:
    home = tmp_path / "home"
    queued = await run(
        home,
        "get",
        "http://127.0.0.1:9/x.bin",
        "--detach",
        "--no-check",
        "--dest",
        str(tmp_path),
        "--limit-rate",
        "3000000",
        "--max-tries",
        "4",
        "--timeout",
        "7.5",
        "--connect-timeout",
        "2",
        "--connections",
        "3",
    )
    assert queued.code == 0, queued.stderr
    [task] = await _tasks(home)
    assert task.options["rate_limit"] == 3_000_000
    assert (task.options["max_tries"], task.options["timeout"]) == (4, 7.5)
    assert (task.options["connect_timeout"], task.options["connections"]) == (2.0, 3)
    paused = await run(home, "pause", str(task.id))
    assert paused.code == 0, paused.stderr
    resumed = await run(home, "resume", str(task.id), "--detach", "--limit-rate", "5000000")
    assert resumed.code == 0, resumed.stderr
    [task] = await _tasks(home)
    assert task.options["rate_limit"] == 5_000_000 and task.state.value == "pending"


async def test_the_engine_of_a_task_honours_its_settings_inside_the_global_limit() -> None:
    settings = Settings(rate_limit=10_000_000)
    config = settings.engine()
    async with open_session(config) as session:
        base = EngineContext(session, config, TokenBucket(config.rate_limit))
        assert engine_for(base, settings, {}) is base
        options = {"rate_limit": 3_000_000, "max_tries": 4, "timeout": 7.5, "connections": 3}
        own = engine_for(base, settings, options)
    assert own.limiter.rate == 3_000_000 and own.limiter._within is base.limiter
    assert own.config.retry.attempts == 3 and own.config.stall_timeout == 7.5
    assert own.config.connections == 3 and own.session is base.session


async def test_verify_repair_fetches_only_the_bad_block_and_the_file_is_exact_again(
    tmp_path: Path,
) -> None:
    home, target = tmp_path / "home", tmp_path / "m.bin"
    data = random.Random(5).randbytes(8 * MiB)
    async with Origin({"m.bin": data}) as origin:
        got = await run(home, "get", origin.url("m.bin"), "-o", str(target))
        assert got.code == 0, got.stderr
        with target.open("r+b") as f:  # a bit flips on disk, one block in
            f.seek(3 * MiB + 17)
            f.write(b"\xff")
        found = await run(home, "verify")
        assert found.code == 1 and "1 block(s) differ" in found.stderr
        assert "verify --repair" in found.stderr
        served = origin.served
        repaired = await run(home, "verify", "--repair")
        refetched = origin.served - served
    assert repaired.code == 0, repaired.stderr
    assert target.read_bytes() == data
    assert refetched == MiB  # that block, and nothing else
    [task] = await _tasks(home)
    assert task.state.value == "completed"


async def test_verify_says_when_a_file_could_not_be_checked(tmp_path: Path) -> None:
    home, target = tmp_path / "home", tmp_path / "m.bin"
    data = b"already here\n" * 1000
    target.write_bytes(data)  # the user's own copy, the same bytes: found, not fetched
    async with Origin({"m.bin": data}) as origin:
        got = await run(home, "get", origin.url("m.bin"), "-o", str(target))
        assert got.code == 0, got.stderr
    checked = await run(home, "verify", "--json")
    assert checked.code == 0, checked.stderr
    [check] = checked.json()
    assert check["ok"] and not check["checked"]
    assert check["problem"] == "not checked: no digest was recorded for it"


async def test_verify_repair_fetches_a_whole_file_whose_size_changed(tmp_path: Path) -> None:
    home, target = tmp_path / "home", tmp_path / "m.bin"
    data = random.Random(6).randbytes(3 * MiB)
    async with Origin({"m.bin": data}) as origin:
        got = await run(home, "get", origin.url("m.bin"), "-o", str(target))
        assert got.code == 0, got.stderr
        with target.open("ab") as f:  # something wrote past its end: no block names it
            f.write(b"tail")
        found = await run(home, "verify")
        assert found.code == 1, found.stderr
        served = origin.served
        repaired = await run(home, "verify", "--repair")
        refetched = origin.served - served
    assert repaired.code == 0, repaired.stderr
    assert target.read_bytes() == data
    assert refetched == len(data)  # all of it, once
    assert (await run(home, "verify")).code == 0
