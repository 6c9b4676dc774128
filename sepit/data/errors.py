"""The one error type of the data layer: says which file and record is wrong, what is wrong, how to fix it."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data. The message names the place (file, line or record id), the problem and the fix."""

    def __init__(self, where: str, problem: str, fix: str = ""):
        self.where, self.problem, self.fix = where, problem, fix
        super().__init__(f"{where}: {problem}" + (f". {fix}" if fix else ""))


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
