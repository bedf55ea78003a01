"""Building a worker's Faust app from the settings (no module-level app: nothing at import)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from freshet.settings import Settings

Role = Literal["indexer", "query"]

#: Faust store URL per ``FRESHET_STATE_STORE``: RocksDB keeps each state-table partition on disk with
#: the changelog offset it holds, so an assignment reads only the records after it
#: (streams/state.py, docs/architecture.md "State that scales"); memory rebuilds it from the whole changelog.
STORES = {"rocksdb": "rocksdb://", "memory": "memory://"}


@dataclass(frozen=True)
class Topics:
    """The topics of one app, declared once. Values and keys are raw bytes: schemas decode."""

    changes: Any
    requests: Any
    replies: Any
    applied: Any
    dead_letter: Any
    metrics: Any
    _app: faust.App

    def named(self, name: str) -> Any:
        """A raw topic by name (reply topics chosen by the requester)."""
        return raw_topic(self._app, name)


def raw_topic(app: faust.App, name: str) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     allow_empty=True)


class _IdempotentProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer with idempotence on (Faust enables it only for exactly-once
    processing): a send aiokafka retries after a lost acknowledgement is not written twice."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._retiring: set[asyncio.Future[None]] = set()
        """Replaced producers being stopped (see :meth:`renew`)."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "enable_idempotence": True}

    async def renew(self) -> None:
        """Replace the aiokafka producer by a new one (a new producer id). Once the broker refused a
        record (too large for its topic), an idempotent producer's sequence numbers for that partition
        have a gap and every later send there fails with ``OutOfOrderSequenceNumber``: aiokafka has no
        recovery for it (Kafka's KIP-360), so freshet renews the producer and sends again. The same
        after a send the broker did not acknowledge in time (``streams.sending.ack_timeout``): the
        old producer's sender may be dead or stuck, so it is stopped aside, never awaited here."""
        old, self._producer = self._producer, self._new_producer()
        await self._producer.start()
        if old is not None:  # stopped aside: stop() waits for its pending records, which may never go
            self._retiring.add(task := asyncio.ensure_future(_stop_quietly(old)))
            task.add_done_callback(self._retiring.discard)


async def _stop_quietly(producer: Any, timeout: float = 30.0) -> None:
    """Stop a replaced aiokafka producer, giving up after ``timeout`` (its sender may be dead or stuck)."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), timeout)


class _Transport(faust_aiokafka.Transport):
    Producer = _IdempotentProducer


def create_app(settings: Settings, role: Role) -> tuple[faust.App, Topics]:
    """A Faust app for one worker role; its id is the consumer group. Its data directory (the RocksDB
    state of the indexer's table among it) is per worker and per app id, so workers on one machine
    never share one, and a worker of another layout (``freshet relayout``: a new group prefix) never
    opens the old layout's databases with their positions and persisted offsets."""
    app_id = f"{settings.consumer_group_prefix}-{role}"
    datadir = settings.home / "workers" / (settings.worker_instance or role) / app_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=[f"kafka://{hp}" for hp in settings.kafka_access.servers],
        broker_credentials=settings.kafka_access.faust_credentials(),
        store=STORES[settings.state_store],
        datadir=str(datadir),
        web_enabled=True,
        web_bind=settings.web_bind,
        web_port=settings.worker_web_port(role),
        web_in_thread=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_request_timeout=settings.kafka_request_timeout_seconds,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.kafka_session_timeout_seconds,
        broker_rebalance_timeout=60.0,  # the fence's bound (docs/architecture.md, Fencing): drain 45 s inside it
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_seconds / 5),
        autodiscover=False,
        loghandlers=[],
    )
    app.transport = _Transport(app.conf.broker_consumer, app)  # the producer above, acks=all (-1)
    topics = Topics(
        changes=raw_topic(app, settings.topic_changes),
        requests=raw_topic(app, settings.topic_requests),
        replies=raw_topic(app, settings.topic_replies),
        applied=raw_topic(app, settings.topic_applied),
        dead_letter=raw_topic(app, settings.topic_dead_letter),
        metrics=raw_topic(app, settings.topic_metrics),
        _app=app,
    )
    return app, topics
