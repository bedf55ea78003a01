"""Fault injection on the local stack, for the chaos tier: kill a service, freeze a Weaviate shard.

Every helper acts on one service named by its pid file (the launcher's ``<home>/run/<service>.pid``)
or on one Weaviate server named by its URL, so a fault never reaches a process or server the
caller did not start. Nothing here restarts anything: :meth:`ops.stack.Stack.up` does that.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from freshet.errors import StackError
from ops import procs


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as the kernel knows it: a restarted service has another pid or start time."""

    pid: int
    start_ticks: int


def identity(pidfile: Path) -> ProcessIdentity | None:
    """The live process recorded in ``pidfile``, with its start time (None if it is not running)."""
    pid = procs.read_pid(pidfile)
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (FileNotFoundError, IndexError):
        return None
    return ProcessIdentity(pid, int(fields[19]))  # field 22 of stat, counted after the command name


def kill9(pidfile: Path, *, wait: float = 10.0) -> int:
    """``kill -9`` the process group of ``pidfile``'s service and wait until it is gone; its pid.

    Raises :class:`StackError` when nothing runs there: a fault that hits nothing is a broken test.
    """
    pid = procs.read_pid(pidfile)
    if pid is None:
        raise StackError(f"nothing to kill: no live process in {pidfile}", service=pidfile.stem)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait
    while procs.read_pid(pidfile) is not None and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if procs.read_pid(pidfile) is not None:
        raise StackError(f"process {pid} of {pidfile} survived SIGKILL for {wait:.0f}s", service=pidfile.stem)
    return pid


def shard_names(weaviate_url: str, collection: str) -> list[str]:
    """The shards of ``collection`` (``GET /v1/schema/{class}/shards``)."""
    res = httpx.get(f"{weaviate_url}/v1/schema/{collection}/shards", timeout=10)
    res.raise_for_status()
    return [str(s["name"]) for s in res.json()]


def set_shard_status(weaviate_url: str, collection: str, status: str) -> list[str]:
    """Set every shard of ``collection`` to ``status`` (``READONLY`` or ``READY``); the shards' names."""
    names = shard_names(weaviate_url, collection)
    for name in names:
        res = httpx.put(f"{weaviate_url}/v1/schema/{collection}/shards/{name}", json={"status": status}, timeout=10)
        if res.status_code != 200:
            raise StackError(f"setting shard {name} of {collection} to {status} failed: HTTP {res.status_code} "
                             f"{res.text[:200]}", service="weaviate")
    return names


def shard_statuses(weaviate_url: str, collection: str) -> dict[str, str]:
    res = httpx.get(f"{weaviate_url}/v1/schema/{collection}/shards", timeout=10)
    res.raise_for_status()
    return {str(s["name"]): str(s["status"]) for s in res.json()}
