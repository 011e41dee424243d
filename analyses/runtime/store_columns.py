"""A result's tables as rows of the store's DuckDB tables (`tbl_<kind>_<table>_v<n>`): each
table made from the first rows it is given, gaining columns as results bring new ones, and
widened (never rounded) when integers meet fractions. A column whose values it cannot take
unchanged is a TableConflict, and the result is returned uncached (`store.py`)."""
from __future__ import annotations

import duckdb
import pandas as pd

NULL_TYPE = '"NULL"'  # DuckDB's type of a column that holds only NULLs (or of an empty frame's)
NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                 "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE")


class TableConflict(ValueError):
    """A result's column cannot go into the store's table without changing its values."""


def quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def insert_rows(cur, key: str, name: str, frame: pd.DataFrame) -> None:
    """Append `frame`'s rows to table `name`, making or widening it to take them."""
    if frame.empty:
        return  # no rows, no column types: the catalogue row keeps its columns
    staged = frame.reset_index(drop=True)
    staged.insert(0, "row_index", range(len(staged)))
    staged.insert(0, "result_key", key)
    view = f"staged_{name}"  # on this operation's own cursor: it goes when the cursor closes
    cur.register(view, staged)
    cur.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM {view} LIMIT 0")
    have = {row[0]: row[1] for row in cur.execute(f"DESCRIBE {name}").fetchall()}
    for column, column_type, *_ in cur.execute(f"DESCRIBE SELECT * FROM {view}").fetchall():
        if column not in have:  # a column the table gained since (older rows: NULL)
            cur.execute(f"ALTER TABLE {name} ADD COLUMN {quoted(column)} {column_type}")
            continue
        wider = widened_type(cur, name, column, have[column], column_type)
        if wider != have[column]:
            cur.execute(f"ALTER TABLE {name} ALTER COLUMN {quoted(column)} SET DATA TYPE {wider}")
    cur.execute(f"INSERT INTO {name} BY NAME SELECT * FROM {view}")


def widened_type(cur, table: str, column: str, have: str, incoming: str) -> str:
    """The type table `table`'s `column` needs to take values of type `incoming` unchanged:
    its own, the incoming one when it holds only NULLs so far, or the wider number type
    (DuckDB would round 1.5 into a BIGINT column). Anything else is a TableConflict."""
    if incoming in (have, NULL_TYPE):
        return have
    if have == NULL_TYPE:
        return incoming
    try:
        (common,) = cur.execute(f"SELECT typeof([NULL::{have}, NULL::{incoming}][1])").fetchone()
    except duckdb.Error:
        common = None
    if common == have:
        return have  # e.g. INTEGER values into a BIGINT column
    if common is not None and is_number(have) and is_number(common):
        return common
    raise TableConflict(f"table {table}: column {column!r} holds {have}, this result's holds {incoming}")


def is_number(column_type: str) -> bool:
    return column_type in NUMERIC_TYPES or column_type.startswith("DECIMAL")
