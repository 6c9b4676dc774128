"""Errors of the data layer: which file and record is wrong, what is wrong, how to fix it; a checker that
reports every bad record collects them instead of stopping at the first."""

from __future__ import annotations

from sepit.errors import InputError

DataError = InputError  # the data layer's name for the one user-facing error (sepit/errors.py)


def raise_or_collect(error: DataError, problems: list[DataError] | None) -> None:
    """Raise `error`, or, given a `problems` list (a checker reporting every bad record), add it there."""
    if problems is None:
        raise error
    problems.append(error)


def location(source: object = None, line: int | None = None, record: str | None = None) -> str:
    """'file, line 12 (record P12345)' with whatever parts are known."""
    parts = [str(source) if source is not None else "<input>"]
    if line is not None:
        parts.append(f"line {line}")
    text = ", ".join(parts)
    return f"{text} (record {record!r})" if record is not None else text
