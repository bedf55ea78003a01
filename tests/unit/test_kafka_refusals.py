"""A refused Kafka connection names the setting to change, from the client's own log lines."""

from __future__ import annotations

import logging

from freshet.errors import ConfigError, TransientError
from freshet.kafka_access import KafkaAccess, cause, refusals, refused

# lines kafka-python 3.0 logged against the secured local broker (tests/integration/test_secure_stack.py)
WRONG_PASSWORD = ("<KafkaConnection node_id=bootstrap-0 broker_version=(3, 9) (disconnected)>: Connection lost: "
                  "[Error 58] SaslAuthenticationFailedError: SaslAuthenticationFailedError: Authentication failed "
                  "during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512")
UNTRUSTED = ("Connection failed: KafkaConnectionError: Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate "
             "verify failed: unable to get local issuer certificate (_ssl.c:1006)")
PLAINTEXT_TO_TLS = ("Bootstrap connection to bootstrap-0 failed: InvalidReceiveError: Invalid frame length: 352518912 "
                    "(backoff 23.00 secs)")


def test_each_refusal_names_its_setting() -> None:
    assert "FRESHET_KAFKA_SASL_PASSWORD" in cause([WRONG_PASSWORD])
    assert "FRESHET_KAFKA_SSL_CAFILE" in cause([UNTRUSTED])
    assert "FRESHET_KAFKA_SECURITY_PROTOCOL" in cause([PLAINTEXT_TO_TLS])
    assert cause(["Bootstrap bootstrap-0 not ready; waiting 3.19 secs"]) == ""


def test_a_refusal_is_a_config_error_and_anything_else_stays_transient() -> None:
    exc = RuntimeError("KafkaTimeoutError: Unable to bootstrap")
    assert isinstance(refused(exc, [WRONG_PASSWORD], "h:9092"), ConfigError)
    away = refused(exc, ["Connection refused"], "h:9092")
    assert isinstance(away, TransientError) and "not reachable" in str(away)
    closed = refused(exc, ["<KafkaSSLTransport>: socket disconnected"], KafkaAccess("h:9092"))
    assert isinstance(closed, TransientError) and "may want TLS or SASL" in str(closed)


def test_the_clients_lines_are_heard_even_where_freshets_logging_silences_them() -> None:
    kafka = logging.getLogger("kafka")
    level, propagate = kafka.level, kafka.propagate
    kafka.setLevel(logging.CRITICAL)  # what freshet.log configures in every process
    try:
        with refusals() as seen:
            logging.getLogger("kafka.net.manager").warning("%s", PLAINTEXT_TO_TLS)
        assert seen == [PLAINTEXT_TO_TLS]
        assert (kafka.level, kafka.propagate) == (logging.CRITICAL, propagate), "put back as it was"
    finally:
        kafka.setLevel(level)


def test_the_clients_log_lines_are_collected_while_they_run() -> None:
    with refusals() as seen:
        logging.getLogger("kafka.net.connection").error("%s", WRONG_PASSWORD)
        logging.getLogger("aiokafka").warning("x")
        logging.getLogger("kafka.net.manager").debug("not a warning")
    logging.getLogger("kafka").error("after")
    assert seen == [WRONG_PASSWORD, "x"]
