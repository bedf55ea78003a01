"""Producing from the workers: wait for the broker's acknowledgement, and wait out a broker that is
away (a Kafka error becomes a :class:`~freshet.errors.TransientError`, retried with backoff)
instead of failing the batch or the request that produced.

Faust wraps every Kafka error raised while *enqueueing* a record in its own ``ProducerSendError``
(errors of the delivery itself arrive as Kafka errors on the future); both are unwrapped here. A
record that can never be produced (too large, an invalid or forbidden topic) raises
:class:`RecordRefusedError` at once, so the caller can fall back (e.g. a smaller dead letter)
instead of retrying for ever. Anything else is a broker that is away: waited out.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiokafka import errors as kafka_errors  # type: ignore[import-untyped]
from faust.exceptions import ProducerSendError

from freshet.errors import FreshetError, TransientError
from workers.fencing import Fence
from workers.retry import until_done

log = structlog.get_logger(__name__)

#: Kafka errors that mean "this record will never be accepted", whatever the wait.
_REFUSALS: tuple[type[BaseException], ...] = tuple(
    getattr(kafka_errors, name) for name in (
        "MessageSizeTooLargeError", "RecordTooLargeError", "InvalidTopicError", "TopicAuthorizationFailedError",
        "ClusterAuthorizationFailedError", "CorruptRecordException", "RecordListTooLargeError",
    ) if hasattr(kafka_errors, name))


class RecordRefusedError(FreshetError):
    """Kafka refuses this record for good (its size, its topic): retrying will not help."""

    def __init__(self, topic: str, cause: BaseException) -> None:
        self.topic = topic
        super().__init__(f"Kafka refuses a record for {topic!r}: {type(cause).__name__}: {cause}")


#: Errors after which an idempotent producer cannot send to the partition again (see ``renew``).
_SEQUENCE_BROKEN: tuple[type[BaseException], ...] = tuple(
    getattr(kafka_errors, name) for name in ("OutOfOrderSequenceNumber", "UnknownProducerId", "InvalidProducerEpoch")
    if hasattr(kafka_errors, name))


def _broken_sequence(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, ProducerSendError) and exc.__cause__ is not None else exc
    return isinstance(cause, _SEQUENCE_BROKEN)


async def _renew_producer(topic: Any) -> None:
    """Give the app a new producer (streams.app's idempotent producer can renew itself)."""
    producer = getattr(getattr(topic, "app", None), "producer", None)
    renew = getattr(producer, "renew", None)
    if renew is not None:
        log.warning("producer_renewed", topic=topic.get_topic_name())
        await renew()


def classify(topic: str, exc: BaseException) -> FreshetError:
    """The freshet error a producer failure stands for: refused for good, else transient."""
    cause = exc.__cause__ if isinstance(exc, ProducerSendError) and exc.__cause__ is not None else exc
    if isinstance(cause, _REFUSALS):
        return RecordRefusedError(topic, cause)
    return TransientError(f"cannot produce to {topic!r}: {type(cause).__name__}: {cause}")


async def send(topic: Any, *, what: str, fence: Fence | None = None, **message: Any) -> None:
    """Send one record to the Faust ``topic`` and wait until the broker has it.

    Raises :class:`RecordRefusedError` when Kafka will never take the record; waits out anything else.
    """
    await send_all(topic, [message], what=what, fence=fence)


async def send_all(topic: Any, messages: list[dict[str, Any]], *, what: str, fence: Fence | None = None) -> None:
    """Send every record of ``messages`` (keyword arguments of ``topic.send``) and wait until the
    broker has acknowledged all of them; on a transient failure the whole list is sent again
    (every record freshet sends this way is idempotent: compacted by key, or a state).

    With a ``fence``, every attempt first checks the lease held by the caller
    (:class:`~freshet.errors.FencedError` if it no longer holds) and the records carry its headers.
    """

    async def once() -> None:
        if fence is None:
            await attempt(messages)
            return
        async with fence.writing():
            headers = fence.headers()
            await attempt([{**m, "headers": [*m.get("headers", []), *headers]} for m in messages])

    async def attempt(messages: list[dict[str, Any]]) -> None:
        futures: list[Any] = []
        try:
            for message in messages:
                futures.append(await topic.send(**message))
            for fut in futures:
                await fut
        except (kafka_errors.KafkaError, ProducerSendError) as exc:
            await asyncio.gather(*futures, return_exceptions=True)  # retrieve every outcome before retrying
            error = classify(topic.get_topic_name(), exc)
            if isinstance(error, RecordRefusedError) or _broken_sequence(exc):
                await _renew_producer(topic)
            raise error from exc

    if messages:
        await until_done(once, what=what)
