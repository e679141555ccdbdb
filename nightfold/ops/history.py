"""Read-only queries of the run history for the web console: the nights grid, a
run's page (stages, chunks, attempts, quarantine, events) and the workers.

CLI-side like ``status`` (``nightfold/ops/status.py``): plain SELECTs over the
schema of ``common/db/models.py``, nothing written. A run page reads each chunk
row once (30,000 rows for a big day) and only the events of chunks whose history
was not simply claimed-then-done, so it stays fast on the largest runs.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, Connection, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from nightfold.common.db import chunks as chunk_repo
from nightfold.common.db.clock import Instant, db_now
from nightfold.common.db.models import Chunk, QuarantinedRow, Run, RunEvent, Worker
from nightfold.common.db.runs import RunInfo, run_info
from nightfold.common.states import TERMINAL_RUN_STATES, ChunkState, Stage

IRREGULAR = ("failed", "dead", "released", "lease_expired", "worker_dead", "retried")
"""Chunk events after which a chunk's attempts are read from the event log."""
CLOSES = {"done", "failed", "dead", "released", "lease_expired", "worker_dead"}
"""Events that end an attempt (its outcome)."""
NOTABLE = (*IRREGULAR, "cancel_requested")


def as_datetime(value: Instant | None) -> dt.datetime | None:
    """A database time as a naive datetime (SQLite may hand back ISO text)."""
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(value)


def db_time(conn: Connection) -> dt.datetime:
    now = as_datetime(conn.execute(select(db_now())).scalar_one())
    assert now is not None
    return now


