"""Leaderboard submissions: checked as data, re-scored from their predictions, then placed beside other results.

A submission is a folder or an archive (docs/leaderboard.md) holding `submission.json` (who and what),
`predictions/*.jsonl` (the rows of docs/evaluation.md) and, optionally, the `results.json` its authors computed. Nothing
in it is executed, and numbers in it are never trusted: the predictions are scored again with the same code
as `sepit score`, and a claimed number that differs from the re-score is a problem like any other. Every
problem is collected, with file and line, before the verdict, so one round fixes them all.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, get_args

from sepit.data.errors import DataError, location
from sepit.data.jsonl import read_jsonl
from sepit.evaluation.predictions import check_row, mismatch
from sepit.interface import Modality
from sepit.registry import METRICS, RegistryError
from sepit_leaderboard.archive import is_archive, refuse_links, unpack

SUBMISSION_SCHEMA_VERSION = 1  # of submission.json (docs/leaderboard.md); results files have their own
METADATA = "submission.json"
CLAIMS = "results.json"
TEXT_FIELDS = ("name", "description", "training_data", "contact", "licence")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+:@ -]{0,79}$")
CLAIM_TOLERANCE = 0.005  # half the last digit the board prints; the re-score of the same rows is exact
SHOWN_PER_KIND = 20


@dataclass
class Submission:
    folder: Path
    metadata: dict
    rows: dict[str, list[dict]] = field(default_factory=dict)  # task -> rows
    problems: list[str] = field(default_factory=list)

    def problem(self, where: str, text: str) -> None:
        self.problems.append(f"{where}: {text}")


@contextmanager
def opened(path: str | Path) -> Iterator[Path]:
    """The submission's folder: the folder given, or an archive unpacked into a temporary one."""
    path = Path(path)
    if path.is_dir():
        refuse_links(path)
        yield path
        return
    if not is_archive(path):
        raise DataError(str(path), "is neither a submission folder nor an archive (.zip, .tar, .tar.gz, .tgz)",
                        "Give the folder holding submission.json, or an archive of it.")
    with tempfile.TemporaryDirectory(prefix="sepit-submission-") as tmp:
        unpack(path, Path(tmp))
        roots = [p.parent for p in Path(tmp).rglob(METADATA)]
        yield roots[0] if len(roots) == 1 else Path(tmp)


def read_submission(folder: Path) -> Submission:
    """Metadata and rows with every problem of form found so far (the task checks come after)."""
    metadata: dict[str, Any] = {}
    sub = Submission(folder, metadata)
    meta_path = folder / METADATA
    where = METADATA
    try:
        loaded = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        sub.problem(where, "missing; a submission needs its metadata (docs/leaderboard.md)")
        loaded = {}
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        sub.problem(where, f"is not valid JSON ({err})")
        loaded = {}
    if not isinstance(loaded, dict):
        sub.problem(where, "must hold a JSON object")
        loaded = {}
    metadata.update(loaded)
    if loaded:
        _check_metadata(sub)
    _read_rows(sub)
    return sub


def _check_metadata(sub: Submission) -> None:
    meta, where = sub.metadata, METADATA
    if meta.get("schema_version") != SUBMISSION_SCHEMA_VERSION:
        sub.problem(where, f"schema_version must be {SUBMISSION_SCHEMA_VERSION}, got {meta.get('schema_version')!r}")
    for key in TEXT_FIELDS:
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            sub.problem(where, f"field {key!r} must be a non-empty string")
    if isinstance(meta.get("name"), str) and meta["name"].strip() and not NAME.match(meta["name"]):
        sub.problem(where, f"name {meta['name']!r} must be 1-80 letters, digits, spaces or ._+:@- and start with a "
                    "letter or digit")
    if meta.get("modality") not in get_args(Modality):
        sub.problem(where, f"modality must be one of {', '.join(get_args(Modality))}, got {meta.get('modality')!r}")
    for key in ("params_total", "params_active"):
        value = meta.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            sub.problem(where, f"{key} must be a whole number >= 0 or null, got {value!r}")
    total, active = meta.get("params_total"), meta.get("params_active")
    if isinstance(total, int) and isinstance(active, int) and active > total:
        sub.problem(where, f"params_active ({active}) exceeds params_total ({total})")
    profile = meta.setdefault("metric_profile", "sepit_v1")
    try:
        METRICS.get(profile)
    except RegistryError:
        sub.problem(where, f"metric_profile {profile!r} is not registered (known: {', '.join(METRICS.names())})")
    tasks = meta.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        sub.problem(where, "field 'tasks' must map each submitted task to its {\"version\", \"dataset_hash\"}")
        meta["tasks"] = {}
        return
    for name, info in tasks.items():
        if not isinstance(info, dict) or not all(isinstance(info.get(k), str) for k in ("version", "dataset_hash")):
            sub.problem(where, f"tasks.{name} must be {{\"version\": str, \"dataset_hash\": str}}")


def _read_rows(sub: Submission) -> None:
    folder = sub.folder / "predictions"
    files = sorted(folder.rglob("*.jsonl")) if folder.is_dir() else []
    if not files:
        sub.problem("predictions/", "holds no predictions (*.jsonl)")
    for path in files:
        name = path.relative_to(sub.folder)
        unreadable: list[DataError] = []
        for number, row in read_jsonl(path, unreadable, source=name):
            where = location(name, number)
            try:
                check_row(row, where)
            except DataError as err:
                sub.problems.append(str(err))
                if not (isinstance(row.get("task"), str) and isinstance(row.get("id"), str)):
                    continue
                row["prediction"] = None  # still counted for its id, so it is not also reported missing
            if row["prediction"] is not None and not row["prediction"].strip():
                sub.problem(where, f"sample {row['id']!r} of task {row['task']!r} has an empty prediction")
            row["_where"] = where
            sub.rows.setdefault(row["task"], []).append(row)
        sub.problems.extend(map(str, unreadable))


