"""Store URLs: parsing, defaults, one-line errors that name the URL but never a password."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from nightfold.common.errors import ConfigError, ServiceUnavailable
from nightfold.common.store import (
    HBaseURL,
    LocalURL,
    open_store,
    parse_store_url,
)
from nightfold.common.store.local import LocalStore


def test_hbase_url_defaults() -> None:
    assert parse_store_url("hbase://hbase1") == HBaseURL(host="hbase1")
    spec = parse_store_url("hbase://127.0.0.1:9090")
    assert spec == HBaseURL(host="127.0.0.1", port=9090, timeout_ms=30_000)


def test_hbase_url_options() -> None:
    # Given every option
    url = "hbase://hb.example:9191/?table_prefix=t_1.x&timeout_ms=1500&transport=framed&protocol=compact"
    # When parsed
    spec = parse_store_url(url)
    # Then each maps to its field
    assert spec == HBaseURL("hb.example", 9191, "t_1.x", 1500, "framed", "compact")


def test_hbase_url_ipv6_host() -> None:
    spec = parse_store_url("hbase://[::1]:9090")
    assert isinstance(spec, HBaseURL)
    assert spec.host == "::1"


def test_scheme_is_case_insensitive() -> None:
    assert parse_store_url("HBase://h:1") == HBaseURL("h", 1)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("local:///var/lib/nightfold/store.sqlite", "/var/lib/nightfold/store.sqlite"),
        ("local://relative/path.sqlite", "relative/path.sqlite"),
        ("local://store.sqlite", "store.sqlite"),
        ("local://./data/s.sqlite", "./data/s.sqlite"),
    ],
)
def test_local_urls(url: str, path: str) -> None:
    assert parse_store_url(url) == LocalURL(Path(path))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis://h:6379", "unknown scheme 'redis'"),
        ("hbase:/h:9090", "expected scheme://"),
        ("127.0.0.1:9090", "expected scheme://"),
        ("", "expected scheme://"),
        ("hbase://", "missing host"),
        ("hbase://:9090", "missing host"),
        ("hbase://h:port", "invalid port"),
        ("hbase://h:99999", "invalid port"),
        ("hbase://h:0", "invalid port"),
        ("hbase://h?timeout_ms=", "timeout_ms must be an integer"),
        ("hbase://h:9090/db", "unexpected path"),
        ("hbase://h?timeout_ms=abc", "timeout_ms must be an integer"),
        ("hbase://h?timeout_ms=-5", "timeout_ms must be positive"),
        ("hbase://h?table_prefix=a%20b", "table_prefix must match"),
        ("hbase://h?table_prefx=t1", "unknown option(s) table_prefx"),
        ("hbase://h?transport=http", "transport must be one of"),
        ("hbase://h?protocol=json", "protocol must be one of"),
        ("hbase://h#frag", "fragment"),
        ("local://", "missing file name"),
        ("local:///tmp/dir/", "missing file name"),
        ("local:///tmp/s.sqlite?mode=ro", "take no options"),
    ],
)
def test_bad_urls_name_the_url_in_one_line(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_store_url(url)
    message = str(info.value)
    assert why in message
    assert repr(url) in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "url",
    [
        "hbase://admin:s3cret@h:9090",
        "hbase://admin:s3cret@h:9090?table_prefix=x",
        "redis://admin:s3cret@h:6379",
        "local://admin:s3cret@host/x.sqlite",
        "hbase://admin:s3cret@h:port",
    ],
)
def test_password_is_never_in_the_message(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_store_url(url)
    assert "s3cret" not in str(info.value)
    assert "***" in str(info.value)


def test_open_local_store(tmp_path: Path) -> None:
    store = open_store(f"local://{tmp_path}/sub/dir/store.sqlite")
    try:
        assert isinstance(store, LocalStore)
        assert (tmp_path / "sub" / "dir" / "store.sqlite").exists()
    finally:
        store.close()


def test_open_relative_local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    open_store("local://data/store.sqlite").close()
    assert (tmp_path / "data" / "store.sqlite").exists()


def test_unwritable_local_store_is_service_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ServiceUnavailable) as info:
        open_store(f"local://{blocker}/store.sqlite")
    assert info.value.service == "local"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refused_hbase_connection_is_service_unavailable() -> None:
    # Given a port nobody listens on (a real refusal, not a mock)
    port = _free_port()
    # When opening an HBase store there
    with pytest.raises(ServiceUnavailable) as info:
        open_store(f"hbase://127.0.0.1:{port}?timeout_ms=2000")
    # Then the error names the service, the address and the reason in one line
    assert info.value.service == "hbase"
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "connection refused" in str(info.value)
    assert "\n" not in str(info.value)


def test_with_query_adds_and_replaces_options() -> None:
    from nightfold.common.urls import with_query

    url = "amqp://u:p@h:5672/v?queue=a&heartbeat=30"
    assert with_query(url, queue="b", ssl_ca="/ca.pem") == (
        "amqp://u:p@h:5672/v?queue=b&heartbeat=30&ssl_ca=%2Fca.pem"
    )
    assert with_query("hbase://h:9090", table_prefix="t") == "hbase://h:9090?table_prefix=t"
