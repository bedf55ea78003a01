"""streams.sending: a send the broker never acknowledges is bounded, logged and sent again on a new producer.

The topic and producer here are stand-ins for Faust's (this tests freshet's wait, not Kafka); the
real broker paths are in tests/integration (test_state_refused.py, test_broker_outage.py).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from structlog.testing import capture_logs

from streams.sending import ack_timeout, send_all


class _Producer:
    """A producer whose first incarnation takes records and never acknowledges them (a stuck sender)."""

    def __init__(self) -> None:
        self.renewed = 0

    async def renew(self) -> None:
        self.renewed += 1


class _Topic:
    def __init__(self) -> None:
        self.app = SimpleNamespace(conf=SimpleNamespace(producer_request_timeout=0.05), producer=_Producer())
        self.sent = 0
        self.callbacks: list[Any] = []

    def get_topic_name(self) -> str:
        return "freshet.test"

    async def send(self, **message: Any) -> asyncio.Future[Any]:
        self.sent += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.app.producer.renewed:
            fut.set_result(SimpleNamespace(partition=0, offset=self.sent))
        else:
            self.callbacks.append(fut)  # never resolved: the stuck producer
        return fut


def test_a_send_never_acknowledged_is_retried_on_a_new_producer() -> None:
    topic = _Topic()

    async def run() -> None:
        await asyncio.wait_for(send_all(topic, [{"key": b"k", "value": b"v"}] * 3, what="state_write"), 10)

    with capture_logs() as logs:
        asyncio.run(run())
    assert topic.app.producer.renewed == 1
    assert topic.sent == 6  # three on the stuck producer, three again on the new one
    timeouts = [e for e in logs if e["event"] == "kafka_ack_timeout"]
    assert len(timeouts) == 1 and timeouts[0]["acknowledged"] == 0 and timeouts[0]["records"] == 3
    assert not any(f.cancelled() for f in topic.callbacks), "a timeout must not cancel Faust's futures"


def test_the_acknowledgement_bound_follows_the_producer_request_timeout() -> None:
    assert ack_timeout(SimpleNamespace(app=SimpleNamespace(conf=SimpleNamespace(producer_request_timeout=30.0)))) == 70
    assert ack_timeout(SimpleNamespace(app=SimpleNamespace(conf=SimpleNamespace(producer_request_timeout=1.0)))) == 3

