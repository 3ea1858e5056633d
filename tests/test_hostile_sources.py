"""Hostile hubs, registries and daemons: every name, digest, size and JSON shape they send is
checked before it becomes a path or a number. Each attack fails its task with words that
name the source and what was wrong, and nothing outside modelhaul's folders is created,
changed or deleted (the whole temp tree is listed before and after)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from hostilekit import assert_untouched, failed, make_roots, run_one, snapshot

from downloader.errors import SourceError
from downloader.sources import hubapi
from downloader.testing.hostile import (
    VICTIM,
    DaemonAttack,
    HostileDaemon,
    HostileHub,
    HostileRegistry,
    HubAttack,
    RegistryAttack,
)

NAME_ATTACKS = [
    HubAttack.TRAVERSAL,
    HubAttack.NESTED_TRAVERSAL,
    HubAttack.ABSOLUTE,
    HubAttack.BACKSLASH,
    HubAttack.DEEP_TRAVERSAL,
    HubAttack.NUL_NAME,
]


@pytest.mark.parametrize("layout", ["folder", "cache"])
@pytest.mark.parametrize("attack", NAME_ATTACKS)
async def test_a_hub_file_name_that_leaves_the_folder_fails_the_task_and_writes_nothing(
    tmp_path: Path, attack: HubAttack, layout: str
) -> None:
    roots = make_roots(tmp_path)
    before = snapshot(tmp_path)
    async with HostileHub(attack) as hub:
        settings = roots.settings(hf_endpoint=hub.endpoint)
        dest = str(roots.dest / "repo") if layout == "folder" else None
        task, error = await run_one(settings, "hf://evil/model", dest=dest)
    assert failed(task), error
    assert "repo file name" in error and "refusing to use it as a path" in error
    assert f"the Hugging Face Hub at {hub.endpoint}" in error
    assert hub.served == 0  # refused before a byte of it was asked for
    assert_untouched(roots, before)


@pytest.mark.parametrize(
    ("attack", "words"),
    [
        (HubAttack.BLOB_ID_TRAVERSAL, "which is not 40 or 64 hex digits"),
        (HubAttack.LFS_SHA_TRAVERSAL, "the LFS sha256 '../../../../x'"),
        (HubAttack.COMMIT_TRAVERSAL, "commit id '../../x', which is not 40 hex digits"),
        (HubAttack.SIZE_NOT_NUMBER, "the size 'abc': not a whole number"),
        (HubAttack.SIZE_HUGE, "the size 1000000000000000000: not a whole number from 0 to"),
        (HubAttack.SIBLINGS_NOT_LIST, "(model 'evil/model') sent no list of files"),
    ],
)
async def test_a_hub_identifier_or_size_of_the_wrong_shape_is_refused_before_any_write(
    tmp_path: Path, attack: HubAttack, words: str
) -> None:
    roots = make_roots(tmp_path)
    before = snapshot(tmp_path)
    async with HostileHub(attack) as hub:
        task, error = await run_one(roots.settings(hf_endpoint=hub.endpoint), "hf://evil/model")
    assert failed(task), error
    assert words in error
    assert hub.served == 0
    assert_untouched(roots, before)
    assert not list(roots.hf.rglob("*.part")) and not list(roots.hf.rglob("*.incomplete"))


@pytest.mark.parametrize(
    ("attack", "words"),
    [
        (HubAttack.INDEX_TOO_DEEP, "is not valid JSON"),
        (HubAttack.INDEX_ENDLESS, "is more than the 33554432 bytes allowed"),
    ],
)
async def test_a_shard_index_too_deep_or_endless_fails_with_a_bounded_read(
    tmp_path: Path, attack: HubAttack, words: str
) -> None:
    roots = make_roots(tmp_path)
    before = snapshot(tmp_path)
    async with HostileHub(attack) as hub:
        settings = roots.settings(hf_endpoint=hub.endpoint)
        task, error = await run_one(settings, "hf://evil/model/model.safetensors.index.json")
    assert failed(task), error
    assert "model.safetensors.index.json" in error and words in error
    assert hub.served < 64 << 20  # read up to the ceiling (plus socket buffers), then hung up
    assert_untouched(roots, before)


async def test_a_small_lfs_file_served_as_endless_and_huge_is_refused_after_a_bounded_read(
    tmp_path: Path,
) -> None:
    # Published small with its SHA-256, so its first range request stands in for a probe
    # (downloader/engine/download.py): that 206 names another total, the file is probed,
    # and the probe's 10**18 is refused before anything is allocated.
    roots = make_roots(tmp_path)
    before = snapshot(tmp_path)
    async with HostileHub(HubAttack.LFS_RANGE_LIES) as hub:
        task, error = await run_one(roots.settings(hf_endpoint=hub.endpoint), "hf://evil/model")
        asked = [r for r in hub.requests if "/resolve/" in r]
    assert failed(task), error
    assert "1000000000000000000" in error and "model.bin" in error, error
    assert len(asked) == 2, asked  # the range in place of a probe, then the probe
    assert hub.served < 64 << 20  # hung up on both endless bodies
    assert_untouched(roots, before)
    # At most the partial blob of the size the hub published (kept for a retry, as after any
    # failure past the plan): nothing of the endless bodies.
    partial = list(roots.hf.rglob("*.incomplete"))
    assert all(p.stat().st_size <= len(HostileHub.CONTENT) for p in partial), partial


@pytest.mark.parametrize(
    ("attack", "words"),
    [
        (RegistryAttack.DIGEST_ESCAPE, "names a bad digest 'sha256:/./"),
        (RegistryAttack.DIGEST_UPPERCASE, "names a bad digest 'sha256:"),
        (RegistryAttack.SIZE_STRING, "the size '30': not a whole number"),
        (RegistryAttack.SIZE_NEGATIVE, "the size -1: not a whole number"),
        (RegistryAttack.SIZE_HUGE, "the size 1000000000000000000: not a whole number"),
        (RegistryAttack.NOT_JSON, "is not JSON"),
        (RegistryAttack.JSON_LIST, "is not a JSON object"),
        (RegistryAttack.LAYERS_NOT_LIST, "has no list of layers and config object"),
        (RegistryAttack.ENDLESS, "is more than the 4194304 bytes allowed"),
    ],
)
async def test_an_ollama_manifest_that_lies_fails_the_task_and_touches_no_user_file(
    tmp_path: Path, attack: RegistryAttack, words: str
) -> None:
    roots = make_roots(tmp_path)
    victim = tmp_path / f"{VICTIM}.part"  # where the escaping digest's bytes would have gone
    before = snapshot(tmp_path)
    async with HostileRegistry(attack) as registry:
        settings = roots.settings(ollama_registry=registry.base)
        task, error = await run_one(settings, "ollama://evil", via="registry")
    assert failed(task), error
    assert words in error
    assert f"from {registry.base}" in error or "from http://127.0.0.1" in error
    assert victim.read_bytes() == f"the user's own {VICTIM}.part\n".encode()
    assert_untouched(roots, before)
    assert not (roots.ollama / "manifests").exists()  # a real Ollama sees no half model


@pytest.mark.parametrize(
    ("attack", "words"),
    [
        (DaemonAttack.TOTAL_NOT_NUMBER, "sent total 'abc' for a layer: not a whole number"),
        (DaemonAttack.NOT_JSON_LINE, "sent a line that is not JSON: '<html>502 Bad Gateway"),
        (DaemonAttack.JSON_LIST, "sent list where a JSON object belongs"),
        (DaemonAttack.ENDLESS_LINE, "sent a line too long to read"),
        (DaemonAttack.HUGE_ERROR, "Ollama answered HTTP 500"),
    ],
)
async def test_an_ollama_daemon_sending_garbage_fails_the_task_naming_it(
    tmp_path: Path, attack: DaemonAttack, words: str
) -> None:
    roots = make_roots(tmp_path)
    before = snapshot(tmp_path)
    async with HostileDaemon(attack) as daemon:
        task, error = await run_one(
            roots.settings(), "ollama://evil", base_url=daemon.base, via="daemon"
        )
    assert failed(task), error
    assert words in error
    assert "internal error" not in error
    if attack is not DaemonAttack.HUGE_ERROR:
        assert f"the Ollama server at {daemon.base}" in error
    # The endless answers were cut after a bounded read, not read to their end.
    assert daemon.served < 64 << 20
    assert_untouched(roots, before)


@pytest.mark.parametrize(
    "line",
    [
        "http://127.0.0.1:9/a.bin ../../x",
        "http://127.0.0.1:9/a.bin a/../../x",
        "http://127.0.0.1:9/a.bin 'a\\\\..\\\\x'",
    ],
)
def test_a_manifests_relative_destination_cannot_climb_out_of_its_folder(
    tmp_path: Path, line: str
) -> None:
    from downloader.cli.mirror import read_manifest
    from downloader.errors import SpecError

    manifest = tmp_path / "shared" / "list.txt"
    manifest.parent.mkdir()
    manifest.write_text(f"# from a colleague\n{line}\n")
    with pytest.raises(SpecError, match=r"list.txt line 2: destination .* refusing"):
        read_manifest(manifest)


def test_a_manifest_may_still_name_an_absolute_destination_and_bounded_numbers(
    tmp_path: Path,
) -> None:
    from downloader.cli.mirror import read_manifest
    from downloader.errors import SpecError

    manifest = tmp_path / "m.toml"
    manifest.write_text(f'[[download]]\nspec = "hf://a/b"\ndest = "{tmp_path}/abs/"\n')
    [entry] = read_manifest(manifest)
    assert entry.dest == f"{tmp_path}/abs/"
    manifest.write_text('[[download]]\nspec = "hf://a/b"\npriority = 1000000000000000000000\n')
    with pytest.raises(SpecError, match="priority must be a whole number from -1000 to 1000"):
        read_manifest(manifest)


async def test_escape_sequences_in_a_remote_error_reach_the_terminal_only_as_text(
    tmp_path: Path,
) -> None:
    from hostilekit import cli

    roots = make_roots(tmp_path)
    async with HostileDaemon(DaemonAttack.TERMINAL_ESCAPES) as daemon:
        code, out, err, _ = await asyncio.to_thread(
            cli, roots.home, "get", "ollama://evil", OLLAMA_HOST=daemon.base
        )
    assert code == 1, err
    assert "boom" in err
    assert "\x1b" not in err + out and "\x07" not in err + out
    assert "\\x1b]0;pwned\\x07\\x1b[2Jboom" in err  # shown, not obeyed


async def _hub_answering(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/api/models/evil/model/revision/main", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


async def _endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b'{"siblings": [')
    with contextlib.suppress(ConnectionError):
        while True:
            await response.write(b'{"rfilename": "a"},' * 4096)
    return response


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (web.json_response([1, 2]), "sent no model info for 'evil/model'"),
        (web.json_response({"sha": "a" * 40, "siblings": [{"size": 1}]}), "without a name"),
        (web.json_response({"siblings": [{"rfilename": 5}]}), "without a name"),
        (
            web.json_response({}, status=500, headers={"X-Error-Message": "the hub is down"}),
            "answered: HTTP 500 Internal Server Error: the hub is down",
        ),
        (web.json_response({}, status=401), "Model 'evil/model' not found"),
        (web.Response(body=b"{not json"), "is not valid JSON"),
        (_endless, f"more than the {hubapi.INFO_LIMIT} bytes allowed"),
    ],
    ids=["not_a_dict", "no_name", "name_not_text", "error", "unauthorized", "not_json", "endless"],
)
async def test_the_hubs_model_info_is_read_bounded_and_checked(answer, words) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await answer(request) if callable(answer) else answer

    runner, endpoint = await _hub_answering(handler)
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(SourceError) as caught:
                await hubapi.model_info(session, endpoint, None, "evil/model", "main")
    finally:
        await runner.cleanup()
    assert words in str(caught.value)
