"""Producing from the workers: wait for the broker's acknowledgement, and wait out a broker that is
away (a Kafka error becomes a :class:`~freshet.errors.TransientError`, retried with backoff)
instead of failing the batch or the request that produced."""

from __future__ import annotations

from typing import Any

from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from freshet.errors import TransientError
from workers.retry import until_done


async def send(topic: Any, *, what: str, **message: Any) -> None:
    """Send one record to the Faust ``topic`` and wait until the broker has it."""

    async def once() -> None:
        try:
            fut = await topic.send(**message)
            await fut
        except KafkaError as exc:
            raise TransientError(f"cannot produce to {topic.get_topic_name()!r}: {exc}") from exc

    await until_done(once, what=what)
