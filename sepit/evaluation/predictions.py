"""Prediction files: the rows `sepit bench` writes and `sepit score` reads (docs/architecture.md, docs/evaluation.md).

One JSON object per sample: `task`, `id`, `prediction`, `reference`, `kind`, `choices`, plus extras that make a
row checkable and resumable: the model `fingerprint` and `generation_hash` (together with task and id they
key the row), hashes of the prompt, protein sequence and reference (lm-eval style), and whatever the model
reported by `answer()`.

While predicting, each process appends its rows to its own journal file as they are produced (one write and
an fsync per batch), so a killed run loses at most the batch in flight. When every sample is done the
journals are merged into one sorted file per task, written atomically, and removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import socket
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from sepit.data.errors import DataError, location
from sepit.data.jsonl import field, parse_line, read_jsonl, write_jsonl_atomic
from sepit.data.sample import InstructionSample, check_choices

KINDS = ("open", "closed")


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def prediction_row(sample: InstructionSample, prediction: str, model: str, fingerprint: str,
                   generation_hash: str, extras: dict[str, Any] | None = None) -> dict[str, Any]:
    row = {"task": sample.task, "id": sample.id, "prediction": prediction, "reference": sample.reference or None,
           "kind": sample.kind, "choices": list(sample.choices) if sample.choices is not None else None,
           "model": model, "fingerprint": fingerprint, "generation_hash": generation_hash,
           "prompt_hash": text_hash(sample.instruction), "protein_hash": text_hash(sample.protein.sequence)}
    if sample.reference:  # a question of a file without answers has none (null)
        row["reference_hash"] = text_hash(sample.reference)
    row.update(extras or {})
    return row


def mismatch(row: dict, sample: InstructionSample) -> str | None:
    """What differs between a saved row and the sample it claims to answer (None if nothing does): a row
    predicted for an older version of a task must not be scored against, or mixed with, the current one."""
    if (row["reference"] or "") != sample.reference:
        return f"its reference {row['reference']!r} is not the task's {sample.reference!r}"
    if (row.get("choices") is None) != (sample.choices is None) or (
            sample.choices is not None and list(row["choices"]) != list(sample.choices)):
        return "its choices are not the task's"
    for key, text in (("prompt_hash", sample.instruction), ("protein_hash", sample.protein.sequence)):
        if key in row and row[key] != text_hash(text):
            return f"its {key.split('_')[0]} is not the task's"
    return None


def check_row(row: dict, where: str) -> dict:
    """A row in the predictions format, or a DataError naming the place and the fix."""
    for key in ("task", "id"):
        if not field(row, key, str, where):
            raise DataError(where, f"field {key!r} is empty", f"Give every row a non-empty {key!r}.")
    # null: a question without a known answer (a benchmark file of questions only), predicted but never scored
    fix = "Give every row its reference answer, or null for a question without one."
    if "reference" not in row:
        raise DataError(where, "missing field 'reference'", fix)
    if row["reference"] is not None and not field(row, "reference", str, where, fix):
        raise DataError(where, "field 'reference' is empty", fix)
    if not isinstance(row.get("prediction"), str):
        raise DataError(where, f"field 'prediction' must be a string, got {type(row.get('prediction')).__name__}",
                        "Write the model's answer as text (an empty string if it gave none).")
    kind = field(row, "kind", str, where)
    if kind not in KINDS:
        raise DataError(where, f"kind must be 'open' or 'closed', got {kind!r}",
                        "Use 'closed' for rows with choices and 'open' for free-text answers.")
    choices = row.get("choices")
    if kind == "closed":
        if choices is None:
            raise DataError(where, "a closed-set row needs 'choices', a list of at least two strings",
                            'Add the options, e.g. "choices": ["yes", "no"].')
        check_choices(choices, row["reference"], where)
        scores = row.get("loglikelihoods")
        if scores is not None and (not isinstance(scores, list) or len(scores) != len(choices) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in scores)):
            raise DataError(where, "'loglikelihoods' must hold one finite number per choice",
                            "Write the model's log-likelihood of each choice, in the order of 'choices'.")
    return row


def read_predictions(path: str | Path) -> dict[str, list[dict]]:
    """Rows by task from a predictions file or a directory of `*.jsonl` files; a duplicate is an error."""
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), "not found", "Give the path of a predictions file or of a directory of them.")
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files:
        raise DataError(str(path), "no predictions (*.jsonl) found", "Point --predictions at a file or a "
                        "directory holding prediction JSONL files.")
    by_task: dict[str, list[dict]] = {}
    seen: dict[tuple[str, str], str] = {}
    for file in files:
        for number, row in read_jsonl(file):
            where = location(file, number, row.get("id") if isinstance(row.get("id"), str) else None)
            check_row(row, where)
            key = (row["task"], row["id"])
            if key in seen:
                raise DataError(where, f"sample {row['id']!r} of task {row['task']!r} appears twice (first at "
                                f"{seen[key]})", "Keep one row per task and sample id.")
            seen[key] = where
            by_task.setdefault(row["task"], []).append(row)
    if not by_task:
        raise DataError(str(path), "holds no prediction rows", "Score a file with one JSON row per sample.")
    return by_task


class PredictionStore:
    """`<output>/predictions/<task>.jsonl` plus the journals of runs in progress, for one model and settings."""

    def __init__(self, output: str | Path, fingerprint: str, generation_hash: str):
        self.folder = Path(output) / "predictions"
        self.journals = Path(output) / "journal"
        self.fingerprint, self.generation_hash = fingerprint, generation_hash
        self.journals_read: dict[Path, int] = {}  # by the last done(): journal -> bytes read

    def done(self) -> dict[tuple[str, str], dict]:
        """Rows already predicted, final or journalled, by (task, id). Rows of another model or other
        generation settings are an error: mixing them would score two systems as one.

        Another job may be merging meanwhile (`finish` writes the final files, then removes the journals it
        merged): the journals are read first, a vanished one skipped, and the final files after them, so every
        row is seen in one or the other."""
        rows: dict[tuple[str, str], dict] = {}
        self.journals_read = {}
        for file in sorted(self.journals.glob("*.jsonl")) if self.journals.is_dir() else []:
            try:
                data = file.read_bytes()
            except FileNotFoundError:
                continue
            self.journals_read[file] = len(data)
            for number, row in _whole_lines(data, file):
                rows.setdefault(self._checked(row, location(file, number)), row)
        for file in sorted(self.folder.glob("*.jsonl")) if self.folder.is_dir() else []:
            for number, row in read_jsonl(file):
                rows[self._checked(row, location(file, number))] = row  # a final row stands over a journalled one
        return rows

    def _checked(self, row: dict, where: str) -> tuple[str, str]:
        check_row(row, where)
        if (row.get("fingerprint"), row.get("generation_hash")) != (self.fingerprint, self.generation_hash):
            raise DataError(where, "holds predictions of another model or other generation settings "
                            f"(fingerprint {row.get('fingerprint')}, generation {row.get('generation_hash')}; "
                            f"this run: {self.fingerprint}, {self.generation_hash})",
                            "Use another --output directory, or pass --fresh to discard them.")
        return row["task"], row["id"]

    def journal(self, rank: int, shard: str = "") -> "Journal":
        """A new journal file of this process, named after the host, the shard and the global rank that write it
        (`node1-shard2of3-rank0-<pid>-<ns>.jsonl`): concurrent jobs never share a file."""
        host = re.sub(r"[^\w.-]", "_", socket.gethostname()) or "host"
        return Journal(self.journals / f"{host}-{shard + '-' if shard else ''}rank{rank}-{os.getpid()}-"
                                       f"{time.time_ns()}.jsonl")

    def finish(self, rows: Iterable[dict]) -> dict[str, Path]:
        """Write one sorted file per task atomically, then drop the journals the last `done()` read whole (their
        rows are in `rows`). A journal another job started since, or is still appending to, is left alone."""
        by_task: dict[str, list[dict]] = {}
        for row in rows:
            by_task.setdefault(row["task"], []).append(row)
        paths = {}
        for task, task_rows in by_task.items():
            paths[task] = self.folder / f"{task}.jsonl"
            write_jsonl_atomic(paths[task], sorted(task_rows, key=lambda r: r["id"]))
        for journal, size in self.journals_read.items():
            _remove_if_finished(journal, size)
        return paths


def _remove_if_finished(journal: Path, size: int) -> None:
    """Remove a merged journal unless its writer is alive (it holds the file's flock while it writes) or it grew
    since it was read. Where the filesystem has no flock, the size alone decides."""
    try:
        with open(journal, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a live job's journal: the next merge takes it
            except OSError:
                pass
            if os.fstat(handle.fileno()).st_size == size:
                journal.unlink()
    except FileNotFoundError:
        pass  # another job merged it too


class Journal:
    """Append-only rows of one process; each batch is one write, flushed and synced before returning. The
    process holds the file's flock while it writes, so a merging job leaves a live journal alone."""

    def __init__(self, path: Path):
        self.path = path
        self._handle = None

    def append(self, rows: Sequence[dict]) -> None:
        if not rows:
            return
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")
            try:
                fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pass  # a filesystem without flock: merging falls back to the file's size
        self._handle.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _whole_lines(data: bytes, path: Path) -> Iterator[tuple[int, dict]]:
    """(line, row) of a journal's bytes up to its last whole line: a line cut short by a kill, or one another job is
    writing right now (a shard on another node), is left out. The file is never changed: its writer may be alive."""
    whole = data[:data.rfind(b"\n") + 1]
    for number, raw in enumerate(whole.splitlines(), 1):
        row = parse_line(raw, location(path, number))
        if row is not None:
            yield number, row
