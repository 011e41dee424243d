"""CSV for spreadsheets: one writer for the app's downloads and the CLI's `--out`.

A cell whose text starts with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula
to a spreadsheet (OWASP, "CSV injection"): a token or a prompt like `=cmd|…` would run when
a colleague opens the file. Such text cells get a leading `'`, which spreadsheets read as
"this is text"; numbers (negative ones included) are never touched, and Parquet keeps
every string exactly.
"""
from __future__ import annotations

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """`value` with a leading `'` when it is text a spreadsheet would run; else as it is."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def table_csv(frame: pd.DataFrame) -> bytes:
    """The table as CSV for a spreadsheet, its text cells guarded by `spreadsheet_safe`."""
    text_columns = [c for c in frame.columns
                    if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])]
    guarded = frame.assign(**{str(c): frame[c].map(spreadsheet_safe) for c in text_columns})
    # CRLF rows, as RFC 4180 has them: the csv writer then quotes any cell holding a \r or a
    # \n (with \n rows, a token's lone \r went out unquoted and split its row in two)
    return guarded.to_csv(index=False, lineterminator="\r\n").encode("utf-8")
