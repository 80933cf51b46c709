"""CSV cells a spreadsheet would not run: text starting with =, +, -, @, a tab or a carriage return gets a ' first."""
from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A value safe to open in a spreadsheet; numbers stay numbers (a negative loss is not a formula)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_row(values) -> list:
    """Every cell of a row through csv_cell."""
    return [csv_cell(v) for v in values]
