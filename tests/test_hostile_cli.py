"""Hostile command lines and environments: every number is bounded and every spec checked
before anything runs. The real ``modelhaul`` script in a child process: usage errors exit 2
with one line naming the option or variable, no traceback, and no task in the ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clikit import Result, ledger_tasks, run

URL = "http://127.0.0.1:9/model.gguf"  # never reached: every case fails before a request
HUGE = str(10**30)
ABOVE_ROWID = str(2**63)

BAD_NUMBERS = [
    # (argv, what the one line must name, why it is refused)
    (["get", URL, "--limit-rate", "0"], "--limit-rate", "at least 1K"),  # was ZeroDivisionError
    (["get", URL, "--limit-rate", "1000"], "--limit-rate", "at least 1K"),
    (["get", URL, "--limit-rate", "1" * 400], "--limit-rate", "not a size"),  # was OverflowError
    (["get", URL, "--priority", HUGE], "--priority", "at most 1000"),  # was OverflowError
    (["get", URL, "--priority", "-1001"], "--priority", "at least -1000"),
    (["get", URL, "--priority", "1_000"], "--priority", "not a whole number"),
    (["get", URL, "--connections", "65"], "--connections", "at most 64"),
    (["get", URL, "--connections", "0"], "--connections", "at least 1"),
    (["get", URL, "--connections", "\uff11\uff12"], "--connections", "not a whole number"),
    (["show", ABOVE_ROWID], "id", "not a task id"),
    (["show", HUGE], "id", "not a task id"),
    (["show", "0"], "id", "not a task id"),
    (["pause", "1", ABOVE_ROWID], "ID", "not a task id"),
    (["resume", ABOVE_ROWID], "ID", "not a task id"),
    (["retry", ABOVE_ROWID], "ID", "not a task id"),
    (["cancel", ABOVE_ROWID], "ID", "not a task id"),
    (["rm", ABOVE_ROWID], "ID", "not a task id"),
    (["verify", ABOVE_ROWID], "ID", "not a task id"),
    (["worker", "--max-tasks", "0"], "--max-tasks", "at least 1"),
    (["worker", "--max-tasks", HUGE], "--max-tasks", "at most 64"),
    (["mirror", "list.txt", "--max-tasks", "65"], "--max-tasks", "at most 64"),
    (["serve", "--port", "0"], "--port", "at least 1"),
    (["serve", "--port", "65536"], "--port", "at most 65535"),
    (["serve", "--cors-origin", "*"], "--cors-origin", "'*': wildcards are not allowed"),
    (["serve", "--cors-origin", "null"], "--cors-origin", "'null'"),
    (["serve", "--cors-origin", "http://a.example/"], "--cors-origin", "has a path"),
    (["serve", "--cors-origin", "file:///x"], "--cors-origin", "http or https"),
    (
        ["serve", "--cors-origin", "http://ok.example", "--cors-origin", "http://a@b"],
        "--cors-origin",
        "'http://a@b' has user information",
    ),
    (["demo", "--size", "0"], "--size", "from 1M to 16G"),
    (["demo", "--size", "1T"], "--size", "from 1M to 16G"),
    (["cache", "evict", "--max-size", "-5"], "--max-size", "not a size"),
    (["cache", "evict", "--max-size", "1e400"], "--max-size", "not a size"),
    # network options: not numbers, but bounded the same way
    (["get", URL, "--proxy", "socks5://127.0.0.1:1080"], "--proxy", "SOCKS proxy"),
    (["get", URL, "--proxy", "https://proxy:443"], "--proxy", "not an http:// proxy"),
    (["get", URL, "--proxy", "http://proxy:99999"], "--proxy", "not a proxy URL"),
    (["get", URL, "--proxy", "http://proxy:80/path?q"], "--proxy", "not a proxy URL"),
    (["get", URL, "--proxy", "http://"], "--proxy", "not a proxy URL"),
    (["get", URL, "--ca-certificate", "/no/such/ca.pem"], "--ca-certificate", "is not a file"),
    (["peers", "--peer", "ftp://x"], "--peer", "only http:// and https://"),
    (["get", URL, "--peer", "ftp://x"], "--peer", "only http:// and https://"),
    (["get", URL, "--peer", "http://h/?t=1"], "--peer", "must not have a query or fragment"),
    (["peers", "--peer", "http://h?x=1"], "--peer", "must not have a query or fragment"),
    (["peers", "--peer", "http://h/#x"], "--peer", "must not have a query or fragment"),
    (["peers", "--peer", "http://h:99999"], "--peer", "not a valid URL"),
    (["peers", "--peer", "http://a\x01b@h"], "--peer", "contains a control character"),
    (["peers", "--peer", "http://a b@h"], "--peer", "token must be 1-512 printable"),
    (["peers", "--digest", "abc"], "--digest", "not a SHA-256"),
    (["peers", "--digest", "g" * 64], "--digest", "not a SHA-256"),
    (["peers", "--digest", "a" * 65], "--digest", "not a SHA-256"),
    (["peers", "--digest", "../" + "a" * 61], "--digest", "not a SHA-256"),
    (["limit", "0"], "RATE", "at least 1K"),
    (["limit", "1000"], "RATE", "at least 1K"),
    (["limit", "1" * 400], "RATE", "at most 40 characters"),
    (["limit", "5M/s"], "RATE", "not a size"),
    (["limit", "2P"], "RATE", "not a size"),
    (["limit", "99999T"], "RATE", "more than any limit"),
    (["limit", "1e9"], "RATE", "not a size"),
    (["limit", "--task", ABOVE_ROWID, "2M"], "--task", "not a task id"),
    (["limit", "--task", "0", "2M"], "--task", "not a task id"),
    (["limit", "--task", "7", "0"], "RATE", "at least 1K"),
    (["limit", "8M", "--schedule", "00:00-24:00=1M"], "--schedule", "not allowed with"),
    (["limit", "--schedule", "00:00-24:00=1M,00:00-01:00=off"], "--schedule", "overlap"),
    (["limit", "--schedule", ""], "--schedule", "empty rule"),
    (["limit", "--schedule", "08:00-18:00=2M"], "--schedule", "no rule from 18:00 to 08:00"),
    (["limit", "--schedule", "08:00-18:00=2M,17:00-08:00=off"], "--schedule", "overlap"),
    (["limit", "--schedule", "25:00-08:00=1M,08:00-01:00=off"], "--schedule", "not a time"),
    (["limit", "--schedule", "08:00-08:00=1M"], "--schedule", "covers no time"),
    (["limit", "--schedule", "8-18=1M,18-8=off"], "--schedule", "not a time"),
    (["limit", "--schedule", "00:00-24:00=fast"], "--schedule", "not a size"),
    (["limit", "--schedule", "00:00-24:00"], "--schedule", "not a rule"),
    (["limit", "--schedule", ",".join(["00:00-00:01=1M"] * 49)], "--schedule", "at most 48"),
    (["limit", "--schedule", "x" * 3000], "--schedule", "at most 2000"),
]


def assert_usage_error(got: Result, *says: str) -> None:
    """Exit 2, one line on stderr saying all of ``says``, no traceback."""
    assert got.code == 2, (got.code, got.stderr)
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1, got.stderr
    assert all(s in lines[0] for s in says), lines[0]
    assert "Traceback" not in got.stderr and "internal error" not in got.stderr


@pytest.mark.parametrize(
    ("argv", "option", "says"), BAD_NUMBERS, ids=[" ".join(a)[:60] for a, _, _ in BAD_NUMBERS]
)
async def test_an_out_of_range_number_is_a_usage_error_naming_its_option(
    tmp_path: Path, argv: list[str], option: str, says: str
) -> None:
    home = tmp_path / "home"
    got = await run(home, *argv, timeout=60)
    assert_usage_error(got, f"argument {option}:", says)
    assert not (home / "ledger.db").exists()  # refused before anything was opened


BAD_ENVIRONMENT = [
    ("MODELHAUL_CONNECTIONS", "abc", "not a whole number"),
    ("MODELHAUL_CONNECTIONS", "0", "from 1 to 64"),
    ("MODELHAUL_CONNECTIONS", "-3", "from 1 to 64"),
    ("MODELHAUL_CONNECTIONS", "100000", "from 1 to 64"),
    ("MODELHAUL_MAX_CONNECTIONS", "0", "from 1 to"),
    ("MODELHAUL_MAX_TASKS", "0", "from 1 to 64"),
    ("MODELHAUL_MAX_FILES", HUGE, "not a whole number"),
    ("MODELHAUL_RATE_LIMIT", "0", "at least 1"),
    ("MODELHAUL_RATE_LIMIT", "fast", "not a size"),
    ("MODELHAUL_STALL_TIMEOUT", "nan", "not a number of seconds"),
    ("MODELHAUL_STALL_TIMEOUT", "-1", "from 0.001"),
    ("MODELHAUL_MAX_FILE_SIZE", "0", "at least 1"),
    ("MODELHAUL_HF_MIRRORS", "ftp://mirror", "only http:// and https://"),
    ("MODELHAUL_HF_MIRRORS", "http://a b", "invalid host"),
    ("MODELHAUL_HF_MIRRORS", ",".join(f"http://m{i}" for i in range(17)), "at most 16"),
    ("MODELHAUL_PEERS", "http://h/?q=1", "must not have a query"),
]


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    BAD_ENVIRONMENT,
    ids=[f"{v}={x}"[:40] for v, x, _ in BAD_ENVIRONMENT],
)
async def test_a_bad_setting_in_the_environment_is_a_usage_error_naming_the_variable(
    tmp_path: Path, variable: str, value: str, says: str
) -> None:
    home = tmp_path / "home"
    got = await run(home, "get", "--no-check", URL, timeout=60, **{variable: value})
    assert_usage_error(got, variable, says)
    assert not (home / "ledger.db").exists()


@pytest.mark.parametrize(
    ("value", "says"),
    [("http://ok.example, null", "'null'"), ("http://ok.example:99999", "1 to 65535")],
)
async def test_a_bad_cors_origin_in_the_environment_stops_serve_naming_it(
    tmp_path: Path, value: str, says: str
) -> None:
    home = tmp_path / "home"
    got = await run(home, "serve", "--port", "9", timeout=60, MODELHAUL_CORS_ORIGINS=value)
    assert_usage_error(got, "MODELHAUL_CORS_ORIGINS", says)
    assert not (home / "ledger.db").exists()


HOSTILE_SPECS = [
    ("ollama://../x/y", "host '..'"),
    ("ollama://evil.example@127.0.0.1/library/m", "host"),
    ("ollama://a b/library/m", "host 'a b'"),
    ("hf://owner/repo/../../../etc/passwd", "'..'"),
    ("hf://owner/repo//abs/x", "absolute path"),
    ("hf://owner/repo@main\x01/x", "control character"),
    ("hf://own--er/repo", "not a Hugging Face repo id"),
    ("http://[::1/model.gguf", "not a valid URL"),
    ("http://127.0.0.1:99999/model.gguf", "not a valid URL"),
    ("file:///etc/passwd", "only http:// and https://"),
]


@pytest.mark.parametrize(("spec", "says"), HOSTILE_SPECS, ids=[s for s, _ in HOSTILE_SPECS])
async def test_a_hostile_spec_is_refused_and_queues_nothing(
    tmp_path: Path, spec: str, says: str
) -> None:
    home = tmp_path / "home"
    got = await run(home, "get", "--no-check", "--detach", spec, timeout=60)
    assert_usage_error(got, says)
    assert await ledger_tasks(home) == []


async def test_after_a_refused_command_ls_shows_no_task(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for argv in (
        ["get", URL, "--limit-rate", "0"],
        ["get", URL, "--priority", HUGE, "--detach"],
        ["get", "--no-check", "--detach", "ollama://../../x/y"],
    ):
        assert_usage_error(await run(home, *argv, timeout=60))
    listed = await run(home, "ls", "--json", timeout=60)
    assert listed.code == 0 and listed.json() == []


async def test_limit_for_a_task_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    got = await run(tmp_path / "home", "limit", "--task", "42", "2M")
    assert_usage_error(got, "task 42")
    assert (await run(tmp_path / "home", "limit", "--task", "42")).code == 2


async def test_cache_scan_indexes_nothing_from_a_hostile_ollama_store_or_hf_cache(
    tmp_path: Path,
) -> None:
    """Manifests that are not JSON, digests that climb out of ``blobs/``, sizes that are not
    sizes, blobs that are links: ``cache scan`` indexes none of them and says so calmly."""
    ollama, hf = tmp_path / "ollama", tmp_path / "hf"
    (ollama / "blobs").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.write_bytes(b"s" * 10)
    hexes = [f"{i}" * 64 for i in range(1, 6)]
    (ollama / "blobs" / f"sha256-{hexes[0]}").symlink_to(outside)  # right size, but a link
    (ollama / "blobs" / f"sha256-{hexes[1]}").write_bytes(b"s" * 10)
    layers = [
        {"digest": f"sha256:{hexes[0]}", "size": 10},
        {"digest": "sha256:../../secret", "size": 10},
        {"digest": f"sha256:{hexes[1]}", "size": True},
        {"digest": f"sha256:{hexes[1]}", "size": "10"},
        {"digest": f"sha256:{hexes[1]}", "size": -1},
        "not a layer",
    ]
    manifests = ollama / "manifests" / "h" / "ns"
    manifests.mkdir(parents=True)
    (manifests / "a").write_text(json.dumps({"layers": layers, "config": 7}))
    (manifests / "b").write_bytes(b"\xff{not json" * 1000)
    (manifests / "c").write_text(json.dumps({"layers": "nope"}))
    blobs = hf / "models--x--y" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / hexes[2]).symlink_to(outside)
    (blobs / hexes[3]).mkdir()
    env = {"HF_HUB_CACHE": str(hf), "OLLAMA_MODELS": str(ollama), "NO_COLOR": "1"}
    result = await run(tmp_path / "home", "cache", "scan", "--json", **env)
    assert result.code == 0 and "Traceback" not in result.stderr, result.stderr
    assert result.json() == {"indexed": 0, "hashed": 0, "unchanged": 0, "mismatched": []}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("garbage", "only http:// and https://"),
        ("http://ok.example:8000, ftp://x", "only http:// and https://"),
        ("http://h?x=1", "must not have a query"),
        (",".join(f"http://h{i}.example" for i in range(17)), "at most 16 peers"),
    ],
    ids=["garbage", "ftp", "query", "17 peers"],
)
async def test_a_bad_modelhaul_peers_is_a_usage_error_naming_it(
    tmp_path: Path, value: str, says: str
) -> None:
    home = tmp_path / "home"
    got = await run(home, "peers", timeout=60, MODELHAUL_PEERS=value)
    assert_usage_error(got, "MODELHAUL_PEERS", says)
    assert not (home / "ledger.db").exists()


async def test_too_many_peers_on_the_command_line_is_a_usage_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    argv = [a for i in range(17) for a in ("--peer", f"http://h{i}.example")]
    got = await run(home, "peers", *argv, timeout=60)
    assert_usage_error(got, "--peer", "at most 16 peers")
    assert not (home / "ledger.db").exists()


def _closed_port() -> int:
    from pgkit import free_port

    return free_port()


BAD_LEDGER_URLS = [
    # nothing listens there: the server is down or the URL names the wrong host
    ("postgresql+asyncpg://u:hunter2@127.0.0.1:{port}/x", "database server is unreachable"),
    ("postgresql+nodriver://h/x", "unsupported database URL"),
    ("postgresql+asyncpg://u@127.0.0.1:{port}/x?sslmode=require", "refused the URL's options"),
]


@pytest.mark.parametrize(("url", "says"), BAD_LEDGER_URLS, ids=["down", "driver", "query"])
async def test_a_ledger_url_that_cannot_be_opened_is_one_line_without_its_password(
    tmp_path: Path, url: str, says: str
) -> None:
    url = url.format(port=_closed_port())
    for argv in (["ls"], ["pause", "3"]):
        got = await run(tmp_path / "home", *argv, timeout=60, MODELHAUL_LEDGER=url)
        assert got.code == 1, (got.code, got.stderr)
        [line] = got.stderr.strip().splitlines()
        assert line.startswith("modelhaul: cannot open ledger at") and says in line, line
        assert "hunter2" not in got.stderr and "Traceback" not in got.stderr
    got = await run(tmp_path / "home", "ls", "--ledger", url, timeout=60)  # the same by option
    assert got.code == 1 and says in got.stderr and "hunter2" not in got.stderr, got.stderr
