"""KafkaAccess: the security settings each client library gets, and secrets kept out of sight."""

from __future__ import annotations

import ssl

import pytest
from pydantic import SecretStr

from freshet.errors import ConfigError
from freshet.kafka_access import KafkaAccess, access
from freshet.settings import Settings


def test_a_bare_bootstrap_string_is_plaintext_as_before() -> None:
    a = access("h1:9092, h2:9092")
    assert a.kafka_python() == {"bootstrap_servers": ["h1:9092", "h2:9092"], "security_protocol": "PLAINTEXT"}
    assert a.faust_credentials() is None
    assert str(a) == "h1:9092, h2:9092"


def test_sasl_ssl_gives_every_library_the_user_the_mechanism_and_a_tls_context() -> None:
    a = KafkaAccess("h:9094", "SASL_SSL", "SCRAM-SHA-512", "indexer", SecretStr("pw-123"))
    kp = a.kafka_python()
    assert kp["security_protocol"] == "SASL_SSL" and kp["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kp["sasl_plain_username"] == "indexer" and kp["sasl_plain_password"] == "pw-123"
    assert isinstance(kp["ssl_context"], ssl.SSLContext) and kp["ssl_context"].check_hostname
    assert a.aiokafka()["sasl_plain_password"] == "pw-123"
    creds = a.faust_credentials()
    assert creds.username == "indexer" and creds.password == "pw-123"
    assert creds.mechanism.value == "SCRAM-SHA-512" and creds.protocol.value == "SASL_SSL"


def test_the_password_is_in_no_repr_description_or_settings_repr() -> None:
    s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="u", kafka_sasl_password="pw-123",
                 kafka_ssl_key_password="kp-456")
    for text in (repr(s.kafka_access), str(s.kafka_access), s.kafka_access.describe(), repr(s), str(s),
                 repr(s.kafka_access.faust_credentials())):
        assert "pw-123" not in text and "kp-456" not in text
    assert s.kafka_access.describe() == "SASL_SSL as u (SCRAM-SHA-512)"
    assert s.as_env()["FRESHET_KAFKA_SASL_PASSWORD"] == "pw-123", "a child process gets the secret itself"


def test_settings_that_cannot_work_are_refused_with_the_variable_to_set() -> None:
    with pytest.raises(ConfigError, match="FRESHET_KAFKA_SASL_PASSWORD"):
        _ = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="u").kafka_access
    with pytest.raises(ConfigError, match="FRESHET_KAFKA_SSL_KEYFILE"):
        KafkaAccess("h:1", "SSL", ssl_certfile="/c.pem")
    with pytest.raises(ConfigError, match="cannot set up TLS"):
        KafkaAccess("h:1", "SSL", ssl_cafile="/nonexistent/ca.pem").kafka_python()


def test_mutual_tls_without_sasl_is_an_ssl_context_with_no_user() -> None:
    a = KafkaAccess("h:9095", "SSL")
    kp = a.kafka_python()
    assert kp["security_protocol"] == "SSL" and "sasl_mechanism" not in kp
    assert a.faust_credentials().protocol.value == "SSL"
