"""The embedded store: one SQLite file with HBase's sorted-key scan semantics.

Why SQLite: ``nightfold demo`` must run master plus several worker *processes* on a
machine with nothing installed. SQLite in WAL mode lets many processes read while
one writes, and a generous busy timeout (30 s) makes concurrent writers queue
instead of failing. Not for network filesystems (WAL needs shared memory).

Layout: every store table's cells live in one SQLite table keyed
``(table id, row, column)`` WITHOUT ROWID, i.e. a B-tree clustered exactly like
an HBase table: BLOB keys compare with ``memcmp``, so rows come back in byte
order (``b"\\xff"`` sorts last) and a row's cells sit together, column-sorted.
Scans read ``batch_size`` rows per short read transaction, so memory stays
bounded and no read transaction is held open while the caller works.

Like HBase, reading a missing table or writing to a missing table or column
family fails, deterministically: :class:`StoreRejected` ``("local", "<path>:
reason")``, counted by a worker as a failed attempt. SQLite's own failures
(locked past the timeout, unwritable file) are raised as
:class:`ServiceUnavailable` ``("local", "<path>: reason")`` and ridden out. A store object is
one SQLite connection and, like :class:`HBaseStore`, not thread-safe; open one
per process *after* forking (a SQLite connection must not cross a fork).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import groupby
from operator import itemgetter
from pathlib import Path

from nightfold.common.errors import ServiceUnavailable, StoreRejected
from nightfold.common.keys import KeyRange
from nightfold.common.store.base import CellDelete, Row, in_batches

BUSY_TIMEOUT_MS = 30_000

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS nf_tables (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        families TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS nf_cells (
        tid INTEGER NOT NULL,
        row BLOB NOT NULL,
        col BLOB NOT NULL,
        val BLOB NOT NULL,
        PRIMARY KEY (tid, row, col)
    ) WITHOUT ROWID""",
    # Emulated regions: the start keys a pre-split table was created with (HBase
    # keeps them in hbase:meta). Nothing but region_starts reads them.
    """CREATE TABLE IF NOT EXISTS nf_regions (
        tid INTEGER NOT NULL,
        start BLOB NOT NULL,
        PRIMARY KEY (tid, start)
    ) WITHOUT ROWID""",
)


def _column_filter(columns: Sequence[bytes] | None) -> tuple[str, list[bytes]]:
    """SQL for HBase's column selection: ``b"fam"`` a whole family, ``b"fam:qual"`` one column.

    Mirrors how HBase 2 builds its ``Scan`` from the list, in order: a family
    selects all its columns; a column of a family selected whole *replaces* that
    with just the named columns (``Scan.addColumn`` after ``addFamily``), and a
    family named later widens it again. ``b"fam:"`` is the one column with an
    empty qualifier (not the family, whatever happybase's docs say). ``None`` and
    ``[]`` select everything.
    """
    if not columns:
        return "", []
    selected: dict[bytes, set[bytes] | None] = {}
    for column in columns:
        family, sep, _ = column.partition(b":")
        if not sep:
            selected[family] = None
        else:
            qualifiers = selected.get(family)
            if qualifiers is None:
                qualifiers = selected[family] = set()
            qualifiers.add(column)
    clauses: list[str] = []
    params: list[bytes] = []
    for family, qualifiers in sorted(selected.items()):
        if qualifiers is None:  # every "fam:..." column; ";" is the byte after ":"
            clauses.append("(col >= ? AND col < ?)")
            params += [family + b":", family + b";"]
        else:
            clauses.append("col IN (" + ", ".join("?" * len(qualifiers)) + ")")
            params += sorted(qualifiers)
    return " AND (" + " OR ".join(clauses) + ")", params