def _secs(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


# -- the nights grid ---------------------------------------------------------------


@dataclass
class Cell:
    """One (job, day): its latest generation, and the earlier ones' states."""

    run_id: int
    generation: int
    state: str
    seconds: float | None
    cancel_requested: bool
    earlier: list[tuple[int, int, str]] = field(default_factory=list)
    """(run id, generation, state) of the earlier generations, oldest first."""
    late: bool = False
    """Created more than two days after its day: a backfill (or a late rerun)."""


@dataclass
class Grid:
    days: list[dt.date]
    jobs: list[str]
    cells: dict[tuple[str, dt.date], Cell]
    first_run_day: dt.date | None
    """The oldest day with a run at all (for paging back)."""


def nights(
    conn: Connection,
    *,
    last_days: int,
    until: dt.date | None = None,
    job: str | None = None,
    state: str | None = None,
) -> Grid:
    """Jobs by day for ``last_days`` days ending ``until`` (default: the newest day
    with a run), each cell its latest generation; ``state`` keeps only the cells
    whose latest generation is in that state."""
    now = db_time(conn)
    newest = conn.execute(select(func.max(Run.day))).scalar()
    oldest = conn.execute(select(func.min(Run.day))).scalar()
    end = until or _as_date(newest) or now.date()
    days = [end - dt.timedelta(days=i) for i in range(last_days)][::-1]
    q = select(
        Run.id,
        Run.job,
        Run.day,
        Run.generation,
        Run.state,
        Run.created_at,
        Run.finished_at,
        Run.cancel_requested,
    ).where(Run.day >= days[0], Run.day <= days[-1])
    if job:
        q = q.where(Run.job == job)
    by_cell: dict[tuple[str, dt.date], list[Any]] = defaultdict(list)
    for row in conn.execute(q):
        by_cell[(row.job, _as_date(row.day) or days[0])].append(row)
    cells: dict[tuple[str, dt.date], Cell] = {}
    for key, rows in by_cell.items():
        rows.sort(key=lambda r: r.generation)
        last = rows[-1]
        if state and last.state != state:
            continue
        created, finished = as_datetime(last.created_at), as_datetime(last.finished_at)
        cells[key] = Cell(
            run_id=int(last.id),
            generation=int(last.generation),
            state=str(last.state),
            seconds=_secs(created, finished or now),
            cancel_requested=bool(last.cancel_requested),
            earlier=[(int(r.id), int(r.generation), str(r.state)) for r in rows[:-1]],
            late=created is not None and (created.date() - key[1]).days > 2,
        )
    jobs = sorted({j for j, _ in by_cell})
    return Grid(days, jobs, cells, _as_date(oldest))


def all_jobs(conn: Connection) -> list[str]:
    return sorted(str(j) for j in conn.execute(select(Run.job).distinct()).scalars())


def _as_date(value: dt.date | str | None) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(value)


# -- a run's page --------------------------------------------------------------------


class Attempt(NamedTuple):
    """One attempt of one chunk on one worker: the timeline's unit (a tuple: a big
    day has 30,000 of them)."""

    chunk_id: int
    stage: str
    idx: int
    attempt: int
    worker: str
    start: float
    """Seconds since the run's origin (:attr:`RunView.origin`)."""
    end: float | None
    """None while it runs."""
    outcome: str
    """done, running, failed, dead, released, lease_expired or worker_dead."""
    rows: int = 0


class micros_since(FunctionElement[Any]):
    """``column - origin`` in whole microseconds, computed by the database: a big
    run's 60,000 chunk times come back as plain integers (cheap to read), not as
    datetimes or decimals to parse one by one."""

    type = BigInteger()
    inherit_cache = True
    _traverse_internals = [("origin", InternalTraversal.dp_plain_obj)]

    def __init__(self, column: Any, origin: dt.datetime) -> None:
        self.origin = origin
        super().__init__(column)


@compiles(micros_since)
def _since_mysql(element: micros_since, compiler: Any, **kw: Any) -> str:
    column = compiler.process(next(iter(element.clauses)), **kw)
    origin = element.origin.strftime("%Y-%m-%d %H:%M:%S.%f")
    return f"TIMESTAMPDIFF(MICROSECOND, '{origin}', {column})"


@compiles(micros_since, "sqlite")
def _since_sqlite(element: micros_since, compiler: Any, **kw: Any) -> str:
    column = compiler.process(next(iter(element.clauses)), **kw)
    origin = element.origin.strftime("%Y-%m-%d %H:%M:%S.%f")
    return f"CAST(ROUND((julianday({column}) - julianday('{origin}')) * 86400000000.0) AS INTEGER)"


@dataclass
class StageView:
    stage: str
    counts: dict[str, int]
    total: int
    done: int
    started: dt.datetime | None
    finished: dt.datetime | None
    rows_per_s: float | None = None
    eta_s: float | None = None

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 0.0


@dataclass
class ChunkRow:
    chunk_id: int
    stage: str
    idx: int
    state: str
    owner: str | None
    attempt: int
    seconds: float | None
    rows: int
    malformed: int
    error: str | None


@dataclass
class RunView:
    run: RunInfo
    now: dt.datetime
    origin: dt.datetime
    """Where the timeline starts: the run's start (end of planning), or its creation."""
    now_s: float
    """``now`` in seconds since ``origin``."""
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    heartbeat_age_s: float | None
    master: str | None
    stalled: bool
    stages: list[StageView]
    rows_read: int
    rows_malformed: int
    rows_per_s: float | None
    attempts: list[Attempt]
    slowest: list[ChunkRow]
    dead: list[ChunkRow]
    chunks_total: int
    version: tuple[int, str]

    @property
    def seconds(self) -> float | None:
        return _secs(self.created_at, self.finished_at or self.now)


def run_version(conn: Connection, run_id: int) -> tuple[int, str]:
    """What changes whenever anything of the run does: its newest event id and state
    (every transition writes an event in its own transaction)."""
    newest = conn.execute(
        select(func.coalesce(func.max(RunEvent.id), 0)).where(RunEvent.run_id == run_id)
    ).scalar_one()
    state = conn.execute(select(Run.state).where(Run.id == run_id)).scalar()
    return int(newest), str(state)


def global_version(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(RunEvent.id), 0))).scalar_one())


