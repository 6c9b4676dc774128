"""The results file (`schema_version` 1, docs/evaluation.md) and the record of where its numbers came from.

All scores are on the 0-100 scale (accuracy, F1, failure rates and text metrics alike); `scale` says so.
"""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping, Sequence

from sepit.data.files import atomic_open
from sepit.data.jsonl import write_jsonl_atomic
from sepit.data.sample import InstructionSample
from sepit.evaluation.scoring import ScoringSettings, score_rows
from sepit.tasks import Task

SCHEMA_VERSION = 1
SCALE = "0-100"
# Packages whose versions can change a number; recorded in every results file.
RECORDED_PACKAGES = ("sepit-bench", "numpy", "nltk", "rouge-score", "sacrebleu", "tokenizers", "biopython",
                     "torch", "lightning", "transformers", "fair-esm", "peft")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def environment() -> dict[str, Any]:
    packages = {}
    for name in RECORDED_PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": packages,
            **git_state(Path(__file__).resolve().parents[2])}


def git_state(folder: Path) -> dict[str, Any]:
    """Commit and dirtiness of the source tree the code runs from (None outside a git checkout)."""
    def run(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def results_document(model: dict, profile: dict, tasks: dict, config: dict, started: str) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "scale": SCALE, "model": model, "metric_profile": profile,
            "tasks": tasks, "config": config, "env": environment(),
            "timestamps": {"started": started, "finished": now()}}


def write_json_atomic(path: str | Path, document: Any) -> None:
    with atomic_open(path) as handle:
        json.dump(document, handle, indent=2, ensure_ascii=False, allow_nan=False)
        handle.write("\n")


def score_and_write(output: Path, rows_by_task: Mapping[str, list[dict]], model: dict, config: dict,
                    started: str, scoring: ScoringSettings = ScoringSettings(), split: str = "test",
                    tasks: Mapping[str, Task] | None = None,
                    samples: Mapping[str, Sequence[InstructionSample]] | None = None,
                    rows_checked: bool = False) -> dict:
    """Score (`score_rows`), then write results.json and `samples/<task>.jsonl` beside it; returns the results
    document."""
    results, logs, record = score_rows(rows_by_task, scoring, split, tasks, samples, rows_checked)
    for name, task_logs in logs.items():
        write_jsonl_atomic(output.parent / "samples" / f"{name}.jsonl", task_logs)
    document = results_document(model, record, results, config, started)
    write_json_atomic(output, document)
    return document
