"""``freshet backfill DIR|FILE.jsonl``: publish a directory of documents, or a JSON-lines file of them,
as change events on the changes topic, resumably, and (``--delete-missing``) delete what is gone.

* A directory: every file matching the globs (``*.md``, ``*.markdown``, ``*.txt``), dot-files and
  dot-directories skipped, in the order of its path relative to the directory (POSIX separators).
  ``doc_id`` is that path (after ``--prefix``), ``version`` the file's mtime in microseconds: a file
  published again unchanged carries the same version, which the indexer skips as stale.
* A JSON-lines file: one object per line, its version the value of ``--version-field`` or else the
  line number (the fields, and why versions are microseconds: :mod:`workers.backfill_plan`). A bad
  line is reported with its number and skipped (``--strict``: the run stops).

Every event carries ``metadata.source`` (the source's absolute path unless ``--source`` names it):
that is how ``--delete-missing`` knows which documents of the topic this source published. Reading
the changes topic also tells which documents are unchanged (their version is not above the latest
there): those are not sent. What to publish is planned in :mod:`workers.backfill_plan`; this module
reads the inputs, publishes, and keeps the position. The position (the last input whose event, and
every one before it, the broker acknowledged) is saved every N events to a checkpoint under
``<home>/backfill/``, keyed by the bootstrap servers, the topic and the source, so an interrupted run
resumes after it; a run that completes removes it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import structlog
from pydantic import BaseModel, ValidationError
from tqdm import tqdm

from freshet.client import AppliedWatcher, DocumentPublisher
from freshet.errors import FreshetError
from freshet.publishing import wait_applied
from freshet.settings import Settings
from freshet.verify import read_changes
from schemas.change import ChangeEvent
from workers.backfill_plan import (
    SOURCE_FIELD,
    Acks,
    Cursor,
    Item,
    Latest,
    content_type_for,
    is_pending,
    latest_by_key,
    line_item,
    plan_deletes,
    plan_upsert,
)

log = structlog.get_logger(__name__)

DEFAULT_GLOBS = ("*.md", "*.markdown", "*.txt")


class Checkpoint(BaseModel):
    """The saved position of a backfill: every input up to ``after`` is acknowledged."""

    source: str
    topic: str
    after: Cursor
    events: int
    """Events acknowledged by the runs so far."""


def discover(root: Path, globs: Sequence[str]) -> list[PurePosixPath]:
    """The files under ``root`` matching any glob (by their relative path, from the right), dot-files
    and dot-directories skipped, sorted by relative path: the order positions refer to."""
    found = []
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel_top = PurePosixPath(Path(top).relative_to(root).as_posix())
        found += [rel_top / f for f in files if not f.startswith(".")
                  and any((rel_top / f).match(g) for g in globs)]
    return sorted(found, key=str)


def checkpoint_path(settings: Settings, source: str) -> Path:
    digest = hashlib.sha256(f"{settings.bootstrap_servers}\n{settings.topic_changes}\n{source}".encode()).hexdigest()
    return settings.home / "backfill" / f"{digest[:20]}.json"


@dataclass(frozen=True)
class Options:
    """What ``freshet backfill`` was asked to do (see the command's help)."""

    globs: Sequence[str] = DEFAULT_GLOBS
    prefix: str = ""
    tenant: str | None = None
    source: str | None = None
    version_field: str | None = None
    strict: bool = False
    delete_missing: bool = False
    skip_unchanged: bool = True
    restart: bool = False
    wait: bool = False
    timeout: float = 600.0
    checkpoint_every: int = 100
    stop_after: int | None = None
    """Stop (as if interrupted) once this many events are acknowledged: for testing resumption."""


@dataclass
class Summary:
    published: int = 0
    unchanged: int = 0
    deleted: int = 0
    errors: int = 0
    resumed: int = 0
    """Inputs before the checkpoint: not looked at again."""
    seconds: float = 0.0
    stopped: bool = False

    def line(self) -> str:
        rate = (self.published + self.deleted) / self.seconds if self.seconds > 0 else 0.0
        return (f"backfill: {self.published} published, {self.unchanged} unchanged skipped, {self.deleted} deleted, "
                f"{self.errors} errors" + (f", {self.resumed} done before (resumed)" if self.resumed else "")
                + f" in {self.seconds:.1f} s ({rate:.1f} events/s)" + (" - stopped early" if self.stopped else ""))


def read_items(src: Path, opts: Options, source: str, max_bytes: int) -> tuple[Iterator[Item], int]:
    """The inputs of ``src`` in order, read lazily, and their total size in bytes."""
    if src.is_dir():
        files = [(rel, (src / rel).stat().st_size) for rel in discover(src, opts.globs)]
        return _file_items(src, files, opts, source, max_bytes), sum(size for _, size in files)
    return _line_items(src, opts, source), src.stat().st_size


def _file_items(root: Path, files: list[tuple[PurePosixPath, int]], opts: Options, source: str,
                max_bytes: int) -> Iterator[Item]:
    for rel, size in files:
        path, doc_id = root / rel, opts.prefix + str(rel)
        try:
            key: str | None = ChangeEvent(doc_id=doc_id, op="delete", version=0, tenant=opts.tenant).key
        except ValidationError:
            key = None  # the error comes again below, with the whole explanation
        try:
            mtime_us = path.stat().st_mtime_ns // 1000
            data = path.read_bytes()
            if len(data) > max_bytes:
                raise ValueError(f"{len(data)} bytes, above FRESHET_MAX_DOCUMENT_BYTES ({max_bytes})")
            event = ChangeEvent(doc_id=doc_id, op="upsert", version=mtime_us, content=data.decode("utf-8"),
                                tenant=opts.tenant, content_type=content_type_for(rel), metadata={SOURCE_FIELD: source})
        except (OSError, ValueError) as exc:  # UnicodeDecodeError and ValidationError are ValueErrors
            yield Item(str(rel), key, size, error=f"{path}: {' '.join(str(exc).split())}")
            continue
        yield Item(str(rel), event.key, len(data), event)


def _line_items(path: Path, opts: Options, source: str) -> Iterator[Item]:
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            item = line_item(n, raw, where=str(path), version_field=opts.version_field, tenant=opts.tenant,
                             source=source)
            if item is not None:
                yield item


def run_backfill(settings: Settings, src: Path, opts: Options) -> Summary:
    """Publish ``src`` (a directory or a JSON-lines file) as change events; see the module docstring."""
    started = time.monotonic()
    src = src.resolve()
    source = opts.source or str(src)
    cp_path = checkpoint_path(settings, source)
    checkpoint = None if opts.restart else _load_checkpoint(cp_path, source, settings.topic_changes)
    if opts.restart:
        cp_path.unlink(missing_ok=True)
    latest = (latest_by_key(read_changes(settings)) if opts.skip_unchanged or opts.delete_missing else {})
    items, total = read_items(src, opts, source, settings.max_document_bytes)
    before = checkpoint.events if checkpoint else 0

    def save(after: Cursor, acked: int) -> None:
        cp_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cp_path.with_suffix(".tmp")
        tmp.write_text(Checkpoint(source=source, topic=settings.topic_changes, after=after,
                                  events=before + acked).model_dump_json())
        tmp.replace(cp_path)

    summary = Summary()
    acks = Acks(save, opts.checkpoint_every)
    wanted: dict[str, int] = {}
    watcher = AppliedWatcher(settings.kafka_access, settings.topic_applied) if opts.wait else None  # before sending
    try:
        publisher = DocumentPublisher(settings.kafka_access, settings.topic_changes)
    except FreshetError:
        if watcher is not None:
            watcher.close()
        raise
    finished = False
    try:
        present, unnamed = _publish_items(items, total, checkpoint.after if checkpoint else None, opts, latest,
                                          publisher, acks, wanted, summary)
        publisher.flush()
        acks.drain(block=True)
        acks.save()
        if opts.delete_missing and not summary.stopped:
            if unnamed:
                _warn(f"--delete-missing withheld: {unnamed} input(s) name no document readably, so what is "
                      "missing cannot be told; fix them and run again")
            else:
                deletes = plan_deletes(latest, present, source)
                for fut in [publisher.publish(ev) for ev in tqdm(deletes, desc="deleting", unit="event")]:
                    fut.result(timeout=120)
                wanted.update({ev.key: ev.version for ev in deletes})
                summary.deleted = len(deletes)
        finished = not summary.stopped
        if finished:
            cp_path.unlink(missing_ok=True)
        if watcher is not None and wanted and finished:
            wait_applied(watcher, wanted, opts.timeout)
    finally:
        if not finished:  # an error or Ctrl-C: keep every acknowledged position
            publisher.flush(timeout=10)
            acks.salvage()
        publisher.close()
        if watcher is not None:
            watcher.close()
        summary.seconds = time.monotonic() - started
        log.info("backfill_done", source=source, topic=settings.topic_changes, published=summary.published,
                 unchanged=summary.unchanged, deleted=summary.deleted, errors=summary.errors,
                 resumed=summary.resumed, finished=finished, seconds=round(summary.seconds, 2))
    return summary


def _publish_items(items: Iterator[Item], total: int, after: Cursor | None, opts: Options,
                   latest: Mapping[str, Latest], publisher: DocumentPublisher, acks: Acks,
                   wanted: dict[str, int], summary: Summary) -> tuple[set[str], int]:
    """Publish every pending item; returns the keys of every document present and how many inputs
    name none."""
    present: set[str] = set()
    unnamed = 0
    with tqdm(total=total, desc="backfill", unit="B", unit_scale=True) as bar:
        for item in items:
            bar.update(item.nbytes)
            if item.key is None:
                unnamed += 1
            else:
                present.add(item.key)
            if not is_pending(item.cursor, after):
                summary.resumed += 1
                continue
            if item.event is None:
                summary.errors += 1
                _warn(f"skipped: {item.error}")
                if opts.strict:
                    raise FreshetError(f"{item.error} (--strict)")
                acks.add(item.cursor, None)
                continue
            event = plan_upsert(item.event, latest.get(item.key or ""))
            if event is None:
                summary.unchanged += 1
                acks.add(item.cursor, None)
            else:
                acks.add(item.cursor, publisher.publish(event))
                wanted[event.key] = max(event.version, wanted.get(event.key, -1))
                summary.published += 1
            bar.set_postfix(published=summary.published, unchanged=summary.unchanged, errors=summary.errors,
                            refresh=False)
            if opts.stop_after is not None and summary.published >= opts.stop_after:
                summary.stopped = True
                break
    return present, unnamed


def _load_checkpoint(path: Path, source: str, topic: str) -> Checkpoint | None:
    if not path.exists():
        return None
    try:
        cp = Checkpoint.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FreshetError(f"cannot read the backfill checkpoint {path}: {exc}; --restart ignores it") from exc
    if cp.source != source or cp.topic != topic:
        raise FreshetError(f"the checkpoint {path} belongs to {cp.source!r} on {cp.topic!r}; --restart ignores it")
    _warn(f"resuming after {cp.after!r} ({cp.events} event(s) acknowledged before; --restart starts over)")
    return cp


def _warn(message: str) -> None:
    tqdm.write(message, file=sys.stderr)
