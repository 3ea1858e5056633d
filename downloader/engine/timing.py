"""Waiting with a deadline without eating cancellations."""

from __future__ import annotations

import asyncio


async def wait_a_while(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass; True if it was set.

    ``asyncio.timeout`` rather than ``wait_for``: on Python 3.11 a cancellation that races
    ``wait_for``'s own timeout can be turned into a TimeoutError, and a loop that treats
    timeouts as "nothing happened" would then never stop.
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