def check_tasks(sub: Submission, split: str = "test") -> dict[str, Any]:
    """Each task's rows against the registered task: version, dataset hash, and exactly one row per sample."""
    from sepit.tasks import all_tasks, sample_hash

    registered = all_tasks()
    declared = sub.metadata.get("tasks") or {}
    found = {}
    for name in sorted(set(sub.rows) | set(declared)):
        rows = sub.rows.get(name, [])
        first = rows[0]["_where"] if rows else METADATA
        if name not in registered:
            sub.problem(first, f"task {name!r} is not a registered task (known: {', '.join(sorted(registered))})")
            continue
        if not rows:
            sub.problem(METADATA, f"declares task {name!r} but no prediction row answers it")
            continue
        task = registered[name]
        found[name] = task
        samples = task.samples(split)
        info = declared.get(name)
        if not isinstance(info, dict):
            sub.problem(METADATA, f"has rows for task {name!r} ({first}) but no tasks.{name} entry "
                        "with its version and dataset_hash")
        else:
            if info.get("version") != task.version:
                sub.problem(METADATA, f"task {name!r} was predicted for version "
                            f"{info.get('version')!r}, but the registered task is version {task.version!r}; "
                            "re-predict with the current task")
            if info.get("dataset_hash") != sample_hash(samples):
                sub.problem(METADATA, f"task {name!r} dataset_hash {info.get('dataset_hash')!r} is "
                            f"not the registered data's ({sample_hash(samples)}); predict on the current task data")
        _check_ids(sub, name, rows, samples)
    return found


def _check_ids(sub: Submission, name: str, rows: list[dict], samples) -> None:
    by_id = {s.id: s for s in samples}
    seen: dict[str, str] = {}
    extra, duplicate, wrong = [], [], []
    for row in rows:
        where = row["_where"]
        if row["id"] in seen:
            duplicate.append(f"{where}: sample {row['id']!r} of task {name!r} appears again (first at "
                             f"{seen[row['id']]})")
            continue
        seen[row["id"]] = where
        if row["id"] not in by_id:
            extra.append(f"{where}: sample id {row['id']!r} is not in task {name!r}")
        elif row["prediction"] is not None and (problem := mismatch(row, by_id[row["id"]])):
            wrong.append(f"{where}: sample {row['id']!r} of task {name!r} does not match the task: {problem}")
    missing = [s.id for s in samples if s.id not in seen]
    for kind in (duplicate, extra, wrong):
        sub.problems.extend(kind[:SHOWN_PER_KIND])
        if len(kind) > SHOWN_PER_KIND:
            sub.problems.append(f"... and {len(kind) - SHOWN_PER_KIND} more like the above")
    if missing:
        shown = ", ".join(repr(i) for i in missing[:SHOWN_PER_KIND])
        more = f" and {len(missing) - SHOWN_PER_KIND} more" if len(missing) > SHOWN_PER_KIND else ""
        sub.problem(f"task {name!r}", f"{len(missing)} of {len(samples)} samples have no prediction: {shown}{more}")


def check_claims(sub: Submission, results: dict[str, dict]) -> None:
    """A results.json in the submission must agree with the re-score, number by number."""
    path = sub.folder / CLAIMS
    where = CLAIMS
    if not path.is_file():
        return
    try:
        claims = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        sub.problem(where, f"is not valid JSON ({err})")
        return
    claimed_tasks = claims.get("tasks") if isinstance(claims, dict) else None
    if not isinstance(claimed_tasks, dict):
        sub.problem(where, "has no 'tasks' object")
        return
    profile = (claims.get("metric_profile") or {}).get("name")
    if profile is not None and profile != sub.metadata.get("metric_profile"):
        sub.problem(where, f"was scored with profile {profile!r}, the submission declares "
                    f"{sub.metadata.get('metric_profile')!r}")
        return
    for name, claim in sorted(claimed_tasks.items()):
        if name not in results:
            sub.problem(where, f"claims scores for task {name!r}, which the submission has no predictions for")
            continue
        rescored = results[name]["metrics"]
        for metric, value in sorted(((claim or {}).get("metrics") or {}).items()):
            if metric in MODEL_BASED:
                continue  # graded by a model (a judge's API, a BERT folder) the check does not run: not checkable
            actual = rescored.get(metric)
            if actual is None and value is None:
                continue
            if not isinstance(value, (int, float)) or actual is None or abs(value - actual) > CLAIM_TOLERANCE:
                shown = f"{actual:.4f}" if actual is not None else "nothing"
                sub.problem(where, f"task {name!r} claims {metric} = {value!r}, but its predictions score {shown}")


# Metrics that need a model to recompute (sepit.evaluation.judge, sepit.metrics.bertscore): a claim of them is
# left unchecked rather than refused; the board shows them only under their own labels.
MODEL_BASED = ("judge_score", "judge_failure", "bertscore_precision", "bertscore_recall", "bertscore_f1")


def fingerprint(rows: dict[str, list[dict]]) -> str:
    """A hash of what was submitted (task, id, prediction), so a changed submission is a different model."""
    digest = hashlib.sha256()
    for task in sorted(rows):
        for row in sorted(rows[task], key=lambda r: r["id"]):
            digest.update(json.dumps([task, row["id"], row["prediction"]]).encode())
    return digest.hexdigest()[:16]


def report(problems: list[str], fix: str) -> str:
    return f"{len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems) + f"\n{fix}."
