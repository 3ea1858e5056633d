"""The command line end to end: the real ``modelhaul`` script against local origins."""

from __future__ import annotations

import hashlib
import random
import signal
from pathlib import Path

import pytest
from clikit import run
from hubkit import build_hub

from downloader.cli import main
from downloader.settings import MiB
from downloader.testing.origin import Fault, FaultKind, Origin

DOCUMENTED = {"id", "state", "error", "total_bytes", "downloaded_bytes", "files"}
FILE_FIELDS = {"path", "size", "sha256", "state"}


async def test_get_a_url_then_ls_show_and_verify_speak_json(tmp_path: Path) -> None:
    home, dest = tmp_path / "home", tmp_path / "out" / "model.bin"
    data = random.Random(1).randbytes(9 * MiB + 7)
    async with Origin({"model.bin": data}) as origin:
        origin.inject(Fault(FaultKind.RESET, times=2, after=1, at_byte=300_000))
        got = await run(
            home,
            "get",
            origin.url("model.bin"),
            "-o",
            str(dest),
            "--json",
            MODELHAUL_ALWAYS_SHA256="1",
        )
    assert got.code == 0, got.stderr
    task = got.json()
    assert task.keys() >= DOCUMENTED
    assert task["state"] == "completed" and task["error"] is None
    assert task["total_bytes"] == task["downloaded_bytes"] == len(data)
    [f] = task["files"]
    assert f.keys() >= FILE_FIELDS
    assert f["path"] == "model.bin" and f["size"] == len(data) and f["state"] == "completed"
    assert f["sha256"] == hashlib.sha256(data).hexdigest()
    assert dest.read_bytes() == data

    listed = await run(home, "ls", "--json")
    assert listed.code == 0 and [t["id"] for t in listed.json()] == [task["id"]]
    assert listed.json()[0].keys() >= DOCUMENTED

    shown = await run(home, "show", str(task["id"]), "--json")
    detail = shown.json()
    assert [e["to"] for e in detail["events"]][-1] == "completed"
    assert detail["chunks"]["model.bin"]["durable_bytes"] == len(data)

    checked = await run(home, "verify", "--json")
    assert checked.code == 0 and [c["ok"] for c in checked.json()] == [True]

    # One flipped byte: verify names the block and fails; nothing is deleted.
    with dest.open("r+b") as fh:
        fh.seek(5 * MiB + 3)
        fh.write(bytes([data[5 * MiB + 3] ^ 0xFF]))
    bad = await run(home, "verify", str(task["id"]))
    assert bad.code == 1
    assert f"first at byte {5 * MiB}" in bad.stderr
    assert dest.stat().st_size == len(data)


async def test_get_of_an_hf_spec_lands_in_the_hub_cache(tmp_path: Path) -> None:
    home, cache = tmp_path / "home", tmp_path / "hf-cache"
    hub = build_hub(tmp_path / "hub")
    async with hub:
        got = await run(
            home,
            "get",
            "hf://org/tiny/*.gguf",
            "--json",
            HF_ENDPOINT=hub.endpoint,
            HF_HUB_CACHE=str(cache),
        )
    assert got.code == 0, got.stderr
    task = got.json()
    assert task["state"] == "completed"
    files = {f["path"]: f for f in task["files"]}
    assert set(files) == {"model-Q4_K_M.gguf", "model-Q8_0.gguf"}
    for path, f in files.items():
        published = hub.file("org/tiny", path)
        assert f["sha256"] == published.lfs_sha256
        [local] = (cache / "models--org--tiny" / "snapshots").glob(f"*/{path}")
        assert hashlib.sha256(local.read_bytes()).hexdigest() == published.lfs_sha256


async def test_detach_queues_and_a_worker_once_runs_the_queue(tmp_path: Path) -> None:
    home = tmp_path / "home"
    data = random.Random(2).randbytes(3 * MiB)
    async with Origin({"a.bin": data}) as origin:
        queued = await run(
            home,
            "get",
            origin.url("a.bin"),
            "-o",
            str(tmp_path / "a.bin"),
            "--detach",
            "--json",
        )
        assert queued.code == 0, queued.stderr
        task_id = queued.json()["id"]
        pending = await run(home, "ls", "--state", "pending", "--json")
        assert [t["id"] for t in pending.json()] == [task_id]
        worked = await run(home, "worker", "--once", "--quiet")
        assert worked.code == 0, worked.stderr
    done = await run(home, "ls", "--state", "completed", "--json")
    assert [t["id"] for t in done.json()] == [task_id]
    assert (tmp_path / "a.bin").read_bytes() == data


