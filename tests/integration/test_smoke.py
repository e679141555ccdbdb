"""Smoke tests of the three real services through their plain client libraries:
MariaDB through SQLAlchemy, RabbitMQ through pika, HBase through happybase."""

from __future__ import annotations

import pika
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, select

from tests.integration.conftest import _hbase_connection
from tests.support.databases import fresh_database


def test_mariadb_row_round_trip(tmp_path: pytest.TempPathFactory) -> None:
    with fresh_database("mariadb", tmp_path) as url:  # type: ignore[arg-type]
        engine = create_engine(url)
        meta = MetaData()
        t = Table("smoke", meta, Column("id", Integer, primary_key=True), Column("v", String(20)))
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(t).values(id=1, v="hello"))
        with engine.connect() as conn:
            assert conn.execute(select(t.c.v).where(t.c.id == 1)).scalar_one() == "hello"
            assert conn.dialect.name == "mysql"
        engine.dispose()


def test_rabbitmq_persistent_message_with_manual_ack(broker_url: str) -> None:
    queue = dict(p.split("=", 1) for p in broker_url.split("?", 1)[1].split("&"))["queue"]
    conn = pika.BlockingConnection(pika.URLParameters(broker_url.split("?", 1)[0]))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare(queue=queue, durable=True)
        ch.basic_publish("", queue, b"hello", pika.BasicProperties(delivery_mode=2))
        method, props, body = next(ch.consume(queue, auto_ack=False, inactivity_timeout=10))
        assert body == b"hello" and props.delivery_mode == 2
        ch.basic_ack(method.delivery_tag)
        ch.cancel()
        assert ch.queue_declare(queue=queue, passive=True).method.message_count == 0
    finally:
        conn.close()


def test_hbase_put_and_range_scan_in_key_order(hbase_url: str) -> None:
    prefix = dict(p.split("=", 1) for p in hbase_url.split("?", 1)[1].split("&"))["table_prefix"]
    conn = _hbase_connection(hbase_url, table_prefix=prefix)
    try:
        conn.create_table("smoke", {"f": {}})
        table = conn.table("smoke")
        for key in (b"k3", b"k1", b"k5", b"k2", b"k4"):
            table.put(key, {b"f:v": key})
        got = [k for k, _ in table.scan(row_start=b"k2", row_stop=b"k5")]
        assert got == [b"k2", b"k3", b"k4"]
    finally:
        conn.close()
