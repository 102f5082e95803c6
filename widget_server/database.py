"""The `databases` backends the service runs on, with two of their costs removed.

- SQLite: `databases` opens a new aiosqlite connection (a thread and a
  `sqlite3.connect`) for every query or transaction made outside a held
  connection, and closes it afterwards. Here released connections wait in a pool
  and the next query takes one back. A connection is still taken only for one
  query or one transaction, so nothing holds one while, say, a request body is
  arriving.
- Both dialects: `databases` compiles every SQLAlchemy statement again on each
  call (a third of a submission's time was compilation). Here a statement is
  compiled once per shape, keyed by SQLAlchemy's own cache key, and later calls
  only bind their values; IN lists are expanded per call, as SQLAlchemy's engine
  does with its own cache.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import sqlite3
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
from databases import Database
from databases.backends.common.records import Record, Row, create_column_maps
from databases.backends.postgres import PostgresBackend, PostgresConnection, PostgresTransaction
from databases.backends.sqlite import (
    CompilationContext,
    SQLiteBackend,
    SQLiteConnection,
    SQLitePool,
    SQLiteTransaction,
)
from databases.core import DatabaseURL
from databases.interfaces import TransactionBackend
from sqlalchemy.engine.cursor import CursorResultMetaData
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement, ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.ddl import DDLElement
from sqlalchemy.sql.elements import TextClause

from . import tables
from .targets import TARGETS

# Idle SQLite connections kept for reuse; more are opened when all are busy (as
# `databases` always did), and the extra ones closed when they come back.
POOL_IDLE_MAX = 8
# Distinct statement shapes remembered; the service has a few dozen.
STATEMENT_CACHE_MAX = 512


class ServiceDatabase(Database):
    """`databases.Database` on the backends below."""

    SUPPORTED_BACKENDS = {  # noqa: RUF012 (as declared by `databases`)
        **Database.SUPPORTED_BACKENDS,
        "sqlite": "widget_server.database:PooledSQLiteBackend",
        "postgresql": "widget_server.database:CachedPostgresBackend",
        "postgres": "widget_server.database:CachedPostgresBackend",
    }


def connections_in_use(database: Database) -> int:
    """Connections of `database` taken from its pool right now."""
    backend = database._backend
    if isinstance(backend, PooledSQLiteBackend):
        return backend.pool.in_use
    pool = getattr(backend, "_pool", None)
    if pool is None:
        return 0
    return int(pool.get_size() - pool.get_idle_size())


async def fetch_tuples(
    database: Database, statements: Mapping[str, str], args: Sequence[Any]
) -> list[Any] | None:
    """The rows of a statement written for the driver itself, as tuples in the
    select's order, with no SQLAlchemy on the way (no statement to build, compile
    or bind, no row conversion): for the hottest read, where those cost more
    than the read. `statements` by dialect (`sqlite`: `?` placeholders,
    `postgresql`: `$1`…). None when the backend cannot (the caller then reads
    through SQLAlchemy)."""
    statement = statements.get(database.url.dialect)
    if statement is None:
        return None
    async with database.connection() as connection:
        backend = connection._connection
        fetch = getattr(backend, "fetch_tuples", None)
        if fetch is None:
            return None
        async with connection._query_lock:
            return list(await fetch(statement, args))


# --- statements compiled once ---------------------------------------------------


class StatementCache:
    """Compiled statements by SQLAlchemy cache key (least recently used dropped)."""

    def __init__(self, dialect: Dialect, size: int = STATEMENT_CACHE_MAX) -> None:
        self.dialect = dialect
        self.size = size
        self.compiled: OrderedDict[Any, SQLCompiler] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._column_maps: dict[int, tuple[Any, Any]] = {}

    def column_maps(self, result_columns: Any) -> Any:
        """`databases`' column maps of a result, worked out once per statement."""
        key = id(result_columns)
        entry = self._column_maps.get(key)
        if entry is None or entry[0] is not result_columns:
            if len(self._column_maps) > 2 * self.size:
                self._column_maps.clear()
            entry = (result_columns, create_column_maps(result_columns))
            self._column_maps[key] = entry
        return entry[1]

    def bind(self, query: ClauseElement) -> tuple[SQLCompiler, str, list[str], dict[str, Any]] | None:
        """The compiled statement for `query`, its SQL with IN lists expanded, the
        parameter names in order and their values (bind processors applied); None
        when SQLAlchemy cannot cache this statement."""
        if isinstance(query, DDLElement):
            return None
        cache_key = query._generate_cache_key()
        if cache_key is None:
            return None
        with self._lock:
            compiled = self.compiled.get(cache_key.key)
            if compiled is not None:
                self.compiled.move_to_end(cache_key.key)
                self.hits += 1
        if compiled is None:
            fresh = query.compile(dialect=self.dialect, cache_key=cache_key)
            assert isinstance(fresh, SQLCompiler)
            compiled = fresh
            with self._lock:
                self.misses += 1
                self.compiled[cache_key.key] = compiled
                if len(self.compiled) > self.size:
                    self.compiled.popitem(last=False)
        if compiled.escaped_bind_names:
            # Bind names that needed quoting: leave those rare statements to `databases`.
            return None
        params = compiled.construct_params(extracted_parameters=cache_key.bindparams, escape_names=False)
        processors: dict[str, Any] = dict(compiled._bind_processors)
        if compiled.literal_execute_params or compiled.post_compile_params:
            expanded = compiled._process_parameters_for_postcompile(params)
            statement = expanded.statement
            params = dict(expanded.parameters)
            processors.update(expanded.processors)
            names = list(expanded.positiontup) if expanded.positiontup is not None else sorted(params)
        else:
            statement = compiled.string
            names = list(compiled.positiontup) if compiled.positiontup is not None else sorted(params)
        values = {
            name: processors[name](params[name]) if name in processors else params[name] for name in names
        }
        return compiled, statement, names, values


