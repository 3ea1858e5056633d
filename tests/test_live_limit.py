"""The bandwidth limit as a live setting: changed from another process (``modelhaul limit``)
while a download runs, by a schedule at its boundary, per task. The downloads run in a
``modelhaul`` subprocess; the origin runs here and measures the rate at which the client
takes its bytes (``Origin.taken``: what it served minus what the loopback path still holds;
the log of writes alone swings by the client's socket buffer, about 1 MiB a connection).
Rates are compared over whole seconds with ratio bounds (the issue asks for 10 % over a
second), after the change has had its second."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest
from clikit import finish, run, start, wait_for_task

from downloader.engine.ratelimit import TokenBucket
from downloader.limits import parse_rate, parse_schedule
from downloader.manager.limits import local_clock
from downloader.testing.origin import Origin
from storage import NewTask, TaskRecord, TaskState, open_ledger

MiB = 1 << 20
SIZE = 96 * MiB  # lasts every test below at their rates (at most 8M/s for ~8 s)
# The origin's socket send buffer: the system's grows to megabytes on loopback.
BUFFER = 64 * 1024


@pytest.fixture(scope="module")
def payload() -> bytes:
    return random.Random(17).randbytes(SIZE)


async def rate_over(origin: Origin, seconds: float = 1.0, name: str | None = None) -> float:
    """Bytes per second the client takes from the origin over the next ``seconds``."""
    began, before = time.monotonic(), origin.taken(name)
    await asyncio.sleep(seconds)
    return (origin.taken(name) - before) / (time.monotonic() - began)


async def rates_over(origin: Origin, names: tuple[str, ...], seconds: float) -> list[float]:
    """The same for several files over the same ``seconds``."""
    began, before = time.monotonic(), [origin.taken(n) for n in names]
    await asyncio.sleep(seconds)
    spent = time.monotonic() - began
    return [(origin.taken(n) - b) / spent for n, b in zip(names, before, strict=True)]


def assert_near(measured: float, limit: int, within: float) -> None:
    ratio = measured / limit
    assert 1 - within <= ratio <= 1 + within, f"{measured / MiB:.2f} MiB/s against {limit / MiB} M"


async def queue(home: Path, origin: Origin, name: str, target: Path, connections: int) -> int:
    """``modelhaul get --detach``: a task queued for a worker; its id."""
    queued = await run(
        home,
        "get",
        origin.url(name),
        "-o",
        str(target),
        "--detach",
        "--json",
        "--connections",
        str(connections),
    )
    assert queued.code == 0, queued.stderr
    return int(queued.json()["id"])


async def all_downloading(home: Path, count: int) -> None:
    def counted(task: TaskRecord) -> bool:
        return task.state is TaskState.DOWNLOADING

    for task_id in range(1, count + 1):
        await wait_for_task(home, counted, task_id=task_id)


async def stop(worker: asyncio.subprocess.Process) -> None:
    if worker.returncode is None:
        worker.send_signal(signal.SIGTERM)
        await finish(worker, timeout=60)


# --- a running download follows `modelhaul limit` from another process -----------------------


async def test_a_running_get_follows_limit_changes_from_another_process_within_a_second(
    tmp_path: Path, payload: bytes
) -> None:
    home = tmp_path / "home"
    async with Origin({"m.bin": payload}, send_buffer=BUFFER) as origin:
        assert (await run(home, "limit", "4M")).code == 0
        get = await start(
            home, "get", origin.url("m.bin"), "-o", str(tmp_path / "m.bin"), "--connections", "1"
        )
        try:
            await wait_for_task(home, lambda t: t.state is TaskState.DOWNLOADING)
            await asyncio.sleep(1.5)
            assert_near(await rate_over(origin), 4 * MiB, 0.10)
            for rate, limit in (("2M", 2 * MiB), ("6M", 6 * MiB)):
                changed = await run(home, "limit", rate)
                assert changed.code == 0, changed.stderr
                await asyncio.sleep(1.0)  # "within a second"
                measured = await rate_over(origin)
                assert_near(measured, limit, 0.10)
            # Lifted: the rest (over 60 MiB) comes at loopback speed.
            assert (await run(home, "limit", "off")).code == 0
            assert (await finish(get, timeout=30)).code == 0
        finally:
            if get.returncode is None:
                get.send_signal(signal.SIGINT)
                await finish(get, timeout=60)


async def test_a_worker_follows_a_tasks_own_limit_set_from_another_process(
    tmp_path: Path, payload: bytes
) -> None:
    home = tmp_path / "home"
    async with Origin({"m.bin": payload}, send_buffer=BUFFER) as origin:
        task = await queue(home, origin, "m.bin", tmp_path / "m.bin", 1)
        assert (await run(home, "limit", "--task", str(task), "3M")).code == 0
        worker = await start(home, "worker", "--limit-rate", "8M")
        try:
            await wait_for_task(home, lambda t: t.state is TaskState.DOWNLOADING)
            await asyncio.sleep(1.5)
            assert_near(await rate_over(origin), 3 * MiB, 0.10)
            assert (await run(home, "limit", "--task", str(task), "off")).code == 0
            await asyncio.sleep(1.0)
            # The worker's own --limit-rate still holds: the strictest applies.
            assert_near(await rate_over(origin), 8 * MiB, 0.10)
            shown = await run(home, "limit", "--json")
            assert shown.json()["tasks"] == []
        finally:
            await stop(worker)


# --- a schedule by an injected clock, the 10 %, fairness, a task inside the global limit -----


async def test_a_schedule_switches_at_its_boundary_by_the_injected_clock(
    tmp_path: Path, payload: bytes
) -> None:
    home = tmp_path / "home"
    async with Origin({"m.bin": payload}, send_buffer=BUFFER) as origin:
        set_ = await run(home, "limit", "--schedule", "08:00-18:00=2M,18:00-08:00=6M")
        assert set_.code == 0, set_.stderr
        await queue(home, origin, "m.bin", tmp_path / "m.bin", 1)
        # Every process below reads the local time as 08:00:00 falls `lead` seconds from now.
        lead = 12.0  # time for the worker and two CLI runs to start on a loaded machine
        boundary = time.monotonic() + lead
        offset = (datetime(2026, 1, 5, 8, 0, 0) - datetime.now()).total_seconds() - lead
        clock = {"MODELHAUL_CLOCK_OFFSET": f"{offset:.6f}"}
        worker = await start(home, "worker", **clock)
        try:
            before = await run(home, "limit", "--json", **clock)
            assert before.json()["now"] == {
                "rate": 6 * MiB,
                "rate_text": "6M",
                "rule": "18:00-08:00=6M",
            }
            await wait_for_task(home, lambda t: t.state is TaskState.DOWNLOADING)
            assert time.monotonic() < boundary - 3.0, "the worker took too long to start"
            await asyncio.sleep(boundary - 1.5 - time.monotonic())
            assert_near(await rate_over(origin), 6 * MiB, 0.10)
            # 08:00 by the injected clock: the worker takes the next rule at once, and the
            # bytes of its last read at the old rate are paid for at the new one (a slower
            # limit is not dodged): up to a few hundred KiB, a fifth of a second at 2M. So the
            # new rate is judged from 1.5 s on, over two seconds. (Judged from 1 s over one,
            # it failed about one run in four on a 2-core machine.)
            await asyncio.sleep(boundary + 1.5 - time.monotonic())
            assert_near(await rate_over(origin, 2.0), 2 * MiB, 0.10)
            after = await run(home, "limit", "--json", **clock)
            assert after.json()["now"]["rule"] == "08:00-18:00=2M"
        finally:
            await stop(worker)


async def test_the_limit_holds_within_ten_percent_over_each_second(
    tmp_path: Path, payload: bytes
) -> None:
    home = tmp_path / "home"
    async with Origin({"m.bin": payload}, send_buffer=BUFFER) as origin:
        assert (await run(home, "limit", "3M")).code == 0
        # Two connections, each on a 12 MiB range that lasts 8 s at 3M: no range ends (and
        # no new request fills the client's buffers again) while we measure. (With 16, what
        # each holds in aiohttp's buffer and its unpaid read, up to ~400K, swings the rate
        # at which bytes leave the network by ±15 % over single seconds.)
        await queue(home, origin, "m.bin", tmp_path / "m.bin", 2)
        worker = await start(home, "worker")
        try:
            await all_downloading(home, 1)
            await asyncio.sleep(1.5)
            rates = [await rate_over(origin) for _ in range(4)]
        finally:
            await stop(worker)
    for measured in rates:
        assert_near(measured, 3 * MiB, 0.10)


async def test_two_tasks_under_one_global_limit_share_it_and_both_progress(
    tmp_path: Path, payload: bytes
) -> None:
    home = tmp_path / "home"
    async with Origin({"a.bin": payload, "b.bin": payload}, send_buffer=BUFFER) as origin:
        assert (await run(home, "limit", "4M")).code == 0
        # Four connections against one: the lone connection still gets its turn.
        await queue(home, origin, "a.bin", tmp_path / "a.bin", 4)
        await queue(home, origin, "b.bin", tmp_path / "b.bin", 1)
        worker = await start(home, "worker")
        try:
            await all_downloading(home, 2)
            await asyncio.sleep(1.5)
            a, b = await rates_over(origin, ("a.bin", "b.bin"), 2.0)
        finally:
            await stop(worker)
    assert_near(a + b, 4 * MiB, 0.10)
    assert 0.35 <= a / (a + b) <= 0.65, f"a {a / MiB:.2f} MiB/s, b {b / MiB:.2f} MiB/s"


async def test_a_per_task_limit_holds_inside_the_global_one(tmp_path: Path, payload: bytes) -> None:
    home = tmp_path / "home"
    async with Origin({"a.bin": payload, "b.bin": payload}, send_buffer=BUFFER) as origin:
        assert (await run(home, "limit", "6M")).code == 0
        a = await queue(home, origin, "a.bin", tmp_path / "a.bin", 2)
        await queue(home, origin, "b.bin", tmp_path / "b.bin", 2)
        shown = await run(home, "limit", "--task", str(a), "1M", "--json")
        assert shown.json()["tasks"] == [{"id": a, "rate": MiB, "rate_text": "1M"}]
        worker = await start(home, "worker")
        try:
            await all_downloading(home, 2)
            await asyncio.sleep(1.5)
            rate_a, rate_b = await rates_over(origin, ("a.bin", "b.bin"), 2.0)
        finally:
            await stop(worker)
    assert_near(rate_a, MiB, 0.10)
    assert_near(rate_b, 5 * MiB, 0.10)  # what a leaves of the global limit


# --- the pieces ------------------------------------------------------------------------------


async def test_a_take_waiting_at_a_slow_rate_is_released_when_the_limit_is_lifted() -> None:
    bucket = TokenBucket(1024, burst_seconds=0)
    waiting = asyncio.ensure_future(bucket.take(64 * 1024))  # 64 s at 1K/s
    await asyncio.sleep(0.1)
    assert not waiting.done()
    bucket.set_rate(64 * MiB)
    async with asyncio.timeout(1.0):
        await waiting


def test_a_schedule_wraps_midnight_and_names_the_rule_in_force() -> None:
    schedule = parse_schedule("08:00-18:00=2M, 18:00-08:00=off")
    at = {h: schedule.rule_at(datetime(2026, 1, 1, h, 0)) for h in (0, 7, 8, 17, 18, 23)}
    assert [at[h].rate for h in (0, 7, 8, 17, 18, 23)] == [None, None, 2 * MiB, 2 * MiB, None, None]
    assert str(schedule) == "08:00-18:00=2M,18:00-08:00=off"
    assert type(schedule).from_json(schedule.to_json()) == schedule
    assert parse_schedule("00:00-24:00=1MB").rule_at(datetime(2026, 1, 1, 23, 59)).rate == 10**6


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("08:00-18:00=2M,17:00-08:00=off", "overlap at 17:00"),
        ("08:00-18:00=2M,19:00-08:00=off", "no rule from 18:00 to 19:00"),
        ("08:00-18:00=2M", "no rule from 18:00 to 08:00"),
        ("08:00-18:00=2M,18:00-08:00=512", "at least 1K"),
        ("08:60-18:00=2M,18:00-08:60=off", "not a time"),
    ],
)
def test_a_schedule_that_overlaps_or_leaves_a_gap_is_refused_naming_it(text, says) -> None:
    with pytest.raises(ValueError, match=says):
        parse_schedule(text)


def test_rates_read_as_sizes_do() -> None:
    assert parse_rate("10M") == parse_rate("10MiB") == 10 * MiB
    assert parse_rate("10MB") == 10_000_000
    assert parse_rate("off") is parse_rate("OFF") is None
    with pytest.raises(ValueError, match="at least 1K"):
        parse_rate("1000")


async def test_a_runners_pins_and_a_limit_set_meanwhile_by_another_process_both_stay(
    tmp_path: Path,
) -> None:
    # The runner's copy of the options is from its claim; `limit --task` (another process:
    # another connection to the same SQLite file) writes rate_limit before the runner
    # records its pins. Neither write may undo the other, in either order and interleaved.
    path = tmp_path / "ledger.db"
    runner, other = await open_ledger(path), await open_ledger(path)
    try:
        [task_id] = await runner.tasks.enqueue(
            [NewTask("hf", "org/m", str(tmp_path / "m"), options={"connections": 2})]
        )
        claimed = await runner.tasks.get(task_id)
        await other.limits.set_task(task_id, 3 * MiB)
        await runner.tasks.merge_options(task_id, {"revision_pin": "a" * 40})
        assert dict(claimed.options) == {"connections": 2}  # the stale copy
        assert (await other.tasks.get(task_id)).options == {
            "connections": 2,
            "rate_limit": 3 * MiB,
            "revision_pin": "a" * 40,
        }
        writes = [other.limits.set_task(task_id, (k + 1) * MiB) for k in range(10)]
        writes += [runner.tasks.merge_options(task_id, {f"pin{k}": k}) for k in range(10)]
        await asyncio.gather(*writes)
        options = (await runner.tasks.get(task_id)).options
        assert {f"pin{k}" for k in range(10)} <= set(options)
        assert options["rate_limit"] in {(k + 1) * MiB for k in range(10)}
        assert options["connections"] == 2
    finally:
        await runner.close()
        await other.close()


@pytest.mark.parametrize("offset", ["soon", "nan", "inf", "1e12", "12:00"])
def test_a_clock_offset_that_is_no_number_of_seconds_is_refused(offset: str) -> None:
    with pytest.raises(ValueError, match=r"MODELHAUL_CLOCK_OFFSET: .* not a number of seconds"):
        local_clock({"MODELHAUL_CLOCK_OFFSET": offset})


def test_a_clock_offset_moves_only_the_clock_it_makes() -> None:
    ahead = local_clock({"MODELHAUL_CLOCK_OFFSET": "3600"})()
    assert 3599 <= (ahead - datetime.now()).total_seconds() <= 3601
    assert abs((local_clock({})() - datetime.now()).total_seconds()) < 1
