"""A TOML manifest's top-level ``dest`` is the folder of every entry, as it says."""

from __future__ import annotations

import random
from pathlib import Path

from clikit import ledger_tasks, run

from downloader.cli.mirror import read_manifest
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
