"""workers.stalls: a unit of work that waits too long logs where it waits."""

from __future__ import annotations

import asyncio
import contextlib

from structlog.testing import capture_logs

from workers.stalls import watched


def test_a_stalled_unit_of_work_says_where_it_waits() -> None:
    async def stuck_inside_a_send() -> None:
        await asyncio.get_running_loop().create_future()  # never resolved

    async def run() -> None:
        async with watched("batch", after=0.05, events=3):
            async with asyncio.timeout(0.18):  # not wait_for: that would run it in a task of its own
                await stuck_inside_a_send()

    with capture_logs() as logs, contextlib.suppress(TimeoutError):
        asyncio.run(run())
    slow = [e for e in logs if e["event"] == "work_slow"]
    assert len(slow) >= 2 and slow[0]["what"] == "batch" and slow[0]["events"] == 3
    chain = slow[0]["waiting_in"]
    assert chain[0].startswith("unit/test_stalls.py") and chain[-1].startswith("awaiting Future"), chain
    assert any("stuck_inside_a_send" in line for line in chain), chain


def test_work_that_ends_in_time_logs_nothing() -> None:
    async def run() -> None:
        async with watched("batch", after=0.05):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the watchdog is gone with the block

    with capture_logs() as logs:
        asyncio.run(run())
    assert not [e for e in logs if e["event"] == "work_slow"]
