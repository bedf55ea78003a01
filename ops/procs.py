"""Background processes of the local stack: pid files, log files, signals, port checks."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' if there is none)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64_000))
            return b"\n".join(fh.read().splitlines()[-lines:]).decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def spawn(argv: Sequence[str], *, log: Path, pidfile: Path, env: Mapping[str, str] | None = None) -> int:
    """Start ``argv`` detached in a session of its own, output appended to ``log``; record its pid.

    ``posix_spawn`` rather than ``subprocess``: the launcher does not wait for the child, and a
    dropped ``Popen`` would warn that its child is still running.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        pid = os.posix_spawnp(
            argv[0], list(argv), dict(env if env is not None else os.environ),
            file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, out, 1),
                          (os.POSIX_SPAWN_DUP2, out, 2)],
            setsid=True,
        )
    finally:
        os.close(out)
        os.close(devnull)
    pidfile.write_text(f"{pid}\n")
    return pid


def read_pid(pidfile: Path) -> int | None:
    """The pid recorded in ``pidfile`` if that process is still alive (zombies count as dead)."""
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return None
    return None if state == "Z" else pid


def stop(pidfile: Path, *, timeout: float = 30.0) -> bool:
    """SIGTERM the process group of ``pidfile``'s pid, SIGKILL after ``timeout``. True if it ran."""
    pid = read_pid(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_pid(pidfile) is None:
            break
        time.sleep(0.2)
    else:
        _signal_group(pid, signal.SIGKILL)
        time.sleep(0.5)
    _reap(pid)
    pidfile.unlink(missing_ok=True)
    return True


def stop_all(pidfiles: Sequence[Path], *, timeout: float = 30.0) -> list[Path]:
    """SIGTERM every process of ``pidfiles`` at once, SIGKILL what is left after ``timeout``; the
    pid files whose process ran. At once, because the brokers of a KRaft quorum stopped one by one
    lose their majority halfway, and the last ones then wait for a controller that is gone."""
    running = [(p, pid) for p in pidfiles if (pid := read_pid(p)) is not None]
    for p in pidfiles:
        if read_pid(p) is None:
            p.unlink(missing_ok=True)
    for _, pid in running:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(read_pid(p) is not None for p, _ in running):
        time.sleep(0.2)
    for p, pid in running:
        if read_pid(p) is not None:
            _signal_group(pid, signal.SIGKILL)
    if any(read_pid(p) is not None for p, _ in running):
        time.sleep(0.5)
    for p, pid in running:
        _reap(pid)
        p.unlink(missing_ok=True)
    return [p for p, _ in running]


def _reap(pid: int) -> None:
    """Collect the exit status of a child we spawned, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):  # not ours (an earlier `make up`): init reaps it
        os.waitpid(pid, os.WNOHANG)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out as a client connection's source port."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out: set[int] = set()
"""Ports :func:`free_port` gave this process: nothing listens on them until their server starts, so a
bind test alone would hand the same port out twice (seen in CI: a secured stack's Kafka controller and
its query worker both drew 21220, and the worker could not start)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now and this process has not handed out before, below the
    kernel's ephemeral range: a port from that range (what binding port 0 gives) can be taken as the
    source port of any outgoing connection between this choice and the server's bind (seen: a Weaviate
    node's gRPC port, "address already in use")."""
    low = _ephemeral_low()
    if low > 20_000:
        for _ in range(200):
            port = random.randrange(20_000, low)
            if port in _handed_out or not _bindable(host, port):
                continue
            _handed_out.add(port)
            return port
    for _ in range(200):
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise OSError(f"no free port found on {host}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A port ``p`` such that nothing listens on ``p`` nor ``p + 1`` right now and neither was handed
    out before (Weaviate on one host wants its data port one above its gossip port, its Raft RPC port
    one above its Raft port)."""
    for _ in range(100):
        port = free_port(host)
        if port < 65535 and port + 1 not in _handed_out and _bindable(host, port + 1):
            _handed_out.add(port + 1)
            return port
    raise OSError(f"no two consecutive free ports found on {host}")
