"""``modelhaul get URL --mirror URL2 --mirror URL3`` through the real script: the bytes come
from every mirror, the mirrors are kept with the task (a worker running it later uses
them), and a bad ``--mirror`` is refused before anything is queued."""

from __future__ import annotations

import random
from pathlib import Path

from clikit import ledger_tasks, run

from downloader.settings import MiB
from downloader.testing.origin import Origin


async def test_get_with_mirrors_takes_bytes_from_each_and_keeps_them(tmp_path: Path) -> None:
    home = tmp_path / "home"
    data = random.Random(18).randbytes(12 * MiB)
    origins = [await Origin({"m.bin": data}, throttle=4 * MiB).start() for _ in range(3)]
    urls = [o.url("m.bin") for o in origins]
    try:
        queued = await run(
            home, "get", urls[0], "--mirror", urls[1], "--mirror", urls[2], "--detach",
            "--dest", str(tmp_path / "out"),
        )  # fmt: skip
        assert queued.code == 0, queued.stderr
        [task] = await ledger_tasks(home)
        assert task.options["mirrors"] == urls[1:]
        worked = await run(home, "worker", "--once")
        assert worked.code == 0, worked.stderr
    finally:
        for o in origins:
            await o.stop()
    assert (tmp_path / "out" / "m.bin").read_bytes() == data
    served = [o.served_by_file.get("m.bin", 0) for o in origins]
    assert all(s > MiB // 2 for s in served), served


async def test_bad_mirrors_are_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = "http://127.0.0.1:9/m.bin"
    scheme = await run(home, "get", url, "--mirror", "ftp://x/m.bin", "--no-check")
    assert scheme.code == 2 and "mirror URL 'ftp://x/m.bin'" in scheme.stderr, scheme.stderr
    two = await run(home, "get", url, url + "2", "--mirror", url + "3", "--no-check")
    assert two.code == 2 and "exactly one URL" in two.stderr, two.stderr
    repo = await run(home, "get", "hf://org/repo", "--mirror", url, "--no-check")
    assert repo.code == 2 and "exactly one URL" in repo.stderr, repo.stderr
    many = [a for i in range(17) for a in ("--mirror", f"{url}{i}")]
    lots = await run(home, "get", url, *many, "--no-check")
    assert lots.code == 2 and "at most 16 mirrors" in lots.stderr, lots.stderr
    assert await ledger_tasks(home) == []
