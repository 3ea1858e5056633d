"""The ledger under real concurrent processes and SIGKILL."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from conftest import PYTHON, on_both_backends, python_env

from storage import ChunkRecord, Ledger, NewFile, NewTask, TaskState

HELPERS = Path(__file__).parent / "helpers"


@on_both_backends
async def test_two_processes_racing_to_claim_a_task_exactly_one_wins_fifty_times(
    ledger: Ledger,
) -> None:
    ids = await ledger.tasks.enqueue([NewTask("url", f"http://e/{i}", "/d") for i in range(50)])
    start_at = time.time() + 2.0  # both children are up and connected well before this
    target = str(ledger.path or ledger.url.render_as_string(hide_password=False))
    args = [target, str(start_at), "0.04", ",".join(map(str, ids))]
    children = [
        subprocess.Popen(
            [PYTHON, str(HELPERS / "race_claim.py"), *args],
            stdout=subprocess.PIPE,
            text=True,
            env=python_env(),
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=60)[0] for child in children]
    assert [c.returncode for c in children] == [0, 0]
    results = [[json.loads(line) for line in out.splitlines()] for out in outputs]
    assert [len(r) for r in results] == [50, 50]

    for a, b in zip(*results, strict=True):
        assert a["task"] == b["task"]
        assert a["won"] != b["won"], f"task {a['task']}: both or neither won"
        loser = b if a["won"] else a
        winner = a if a["won"] else b
        assert f"task {a['task']} is already taken: it is downloading" in loser["error"]
        task = await ledger.tasks.get(a["task"])
        assert task.state is TaskState.DOWNLOADING and task.lease.owner == winner["owner"]
        claims = [e for e in await ledger.tasks.events(a["task"]) if e.reason == "race"]
        assert len(claims) == 1 and claims[0].actor == winner["owner"]
    # both processes won some rounds, so they really were racing
    assert 0 < sum(r["won"] for r in results[0]) < 50


async def test_ledger_survives_sigkill_mid_batch_with_each_batch_whole_or_absent(
    ledger: Ledger, tmp_path: Path
) -> None:
    path = tmp_path / "ledger.db"
    [task_id] = await ledger.tasks.enqueue([NewTask("url", "http://e/f", "/d")])
    [f] = await ledger.files.add(task_id, [NewFile("http://e/f", "f", "/d/f", 1000, size=64000)])
    await ledger.files.replace_chunks(
        f.id, [ChunkRecord(f.id, i * 1000, (i + 1) * 1000) for i in range(64)]
    )
    await ledger.close()
    rng = random.Random(7)
    first = 1
    for _kill in range(5):
        child = subprocess.Popen(
            [PYTHON, str(HELPERS / "batch_writer.py"), str(path), str(f.id), str(first)],
            stdout=subprocess.PIPE,
            text=True,
            env=python_env(),
        )
        # wait until it is committing batches, then kill it at a random instant
        assert child.stdout.readline().strip() == str(first)
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait()

        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            sizes = db.execute(
                "SELECT label, COUNT(*) FROM tasks WHERE label LIKE 'batch-%' GROUP BY label"
            ).fetchall()
            assert sizes and all(count == 500 for _label, count in sizes), sizes
            done = {r[0] for r in db.execute("SELECT done FROM chunks WHERE file_id = ?", (f.id,))}
            assert len(done) == 1, f"a checkpoint was torn: {done}"
            first = max(int(label.split("-")[1]) for label, _ in sizes) + 1