# --- statements prepared once, transactions run as scripts -------------------------


class Prepared:
    """A SQLAlchemy statement compiled once for one dialect, for the hottest
    writes: its SQL in the driver's own form (`?` on SQLite, `$1`… on
    PostgreSQL), the order of its parameters and their bind processors, and its
    result columns' processors. A call binds values by name (`args`) and reads
    rows back into dicts (`records`): no statement to build, no cache key to
    work out, no compilation (which cost more than the statement itself)."""

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        defaults = compiled.construct_params(_check=False, escape_names=False)
        if compiled.positiontup is not None:
            self.names = list(compiled.positiontup)
            self._template = compiled.string
            self._numbered = False
        else:
            self.names = sorted(defaults)
            self._template = compiled.string
            self._numbered = True
        self.defaults = {name: defaults[name] for name in self.names}
        processors: Mapping[str, Any] = compiled._bind_processors
        self.processors: list[Any] = [processors.get(name) for name in self.names]
        self.sql = self.numbered(0)
        self.keys = [column[0] for column in compiled._result_columns]
        self.results = [
            column[3]._cached_result_processor(dialect, None) for column in compiled._result_columns
        ]

    def numbered(self, offset: int) -> str:
        """The SQL with PostgreSQL's placeholders counted from `offset + 1` (to
        put several statements in one); the SQL itself on SQLite."""
        if not self._numbered:
            return self._template
        return self._template % {name: f"${offset + i}" for i, name in enumerate(self.names, start=1)}

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        out = []
        for name, process in zip(self.names, self.processors, strict=True):
            value = values[name] if name in values else self.defaults[name]
            out.append(process(value) if process is not None else value)
        return out

    def records(self, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        keys, results = self.keys, self.results
        return [
            {
                key: process(value) if process else value
                for key, process, value in zip(keys, results, row, strict=True)
            }
            for row in rows
        ]


def dialect(database: Database) -> Dialect:
    """The SQLAlchemy dialect `database`'s backend compiles for."""
    return database._backend._dialect  # type: ignore[no-any-return]


# A statement of a script: (SQL in the driver's form, its arguments, rows to
# fetch: None all, 1 one, 0 none). A script yields a list of them at a time and
# is sent back, for each, the rows it fetched (tuples).
Statement = tuple[str, Sequence[Any], int | None]
T = TypeVar("T")
Script = Generator[list[Statement], list[list[Any]], T]

_WRITERS: weakref.WeakKeyDictionary[Database, asyncio.Lock] = weakref.WeakKeyDictionary()


def writer_lock(database: Database) -> asyncio.Lock:
    """The asyncio lock this process's SQLite writers queue on, first come first served."""
    return _WRITERS.setdefault(database, asyncio.Lock())


async def run_script(database: Database, script: Script[T]) -> T:
    """Runs a write transaction written as a generator (`Script`): it yields the
    statements of each step, gets their rows back, decides in Python (raising
    rolls its writes back) and returns the transaction's outcome.

    On SQLite the script runs on aiosqlite's thread, pure Python only (no
    awaiting), in ONE hand-off from BEGIN IMMEDIATE to COMMIT; and the scripts
    that queued for SQLite's one writer meanwhile run in the same transaction,
    one after the other, each inside a savepoint (group commit, `_Batches`): the
    COMMIT's fsync, which was most of the time the write lock was held (8 ms on
    this machine's disk), is paid once per batch, and every script still answers
    only once its writes are durable. A script that raises has its own writes
    rolled back, not the others'. On PostgreSQL each statement is one round trip
    inside a transaction of its own (the server groups commits itself)."""
    if database.url.dialect == "sqlite":
        return await _Batches.of(database).run(script)
    try:
        return await _run_postgresql(database, script)
    finally:
        script.close()  # a script stopped by a failed statement: its `finally` blocks run


async def _run_postgresql(database: Database, script: Script[T]) -> T:
    async with database.transaction():
        connection = database.connection()
        raw = connection._connection._connection  # type: ignore[attr-defined]  # asyncpg's
        rows: list[list[Any]] | None = None  # nothing to send to a script not yet started
        while True:
            try:
                step = script.send(rows)  # type: ignore[arg-type]
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            rows = []
            async with connection._query_lock:
                for sql, args, _ in step:
                    rows.append(list(await raw.fetch(sql, *args)))


# Scripts run in one SQLite transaction at most (a batch's first waits for its last).
BATCH_MAX = 16


class _Batches:
    """The scripts waiting for one SQLite database's writer, and the task that
    runs them in batches (a task of its own: a request cancelled while its script
    waits never leaves the others waiting)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.waiting: list[tuple[Script[Any], asyncio.Future[Any]]] = []
        self.task: asyncio.Task[None] | None = None
        self.batches = 0  # transactions run (tests read it)

    @staticmethod
    def of(database: Database) -> _Batches:
        batches = _BATCHES.get(database)
        if batches is None:
            batches = _BATCHES[database] = _Batches(database)
        return batches

    async def run(self, script: Script[T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self.waiting.append((script, future))
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            # In a context of its own: it serves every request, not the one that started it.
            self.task = asyncio.create_task(self._drain(), context=contextvars.Context())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self.waiting:
            batch, self.waiting = self.waiting[:BATCH_MAX], self.waiting[BATCH_MAX:]
            # A request cancelled before its script ran (or whose event loop is
            # gone): its script never runs.
            ready = [(s, f) for s, f in batch if not f.done() and f.get_loop() is loop]
            for script, future in batch:
                if (script, future) not in ready:
                    script.close()
            if not ready:
                continue
            try:
                async with writer_lock(self.database), self.database.connection() as connection:
                    raw = connection._connection._connection  # type: ignore[attr-defined]  # aiosqlite's
                    assert raw is not None, "Connection is not acquired"
                    self.batches += 1
                    outcomes = await raw._execute(_drive, raw._conn, [script for script, _ in ready])
            except BaseException as exc:  # nothing of the batch committed
                for _, future in ready:
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), (ok, value) in zip(ready, outcomes, strict=True):
                if not future.done():
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)


_BATCHES: weakref.WeakKeyDictionary[Database, _Batches] = weakref.WeakKeyDictionary()


def _steps(connection: sqlite3.Connection, script: Script[T]) -> T:
    """Runs `script` to its end on `connection` (aiosqlite's thread)."""
    try:
        rows: list[list[Any]] | None = None  # nothing to send to a script not yet started
        while True:
            try:
                step = script.send(rows)  # type: ignore[arg-type]
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            rows = [_run(connection, sql, args, fetch)[0] for sql, args, fetch in step]
    finally:
        script.close()


def _drive(connection: sqlite3.Connection, scripts: list[Script[Any]]) -> list[tuple[bool, Any]]:
    """Scripts in one transaction, from BEGIN IMMEDIATE to COMMIT, on aiosqlite's
    thread (see `run_script`): per script, (True, its outcome) or (False, what it
    raised, its writes rolled back to its savepoint)."""
    outcomes: list[tuple[bool, Any]] = []
    connection.execute("BEGIN IMMEDIATE")
    try:
        for script in scripts:
            connection.execute("SAVEPOINT script")
            try:
                outcome = _steps(connection, script)
            except Exception as exc:
                connection.execute("ROLLBACK TO script")
                connection.execute("RELEASE script")
                outcomes.append((False, exc))
            else:
                connection.execute("RELEASE script")
                outcomes.append((True, outcome))
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        for script in scripts:
            script.close()
        raise
    return outcomes


# --- directory writes -----------------------------------------------------------

# The tables eligibility is read from: a committed write to one of them makes
# in-memory eligibility answers of this process stale (eligibility_cache).
DIRECTORY_TABLES = frozenset({*(t.table.name for t in TARGETS.values()), tables.contacts.name})


class DirectoryWrites:
    """Counts committed writes to the directory tables made through this process."""

    def __init__(self) -> None:
        self.generation = 0

    def bump(self) -> None:
        self.generation += 1


def directory_writes(database: Database) -> DirectoryWrites:
    """The write counter of `database` (a new, never-bumped one for other databases)."""
    return getattr(database._backend, "writes", None) or DirectoryWrites()


_TEXT_WRITE = re.compile(
    r"\b(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)", re.IGNORECASE
)


def _writes_directory(query: ClauseElement) -> bool:
    if isinstance(query, TextClause):
        return any(name.lower() in DIRECTORY_TABLES for name in _TEXT_WRITE.findall(query.text))
    table = getattr(query, "table", None) if getattr(query, "is_dml", False) else None
    return getattr(table, "name", None) in DIRECTORY_TABLES


class _WatchedConnection:
    """Bumps the directory write counter once a write to a directory table is
    committed: at once outside a transaction, at the root commit inside one (a
    reader in between would still see the old rows)."""

    _writes: DirectoryWrites
    _dirty = False
    _in_root_transaction = False

    def _wrote(self, query: ClauseElement | None) -> None:
        if query is not None and not _writes_directory(query):
            return
        if self._in_root_transaction:
            self._dirty = True
        else:
            self._writes.bump()

    def _transaction_ended(self, committed: bool) -> None:
        self._in_root_transaction = False
        if self._dirty:
            self._dirty = False
            self._writes.bump()


def _watch(connection_cls: Any, transaction_cls: Any) -> tuple[Any, Any]:
    """Subclasses of a `databases` connection and transaction that report writes."""

    class Transaction(transaction_cls):  # type: ignore[misc]
        async def start(self, is_root: bool, extra_options: dict[Any, Any]) -> None:
            await super().start(is_root, extra_options)
            self._root = is_root
            if is_root:
                self._connection._in_root_transaction = True

        async def commit(self) -> None:
            await super().commit()
            if self._root:
                self._connection._transaction_ended(True)

        async def rollback(self) -> None:
            await super().rollback()
            if self._root:
                self._connection._dirty = False
                self._connection._transaction_ended(False)

    class Connection(_WatchedConnection, connection_cls):  # type: ignore[misc]
        async def execute(self, query: ClauseElement) -> Any:
            result = await super().execute(query)
            self._wrote(query)
            return result

        async def execute_many(self, queries: list[ClauseElement]) -> None:
            await super().execute_many(queries)
            for query in queries[:1]:
                self._wrote(query)

        async def fetch_all(self, query: ClauseElement) -> Any:
            result = await super().fetch_all(query)
            self._wrote(query)
            return result

        async def fetch_one(self, query: ClauseElement) -> Any:
            result = await super().fetch_one(query)
            self._wrote(query)
            return result

        @property
        def raw_connection(self) -> Any:
            # Whatever is done on the driver's own connection (the directory
            # import's executemany) may be a directory write.
            self._wrote(None)
            return super().raw_connection

        def transaction(self) -> Any:
            return Transaction(self)

    return Connection, Transaction


# --- SQLite ----------------------------------------------------------------------


class ConnectionPool(SQLitePool):
    """Reuses aiosqlite connections instead of opening one per query.

    A connection that comes back inside a transaction (its task was cancelled
    mid-way) is closed, never handed to someone else. In-memory databases are
    not pooled: each of their connections is a database of its own.
    """

    def __init__(self, url: DatabaseURL, **options: Any) -> None:
        super().__init__(url, **options)
        memory = url.database in ("", ":memory:") or url.options.get("mode") == "memory"
        self.idle_max = 0 if memory else POOL_IDLE_MAX
        self.idle: list[aiosqlite.Connection] = []
        self.in_use = 0
        self.opened = 0
        self._lock = threading.Lock()

    async def acquire(self) -> aiosqlite.Connection:
        with self._lock:
            connection = self.idle.pop() if self.idle else None
            self.in_use += 1
        if connection is not None:
            return connection
        try:
            connection = await super().acquire()
        except BaseException:
            with self._lock:
                self.in_use -= 1
            raise
        with self._lock:
            self.opened += 1
        return connection

    async def release(self, connection: aiosqlite.Connection) -> None:
        with self._lock:
            self.in_use -= 1
            keep = len(self.idle) < self.idle_max and not _in_transaction(connection)
            if keep:
                self.idle.append(connection)
        if not keep:
            await super().release(connection)

    async def close(self) -> None:
        with self._lock:
            idle, self.idle = self.idle, []
        for connection in idle:
            await super().release(connection)


def _in_transaction(connection: aiosqlite.Connection) -> bool:
    try:
        return bool(connection.in_transaction)
    except Exception:  # a connection that broke is not worth keeping
        return True


class PooledSQLiteBackend(SQLiteBackend):
    def __init__(self, database_url: DatabaseURL | str, **options: Any) -> None:
        super().__init__(database_url, **options)
        self.pool = ConnectionPool(self._database_url, **self._options)
        self._pool = self.pool
        self.statements = StatementCache(self._dialect)
        self.writes = DirectoryWrites()

    async def disconnect(self) -> None:
        await self.pool.close()
        await super().disconnect()

    def connection(self) -> CachedSQLiteConnection:
        connection = _WatchedSQLiteConnection(self.pool, self._dialect, self.statements)
        connection._writes = self.writes
        return connection  # type: ignore[no-any-return]


def _run(connection: sqlite3.Connection, sql: str, args: Sequence[Any], rows: int | None) -> _Outcome:
    """One statement from start to end on aiosqlite's thread: `rows` None fetches
    all rows, 0 none, 1 one."""
    cursor = connection.execute(sql, args)
    try:
        if rows is None:
            fetched = cursor.fetchall()
        elif rows:
            fetched = cursor.fetchmany(rows)
        else:
            fetched = []
        return fetched, cursor.description, cursor.lastrowid, cursor.rowcount
    finally:
        cursor.close()


_Outcome = tuple[list[Any], Any, int | None, int]


class CachedSQLiteConnection(SQLiteConnection):
    """Each statement is one hand-off to aiosqlite's thread and back, where
    `databases` makes three (open a cursor, execute, close it)."""

    def __init__(self, pool: SQLitePool, dialect: Dialect, statements: StatementCache) -> None:
        super().__init__(pool, dialect)
        self._statements = statements

    def _compile(self, query: ClauseElement) -> Any:
        bound = self._statements.bind(query)
        if bound is None:
            return super()._compile(query)
        compiled, statement, names, values = bound
        context: Any = self._dialect.execution_ctx_cls()
        context.dialect = self._dialect
        context.result_column_struct = (
            compiled._result_columns,
            compiled._ordered_columns,
            compiled._textual_ordered_columns,
            compiled._ad_hoc_textual,
            compiled._loose_column_name_matching,
        )
        args = [values[name] for name in names]
        return statement, args, compiled._result_columns, CompilationContext(context)

    async def _one_hop(self, query: ClauseElement, rows: int | None) -> tuple[_Outcome, Any, Any]:
        assert self._connection is not None, "Connection is not acquired"
        sql, args, result_columns, context = self._compile(query)
        outcome: _Outcome = await self._connection._execute(  # type: ignore[no-untyped-call]
            _run, self._connection._conn, sql, args, rows
        )
        return outcome, result_columns, context

    def _records(self, outcome: _Outcome, result_columns: Any, context: Any) -> list[Any]:
        fetched, description, _, _ = outcome
        if not fetched:
            return []
        metadata = CursorResultMetaData(context, description)
        column_maps = self._statements.column_maps(result_columns)
        return [
            Record(
                Row(metadata, metadata._processors, metadata._keymap, row),  # type: ignore[arg-type]
                result_columns,
                self._dialect,
                column_maps,
            )
            for row in fetched
        ]

    async def fetch_all(self, query: ClauseElement) -> list[Any]:
        outcome, result_columns, context = await self._one_hop(query, None)
        return self._records(outcome, result_columns, context)

    async def fetch_one(self, query: ClauseElement) -> Any:
        outcome, result_columns, context = await self._one_hop(query, 1)
        records = self._records(outcome, result_columns, context)
        return records[0] if records else None

    async def fetch_tuples(self, statement: str, args: Sequence[Any]) -> list[Any]:
        assert self._connection is not None, "Connection is not acquired"
        outcome: _Outcome = await self._connection._execute(  # type: ignore[no-untyped-call]
            _run, self._connection._conn, statement, args, None
        )
        return outcome[0]

    async def execute(self, query: ClauseElement) -> Any:
        (_, _, lastrowid, rowcount), _, _ = await self._one_hop(query, 0)
        # What `databases` answers: the new row's id, else the rows changed.
        return lastrowid or rowcount

    def transaction(self) -> TransactionBackend:
        return _OneHopSQLiteTransaction(self)


class _OneHopSQLiteTransaction(SQLiteTransaction):
    """BEGIN, COMMIT and savepoints in one hand-off each (`databases` makes two)."""

    async def _run(self, sql: str) -> None:
        connection = self._connection._connection
        assert connection is not None, "Connection is not acquired"
        await connection._execute(_run, connection._conn, sql, (), 0)  # type: ignore[no-untyped-call]

    async def start(self, is_root: bool, extra_options: dict[Any, Any]) -> None:
        self._is_root = is_root
        if is_root:
            await self._run("BEGIN")
        else:
            self._savepoint_name = f"STARLETTE_SAVEPOINT_{uuid.uuid4().hex}"
            await self._run(f"SAVEPOINT {self._savepoint_name}")

    async def commit(self) -> None:
        await self._run("COMMIT" if self._is_root else f"RELEASE SAVEPOINT {self._savepoint_name}")

    async def rollback(self) -> None:
        await self._run("ROLLBACK" if self._is_root else f"ROLLBACK TO SAVEPOINT {self._savepoint_name}")


_WatchedSQLiteConnection, _ = _watch(CachedSQLiteConnection, _OneHopSQLiteTransaction)


# --- PostgreSQL ------------------------------------------------------------------


class CachedPostgresBackend(PostgresBackend):
    def __init__(self, database_url: DatabaseURL | str, **options: Any) -> None:
        super().__init__(database_url, **options)
        self.statements = StatementCache(self._dialect)
        self.writes = DirectoryWrites()

    def connection(self) -> CachedPostgresConnection:
        connection = _WatchedPostgresConnection(self, self._dialect, self.statements)
        connection._writes = self.writes
        return connection  # type: ignore[no-any-return]


class CachedPostgresConnection(PostgresConnection):
    def __init__(self, database: PostgresBackend, dialect: Dialect, statements: StatementCache) -> None:
        super().__init__(database, dialect)
        self._statements = statements

    def _compile(self, query: ClauseElement) -> Any:
        bound = self._statements.bind(query)
        if bound is None:
            return super()._compile(query)
        compiled, statement, names, values = bound
        # The dialect writes %(name)s; asyncpg wants $1, $2… (as `databases` does).
        numbers = {name: f"${index}" for index, name in enumerate(names, start=1)}
        return statement % numbers, [values[name] for name in names], compiled._result_columns

    async def fetch_tuples(self, statement: str, args: Sequence[Any]) -> list[Any]:
        # asyncpg prepares a statement once per connection and keeps it (its
        # statement cache): later calls are one round trip.
        assert self._connection is not None, "Connection is not acquired"
        return list(await self._connection.fetch(statement, *args))


_WatchedPostgresConnection, _ = _watch(CachedPostgresConnection, PostgresTransaction)


# --- SQLite reads on the event loop's thread ----------------------------------------


class ReadOnlyDatabase(ServiceDatabase):
    """A read-only view of a SQLite file whose queries run on the event loop's own
    thread, on one long-lived connection.

    aiosqlite runs every statement on a thread of its own connection: each query
    hands work to that thread and back, three times, and on a busy machine each
    hand-off waits for the scheduler (most of an eligibility batch's time was
    spent there). An indexed read of a local file takes a fraction of a
    millisecond and, in WAL mode, never waits for a writer, so it is cheaper to
    run it inline. Only for short indexed reads: writes, and anything that could
    wait for a lock, go through the pooled database.
    """

    SUPPORTED_BACKENDS = {  # noqa: RUF012 (as declared by `databases`)
        **Database.SUPPORTED_BACKENDS,
        "sqlite": "widget_server.database:InlineReadBackend",
    }


class InlineReadBackend(SQLiteBackend):
    def __init__(self, database_url: DatabaseURL | str, **options: Any) -> None:
        super().__init__(database_url, **options)
        self.statements = StatementCache(self._dialect)
        self._reader: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @property
    def reader(self) -> sqlite3.Connection:
        with self._lock:
            if self._reader is None:
                path = Path(self._database_url.database).resolve()
                self._reader = sqlite3.connect(
                    f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
                )
                # A reader waits only when SQLite recovers its WAL index: briefly.
                self._reader.execute("PRAGMA busy_timeout = 200")
            return self._reader

    async def disconnect(self) -> None:
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        await super().disconnect()

    def connection(self) -> InlineReadConnection:
        return InlineReadConnection(self, self._dialect, self.statements)


class InlineReadConnection(CachedSQLiteConnection):
    def __init__(self, backend: InlineReadBackend, dialect: Dialect, statements: StatementCache) -> None:
        super().__init__(backend._pool, dialect, statements)
        self._backend = backend
        self._reader: sqlite3.Connection | None = None

    async def acquire(self) -> None:
        self._reader = self._backend.reader

    async def release(self) -> None:
        self._reader = None

    async def fetch_all(self, query: ClauseElement) -> list[Any]:
        return self._fetch(query, None)

    async def fetch_one(self, query: ClauseElement) -> Any:
        rows = self._fetch(query, 1)
        return rows[0] if rows else None

    async def fetch_tuples(self, statement: str, args: Sequence[Any]) -> list[Any]:
        assert self._reader is not None, "Connection is not acquired"
        cursor = self._reader.execute(statement, args)
        try:
            return cursor.fetchall()
        finally:
            cursor.close()

    def _fetch(self, query: ClauseElement, limit: int | None) -> list[ReadRecord]:
        assert self._reader is not None, "Connection is not acquired"
        query_str, args, _, context = self._compile(query)
        cursor = self._reader.execute(query_str, args)
        try:
            raw = cursor.fetchall() if limit is None else cursor.fetchmany(limit)
            metadata = CursorResultMetaData(context, cursor.description)
        finally:
            cursor.close()
        keys = list(metadata.keys)
        processors = metadata._processors
        if not any(processors):
            return [ReadRecord(dict(zip(keys, row, strict=True))) for row in raw]
        return [
            ReadRecord(
                {
                    key: process(value) if process else value
                    for key, process, value in zip(keys, processors, row, strict=True)
                }
            )
            for row in raw
        ]

    async def execute(self, query: ClauseElement) -> Any:
        raise NotImplementedError("a read-only database: write through the main one")

    async def execute_many(self, queries: list[ClauseElement]) -> None:
        raise NotImplementedError("a read-only database: write through the main one")

    def transaction(self) -> Any:
        raise NotImplementedError("a read-only database: no transactions")


class ReadRecord(Mapping[str, Any]):
    """A row of the read-only database: `row._mapping`, `row["name"]`, `row[0]` and
    `row[column]`, as `databases` records, at the cost of one dict."""

    __slots__ = ("_mapping",)

    def __init__(self, mapping: dict[str, Any]) -> None:
        self._mapping = mapping

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int):
            return list(self._mapping.values())[key]
        if isinstance(key, ColumnElement):
            key = key.key
        return self._mapping[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping)

    def __len__(self) -> int:
        return len(self._mapping)


def read_database(database: Database) -> Database:
    """Where short indexed reads go: inline on a SQLite file, else `database` itself."""
    url = database.url
    if url.dialect != "sqlite" or url.database in ("", ":memory:") or url.options.get("mode") == "memory":
        return database
    return ReadOnlyDatabase(str(url))
