"""Prebuilt statements run straight on the database driver's cursor.

SQLAlchemy Core spends some 15-20 us of Python on every statement it runs (an execution context,
parameter processing through the compiled form, events, a cursor result and its metadata), several
times what SQLite itself spends on a keyed read. The request path's statements never change
(:mod:`keyhall.storage.hot_queries` builds them once, with bound parameters), so each is compiled
once per dialect here into a :class:`Prepared`: its SQL text, its parameters in the driver's order
and the bind and result processors of their column types, the very ones SQLAlchemy would apply.
Running one is then: process the parameters, ``cursor.execute``, process the rows.

What stays SQLAlchemy's:
- the transaction: on a ``Connection`` (:func:`execute`), it begins (``Connection.begin``, with its
  ``begin`` events: ``BEGIN IMMEDIATE`` on SQLite) before the first statement, and commits or rolls
  back as before; on a pooled connection with no ``Connection`` (:func:`execute_on_driver`), the
  unit of work began it on the driver the same way (``storage.engine.raw_begin``);
- a driver error becomes SQLAlchemy's exception of the same kind (``IntegrityError``...), and a
  connection the database dropped is invalidated, as a Core ``execute`` would do
  (``Connection._handle_dbapi_exception`` itself where there is a ``Connection``);
- statement listeners: when any ``before_cursor_execute`` listener is attached (the tests that count
  statements), the statement runs through Core so that they see it.

A statement that this module cannot run as it is falls back to Core (:func:`prepare` returns
``None``): ``text()`` (its columns are known only once it has run), expanding ``IN`` lists, and
inserts or updates whose columns have Python-side defaults that SQLAlchemy computes per execution.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Protocol, cast

from sqlalchemy import Connection, Executable
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any] | None


class PreparedRow(tuple[Any, ...]):
    """A row: a tuple whose columns are attributes too, and ``_mapping`` by column key, as a Core
    ``Row`` offers them. Subclassed per statement (:func:`_row_type`)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=True))


def _row_type(keys: Sequence[str]) -> type[PreparedRow] | None:
    if len(set(keys)) != len(keys) or not all(key.isidentifier() and not key.startswith("_") for key in keys):
        return None
    namespace: dict[str, Any] = {"__slots__": (), "_fields": tuple(keys)}
    for index, key in enumerate(keys):
        namespace[key] = property(itemgetter(index))
    return type("PreparedRow", (PreparedRow,), namespace)