def run_view(
    conn: Connection, run_id: int, *, stale_seconds: float = 30.0, slowest: int = 10
) -> RunView | None:
    row = conn.execute(select(Run.__table__).where(Run.id == run_id)).one_or_none()
    if row is None:
        return None
    run = run_info(row)
    version = run_version(conn, run_id)
    now = db_time(conn)
    created, started_at, finished_at = (
        as_datetime(row.created_at),
        as_datetime(row.started_at),
        as_datetime(row.finished_at),
    )
    origin = started_at or created or now
    now_s = (now - origin).total_seconds()
    chunks = list(
        conn.execute(
            select(
                Chunk.id,
                Chunk.stage,
                Chunk.idx,
                Chunk.state,
                Chunk.owner,
                micros_since(Chunk.claimed_at, origin),
                micros_since(Chunk.done_at, origin),
                Chunk.rows_read,
            ).where(Chunk.run_id == run_id)
        )
    )
    marks = _stage_marks(conn, run_id)
    irregular = {
        int(cid)
        for cid in conn.execute(
            select(RunEvent.chunk_id)
            .where(RunEvent.run_id == run_id, RunEvent.kind.in_(IRREGULAR))
            .distinct()
        ).scalars()
        if cid is not None
    }
    attempts = _attempts_from_events(conn, run_id, sorted(irregular), chunks, origin)
    counts: dict[str, dict[str, int]] = {s.value: {} for s in Stage}
    rows_read = 0
    timed: list[tuple[float, int]] = []  # (seconds, position) of claimed and done chunks
    dead_at: list[int] = []
    done_s, claimed_s, map_s = ChunkState.DONE.value, ChunkState.CLAIMED.value, Stage.MAP.value
    dead_s = ChunkState.DEAD.value
    # A chunk without an irregular event was claimed once: its attempt is 1.
    for pos, (cid, stage, idx, state, owner, claimed_us, done_us, nrows) in enumerate(chunks):
        stage_counts = counts.setdefault(stage, {})
        stage_counts[state] = stage_counts.get(state, 0) + 1
        if stage == map_s:
            rows_read += nrows
        if state == dead_s:
            dead_at.append(pos)
        if claimed_us is None:
            continue
        claimed = claimed_us / 1e6
        if state == done_s and done_us is not None:
            done = done_us / 1e6
            timed.append((done - claimed, pos))
            if cid not in irregular and owner is not None:
                attempts.append(Attempt(cid, stage, idx, 1, owner, claimed, done, "done", nrows))
        elif state == claimed_s:
            timed.append((now_s - claimed, pos))
            if cid not in irregular and owner is not None:
                attempts.append(Attempt(cid, stage, idx, 1, owner, claimed, None, "running", nrows))
    malformed = int(
        conn.execute(
            select(func.coalesce(func.sum(Chunk.rows_malformed), 0)).where(
                Chunk.run_id == run_id, Chunk.stage == map_s
            )
        ).scalar_one()
    )

    slow_at = heapq.nlargest(slowest, timed)
    details = _details(conn, [int(chunks[pos][0]) for pos in (*dead_at, *(p for _, p in slow_at))])

    def chunk_row(pos: int, secs: float | None) -> ChunkRow:
        c = chunks[pos]
        attempt, bad, error = details.get(int(c[0]), (0, 0, None))
        return ChunkRow(
            int(c[0]), str(c[1]), int(c[2]), str(c[3]), c[4], attempt, secs, int(c[7]), bad, error
        )

    stages = []
    for stage in Stage:
        sc = counts.get(stage.value, {})
        started, finished = marks.get(stage.value, (None, None))
        view = StageView(
            stage.value,
            sc,
            sum(sc.values()),
            sc.get(ChunkState.DONE.value, 0),
            started,
            finished,
        )
        elapsed = _secs(started, finished or now)
        if elapsed and elapsed > 0 and view.done:
            if stage is Stage.MAP:
                view.rows_per_s = rows_read / elapsed
            if view.done < view.total and finished is None and run.state not in TERMINAL_RUN_STATES:
                view.eta_s = (view.total - view.done) * elapsed / view.done
        stages.append(view)
    beat = as_datetime(row.heartbeat_at)
    age = _secs(beat, now)
    stalled = run.state not in TERMINAL_RUN_STATES and (
        run.owner is None or age is None or age > stale_seconds
    )
    total_s = _secs(started_at, finished_at or now)
    slow = [chunk_row(pos, secs) for secs, pos in slow_at]
    return RunView(
        run=run,
        now=now,
        origin=origin,
        now_s=now_s,
        created_at=created,
        started_at=started_at,
        finished_at=finished_at,
        heartbeat_age_s=age,
        master=run.owner,
        stalled=stalled,
        stages=stages,
        rows_read=rows_read,
        rows_malformed=malformed,
        rows_per_s=rows_read / total_s if total_s else None,
        attempts=attempts,
        slowest=slow,
        dead=[chunk_row(pos, None) for pos in dead_at],
        chunks_total=len(chunks),
        version=version,
    )


def _stage_marks(
    conn: Connection, run_id: int
) -> dict[str, tuple[dt.datetime | None, dt.datetime | None]]:
    """When each stage started and ended, from the run's own events (the latest
    of each kind: a retried run maps or reduces again)."""
    at: dict[str, dt.datetime] = {}
    for kind, when in conn.execute(
        select(RunEvent.kind, RunEvent.at)
        .where(RunEvent.run_id == run_id, RunEvent.chunk_id.is_(None))
        .order_by(RunEvent.id)
    ):
        t = as_datetime(when)
        if t is not None:
            at[str(kind)] = t
    end = at.get("run_succeeded") or at.get("run_failed") or at.get("run_cancelled")
    map_start, reduce_start = at.get("run_mapping"), at.get("run_reducing")
    combine_start = at.get("run_combining")
    if reduce_start and map_start and reduce_start < map_start:
        reduce_start = None  # a retry went back to mapping after an earlier reduce
    if combine_start and reduce_start and combine_start < reduce_start:
        combine_start = None  # likewise back to reducing after an earlier combine
    return {
        Stage.MAP.value: (map_start, reduce_start or (end if map_start else None)),
        Stage.REDUCE.value: (reduce_start, combine_start or (end if reduce_start else None)),
        Stage.COMBINE.value: (combine_start, end if combine_start else None),
    }


