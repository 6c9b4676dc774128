"""JSON Lines in and out: reading with line numbers in every error, writing atomically (`sepit.data.files`)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from sepit.data.errors import DataError, location, raise_or_collect
from sepit.data.files import atomic_open


def read_jsonl(path: str | Path, problems: list[DataError] | None = None,
               source: object = None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line. A bad line raises DataError naming it; given a
    `problems` list, the error goes there and the line is skipped, so a checker can report every bad line.
    `source`: the file's name in messages (default: its path). A name ending in .gz is read through gzip."""
    source = path if source is None else source
    with open_binary(path) as handle:
        for number, raw in enumerate(handle, 1):
            try:
                row = parse_line(raw, location(source, number))
            except DataError as err:
                raise_or_collect(err, problems)
                continue
            if row is not None:
                yield number, row


def open_binary(path: str | Path) -> IO[bytes]:
    """The file's bytes, decompressed when its name ends in .gz."""
    return gzip.open(path, "rb") if str(path).lower().endswith(".gz") else open(path, "rb")


def parse_line(raw: bytes, where: str) -> dict | None:
    """One line -> its object (None if blank), or a DataError naming `where`."""
    try:
        line = raw.decode("utf-8-sig")  # a byte-order mark, which some editors write first, is not text
    except UnicodeDecodeError as err:
        raise DataError(where, f"not UTF-8 text ({err.reason} at byte {err.start})", "Save the file as UTF-8.") from None
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(where, f"malformed JSON ({err.msg} at column {err.colno})",
                        "Each line must hold exactly one JSON object; fix or remove this line.") from None
    if not isinstance(row, dict):
        raise DataError(where, f"expected a JSON object, got {type(row).__name__}",
                        "Each line must hold exactly one JSON object.")
    return row


def field(row: dict, key: str, kind: type | tuple[type, ...], where: str, fix: str = "") -> Any:
    """row[key], checked to be present and of `kind`."""
    if key not in row or row[key] is None:
        raise DataError(where, f"missing field {key!r}", fix or f"Add {key!r} to the record.")
    value = row[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(where, f"field {key!r} must be {names}, got {type(value).__name__}", fix)
    return value


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict]) -> None:
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