class LocalStore:
    """A :class:`~nightfold.common.store.base.Store` in one SQLite file (see module doc)."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout_ms / 1000, isolation_level=None
            )
        except (OSError, sqlite3.Error) as exc:
            raise self._unavailable(exc) from exc
        with self._mapped():
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA cache_size = -65536")  # 64 MiB: B-tree inserts stay in memory
            with self._write():
                for statement in _SCHEMA:
                    self._db.execute(statement)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.path)!r})"

    # -- plumbing ------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException | str) -> ServiceUnavailable:
        return ServiceUnavailable("local", f"{self.path}: {exc}")

    def _rejected(self, reason: str) -> StoreRejected:
        return StoreRejected("local", f"{self.path}: {reason}")

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE so the busy wait happens at BEGIN, not mid-way."""
        with self._mapped():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent snapshot for the few statements inside."""
        with self._mapped():
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def _table(self, db: sqlite3.Connection, table: str) -> tuple[int, frozenset[bytes]]:
        found = db.execute("SELECT id, families FROM nf_tables WHERE name = ?", (table,)).fetchone()
        if found is None:
            raise self._rejected(f"table {table!r} does not exist")
        families = frozenset(f.encode() for f in found[1].split(",") if f)
        return int(found[0]), families

    # -- the Store protocol ----------------------------------------------------------------

    def ensure_table(self, table: str, families: Sequence[str]) -> None:
        """Record ``table`` and its families unless it exists (an existing table is kept as is)."""
        if not table or any(not f or "," in f or ":" in f for f in families):
            raise ValueError(f"bad table {table!r} or families {list(families)!r}")
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO nf_tables (name, families) VALUES (?, ?)",
                (table, ",".join(families)),
            )

    def scan(
        self,
        table: str,
        key_range: KeyRange,
        *,
        columns: Sequence[bytes] | None = None,
        batch_size: int = 1000,
        keys_only: bool = False,
        ahead: bool = False,
    ) -> Iterator[Row]:
        """Yield rows of ``key_range`` in byte order, ``batch_size`` rows per read transaction
        (``ahead`` is ignored: a local read has no round trip to hide)."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        col_sql, col_params = _column_filter(columns)
        end_sql = " AND row < ?" if key_range.end else ""
        end_params = [key_range.end] if key_range.end else []
        keys_sql = (
            "SELECT DISTINCT row FROM nf_cells WHERE tid = ? AND row {op} ?"
            + end_sql
            + col_sql
            + " ORDER BY row LIMIT ?"
        )
        cells_sql = (
            "SELECT row, col, val FROM nf_cells WHERE tid = ? AND row >= ? AND row <= ?"
            + col_sql
            + " ORDER BY row, col"
        )
        after: bytes | None = None
        while True:
            with self._read() as db:
                tid, _ = self._table(db, table)
                op, bound = (">=", key_range.start) if after is None else (">", after)
                keys = [
                    k
                    for (k,) in db.execute(
                        keys_sql.format(op=op), [tid, bound, *end_params, *col_params, batch_size]
                    )
                ]
                if not keys:
                    return
                if keys_only:
                    batch: list[Row] = [(k, {}) for k in keys]
                else:
                    cells = db.execute(cells_sql, [tid, keys[0], keys[-1], *col_params])
                    batch = [
                        (row, {col: val for _, col, val in group})
                        for row, group in groupby(cells, key=itemgetter(0))
                    ]
            yield from batch
            if len(keys) < batch_size:
                return
            after = keys[-1]

    def put_many(self, table: str, rows: Iterable[Row], *, batch_size: int = 1000) -> int:
        """Write rows, one transaction (one ``executemany``) per ``batch_size`` rows."""
        return sum(self._put_batch(table, b) for b in in_batches(rows, batch_size))

    def _put_batch(self, table: str, rows: list[Row]) -> int:
        with self._write() as db:
            tid, families = self._table(db, table)
            cells = [(tid, key, col, val) for key, cols in rows for col, val in cols.items()]
            for _, _, col, _ in cells:
                family, sep, _ = col.partition(b":")
                if not sep or family not in families:
                    raise self._rejected(
                        f"column {col!r}: no such column family in table {table!r}"
                    )
            cells.sort()  # key order: neighbouring inserts touch the same B-tree pages
            db.executemany("INSERT OR REPLACE INTO nf_cells VALUES (?, ?, ?, ?)", cells)
        return len(rows)

    def create_presplit(
        self, table: str, families: Sequence[str], split_keys: Sequence[bytes]
    ) -> bool:
        """Create ``table`` with regions starting at ``split_keys`` (plus the first,
        at ``b""``), as HBase's ``Admin.createTable(desc, splitKeys)`` does; False and
        nothing changed when the table exists. The regions are emulated: only
        :meth:`region_starts` sees them (one SQLite B-tree holds every row)."""
        if any(not key for key in split_keys):
            raise ValueError("split keys must be non-empty")
        if not table or any(not f or "," in f or ":" in f for f in families):
            raise ValueError(f"bad table {table!r} or families {list(families)!r}")
        with self._write() as db:
            created = db.execute(
                "INSERT OR IGNORE INTO nf_tables (name, families) VALUES (?, ?)",
                (table, ",".join(families)),
            ).rowcount
            if not created:
                return False
            tid, _ = self._table(db, table)
            db.executemany(
                "INSERT OR IGNORE INTO nf_regions VALUES (?, ?)", [(tid, k) for k in split_keys]
            )
        return True

    def region_starts(self, table: str) -> list[bytes]:
        """Start keys of the emulated regions after the first (:meth:`create_presplit`),
        sorted; ``[]`` for a table made by :meth:`ensure_table` (one region).

        Like HBase's ``getTableRegions``, a missing table also gives ``[]``.
        """
        with self._read() as db:
            found = db.execute("SELECT id FROM nf_tables WHERE name = ?", (table,)).fetchone()
            if found is None:
                return []
            rows = db.execute(
                "SELECT start FROM nf_regions WHERE tid = ? ORDER BY start", (found[0],)
            )
            return [bytes(start) for (start,) in rows]

    def probe_keys(
        self, table: str, key_range: KeyRange, limit: int, *, reverse: bool = False
    ) -> list[bytes]:
        """At most ``limit`` keys of ``key_range``, first ones (or last ones, descending)."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        end_sql = " AND row < ?" if key_range.end else ""
        end_params = [key_range.end] if key_range.end else []
        order = "DESC" if reverse else "ASC"
        with self._read() as db:
            tid, _ = self._table(db, table)
            rows = db.execute(
                "SELECT DISTINCT row FROM nf_cells WHERE tid = ? AND row >= ?"
                + end_sql
                + f" ORDER BY row {order} LIMIT ?",
                [tid, key_range.start, *end_params, limit],
            )
            return [bytes(k) for (k,) in rows]

    def delete_range(self, table: str, key_range: KeyRange) -> int:
        """Delete every row in ``key_range`` in one transaction; returns the row count."""
        end_sql = " AND row < ?" if key_range.end else ""
        params = [key_range.start, *([key_range.end] if key_range.end else [])]
        with self._write() as db:
            tid, _ = self._table(db, table)
            where = " FROM nf_cells WHERE tid = ? AND row >= ?" + end_sql
            (count,) = db.execute("SELECT COUNT(DISTINCT row)" + where, [tid, *params]).fetchone()
            db.execute("DELETE" + where, [tid, *params])
        return int(count)

    def delete_cells(
        self, table: str, deletes: Iterable[CellDelete], *, batch_size: int = 1000
    ) -> int:
        """Delete whole rows or columns of rows, one transaction per ``batch_size`` rows.

        Like HBase, a column must be ``b"family:qualifier"`` of one of the table's
        families (else :class:`StoreRejected`, and that batch is not applied).
        """
        return sum(self._delete_batch(table, b) for b in in_batches(deletes, batch_size))

    def _delete_batch(self, table: str, deletes: list[CellDelete]) -> int:
        with self._write() as db:
            tid, families = self._table(db, table)
            rows = [(tid, key) for key, columns in deletes if columns is None]
            cells = [(tid, key, col) for key, columns in deletes if columns for col in columns]
            for _, _, col in cells:
                family, sep, _ = col.partition(b":")
                if not sep or family not in families:
                    raise self._rejected(
                        f"column {col!r}: no such column family in table {table!r}"
                    )
            db.executemany("DELETE FROM nf_cells WHERE tid = ? AND row = ?", rows)
            db.executemany("DELETE FROM nf_cells WHERE tid = ? AND row = ? AND col = ?", cells)
        return len(deletes)

    def drop_table(self, table: str) -> None:
        """Forget ``table`` and its cells, if it exists."""
        with self._write() as db:
            found = db.execute("SELECT id FROM nf_tables WHERE name = ?", (table,)).fetchone()
            if found is None:
                return
            db.execute("DELETE FROM nf_cells WHERE tid = ?", (found[0],))
            db.execute("DELETE FROM nf_regions WHERE tid = ?", (found[0],))
            db.execute("DELETE FROM nf_tables WHERE id = ?", (found[0],))

    def close(self) -> None:
        """Close the SQLite connection."""
        self._db.close()
