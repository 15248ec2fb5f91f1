"""Database plumbing both services share: engines, SQLite settings, UTC timestamps, migrations.

SQLite is the embedded default (WAL, busy timeout, BEGIN IMMEDIATE for writes); PostgreSQL through
psycopg 3 is the production engine. Correctness comes from conditional updates and constraints in the
database, never from locks held in a process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as postgresql_types
from sqlalchemy.dialects.postgresql import dml as postgresql_dml
from sqlalchemy.dialects.sqlite import dml as sqlite_dml
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.compiler import SQLCompiler

from service_common.batching import GroupCommit

log = logging.getLogger(__name__)

UTC = dt.UTC

# Serialises concurrent `migrate` runs on PostgreSQL (any constant shared by all runs of one service).
_MIGRATION_LOCK_KEY = 0x5E4F1D


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def rfc3339(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """Timezone-aware UTC on the way in and out, also on SQLite which stores no offset."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def big_id() -> sa.types.TypeEngine[int]:
    """BIGINT on PostgreSQL; INTEGER on SQLite, where only `INTEGER PRIMARY KEY` can be AUTOINCREMENT."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def normalise_url(url: str) -> str:
    """Map the standard postgresql:// form (what tools and Secrets use) to the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_db_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 0,
    pool_timeout: float = 2.0,
    statement_timeout_ms: int = 2000,
    lock_timeout_ms: int = 1500,
    sqlite_busy_timeout_ms: int = 2000,
) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url, busy_timeout_ms=sqlite_busy_timeout_ms)
    options = f"-c statement_timeout={statement_timeout_ms} -c lock_timeout={lock_timeout_ms}"
    engine = sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_recycle=1800,
        isolation_level="READ COMMITTED",
        connect_args={"connect_timeout": 2, "options": options},
    )
    _ping_when_idle(engine)
    return engine


