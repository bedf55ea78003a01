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
        try:
            await asyncio.wait_for(renew(), ack_timeout(topic))
        except TimeoutError as exc:  # the new producer did not start (no producer id from the broker)
            raise TransientError(f"a new producer for {topic.get_topic_name()!r} did not start within "
                                 f"{ack_timeout(topic):.0f} s") from exc


def ack_timeout(topic: Any) -> float:
    """How long a send waits for the broker's acknowledgement before it counts as lost: two producer
    request timeouts (one for the record's batch, one for its request) and a margin. aiokafka fails a
    record within that time unless its producer is stuck (a sender task that died, a producer id it
    never got): a wait without a bound would then hold the partition silently for ever."""
    conf = getattr(getattr(topic, "app", None), "conf", None)
    request = float(getattr(conf, "producer_request_timeout", 30.0))
    return 2 * request + min(10.0, request)


def producer_state(topic: Any) -> dict[str, Any]:
    """What the app's aiokafka producer looks like (for the log line of a send that was not acknowledged)."""
    try:
        inner = getattr(getattr(topic.app, "producer", None), "_producer", None)
        sender = getattr(inner, "_sender", None)
        task = getattr(sender, "sender_task", None)
        txn = getattr(inner, "_txn_manager", None)
        error = task.exception() if task is not None and task.done() and not task.cancelled() else None
        return {"producer_started": inner is not None, "sender_running": task is not None and not task.done(),
                "sender_error": repr(error) if error is not None else None,
                "producer_id": txn.producer_id if txn is not None else None}
    except Exception as exc:  # noqa: BLE001 - a diagnostic never fails the send path
        return {"producer_state_unknown": f"{type(exc).__name__}: {exc}"}


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
        bound = ack_timeout(topic)
        deadline = asyncio.get_running_loop().time() + bound
        try:
            for message in messages:
                left = deadline - asyncio.get_running_loop().time()
                futures.append(await asyncio.wait_for(topic.send(**message), max(left, 0.001)))
            left = deadline - asyncio.get_running_loop().time()
            # asyncio.wait, not wait_for: a timeout must not cancel the futures (Faust would then fail
            # setting their results, and the callbacks of records that did land would never run).
            _, pending = await asyncio.wait(futures, timeout=max(left, 0.001)) if futures else (set(), set())
            if pending:
                raise TimeoutError
            for fut in futures:
                fut.result()
        except TimeoutError as exc:
            acknowledged = sum(1 for f in futures if f.done())
            log.error("kafka_ack_timeout", what=what, topic=topic.get_topic_name(), records=len(messages),
                      acknowledged=acknowledged, seconds=bound, **producer_state(topic),
                      fix="none needed if it recovers: the records are sent again on a new producer")
            await _renew_producer(topic)
            raise TransientError(f"{topic.get_topic_name()!r} acknowledged {acknowledged} of {len(messages)} "
                                 f"record(s) within {bound:.0f} s") from exc
        except (kafka_errors.KafkaError, ProducerSendError) as exc:
            await asyncio.gather(*futures, return_exceptions=True)  # retrieve every outcome before retrying
            error = classify(topic.get_topic_name(), exc)
            if isinstance(error, RecordRefusedError) or _broken_sequence(exc):
                await _renew_producer(topic)
            raise error from exc

    if messages:
        await until_done(once, what=what)
