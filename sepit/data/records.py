"""The records of a benchmark's data file (a JSON array, JSON Lines, CSV or TSV, any of them gzipped), each with
its place in the file for messages. A task mapping (`sepit.data.mapping`) turns them into samples."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterator

from sepit.data.errors import DataError, raise_or_collect
from sepit.data.jsonl import open_binary, read_jsonl

FILE_TYPES = {".json": "json", ".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv"}
csv.field_size_limit(2**31 - 1)  # a field may hold a whole protein, or a long answer


def lookup(record: Any, path: str) -> Any:
    """record["a"]["b"] for the path "a.b"; None where any part is missing."""
    value = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def read_records(path: Path, file_type: str | None = None, columns: list[str] | None = None,
                 records: str | None = None, problems: list[DataError] | None = None
                 ) -> Iterator[tuple[int, str, dict]]:
    """(record number, its place in the file for messages, the record). The number: the line in JSONL, the
    position from 1 in a JSON array or among a CSV/TSV file's data rows. `file_type` (default: from the name),
    `columns` (a CSV/TSV without a header line), `records` (the dotted path of the array in a JSON document).
    Given `problems`, a bad record's error goes there and the record is skipped."""
    file_type = file_type or FILE_TYPES.get(Path(path.name.removesuffix(".gz")).suffix.lower())
    if file_type is None:
        raise DataError(str(path), "unknown data file type",
                        "Name it .json, .jsonl, .csv or .tsv (optionally .gz), or set file_type in the mapping.")
    if file_type == "jsonl":
        for line, record in read_jsonl(path, problems):
            yield line, f"line {line}", record
    elif file_type == "json":
        yield from _json_records(path, records, problems)
    else:
        yield from _table_records(path, file_type == "tsv", columns, problems)


def _table_records(path: Path, tsv: bool, columns: list[str] | None, problems: list[DataError] | None
                   ) -> Iterator[tuple[int, str, dict]]:
    with open_binary(path) as handle:
        # TSV has no quoting (a value holds no tab), so quotes are kept as written; CSV values may be quoted.
        dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if tsv else {}
        reader = csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8-sig", newline=""), fieldnames=columns,
                                **dialect)
        for number, record in enumerate(_guarded(reader, path), 1):
            if None in record:
                raise_or_collect(DataError(f"{path.name}, line {reader.line_num}", "more values than the header "
                                           "has columns", "Quote values that contain the delimiter."), problems)
                continue
            yield number, f"line {reader.line_num}", record


def _json_records(path: Path, records: str | None, problems: list[DataError] | None
                  ) -> Iterator[tuple[int, str, dict]]:
    try:
        with open_binary(path) as handle:
            document = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(str(path), f"not a JSON document ({err})",
                        "A .json data file holds one array of records; use .jsonl for one record per line.") from None
    found = lookup(document, records) if records else document
    if not isinstance(found, list):
        where = f"key 'records' ({records!r})" if records else "the top level"
        what = "not found" if found is None else f"{type(found).__name__}, not an array of records"
        raise DataError(str(path), f"{where} is {what}", "Set 'records' to the dotted path of the array in the "
                        "mapping.")
    for number, record in enumerate(found, 1):
        if not isinstance(record, dict):
            raise_or_collect(DataError(f"{path.name}, item {number}", f"a record must be an object, got "
                                       f"{type(record).__name__}", "Make every item of the array an object."),
                             problems)
            continue
        yield number, f"item {number}", record


def _guarded(reader: csv.DictReader, path: Path) -> Iterator[dict]:
    """The reader's records; text that is not UTF-8, or a malformed row, is a DataError naming the line."""
    try:
        yield from reader
    except UnicodeDecodeError as err:
        raise DataError(f"{path.name}, after line {reader.line_num}", f"not UTF-8 text ({err.reason})",
                        "Save the file as UTF-8.") from None
    except csv.Error as err:
        raise DataError(f"{path.name}, line {reader.line_num}", f"not a well-formed row ({err})",
                        "Check its quotes and delimiters.") from None