# A pooled connection idle for longer than this is pinged before it is handed out (see _ping_when_idle).
PING_IDLE_AFTER_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """Ping a PostgreSQL connection at checkout only when it has sat idle in the pool for a while.

    `pool_pre_ping` pinged on every checkout: a round trip and a backend wake-up per transaction, 5 % of
    the order service's CPU. Under load connections are never idle, so no ping is made; a connection that
    dies while in use (the server restarted) fails its statement, which SQLAlchemy reports as a disconnect:
    that request is answered 503 (service_common.errors) and the pool drops every connection opened before
    it, so the next checkouts connect afresh. After a quiet spell the first checkout still pings, so a
    server that restarted meanwhile costs no request at all.
    """
    dialect = engine.dialect

    @sa.event.listens_for(engine.pool, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine.pool, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_IDLE_AFTER_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as exc:  # the pool reconnects (up to 3 tries) when told the connection is gone
            raise sa.exc.DisconnectionError(f"idle connection failed its ping: {type(exc).__name__}") from exc


def _sqlite_engine(url: str, *, busy_timeout_ms: int) -> Engine:
    database = sa.engine.make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # No pre-ping: a file opened in this process does not drop its connection.
    # No reset on return either: a Connection rolls back what it began before it goes back to the pool (and
    # a read begins nothing), so the pool's own rollback would only cost a call.
    engine = sa.create_engine(url, connect_args={"check_same_thread": False}, pool_reset_on_return=None)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module, which would defer BEGIN (see _on_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        # FULL: a commit survives power loss, as it does on PostgreSQL.
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    gate = _WriterGate(Path(database + "-writer")) if database and database != ":memory:" else None
    _write_locks[id(engine)] = (threading.Lock(), busy_timeout_ms / 1000, gate)
    weakref.finalize(engine, _write_locks.pop, id(engine), None)

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A deferred read-then-write transaction in WAL mode fails with SQLITE_BUSY whatever the timeout;
        # IMMEDIATE takes the write lock up front and waits for it within busy_timeout. A read (see
        # reading()) begins nothing: each statement is then its own read transaction.
        begin = _BEGIN[conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")]
        if begin is None:
            return
        # On the driver's connection: SQLAlchemy's statement machinery (an execution context per call)
        # cost more than the BEGIN itself. Its errors are wrapped as SQLAlchemy's would be.
        try:
            conn.connection.driver_connection.execute(begin)  # type: ignore[union-attr]  # sqlite3: never None here
        except sqlite3.Error as exc:
            raise sa.exc.OperationalError(begin, None, exc) from exc

    return engine


_BEGIN = {"IMMEDIATE": "BEGIN IMMEDIATE", "DEFERRED": "BEGIN DEFERRED", "NONE": None}


class _WriterGate:
    """The SQLite writer, between processes: an exclusive flock on a file beside the database.

    SQLite's own busy handler, which BEGIN IMMEDIATE waits in, sleeps 1, 2, 5, 10, … up to 100 ms between
    tries: while one server process commits batch after batch, another's writer slept through many of them
    (p99 of POST /orders 5x its median with two processes, and more CPU per order). Here a waiting process
    polls the lock every 0.2 ms instead, so it takes the writer within a fraction of a commit of its release.
    And it says it waits, with a shared flock on a second file: a process that finds another waiting does
    not take the writer the moment it is free (its next batch is always ready first) but polls as the other
    does, so neither can keep the writer for batch after batch.

    Only the thread that holds its process's writer lock polls. The locks go with the process that holds
    them, however it ends. Throughput only: SQLite's own locks still decide who writes.
    """

    POLL_SECONDS = 0.0002

    def __init__(self, path: Path) -> None:
        self._paths = (path, path.with_name(path.name + "-waiting"))
        self._fds: tuple[int, int] | None = None
        self._pid = 0

    def _files(self) -> tuple[int, int]:
        # Opened in each process (a descriptor inherited across fork would share the lock with the parent).
        fds = self._fds
        if fds is None or self._pid != os.getpid():
            gate, waiting = (os.open(p, os.O_RDWR | os.O_CREAT, 0o600) for p in self._paths)
            self._fds = fds = (gate, waiting)
            self._pid = os.getpid()
            for fd in fds:
                weakref.finalize(self, os.close, fd)  # with its engine (the gate is dropped with it)
        return fds

    def acquire(self, timeout: float) -> bool:
        gate, waiting = self._files()
        try:
            fcntl.flock(waiting, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody waits: take the writer if it is free
            fcntl.flock(waiting, fcntl.LOCK_UN)
            if _try_flock(gate):
                return True
        except BlockingIOError:
            pass  # another process waits: wait as it does
        fcntl.flock(waiting, fcntl.LOCK_SH)  # only ever held exclusively for the two calls above
        try:
            deadline = time.monotonic() + timeout
            while not _try_flock(gate):
                if time.monotonic() >= deadline:
                    return False
                time.sleep(self.POLL_SECONDS)
            return True
        finally:
            fcntl.flock(waiting, fcntl.LOCK_UN)

    def release(self) -> None:
        assert self._fds is not None
        fcntl.flock(self._fds[0], fcntl.LOCK_UN)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


# SQLite engines' writer locks (see writing()), by id(engine) (a weak dictionary's lookup cost more than
# the rest of writing()): the in-process lock, its timeout, and the gate between processes (a database file
# has one; an in-memory one does not). An engine's entry goes with it. PostgreSQL engines have none.
_write_locks: dict[int, tuple[threading.Lock, float, _WriterGate | None]] = {}


@contextlib.contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction.

    SQLite has one writer at a time. Threads of one process queue for it here, in turn, instead of
    polling SQLite's busy handler, which sleeps up to 100 ms between tries and made busy workers answer
    503 under load; between processes BEGIN IMMEDIATE and busy_timeout still decide. This lock is for
    throughput only: correctness comes from the database. On PostgreSQL it is just a transaction.
    """
    entry = _write_locks.get(id(engine))
    if entry is None:
        with engine.begin() as conn:
            yield conn
        return
    lock, timeout, gate = entry
    if not lock.acquire(timeout=timeout):
        raise sa.exc.TimeoutError("the SQLite writer stayed busy")
    try:
        if gate is not None and not gate.acquire(timeout):
            raise sa.exc.TimeoutError("the SQLite writer stayed busy in another process")
        try:
            with engine.begin() as conn:
                yield conn
        finally:
            if gate is not None:
                gate.release()
    finally:
        lock.release()


T = TypeVar("T")
Work = Callable[[Connection], Any]

# Errors that are the database's as a whole (down, busy, the writer or the pool timing out): they refuse
# every write of a batch, as they would have refused each. Any other error may be one write's own (a
# unique key taken, a value out of range): the batch is then run again one write per transaction.
_WHOLE_DATABASE = (sa.exc.OperationalError, sa.exc.TimeoutError)
# PostgreSQL's deadlock and serialization failures are OperationalErrors, but they are one write's
# conflict with another transaction: run alone, each write decides for itself.
_CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})


class WriteBatcher:
    """Group commit of short write transactions (service_common.batching): the writes that queue while
    one transaction runs are made in the next one, one commit for all of them.

    Each write is a function of the connection (`work`), run in the batch's transaction in arrival order.
    A write is all-or-nothing with its batch; when the batch fails because of one of its writes, the
    writes are run again, each in a transaction of its own, so that one fails alone. So a write must
    depend on nothing but the database and its arguments: it may run twice (the first time rolled back).
    `observe` is told how many writes each transaction made.
    """

    def __init__(self, engine: Engine, max_batch: int, observe: Callable[[int], None] = lambda n: None) -> None:
        # Weakly: the registry of batchers (group_commit()) must not keep a disposed engine alive.
        self._engine = weakref.ref(engine)
        self._group: GroupCommit[Work, Any] = GroupCommit(self._decide, max_batch, alone=_one_writes, observe=observe)

    @property
    def engine(self) -> Engine:
        engine = self._engine()
        assert engine is not None, "a write outlived its engine"  # each caller holds the engine it writes to
        return engine

    @property
    def pending(self) -> int:
        """Writes submitted and not yet decided: queued, or in the transaction that runs now."""
        return self._group.pending

    def run(self, work: Callable[[Connection], T]) -> T:
        outcome = self._group.submit(work)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome  # type: ignore[no-any-return]  # what `work` returned

    def _decide(self, works: list[Work]) -> list[Any]:
        with writing(self.engine) as conn:
            return [work(conn) for work in works]


def _one_writes(exc: Exception) -> bool:
    """Whether a batch's error may be one write's own (a constraint, a bad value, a deadlock or
    serialization failure it met), not the whole database's (down, busy, timed out)."""
    return not isinstance(exc, _WHOLE_DATABASE) or (
        getattr(getattr(exc, "orig", None), "sqlstate", None) in _CONFLICT_SQLSTATES
    )


# Engines whose writes go through a WriteBatcher (see group_commit()), by id(engine) as _write_locks.
_batchers: dict[int, WriteBatcher] = {}


def group_commit(engine: Engine, max_batch: int, observe: Callable[[int], None] = lambda n: None) -> None:
    """Make this process's `written(engine, ...)` calls share transactions, up to `max_batch` in one."""
    _batchers[id(engine)] = WriteBatcher(engine, max_batch, observe)
    weakref.finalize(engine, _batchers.pop, id(engine), None)


def write_batcher(engine: Engine) -> WriteBatcher | None:
    return _batchers.get(id(engine))


def written(engine: Engine, work: Callable[[Connection], T]) -> T:
    """`work` run in a write transaction: its own, or a batch's when the engine has group commit."""
    batcher = _batchers.get(id(engine))
    if batcher is not None:
        return batcher.run(work)
    with writing(engine) as conn:
        return work(conn)


def skip_locked(conn: Connection, query: sa.Select[Any]) -> sa.Select[Any]:
    """Rows another worker holds are passed over, so several workers each take their own batch.

    PostgreSQL: FOR UPDATE SKIP LOCKED. SQLite has one writer at a time (BEGIN IMMEDIATE): nothing to skip.
    """
    return query.with_for_update(skip_locked=True) if conn.dialect.name == "postgresql" else query


def read_only(conn: Connection) -> Connection:
    """Mark a connection's next transaction as read-only: on SQLite it then does not take the write lock."""
    return conn.execution_options(sqlite_begin="DEFERRED")


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """Reads that need no snapshot across statements (see snapshot() for those).

    In autocommit on both engines, so a read is its SELECTs and no BEGIN / COMMIT: one round trip on
    PostgreSQL; on SQLite (WAL) each statement is its own read transaction and takes no write lock.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            yield conn.execution_options(isolation_level="AUTOCOMMIT")
            return
        yield conn.execution_options(sqlite_begin="NONE")


@contextlib.contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction whose statements all see one moment of the database, for reads that
    compare tables with each other. READ COMMITTED (PostgreSQL's default here) gives each statement a
    snapshot of its own, so a write committing between two of them would look like an inconsistency;
    REPEATABLE READ takes one for the whole transaction. On SQLite (WAL) a read transaction already does.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        conn = read_only(conn)
        with conn.begin():
            yield conn


class _DriverForm:
    """What DriverQuery and DriverStatement share: SQLAlchemy does what it is good at, once. It compiles the
    statement for each dialect and set of parameter names (the SQL text, the order of its parameters, which
    columns an INSERT or UPDATE writes), and the columns' own result processors (Numeric to Decimal on SQLite,
    UTCDateTime, …) turn each row the driver gives into what `Connection.execute` would have given, keyed by
    the driver's type codes of the first result.
    """

    def __init__(self, statement: sa.Select[Any] | sa.Insert | sa.Update | sa.Delete) -> None:
        self._statement = statement
        # A SELECT's columns, or what an INSERT / UPDATE / DELETE returns (none without RETURNING).
        self._columns = list(statement.exported_columns)
        self._row = sa.engine.result_tuple([column.name for column in self._columns])
        self._forms: dict[tuple[str, tuple[str, ...], bool], SQLCompiler] = {}
        self._processors: dict[tuple[str, tuple[Any, ...]], list[Any]] = {}

    def _compile(self, dialect: sa.Dialect, keys: tuple[str, ...] = (), many: bool = False) -> SQLCompiler:
        # As Connection.execute compiles it: the parameters' names (sorted) say which columns are written.
        compiled = self._statement.compile(dialect=dialect, column_keys=sorted(keys), for_executemany=many)
        assert isinstance(compiled, SQLCompiler)
        self._forms[(dialect.name, keys, many)] = compiled
        return compiled

    def _make_rows(self, dialect: sa.Dialect, raw: Sequence[Any], types: tuple[Any, ...]) -> list[sa.Row[Any]]:
        processors = self._processors.get((dialect.name, types)) or self._result_processors(dialect, types)
        make = self._row
        return [
            make([value if p is None or value is None else p(value) for p, value in zip(processors, row, strict=True)])
            for row in raw
        ]

    def _result_processors(self, dialect: sa.Dialect, types: tuple[Any, ...]) -> list[Any]:
        found = [
            column.type._cached_result_processor(dialect, code)
            for column, code in zip(self._columns, types, strict=True)
        ]
        self._processors[(dialect.name, types)] = found
        return found


class DriverQuery(_DriverForm):
    """A hot SELECT run on the database driver's own cursor, past SQLAlchemy's per-call machinery.

    A read of one product took 108 µs of CPU through `Connection.execute` and 12 µs on the driver's cursor
    of a pooled connection (SQLite); the statement is compiled and its rows converted as _DriverForm says.
    Parameters go to the driver as they are, so they must be plain values that need no conversion (ids,
    strings, integers); DriverStatement converts them, for a little more CPU.

    Reads only, in autocommit (as reading()): on PostgreSQL the connection is switched to autocommit for
    the call and back, so a read is one round trip.
    """

    def __init__(self, statement: sa.Select[Any]) -> None:
        super().__init__(statement)

    def rows(self, engine: Engine, params: dict[str, Any]) -> list[sa.Row[Any]]:
        """Every row, as `Connection.execute(statement, params).all()` would give them."""
        dialect = engine.dialect
        compiled = self._forms.get((dialect.name, (), False)) or self._compile(dialect)
        sql = compiled.string
        values: Any = tuple(params[name] for name in compiled.positiontup or ()) if compiled.positional else params
        try:
            pooled = engine.raw_connection()
        except dialect.loaded_dbapi.Error as exc:
            # A connection that cannot be opened (the database down) is an OperationalError like any other.
            raise sa.exc.DBAPIError.instance(
                sql, values, exc, dialect.loaded_dbapi.Error, connection_invalidated=True, dialect=dialect
            ) from exc
        try:
            driver = pooled.driver_connection
            postgres = dialect.name == "postgresql"
            if postgres:
                driver.autocommit = True  # type: ignore[union-attr]  # psycopg's connection
            try:
                cursor = pooled.cursor()
                try:
                    cursor.execute(sql, values)
                    raw = cursor.fetchall()
                    types = _type_codes(cursor)
                finally:
                    cursor.close()
            finally:
                if postgres:
                    driver.autocommit = False  # type: ignore[union-attr]
        except Exception as exc:
            if isinstance(exc, dialect.loaded_dbapi.Error):
                invalidated = dialect.is_disconnect(exc, pooled, None)
                if invalidated:
                    pooled.invalidate(exc)
                raise sa.exc.DBAPIError.instance(
                    sql, values, exc, dialect.loaded_dbapi.Error, connection_invalidated=invalidated, dialect=dialect
                ) from exc
            raise
        finally:
            pooled.close()
        return self._make_rows(dialect, raw, types)

    def first(self, engine: Engine, params: dict[str, Any]) -> sa.Row[Any] | None:
        found = self.rows(engine, params)
        return found[0] if found else None


# One set of parameters (execute), or several (executemany).
Params = Mapping[str, Any] | Sequence[Mapping[str, Any]]


class DriverStatement(_DriverForm):
    """A hot statement of a write transaction (INSERT, UPDATE, DELETE with or without RETURNING, or a
    SELECT … FOR UPDATE) run on the driver's cursor of the caller's Connection, so it commits or rolls back
    with that transaction: ~80 µs of `Connection.execute` machinery per statement become ~15 µs.

    Compiled and its rows converted as _DriverForm says. Its parameters go through what
    `Connection.execute` does to them, with SQLAlchemy's own pieces (construct_params: the statement's own
    literal values, a missing parameter refused; expanding IN lists; each column's bind processor: UTC
    times as SQLite's naive strings, Decimal, …), so what is stored is what `Connection.execute` stores.
    Errors go through the Connection's own handler: IntegrityError, OperationalError (503), a lost
    connection invalidated with the pool's older ones, as for any statement. A list of parameter sets is
    an executemany; an empty one does nothing.
    """

    def rows(self, conn: Connection, params: Params) -> list[sa.Row[Any]]:
        """Every row the statement gives (its RETURNING, or a SELECT's), as `Connection.execute` would."""
        return self._execute(conn, params, fetch=True)[0]

    def first(self, conn: Connection, params: Params) -> sa.Row[Any] | None:
        found = self._execute(conn, params, fetch=True)[0]
        return found[0] if found else None

    def one(self, conn: Connection, params: Params) -> sa.Row[Any]:
        """Exactly one row (an INSERT … RETURNING's), as `Result.one()`."""
        found = self._execute(conn, params, fetch=True)[0]
        if len(found) != 1:
            if found:
                raise sa.exc.MultipleResultsFound("Multiple rows were found when exactly one was required")
            raise sa.exc.NoResultFound("No row was found when one was required")
        return found[0]

    def run(self, conn: Connection, params: Params) -> int:
        """Run it for its effect; the number of rows it matched (the driver's rowcount)."""
        return self._execute(conn, params, fetch=False)[1]

    def _execute(self, conn: Connection, params: Params, *, fetch: bool) -> tuple[list[sa.Row[Any]], int]:
        batch: Sequence[Mapping[str, Any]] = [params] if isinstance(params, Mapping) else params
        if not batch:
            return [], 0
        dialect = conn.dialect
        keys, many = tuple(batch[0]), len(batch) > 1
        compiled = self._forms.get((dialect.name, keys, many)) or self._compile(dialect, keys, many)
        if not conn.in_transaction():
            conn.begin()  # as Connection.execute begins one (SQLite: BEGIN IMMEDIATE); the caller commits
        pooled = conn.connection  # refuses, as execute does, a connection lost inside its transaction
        sql: str = compiled.string
        values: list[Any] = list(batch)
        try:
            sql, values = _driver_parameters(compiled, dialect, batch)
            cursor: Any = pooled.cursor()
        except Exception as exc:
            # A bind processor's refusal (a naive datetime) is a StatementError, as from execute.
            conn._handle_dbapi_exception(exc, sql, values, None, None)
        try:
            raw: list[Any] = []
            if not many:
                cursor.execute(sql, values[0])
                raw = cursor.fetchall() if fetch else raw
            elif not fetch:
                cursor.executemany(sql, values)
            elif dialect.driver == "psycopg":  # one pipeline, a result per parameter set
                cursor.executemany(sql, values, returning=True)
                raw = cursor.fetchall()
                while cursor.nextset():
                    raw += cursor.fetchall()
            else:  # sqlite3 runs no executemany that returns rows: one call each, in process
                for one in values:
                    cursor.execute(sql, one)
                    raw += cursor.fetchall()
            types = _type_codes(cursor) if fetch else ()
            count: int = cursor.rowcount
        except Exception as exc:
            conn._handle_dbapi_exception(exc, sql, values if many else values[0], cursor, None)
        finally:
            cursor.close()
        return (self._make_rows(dialect, raw, types) if fetch and raw else []), count


def _type_codes(cursor: Any) -> tuple[Any, ...]:
    """The driver's type code of each column of the current result. psycopg's `cursor.description` builds
    a Column object per column (an order row's 19: ~15 µs); the result's own type oids are the same codes."""
    result = getattr(cursor, "pgresult", None)
    if result is not None:
        return tuple(result.ftype(i) for i in range(result.nfields))
    return tuple(d[1] for d in cursor.description or ())


def _driver_parameters(
    compiled: SQLCompiler, dialect: sa.Dialect, batch: Sequence[Mapping[str, Any]]
) -> tuple[str, list[Any]]:
    """The SQL and each set of parameters as the driver is given them by `Connection.execute`: what
    sqlalchemy.engine.default.DefaultExecutionContext._init_compiled does, in the same steps."""
    sets = [compiled.construct_params(p, escape_names=False, _group_number=n) for n, p in enumerate(batch)]
    sql = compiled.string
    processors: Mapping[str, Any] = compiled._bind_processors
    order: Sequence[str] | None = compiled.positiontup if compiled.positional else None
    if compiled.literal_execute_params or compiled.post_compile_params:  # an expanding IN list
        if len(sets) > 1:
            raise sa.exc.InvalidRequestError(
                "'literal_execute' or 'expanding' parameters can't be used with executemany()"
            )
        expanded = compiled._process_parameters_for_postcompile(sets[0])
        sql, order = expanded.statement, expanded.positiontup
        processors = {**processors, **expanded.processors}
    if order is not None:
        make = dialect.execute_sequence_format
        return sql, [make([processors[k](p[k]) if k in processors else p[k] for k in order]) for p in sets]
    escaped = compiled.escaped_bind_names
    return sql, [{escaped.get(k, k): processors[k](v) if k in processors else v for k, v in p.items()} for p in sets]


# --- migrations -------------------------------------------------------------------------------------------


def alembic_config(migrations_dir: Path, url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def head_revision(migrations_dir: Path) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(migrations_dir, "sqlite://")).get_current_head()


def current_revision(conn: Connection) -> str | None:
    """The schema revision alembic recorded (one linear history per service), or None before any."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def run_migrations(migrations_dir: Path, url: str) -> str | None:
    """Upgrade to head. Safe to run several times at once: PostgreSQL runs hold an advisory lock."""
    from alembic import command

    cfg = alembic_config(migrations_dir, url)
    # SQLite runs queue on the write lock: wait for another run's whole upgrade, not the services' 2 s.
    engine = create_db_engine(
        url, pool_size=1, statement_timeout_ms=0, lock_timeout_ms=0, sqlite_busy_timeout_ms=120_000
    )
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                conn.commit()
            try:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
            finally:
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                    conn.commit()
            with conn.begin():
                return current_revision(conn)
    finally:
        engine.dispose()


def unnest_rows(*columns: tuple[str, sa.types.TypeEngine[Any]], ordinality: str | None = None) -> Any:
    """PostgreSQL: rows given as one array parameter per column (bound as `b_<name>`), as a FROM item:
    `unnest(...) [WITH ORDINALITY] AS anon(name, ..., [ordinality])`. One parameter per column, whatever
    the number of rows, so a statement that writes many rows is still one statement built once."""
    arrays = [sa.bindparam(f"b_{name}", type_=postgresql_types.ARRAY(kind)) for name, kind in columns]
    names = [name for name, _ in columns]
    return sa.func.unnest(*arrays).table_valued(*names, with_ordinality=ordinality).render_derived()


def insert_ignoring_conflict(
    conn: Connection, table: sa.Table, key: list[str]
) -> postgresql_dml.Insert | sqlite_dml.Insert:
    """INSERT … ON CONFLICT (key) DO NOTHING, in the dialect of the connection."""
    if conn.dialect.name == "postgresql":
        return postgresql_dml.insert(table).on_conflict_do_nothing(index_elements=key)
    return sqlite_dml.insert(table).on_conflict_do_nothing(index_elements=key)


def lines_of(conn: Connection, table: sa.Table, owners: Sequence[Any]) -> dict[Any, list[sa.Row[Any]]]:
    """The line rows of each owner (an order or a reservation), by `order_id`, in `line_no` order; read in
    chunks of 500 owners, so a long list never makes one huge IN clause."""
    found: dict[Any, list[sa.Row[Any]]] = {}
    if len(owners) == 1:  # one order's lines, on the hot path: a statement built once per table
        for line in _lines_of_one(table).rows(conn, {"b_owner": owners[0]}):
            found.setdefault(line.order_id, []).append(line)
        return found
    for chunk in range(0, len(owners), 500):
        query = (
            sa.select(table)
            .where(table.c.order_id.in_(owners[chunk : chunk + 500]))
            .order_by(table.c.order_id, table.c.line_no)
        )
        for line in conn.execute(query):
            found.setdefault(line.order_id, []).append(line)
    return found


@functools.cache
def _lines_of_one(table: sa.Table) -> DriverStatement:
    return DriverStatement(
        sa.select(table).where(table.c.order_id == sa.bindparam("b_owner")).order_by(table.c.line_no)
    )


def schema_checks(engine: Engine, migrations_dir: Path) -> Any:
    """Readiness checks: the database answers and its schema is one this release can run on.

    That is this release's head, or a revision this release does not know: a newer release's migration,
    which by the expand-then-contract rule still serves this code during a rolling update. An older
    revision (the migrate step has not run yet) keeps the replica not ready.
    """
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(migrations_dir, "sqlite://"))
    head = script.get_current_head()
    known = {rev.revision for rev in script.walk_revisions()}

    def checks() -> dict[str, str]:
        try:
            with reading(engine) as conn:
                current = current_revision(conn)
        except sa.exc.SQLAlchemyError as exc:
            return {"database": f"unavailable ({type(exc).__name__})", "schema": "unknown"}
        if current == head or (current is not None and current not in known):
            schema = "ok"
        else:
            schema = f"at {current or 'nothing'}, expected {head}"
        return {"database": "ok", "schema": schema}

    return checks


def engine_for(settings: Any) -> Engine:
    """The engine a service process uses, sized and bounded by its settings (ServiceSettings)."""
    return create_db_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        pool_timeout=settings.db_pool_timeout,
        statement_timeout_ms=settings.statement_timeout_ms,
        lock_timeout_ms=settings.lock_timeout_ms,
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
    )
