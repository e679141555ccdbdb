"""nightfold's one error tree.

Every error the product raises on purpose derives from :class:`NightfoldError`;
the CLI turns any of them into a single line and the exit code named on the
class. Errors of the libraries below us (SQLAlchemy/PyMySQL, pika, happybase /
thriftpy2) are mapped to the most specific class here at the seam that calls
them (``raise ... from exc``), so code above the seams never sees them.

    NightfoldError                  exit 1
    ├── ConfigError                 exit 2   bad flag, setting, URL or file
    │   └── UnknownJob              exit 2
    ├── ServiceUnavailable          exit 3   a service is down or refuses us
    │   └── AccessRefused           exit 3   wrong password, vhost, TLS certificate: not retried
    ├── StoreRejected               exit 1   the store answered "no" (deterministic): counted
    ├── CellTooLarge                exit 1   a job produced a cell above the bound: a job bug
    ├── CorruptPartial              exit 1   a partial's split cells do not rejoin
    ├── SchemaOutOfDate             exit 4   run `nightfold db upgrade`
    ├── RunConflict                 exit 5   another master owns the run
    ├── RunFailed                   exit 6   the run ended failed or cancelled
    ├── ChunkLost                   exit 1   fencing: our claim was taken over
    ├── IllegalTransition           exit 1   a state move not in common/states.py: a bug
    ├── MalformedMessage            exit 1   a hint that cannot be parsed
    └── VerifyMismatch              exit 7   stored summaries differ from the oracle
"""

from __future__ import annotations

RET_OK = 0
RET_ERROR = 1
RET_CONFIG = 2
RET_CONNECT = 3
RET_SCHEMA = 4
RET_CONFLICT = 5
RET_RUN_FAILED = 6
RET_MISMATCH = 7


class NightfoldError(Exception):
    """Root of every error nightfold raises on purpose."""

    exit_code: int = RET_ERROR


class ConfigError(NightfoldError):
    """A flag, setting, URL or config file is invalid."""

    exit_code = RET_CONFIG


class UnknownJob(ConfigError):
    """No job is registered under that name."""


class ServiceUnavailable(NightfoldError):
    """A backing service (database, broker, store) cannot be reached or refused us."""

    exit_code = RET_CONNECT

    def __init__(self, service: str, detail: str) -> None:
        self.service = service
        self.detail = detail
        super().__init__(f"{service} unavailable: {detail}")


class AccessRefused(ServiceUnavailable):
    """The service answered and refused our credentials or permissions, or its
    TLS certificate failed verification.

    Never retried: waiting does not fix a wrong password, so a worker started with
    one exits at once with this message instead of retrying until its deadline.
    """

    def __init__(self, service: str, detail: str) -> None:
        super().__init__(service, detail)
        self.args = (f"{service} refused: {detail}",)


class StoreRejected(NightfoldError):
    """The store answered and refused the request (missing or disabled table,
    unknown column family, a cell too large, ...).

    Unlike :class:`ServiceUnavailable` this is *not* an outage: the same request
    gets the same answer, so a worker counts it as a failed attempt (the chunk
    dies after ``max_attempts`` and the run fails with this reason) instead of
    releasing the chunk for another worker to loop on. Which HBase answers are
    transient instead is decided in one place, ``common/store/hbase.py``.
    """

    def __init__(self, service: str, detail: str) -> None:
        self.service = service
        self.detail = detail
        super().__init__(f"{service} rejected: {detail}")


class CellTooLarge(NightfoldError):
    """A job produced a summary cell larger than the run's ``max_cell_bytes``.

    Partials are split across cells, summaries are not (a reader expects one
    value per column): a summary that large is a job bug, refused before the
    store would refuse it less clearly.
    """


class CorruptPartial(NightfoldError):
    """A partial split across cells cannot be rejoined (a piece is missing or malformed)."""


class SchemaOutOfDate(NightfoldError):
    """The database is not at the schema revision this code expects."""

    exit_code = RET_SCHEMA


class RunConflict(NightfoldError):
    """Another live master owns the run."""

    exit_code = RET_CONFLICT


class RunFailed(NightfoldError):
    """The run ended in a state other than succeeded."""

    exit_code = RET_RUN_FAILED


class ChunkLost(NightfoldError):
    """Our claim on a chunk is gone (lease expired and taken over, or run reset)."""


class IllegalTransition(NightfoldError):
    """A repository function was asked for a run or chunk state move that the
    tables of ``common/states.py`` do not list.

    A programming error, not a race: a lost race leaves the row in another state
    and the conditional UPDATE matches nothing, while this is refused before any
    UPDATE is issued, whatever the row holds. Exit 1 like any other bug.
    """

    def __init__(self, kind: str, src: str, dst: str) -> None:
        self.kind, self.src, self.dst = kind, src, dst
        super().__init__(f"illegal {kind} transition {src} -> {dst} (not in common/states.py)")


class MalformedMessage(NightfoldError):
    """A transport message that is not a valid nightfold hint."""


class VerifyMismatch(NightfoldError):
    """The stored summaries differ from the ones computed straight from the raw rows."""

    exit_code = RET_MISMATCH