def _details(conn: Connection, chunk_ids: Sequence[int]) -> dict[int, tuple[int, int, str | None]]:
    """(attempt, malformed rows, last error) of the few chunks a page lists."""
    out: dict[int, tuple[int, int, str | None]] = {}
    for i in range(0, len(chunk_ids), 500):
        q = select(Chunk.id, Chunk.attempt, Chunk.rows_malformed, Chunk.error).where(
            Chunk.id.in_(chunk_ids[i : i + 500])
        )
        out.update({int(cid): (int(a), int(m), e) for cid, a, m, e in conn.execute(q)})
    return out


def _attempts_from_events(
    conn: Connection,
    run_id: int,
    chunk_ids: Sequence[int],
    chunks: Iterable[Any],
    origin: dt.datetime,
) -> list[Attempt]:
    """The attempts of chunks with an irregular history, paired from their events:
    each ``claimed`` opens one, the next closing event ends it with its kind."""
    if not chunk_ids:
        return []
    info = {int(c[0]): c for c in chunks}
    out: list[Attempt] = []
    for i in range(0, len(chunk_ids), 500):
        batch = chunk_ids[i : i + 500]
        rows = conn.execute(
            select(RunEvent.chunk_id, RunEvent.kind, RunEvent.at, RunEvent.actor, RunEvent.attempt)
            .where(
                RunEvent.run_id == run_id,
                RunEvent.chunk_id.in_(batch),
                RunEvent.kind.in_(["claimed", *CLOSES]),
            )
            .order_by(RunEvent.chunk_id, RunEvent.id)
        )
        open_: dict[int, tuple[float, str, int]] = {}
        for chunk_id, kind, when, actor, attempt in rows:
            cid, at = int(chunk_id or 0), as_datetime(when)
            assert at is not None
            t = (at - origin).total_seconds()
            if kind == "claimed":
                open_[cid] = (t, str(actor), int(attempt or 0))
            elif cid in open_:
                start, worker, n = open_.pop(cid)
                c = info.get(cid)
                rows_read = int(c.rows_read) if c is not None and kind == "done" else 0
                out.append(
                    Attempt(
                        cid,
                        str(c.stage) if c is not None else "map",
                        int(c.idx) if c is not None else -1,
                        n,
                        worker,
                        start,
                        t,
                        str(kind),
                        rows_read,
                    )
                )
        for cid, (start, worker, n) in open_.items():
            c = info.get(cid)
            if c is not None and c.state == ChunkState.CLAIMED.value:
                out.append(
                    Attempt(cid, str(c.stage), int(c.idx), n, worker, start, None, "running")
                )
    return out


@dataclass(frozen=True)
class Event:
    id: int
    at: dt.datetime | None
    kind: str
    actor: str | None
    chunk: str | None
    attempt: int | None
    detail: str | None


def events(conn: Connection, run_id: int, *, every: bool = False, limit: int = 200) -> list[Event]:
    """The run's events, newest first: its own and the chunks' notable ones
    (failures, takeovers, hand-backs, retries), or ``every`` one."""
    q = (
        select(
            RunEvent.id,
            RunEvent.at,
            RunEvent.kind,
            RunEvent.actor,
            RunEvent.attempt,
            RunEvent.detail,
            Chunk.stage,
            Chunk.idx,
        )
        .outerjoin(Chunk, Chunk.id == RunEvent.chunk_id)
        .where(RunEvent.run_id == run_id)
        .order_by(RunEvent.id.desc())
        .limit(limit)
    )
    if not every:
        q = q.where(RunEvent.chunk_id.is_(None) | RunEvent.kind.in_(NOTABLE))
    return [
        Event(
            int(r.id),
            as_datetime(r.at),
            str(r.kind),
            r.actor,
            None if r.stage is None else f"{r.stage}[{r.idx}]",
            r.attempt,
            r.detail,
        )
        for r in conn.execute(q)
    ]


@dataclass(frozen=True)
class Quarantine:
    by_reason: list[tuple[str, int]]
    rows: list[chunk_repo.Quarantined]
    total: int


