"""Smoke tests of nightfold's three seams on the real services: each is opened
through the project's own factory from its URL, as the master and workers open it
(``make_engine`` and the migrations for MariaDB, ``open_publisher`` /
``open_consumer`` for RabbitMQ, ``open_store`` for HBase), and does one round trip.

The detailed behaviour of each seam is in its own test module; these are the first
thing to run against a new installation of the services.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db import runs as run_repo
from nightfold.common.db.chunks import ChunkSpec
from nightfold.common.db.engine import make_engine
from nightfold.common.db.migrate import ensure_current, upgrade
from nightfold.common.db.runs import RunParams
from nightfold.common.keys import KeyRange
from nightfold.common.states import ChunkState, RunState, Stage
from nightfold.common.store import open_store
from nightfold.common.store.hbase import HBaseStore
from nightfold.common.transport import Hint, open_consumer, open_publisher
from nightfold.common.transport.rabbitmq import RabbitConsumer, RabbitPublisher
from tests.support.databases import fresh_database

DAY = dt.date(2026, 11, 22)


def test_database_seam_runs_one_chunk_through_its_states(tmp_path: Path) -> None:
    with fresh_database("mariadb", tmp_path) as url:
        engine = make_engine(url)
        try:
            # Given the schema, through the migrations
            upgrade(engine)
            ensure_current(engine)
            assert engine.dialect.name == "mysql"
            # When a run is planned with one chunk, queued, claimed and completed
            with engine.begin() as conn:
                run = run_repo.create_run(conn, "merchant_daily", DAY, 1, RunParams(), "smoke")
                assert run is not None
                assert run_repo.move(
                    conn, run.id, RunState.PLANNING, RunState.MAPPING, actor="smoke"
                )
                chunk_repo.insert_plan(
                    conn, run.id, [ChunkSpec(Stage.MAP, 0, KeyRange(b"a", b"b"))]
                )
                (chunk_id,) = chunk_repo.open_window(conn, run.id, Stage.MAP, 8, "smoke")
            with engine.begin() as conn:
                claim = chunk_repo.claim(conn, chunk_id, "smoke-worker")
                assert claim is not None and claim.attempt == 1
                assert claim.key_range == KeyRange(b"a", b"b")
                chunk_repo.complete(conn, claim, rows_read=3, rows_malformed=0)
            # Then the database holds what the seam wrote
            with engine.connect() as conn:
                assert chunk_repo.counts_by_state(conn, run.id) == {ChunkState.DONE.value: 1}
                assert chunk_repo.rows_done(conn, run.id) == 3
        finally:
            engine.dispose()


def test_transport_seam_delivers_a_confirmed_hint_once(broker_url: str) -> None:
    hint = Hint(run_id=7, chunk_id=42, stage="map", idx=3)
    publisher = open_publisher(broker_url)
    assert isinstance(publisher, RabbitPublisher)
    try:
        publisher.publish([hint])
        assert publisher.backlog() == 1
    finally:
        publisher.close()
    consumer = open_consumer(broker_url, prefetch=1)  # no database poll: RabbitMQ delivers
    assert isinstance(consumer, RabbitConsumer)
    try:
        delivery = None
        for _ in range(50):
            delivery = consumer.next_delivery(0.2)
            if delivery is not None:
                break
        assert delivery is not None and delivery.hint == hint
        consumer.ack(delivery)
        consumer.pump(0.5)
        assert consumer.next_delivery(0.5) is None
    finally:
        consumer.close()
    publisher = open_publisher(broker_url)
    try:
        assert publisher.backlog() == 0
    finally:
        publisher.close()


def test_store_seam_scans_a_range_in_key_order(hbase_url: str) -> None:
    store = open_store(hbase_url)
    assert isinstance(store, HBaseStore)
    try:
        store.ensure_table("smoke", ["f"])
        keys = [b"k%d" % i for i in range(1, 6)]
        rows = [(key, {b"f:v": key}) for key in random.Random(5).sample(keys, len(keys))]
        assert store.put_many("smoke", rows, batch_size=2) == 5
        got = list(store.scan("smoke", KeyRange(b"k2", b"k5"), batch_size=2))
        assert got == [(b"k2", {b"f:v": b"k2"}), (b"k3", {b"f:v": b"k3"}), (b"k4", {b"f:v": b"k4"})]
        assert store.delete_range("smoke", KeyRange(b"k2", b"k4")) == 2
        assert [k for k, _ in store.scan("smoke", KeyRange(b"k", b""), keys_only=True)] == [
            b"k1",
            b"k4",
            b"k5",
        ]
    finally:
        store.drop_table("smoke")
        store.close()