class StatementResult(Protocol):
    """What the request path asks of a statement's result: a ``CursorResult`` or a :class:`PreparedResult`."""

    @property
    def rowcount(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...

    def first(self) -> Any: ...

    def scalar(self) -> Any: ...

    def scalar_one(self) -> Any: ...


class PreparedResult:
    """What the request path asks of a ``CursorResult``: rows in order, ``first``, ``scalar``,
    ``scalar_one``, ``rowcount``."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int):
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return list(self._rows)

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        if len(self._rows) != 1:
            raise (NoResultFound if not self._rows else MultipleResultsFound)("expected exactly one row")
        return self._rows[0][0]


class Prepared:
    """One statement compiled for one dialect (module docstring)."""

    __slots__ = ("_binds", "_constants", "_names", "_results", "_row", "returns_rows", "sql")

    def __init__(self, compiled: SQLCompiler, dialect: Dialect, names: Sequence[str], constants: dict[str, Any],
                 row: type[PreparedRow] | None):
        self.sql = compiled.string
        processors = compiled._bind_processors
        self._names: tuple[str, ...] = tuple(names)
        self._binds = tuple((name, cast(Processor, processors.get(name))) for name in names)
        self._constants = constants
        self.returns_rows = bool(compiled._result_columns)
        self._row = row
        self._results: tuple[Processor, ...] = tuple(
            column.type._cached_result_processor(dialect, None) for column in compiled._result_columns)

    def parameters(self, params: dict[str, Any], positional: bool) -> Sequence[Any] | dict[str, Any]:
        if self._constants:
            params = {**self._constants, **params}
        values = [params[name] if process is None else process(params[name]) for name, process in self._binds]
        return values if positional else dict(zip(self._names, values, strict=True))

    def rows(self, raw: list[Sequence[Any]]) -> list[Any]:
        processors, row = self._results, self._row
        assert row is not None
        if not any(processors):
            return [row(values) for values in raw]
        return [row([value if process is None else process(value)
                     for process, value in zip(processors, values, strict=True)]) for values in raw]


_MISSING = object()
#: Compiled statements by (statement, dialect name, parameter names). The request path's statements
#: are module-level constants, a few dozen; past this many, a statement is not kept, and runs through
#: Core, rather than let statements built per call fill the memory.
_CACHE_LIMIT = 512
_cache: dict[tuple[Executable, str, frozenset[str]], Prepared | None] = {}


def prepare(statement: Executable, dialect: Dialect, keys: frozenset[str]) -> Prepared | None:
    """``statement`` compiled for ``dialect`` with the parameters ``keys``, or ``None`` when it must
    run through Core (module docstring). Kept per statement object: the statements are module-level
    constants, built once."""
    cache_key = (statement, dialect.name, keys)
    found = _cache.get(cache_key, _MISSING)
    if found is not _MISSING:
        return cast(Prepared | None, found)
    if len(_cache) >= _CACHE_LIMIT:
        return None
    prepared = _compile(statement, dialect, keys)
    _cache[cache_key] = prepared
    return prepared


def _compile(statement: Executable, dialect: Dialect, keys: frozenset[str]) -> Prepared | None:
    if not (statement.is_select or statement.is_dml):  # text(): its columns are not known before it runs
        return None
    compiled = statement.compile(dialect=dialect, column_keys=sorted(keys))  # type: ignore[attr-defined]
    if not isinstance(compiled, SQLCompiler):
        return None
    if (compiled.insert_prefetch or compiled.update_prefetch or compiled.post_compile_params
            or compiled.literal_execute_params or compiled.escaped_bind_names):
        return None
    binds = {name: bind for bind, name in compiled.bind_names.items()}
    names = list(compiled.positiontup or ()) if dialect.positional else list(binds)
    constants: dict[str, Any] = {}
    for name in names:
        bind = binds[name]
        if bind.expanding or bind.callable is not None:
            return None
        if name not in keys:
            if bind.value is None:  # a parameter the caller did not give: Core would raise, so let it
                return None
            constants[name] = bind.value
    row = _row_type([column.keyname for column in compiled._result_columns]) if compiled._result_columns else None
    if compiled._result_columns and row is None:
        return None
    return Prepared(compiled, dialect, names, constants, row)


def execute(connection: Connection, prepared: Prepared, params: dict[str, Any]) -> PreparedResult:
    """Run ``prepared`` in ``connection``'s transaction (begun here when none is open)."""
    if not connection.in_transaction():
        connection.begin()
    dialect = connection.dialect
    values = prepared.parameters(params, dialect.positional)
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(prepared.sql, values)
        rows = prepared.rows(list(cursor.fetchall())) if prepared.returns_rows else []
        return PreparedResult(rows, cursor.rowcount)
    except dialect.loaded_dbapi.Error as exc:
        connection._handle_dbapi_exception(exc, prepared.sql, values, cursor, None)  # raises
        raise
    finally:
        cursor.close()


def execute_on_driver(pooled: PoolProxiedConnection, dialect: Dialect, prepared: Prepared,
                      params: dict[str, Any]) -> PreparedResult:
    """Run ``prepared`` on a pooled connection whose transaction was begun on the driver (no
    ``Connection``: see ``storage.unit_sessions``). A driver error becomes SQLAlchemy's exception of
    the same kind, as Core would raise it; a connection the database dropped is invalidated."""
    values = prepared.parameters(params, dialect.positional)
    cursor = pooled.cursor()
    try:
        cursor.execute(prepared.sql, values)
        rows = prepared.rows(list(cursor.fetchall())) if prepared.returns_rows else []
        return PreparedResult(rows, cursor.rowcount)
    except dialect.loaded_dbapi.Error as exc:
        if dialect.is_disconnect(exc, pooled.dbapi_connection, cursor):
            pooled.invalidate(exc)
        raise DBAPIError.instance(prepared.sql, values, exc, dialect.loaded_dbapi.Error,
                                  dialect=dialect) from exc
    finally:
        cursor.close()
