"""Broker URLs: nightfold's query options, TLS pass-through, clear errors."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from nightfold.common.errors import ConfigError
from nightfold.common.transport.rabbitmq import DEFAULT_QUEUE, parse_broker_url


def test_plain_url_defaults() -> None:
    params, queue = parse_broker_url("amqp://u:p@mq.example:5672/nightfold")
    assert (params.host, params.port, params.virtual_host) == ("mq.example", 5672, "nightfold")
    assert queue == DEFAULT_QUEUE and params.ssl_options is None
    assert params.heartbeat == 30


def test_amqps_verifies_the_url_host_by_default() -> None:
    # pika alone leaves the server name unset, which its own hostname check rejects
    params, _ = parse_broker_url("amqps://u:p@mq.example/nightfold?queue=q")
    assert params.port == 5671
    assert params.ssl_options is not None
    assert params.ssl_options.server_hostname == "mq.example"
    assert params.ssl_options.context.verify_mode == ssl.CERT_REQUIRED


def test_amqps_with_a_ca_file_and_no_hostname_check(tmp_path: Path) -> None:
    ca = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    if not ca.exists():
        pytest.skip("no system CA bundle to stand in for a CA file")
    params, _ = parse_broker_url(
        f"amqps://u:p@10.0.0.5:5671/v?ssl_ca={ca}&ssl_check_hostname=false"
    )
    assert params.ssl_options is not None
    assert params.ssl_options.context.check_hostname is False
    assert params.ssl_options.context.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("amqp://u:secret@h/v?ssl_ca=/ca.pem", "need amqps://"),
        ("amqps://u:secret@h/v?ssl_ca=/no/such/ca.pem", "TLS files"),
        ("amqps://u:secret@h/v?ssl_check_hostname=maybe", "ssl_check_hostname"),
        ("amqps://u:secret@h/v?ssl_ca=/ca.pem&ssl_options={}", "not both"),
        ("amqp://u:secret@/v", "names no host"),
    ],
)
def test_bad_tls_options_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_broker_url(url)
    assert "secret" not in str(caught.value)
