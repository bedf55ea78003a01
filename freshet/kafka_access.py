"""How every freshet Kafka client reaches the brokers: bootstrap list, TLS and SASL.

One :class:`KafkaAccess` (``Settings.kafka_access``) carries the bootstrap servers and the security
settings under the names Kafka users know (``security.protocol``, ``sasl.mechanism``, a CA file, a
client certificate and key) and turns them into the keyword arguments of each client library:
kafka-python (:meth:`KafkaAccess.kafka_python`), aiokafka (:meth:`KafkaAccess.aiokafka`) and Faust
(:meth:`KafkaAccess.faust_credentials`). Secrets are ``SecretStr`` and never appear in ``repr`` or a
log line: only the protocol, mechanism and user name do (:meth:`KafkaAccess.describe`).

A plain bootstrap string is still accepted wherever a ``KafkaAccess`` is (``access(x)``): it means
PLAINTEXT, as before.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import SecretStr

from freshet.errors import ConfigError

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
PROTOCOLS: tuple[Protocol, ...] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS: tuple[Mechanism, ...] = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


@dataclass(frozen=True)
class KafkaAccess:
    """Bootstrap servers and the security of the connection to them."""

    bootstrap: str
    security_protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: SecretStr = field(default_factory=lambda: SecretStr(""), repr=False)
    ssl_cafile: str = ""
    """CA bundle that signed the brokers' certificates (empty: the system's trust store)."""
    ssl_certfile: str = ""
    """Client certificate (PEM) for mutual TLS; with ``ssl_keyfile``."""
    ssl_keyfile: str = ""
    ssl_key_password: SecretStr = field(default_factory=lambda: SecretStr(""), repr=False)
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        if self.security_protocol not in PROTOCOLS:
            raise ConfigError(f"Kafka security protocol {self.security_protocol!r} must be one of "
                              f"{', '.join(PROTOCOLS)}")
        if self.sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise ConfigError(f"Kafka SASL mechanism {self.sasl_mechanism!r} must be one of "
                                  f"{', '.join(MECHANISMS)}")
            if not self.sasl_username or not self.sasl_password.get_secret_value():
                raise ConfigError(f"Kafka security protocol {self.security_protocol} needs a SASL user name and "
                                  "password (FRESHET_KAFKA_SASL_USERNAME, FRESHET_KAFKA_SASL_PASSWORD)")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ConfigError("a Kafka client certificate needs its key and the other way round "
                              "(FRESHET_KAFKA_SSL_CERTFILE with FRESHET_KAFKA_SSL_KEYFILE)")

    def __str__(self) -> str:
        return self.bootstrap

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap.split(",") if s.strip()]

    def describe(self) -> str:
        """What a log line or a status may say: never a secret."""
        who = f" as {self.sasl_username} ({self.sasl_mechanism})" if self.sasl else ""
        cert = " with a client certificate" if self.ssl_certfile else ""
        return f"{self.security_protocol}{who}{cert}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of every client (None without TLS); raises ConfigError on an unreadable file."""
        if not self.tls:
            return None
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ssl_cafile or None)
            ctx.check_hostname = self.ssl_check_hostname
            if self.ssl_certfile:
                ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile,
                                    self.ssl_key_password.get_secret_value() or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot set up TLS to Kafka (CA {self.ssl_cafile or 'system'}, "
                              f"certificate {self.ssl_certfile or 'none'}): {exc}") from exc
        return ctx

    def _auth(self) -> dict[str, Any]:
        out: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.tls:
            out["ssl_context"] = self.ssl_context()
        if self.sasl:
            out.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                       sasl_plain_password=self.sasl_password.get_secret_value())
        return out

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments of a kafka-python client (``KafkaProducer``, ``KafkaConsumer``, admin)."""
        return {"bootstrap_servers": self.servers, **self._auth()}

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments of an aiokafka client (``AIOKafkaConsumer``, admin)."""
        return {"bootstrap_servers": self.servers, **self._auth()}

    def faust_credentials(self) -> Any:
        """``broker_credentials`` of a Faust app (None for PLAINTEXT)."""
        import faust

        if self.security_protocol == "PLAINTEXT":
            return None
        if self.sasl:
            return faust.SASLCredentials(username=self.sasl_username, password=self.sasl_password.get_secret_value(),
                                         mechanism=self.sasl_mechanism, ssl_context=self.ssl_context())
        return faust.SSLCredentials(self.ssl_context())