async def test_quiet_prints_nothing_but_the_outcome_code(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with Origin({"q.bin": b"x" * 100_000}) as origin:
        got = await run(
            home,
            "--quiet",
            "get",
            origin.url("q.bin"),
            "-o",
            str(tmp_path / "q.bin"),
            NO_COLOR="1",
        )
    assert (got.code, got.stdout, got.stderr) == (0, "", "")


async def test_a_failed_download_exits_1_naming_the_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with Origin({"a.bin": b"a"}) as origin:
        got = await run(home, "get", origin.url("missing.bin"), "-o", str(tmp_path / "m"))
    assert got.code == 1
    assert "404" in got.stderr and "Traceback" not in got.stderr


USAGE_ERRORS = [
    ([], "the following arguments are required"),
    (["frobnicate"], "invalid choice"),
    (["get"], "the following arguments are required: SPEC"),
    (["get", "--connections", "0", "http://127.0.0.1/x"], "not a whole number of at least 1"),
    (["get", "--limit-rate", "fast", "http://127.0.0.1/x"], "fast"),
    (["get", "ftp://example.com/model.gguf"], "ftp"),
    (["get", "hf://not a repo"], "not a repo"),
    (["show", "abc"], "'abc' is not a task id"),
    (["show", "999"], "999"),
    (["pause", "41"], "41"),
    (["ls", "--state", "sleeping"], "invalid choice"),
    (["mirror", "no-such-manifest.txt"], "no-such-manifest.txt does not exist"),
]


@pytest.mark.parametrize(
    ("argv", "says"), USAGE_ERRORS, ids=[" ".join(a) or "nothing" for a, _ in USAGE_ERRORS]
)
def test_usage_errors_exit_2_with_one_line(argv, says, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MODELHAUL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse exits by itself
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert says in lines[0]
    assert "Traceback" not in err


def test_main_in_process_leaves_the_callers_ctrl_c_as_it_was(tmp_path: Path) -> None:
    # The program ignores SIGINT while Python tears down; a caller in-process (a script, these
    # tests) kept it ignored, and passed that on to every child it started: Ctrl-C did nothing.
    before = signal.getsignal(signal.SIGINT)
    assert before is not signal.SIG_IGN
    assert main(["ls", "--home", str(tmp_path / "home")]) == 0
    assert signal.getsignal(signal.SIGINT) is before


async def test_a_bad_manifest_line_is_named_and_nothing_is_queued(tmp_path: Path) -> None:
    home = tmp_path / "home"
    manifest = tmp_path / "list.txt"
    manifest.write_text("# models\nhttp://127.0.0.1:9/a.bin a.bin\n\nftp://x/y.bin\n")
    got = await run(home, "mirror", str(manifest))
    assert got.code == 2
    assert "list.txt line 4" in got.stderr and len(got.stderr.strip().splitlines()) == 1
    listed = await run(home, "ls", "--json")
    assert listed.json() == []


def test_toml_manifests_carry_per_entry_options(tmp_path: Path) -> None:
    from downloader.cli.mirror import read_manifest

    manifest = tmp_path / "m.toml"
    manifest.write_text(
        'dest = "models/"\nconnections = 4\n\n[[download]]\nspec = "hf://a/b"\n\n'
        '[[download]]\nspec = "http://127.0.0.1/x.gguf"\ndest = "x.gguf"\npriority = 7\n'
    )
    first, second = read_manifest(manifest)
    assert (first.spec, first.dest, first.connections) == ("hf://a/b", f"{tmp_path}/models/", 4)
    assert (second.dest, second.priority) == (str(tmp_path / "x.gguf"), 7)
    manifest.write_text('[[download]]\nspec = "hf://a/b"\nspeed = 3\n')
    with pytest.raises(Exception, match=r"m.toml entry 1: unknown keys \['speed'\]"):
        read_manifest(manifest)
