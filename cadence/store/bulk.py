"""Bulk writes at the driver's speed, and time columns read raw until they are needed.

Enrolling 100,000 leads or migrating 200,000 enrollments writes rows in the tens of
thousands; SQLAlchemy's per-row parameter processing was most of that cost. These
helpers compile a statement once per dialect and run each column's bind processor
only where values differ, so the rows written are exactly what `conn.execute(table.insert(),
dicts)` writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

from sqlalchemy import Column, Connection, Table, type_coerce
from sqlalchemy.types import NullType


def insert_many(
    conn: Connection,
    table: Table,
    varying: tuple[str, ...],
    rows: list[tuple[Any, ...]],
    constant: dict[str, Any],
    prebound: tuple[str, ...] = (),
) -> None:
    """INSERT `rows` (values of the `varying` columns) plus `constant` columns, in one executemany.

    The same rows SQLAlchemy's `conn.execute(table.insert(), dicts)` writes, at the driver's
    speed: the columns' bind processors (UTC datetimes, JSON) run once for the constant values
    and once per row only for the varying ones, and the statement is compiled once for the
    connection's dialect (placeholders and casts included), not re-processed row by row.
    Columns named in `prebound` already hold driver values (see `bind_value`).
    """
    dialect = conn.dialect
    compiled = table.insert().compile(dialect=dialect, column_keys=[*varying, *constant], for_executemany=True)
    fixed = {name: _bound(table, name, dialect, [value])[0] for name, value in constant.items()}
    columns = [
        [row[i] for row in rows] if name in prebound else _bound(table, name, dialect, [row[i] for row in rows])
        for i, name in enumerate(varying)
    ]
    params: list[Any]
    if compiled.positional:
        # Each row is (*varying values, *constant values), reordered into the statement's placeholders.
        given = [*varying, *fixed]
        slots = [given.index(name) for name in compiled.positiontup or ()]
        pick = itemgetter(*slots) if len(slots) > 1 else (lambda values: (values[slots[0]],))
        tail = tuple(fixed.values())
        params = [pick(values + tail) for values in zip(*columns, strict=True)]
    else:
        params = [{**fixed, **dict(zip(varying, values, strict=True))} for values in zip(*columns, strict=True)]
    conn.exec_driver_sql(compiled.string, params)


def _bound(table: Table, name: str, dialect: Any, values: list[Any]) -> list[Any]:
    """`values` of column `name` as the driver receives them (through the type's bind processor).

    The processor is the dialect's implementation of the type: the generic `JSON` has none
    for psycopg (which needs its `Json` wrapper), and SQLite's datetime storage format lives
    in its dialect `DATETIME`, so the generic types would hand the driver the wrong values.
    """
    process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
    return [process(v) for v in values] if process else values


def bind_value(conn: Connection, table: Table, name: str) -> Callable[[Any], Any]:
    """The driver-side converter of one column (JSON, UTC datetimes), to pre-bind repeated values once."""
    dialect = conn.dialect
    process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
    return process or (lambda value: value)


def bind_shared(conn: Connection, table: Table, name: str, values: Iterable[Any]) -> list[Any]:
    """Driver values of one column for many rows, each distinct *object* converted once.

    Rows that share a value (a history detail common to thousands of leads) pass the same
    object, and its JSON is written once rather than once a row.
    """
    to_driver = bind_value(conn, table, name)
    bound: dict[int, Any] = {}
    out = []
    for value in values:
        driver = bound.get(id(value))
        if driver is None:
            driver = bound[id(value)] = to_driver(value)
        out.append(driver)
    return out


def raw(column: Column[Any]) -> Any:
    """A column as the driver returns it: time columns most rows never need are not converted."""
    return type_coerce(column, NullType()).label(column.name)


def reader(conn: Connection, column: Column[Any]) -> Callable[[Any], Any]:
    """Converts one raw value of a column the way the column's type would have."""
    dialect = conn.dialect
    process = column.type.dialect_impl(dialect).result_processor(dialect, None)
    return process or (lambda value: value)