def quarantine(conn: Connection, run_id: int, limit: int = 100) -> Quarantine:
    """Malformed rows set aside by the run: counts by reason, and the first rows."""
    by_reason = [
        (str(reason), int(n))
        for reason, n in conn.execute(
            select(QuarantinedRow.reason, func.count())
            .where(QuarantinedRow.run_id == run_id)
            .group_by(QuarantinedRow.reason)
            .order_by(func.count().desc())
        )
    ]
    return Quarantine(
        by_reason, chunk_repo.quarantined(conn, run_id, limit), sum(n for _, n in by_reason)
    )


# -- workers --------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerView:
    id: str
    host: str
    pid: int
    started_at: dt.datetime | None
    heartbeat_age_s: float | None
    stopped: bool
    alive: bool
    current: tuple[int, str, int, str] | None
    """(run id, stage, idx, run label) of the chunk it works on."""
    rows_per_s: float
    chunks_done: int


def workers(
    conn: Connection, *, dead_seconds: float, recent_seconds: float = 3600, window_s: float = 60
) -> list[WorkerView]:
    """Workers alive and those gone within ``recent_seconds``: heartbeat age, the
    chunk each works on, rows/s over the last ``window_s`` and chunks done in the
    last ``recent_seconds``."""
    now = db_time(conn)
    recent = now - dt.timedelta(seconds=recent_seconds)
    window = now - dt.timedelta(seconds=window_s)
    rows = list(
        conn.execute(
            select(
                Worker.id,
                Worker.host,
                Worker.pid,
                Worker.started_at,
                Worker.last_seen_at,
                Worker.stopped_at,
                Worker.current_chunk_id,
            )
            .where(Worker.last_seen_at >= recent)
            .order_by(Worker.started_at.desc())
        )
    )
    current_ids = [int(r.current_chunk_id) for r in rows if r.current_chunk_id is not None]
    current: dict[int, tuple[int, str, int, str]] = {}
    if current_ids:
        for cid, run_id, stage, idx, job, day, gen in conn.execute(
            select(Chunk.id, Chunk.run_id, Chunk.stage, Chunk.idx, Run.job, Run.day, Run.generation)
            .join(Run, Run.id == Chunk.run_id)
            .where(Chunk.id.in_(current_ids))
        ):
            label = f"{job}/{_as_date(day)}#{gen}"
            current[int(cid)] = (int(run_id), str(stage), int(idx), label)
    ids = [str(r.id) for r in rows]
    rates: dict[str, int] = {}
    done: dict[str, int] = {}
    # only the chunks of runs live or finished within the hour (indexed by run), not
    # every chunk of the history
    runs = list(
        conn.execute(
            select(Run.id).where(Run.finished_at.is_(None) | (Run.finished_at >= recent))
        ).scalars()
    )
    if ids and runs:
        for owner, n, _rows in conn.execute(
            select(Chunk.owner, func.count(), func.coalesce(func.sum(Chunk.rows_read), 0))
            .where(
                Chunk.run_id.in_(runs),
                Chunk.owner.in_(ids),
                Chunk.state == ChunkState.DONE.value,
                Chunk.done_at >= recent,
            )
            .group_by(Chunk.owner)
        ):
            done[str(owner)] = int(n)
        for owner, nrows in conn.execute(
            select(Chunk.owner, func.coalesce(func.sum(Chunk.rows_read), 0))
            .where(
                Chunk.run_id.in_(runs),
                Chunk.owner.in_(ids),
                Chunk.state == ChunkState.DONE.value,
                Chunk.stage == Stage.MAP.value,
                Chunk.done_at >= window,
            )
            .group_by(Chunk.owner)
        ):
            rates[str(owner)] = int(nrows)
    out = []
    for r in rows:
        age = _secs(as_datetime(r.last_seen_at), now)
        stopped = r.stopped_at is not None
        out.append(
            WorkerView(
                id=str(r.id),
                host=str(r.host),
                pid=int(r.pid),
                started_at=as_datetime(r.started_at),
                heartbeat_age_s=age,
                stopped=stopped,
                alive=not stopped and age is not None and age <= dead_seconds,
                current=current.get(int(r.current_chunk_id))
                if r.current_chunk_id is not None
                else None,
                rows_per_s=rates.get(str(r.id), 0) / window_s,
                chunks_done=done.get(str(r.id), 0),
            )
        )
    out.sort(key=lambda w: (not w.alive, w.id))
    return out


def run_label(conn: Connection, run_id: int) -> str | None:
    row = conn.execute(
        select(Run.job, Run.day, Run.generation).where(Run.id == run_id)
    ).one_or_none()
    return None if row is None else f"{row[0]}/{_as_date(row[1])}#{row[2]}"