def access(kafka: KafkaAccess | str) -> KafkaAccess:
    """``kafka`` as a KafkaAccess (a bare bootstrap string: PLAINTEXT)."""
    return kafka if isinstance(kafka, KafkaAccess) else KafkaAccess(kafka)


#: What a refused connection looks like in the Kafka clients' own log lines, and what to change.
_CAUSES = (
    ("SaslAuthenticationFailed", "the broker refused the user name or password (FRESHET_KAFKA_SASL_USERNAME, "
                                 "FRESHET_KAFKA_SASL_PASSWORD, FRESHET_KAFKA_SASL_MECHANISM)"),
    ("CERTIFICATE_VERIFY_FAILED", "the broker's certificate is not signed by a trusted CA, or does not name "
                                  "the host (FRESHET_KAFKA_SSL_CAFILE, FRESHET_KAFKA_SSL_CHECK_HOSTNAME)"),
    ("UnsupportedSaslMechanism", "the broker does not offer this SASL mechanism (FRESHET_KAFKA_SASL_MECHANISM)"),
    ("Invalid frame length", "the broker speaks TLS there and this client does not "
                             "(FRESHET_KAFKA_SECURITY_PROTOCOL)"),
    ("WRONG_VERSION_NUMBER", "TLS was tried where the broker does not speak it (FRESHET_KAFKA_SECURITY_PROTOCOL)"),
    ("certificate required", "the broker wants a client certificate (FRESHET_KAFKA_SSL_CERTFILE, "
                             "FRESHET_KAFKA_SSL_KEYFILE)"),
)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def refusals() -> Iterator[list[str]]:
    """The Kafka clients' warnings and errors logged meanwhile (their reasons for a refused
    connection, which the exception they raise at the end does not carry). freshet's logging
    silences kafka-python (``freshet.log``: CRITICAL); meanwhile its warnings reach this collector
    alone, never the log."""
    handler = _Collect()
    saved: list[tuple[logging.Logger, int, bool]] = []
    for name in ("kafka", "aiokafka"):
        lg = logging.getLogger(name)
        saved.append((lg, lg.level, lg.propagate))
        lg.addHandler(handler)
        if lg.getEffectiveLevel() > logging.WARNING:  # silenced: hear it, and keep it out of the log
            lg.setLevel(logging.WARNING)
            lg.propagate = False
    try:
        yield handler.messages
    finally:
        for lg, level, propagate in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def cause(messages: list[str]) -> str:
    """Why the broker refused a connection, from the clients' log lines: a setting to change, which
    no retry will fix (``''`` when they do not say so)."""
    for needle, why in _CAUSES:
        if any(needle in m for m in messages):
            return why
    return ""


def hint(messages: list[str], kafka: KafkaAccess | str) -> str:
    """A likely reason when a PLAINTEXT client's connections were closed (``''`` otherwise)."""
    if access(kafka).security_protocol == "PLAINTEXT" and any("disconnected" in m or "closed" in m for m in messages):
        return ("the broker closed the connection: it may want TLS or SASL (FRESHET_KAFKA_SECURITY_PROTOCOL; "
                "docs/security.md)")
    return ""


def refused(exc: Exception, messages: list[str], kafka: KafkaAccess | str) -> Exception:
    """The error to raise for a client that could not be made: a ConfigError when the broker refused
    the settings, else a TransientError (with a hint, if there is one)."""
    from freshet.errors import TransientError

    why = cause(messages)
    if why:
        return ConfigError(f"Kafka at {kafka} refused the connection: {why} ({exc})")
    more = hint(messages, kafka)
    return TransientError(f"Kafka at {kafka} is not reachable: {exc}" + (f": {more}" if more else ""))
