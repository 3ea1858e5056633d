"""A TOML manifest's top-level ``dest`` is the folder of every entry, as it says."""

from __future__ import annotations

import random
from pathlib import Path

from clikit import ledger_tasks, run

from downloader.cli.mirror import read_manifest
from downloader.errors import SpecError
from downloader.testing.origin import Origin
from storage import TaskState


async def test_a_top_level_dest_is_the_folder_every_entry_goes_into(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rng = random.Random(31)
    files = {"a.bin": rng.randbytes(300_000), "b.bin": rng.randbytes(200_000)}
    async with Origin(files) as origin:
        manifest = tmp_path / "models.toml"
        manifest.write_text(
            'dest = "models"\n'
            + "".join(f'\n[[download]]\nspec = "{origin.url(name)}"\n' for name in files)
        )
        got = await run(home, "mirror", str(manifest))
    assert got.code == 0, got.stdout + got.stderr
    assert (tmp_path / "models").is_dir()
    for name, content in files.items():
        assert (tmp_path / "models" / name).read_bytes() == content
    assert {t.state for t in await ledger_tasks(home)} == {TaskState.COMPLETED}


def test_an_entry_of_its_own_dest_keeps_it(tmp_path: Path) -> None:
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        'dest = "models"\n\n[[download]]\nspec = "http://127.0.0.1/a.gguf"\n\n'
        '[[download]]\nspec = "http://127.0.0.1/b.gguf"\ndest = "elsewhere/b.gguf"\n'
    )
    first, second = read_manifest(manifest)
    assert first.dest == f"{tmp_path}/models/"
    assert second.dest == str(tmp_path / "elsewhere" / "b.gguf")


async def test_a_line_with_several_urls_takes_bytes_from_each(tmp_path: Path) -> None:
    home = tmp_path / "home"
    data = random.Random(18).randbytes(8 * 1024 * 1024)
    origins = [await Origin({"m.bin": data}, throttle=4 << 20).start() for _ in range(2)]
    try:
        manifest = tmp_path / "models.txt"
        manifest.write_text(f"{origins[0].url('m.bin')} | {origins[1].url('m.bin')} out/\n")
        got = await run(home, "mirror", str(manifest))
    finally:
        for o in origins:
            await o.stop()
    assert got.code == 0, got.stdout + got.stderr
    assert (tmp_path / "out" / "m.bin").read_bytes() == data
    assert all(o.served_by_file["m.bin"] > 1 << 20 for o in origins)
    [task] = await ledger_tasks(home)
    assert task.options["mirrors"] == [origins[1].url("m.bin")]


def test_mirror_lines_and_tables_are_read_and_checked(tmp_path: Path) -> None:
    manifest = tmp_path / "m.txt"
    manifest.write_text("http://a/m.gguf | http://b/m.gguf | 'http://c/m.gguf' x.gguf\n")
    [entry] = read_manifest(manifest)
    assert entry.mirrors == ("http://b/m.gguf", "http://c/m.gguf")
    assert entry.as_item()["mirrors"] == ["http://b/m.gguf", "http://c/m.gguf"]
    assert entry.dest == str(tmp_path / "x.gguf")
    toml = tmp_path / "m.toml"
    toml.write_text('[[download]]\nspec = "http://a/m"\nmirrors = ["http://b/m"]\n')
    assert read_manifest(toml)[0].mirrors == ("http://b/m",)
    for bad, says in [
        ("http://a/m |\n", "followed by a mirror URL"),
        ("http://a/m | ftp://b/m\n", "only http:// and https://"),
        ("hf://org/repo | http://b/m\n", "this is no URL"),
        ("http://a/m | http://b/m x y\n", "got 5 words"),
    ]:
        manifest.write_text(bad)
        try:
            read_manifest(manifest)
        except SpecError as e:
            assert "m.txt line 1" in str(e) and says in str(e), e
        else:
            raise AssertionError(f"{bad!r} was accepted")
