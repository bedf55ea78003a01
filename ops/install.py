"""Installing the local stack's heavy parts once per version, outside the clone.

* Kafka: the broker's jars, resolved from Maven Central by ``mvn`` from ``ops/kafka/pom.xml``,
  kept in ``<cache>/kafka-<version>/libs``.
* Weaviate: ``weaviate-server`` built with ``go install`` of its Go module through the Go module
  proxy, kept in ``<cache>/weaviate-<version>/bin``.

Each install builds into a temporary folder and renames it into place, under a file lock, so an
interrupted or concurrent run never leaves a half-built cache behind.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from freshet.errors import StackError
from ops.procs import log_tail

POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
WEAVIATE_MODULE = "github.com/weaviate/weaviate/cmd/weaviate-server"


def kafka_libs(cache: Path, version: str) -> Path:
    return cache / f"kafka-{version}" / "libs"


def weaviate_binary(cache: Path, version: str) -> Path:
    return cache / f"weaviate-{version}" / "bin" / "weaviate-server"


def ensure_kafka(cache: Path, version: str) -> Path:
    """The Kafka broker's jar folder, fetched with Maven on first use."""
    final = cache / f"kafka-{version}"
    libs = kafka_libs(cache, version)
    if libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")):
        return libs
    with _locked(cache, f"kafka-{version}"):
        if libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")):
            return libs
        _need("mvn", "Maven (apt-get install maven)")
        tmp = cache / f".kafka-{version}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        argv = ["mvn", "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
                f"-Dkafka.version={version}", "-DincludeScope=runtime", f"-DoutputDirectory={tmp / 'libs'}"]
        _run(argv, what=f"Kafka {version} jars from Maven Central", log=cache / f"kafka-{version}.install.log")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    return libs


def ensure_weaviate(cache: Path, version: str) -> Path:
    """The ``weaviate-server`` binary, built from its Go module on first use (a few minutes)."""
    return ensure_go_binary(cache, "weaviate", WEAVIATE_MODULE, version, binary="weaviate-server", what="Weaviate")


def ensure_go_binary(cache: Path, name: str, module: str, version: str, *, binary: str | None = None,
                     what: str | None = None) -> Path:
    """``<cache>/<name>-<version>/bin/<binary>`` (default ``binary`` = ``name``), built by
    ``go install module@version`` through the Go module proxy on first use."""
    final = cache / f"{name}-{version}"
    path = final / "bin" / (binary or name)
    if path.is_file():
        return path
    with _locked(cache, final.name):
        if path.is_file():
            return path
        _need("go", "Go 1.26 or newer")
        tmp = cache / f".{final.name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        env = {**os.environ, "GOBIN": str(tmp / "bin"), "GOFLAGS": "-buildvcs=false"}
        _run(["go", "install", f"{module}@{version}"], env=env,
             what=f"{what or name} {version} from the Go module proxy (first run only)",
             log=cache / f"{final.name}.install.log")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    return path
    with _locked(cache, f"weaviate-{version}"):
        if binary.is_file():
            return binary
        _need("go", "Go 1.25 or newer")
        tmp = cache / f".weaviate-{version}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        env = {**os.environ, "GOBIN": str(tmp / "bin"), "GOFLAGS": "-buildvcs=false"}
        _run(["go", "install", f"{WEAVIATE_MODULE}@{version}"], env=env,
             what=f"Weaviate {version} from the Go module proxy (first run only)",
             log=cache / f"weaviate-{version}.install.log")
        final = binary.parent.parent
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    return binary


def _need(tool: str, hint: str) -> None:
    if shutil.which(tool) is None:
        raise StackError(f"'{tool}' is not on PATH; install {hint}", service=tool)


@contextmanager
def _locked(cache: Path, name: str) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f".{name}.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(argv: Sequence[str], *, what: str, log: Path, env: dict[str, str] | None = None) -> None:
    """Run an install command, showing elapsed time; on failure raise with the command and log tail."""
    with log.open("wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                                stdin=subprocess.DEVNULL, env=env)
        # On a terminal the elapsed time ticks every second; in a CI log, one line every 30 s.
        tty = sys.stderr.isatty()
        with tqdm(desc=f"installing {what}", bar_format="{desc}: {elapsed}", leave=True,
                  mininterval=1.0 if tty else 30.0) as bar:
            last = time.monotonic()
            while proc.poll() is None:
                time.sleep(1.0)
                if tty or time.monotonic() - last >= 30:
                    bar.refresh()
                    if not tty:
                        sys.stderr.write("\n")
                    last = time.monotonic()
    if proc.returncode != 0:
        raise StackError(
            f"install of {what} failed (exit {proc.returncode}): {' '.join(argv)}; full log: {log}",
            service=what, log_tail=log_tail(log),
        )


def ensure_chromium(cache: Path | None = None) -> str:
    """The headless Chromium of the browser test, from Debian's ``chromium`` package: installed with
    apt-get when missing (as root; otherwise the error names the command to run)."""
    found = shutil.which("chromium")
    if found:
        return found
    cmd = "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium"
    if os.geteuid() != 0:
        raise StackError(f"'chromium' is not on PATH; install Debian's package: sudo sh -c '{cmd}'", service="chromium")
    logdir = cache or Path.home() / ".cache" / "freshet"
    logdir.mkdir(parents=True, exist_ok=True)
    with _locked(logdir, "chromium"):
        if not shutil.which("chromium"):
            _run(["sh", "-c", cmd], what="chromium (apt-get)", log=logdir / "chromium-install.log")
    return shutil.which("chromium") or "chromium"
