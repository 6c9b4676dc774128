"""Finding and reading the results files a board is built from (`results.json`, docs/evaluation.md), with the
per-sample logs beside them (`samples/<task>.jsonl`) that paired significance and slices need.

One `Run` per results file. Several runs of one model (say, one bench per task) merge into one board row;
two runs that both report a task, or that disagree on the model's fingerprint, are an error: the board
would otherwise have to pick one silently.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path

from sepit.data.errors import DataError
from sepit.data.jsonl import read_jsonl
from sepit.evaluation.results import SCALE, SCHEMA_VERSION



@dataclass
class Run:
    path: Path
    model: dict
    profile: dict
    tasks: dict[str, dict]  # the scored tasks
    unscored: list[str] = field(default_factory=list)  # tasks predicted without references to score against
    _logs: dict[str, list[dict] | None] = field(default_factory=dict, repr=False, compare=False)

    @property
    def profile_key(self) -> str:
        """The metric profile and the grounding (ontology release and fingerprint) the numbers were made with."""
        return self.base_profile_key + (f" + {self.grounding_key}" if self.grounding_key else "")

    @property
    def base_profile_key(self) -> str:
        return f"{self.profile.get('name')} v{self.profile.get('version')}"

    @property
    def grounding_key(self) -> str | None:
        """The grounding its open tasks were scored with; None for a run that grounded nothing (closed tasks only)."""
        grounding = self.profile.get("grounding")
        if not grounding:
            return None
        return f"grounding v{grounding.get('version')} ({grounding.get('go')}, {grounding.get('go_fingerprint')})"

    def sample_log(self, task: str) -> list[dict] | None:
        """The rows of `samples/<task>.jsonl`, read once per run and task (the board reads values and facts from
        them); None when the log is absent."""
        if task not in self._logs:
            path = self.path.parent / "samples" / f"{task}.jsonl"
            self._logs[task] = [row for _, row in read_jsonl(path)] if path.is_file() else None
        return self._logs[task]

    def sample_values(self, task: str, metric: str) -> dict[str, float] | None:
        """Per-sample values of `metric` for `task` by sample id, from `samples/<task>.jsonl`; None when the
        log is absent or the metric has no per-sample value (macro F1, corpus BLEU). A sample logged with null
        has no value for it (a grounded metric of a sample whose reference names no entry of its kind)."""
        rows = self.sample_log(task)
        if rows is None:
            return None
        values = {}
        for row in rows:
            if metric in row and row[metric] is None:
                continue
            value = row.get(metric)
            if value is None and metric == "accuracy" and isinstance(row.get("correct"), bool):
                value = 100.0 * row["correct"]  # logs written before per-sample accuracy was logged
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return None
            values[str(row.get("id"))] = float(value)
        return values

    def sample_facts(self, task: str) -> dict[str, tuple[int, bool]] | None:
        """Sample id -> (protein length, has coordinates) of the rows whose log has them (scoring writes them for
        registered tasks); None when none has (a log written before they were logged: re-score it with
        `sepit score` to get the structure and length slices)."""
        facts = {}
        for row in self.sample_log(task) or ():
            length, has = row.get("protein_length"), row.get("has_structure")
            if isinstance(length, int) and isinstance(has, bool):
                facts[str(row.get("id"))] = (length, has)
        return facts or None


@dataclass
class Entry:
    """One board row: a model and its task results, merged from one or more runs."""

    name: str
    model: dict
    runs: dict[str, Run] = field(default_factory=dict)  # task -> the run that reports it

    @property
    def sources(self) -> list[str]:
        return sorted({str(run.path) for run in self.runs.values()})


def find_results(spec: str | Path) -> list[Path]:
    """results.json files named by a file, a directory (searched recursively) or a glob."""
    path = Path(spec)
    matches = [path] if path.exists() else [Path(p) for p in sorted(glob.glob(str(spec), recursive=True))]
    found: set[Path] = set()
    for match in matches:
        if match.is_dir():
            found.update(p for p in match.rglob("results.json") if p.is_file())
        elif match.is_file():
            found.add(match)
    if not found:
        raise DataError(str(spec), "no results.json found",
                        "Point --results at a `sepit bench` output directory, a folder of them, or a glob such as "
                        "'runs/*/results.json'.")
    return sorted(found)


def load_run(path: Path) -> Run:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(str(path), f"cannot be read as JSON ({err})",
                        "Give results files written by `sepit bench` or `sepit score`.") from None
    if not isinstance(document, dict) or document.get("schema_version") != SCHEMA_VERSION:
        found = document.get("schema_version") if isinstance(document, dict) else None
        raise DataError(str(path), f"is not a results file of schema version {SCHEMA_VERSION} (found {found!r})",
                        "Re-score its predictions with this version: `sepit score --predictions ...`.")
    if document.get("scale") != SCALE:
        raise DataError(str(path), f"reports scores on the {document.get('scale')!r} scale, not {SCALE!r}",
                        "Re-score its predictions with `sepit score`.")
    model, profile, tasks = document.get("model"), document.get("metric_profile"), document.get("tasks")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not model["name"]:
        raise DataError(str(path), "has no model name", "Results need model.name (set by `sepit bench`).")
    if not isinstance(profile, dict) or not isinstance(tasks, dict):
        raise DataError(str(path), "lacks 'metric_profile' or 'tasks'", "Re-score it with `sepit score`.")
    for name, result in tasks.items():
        if not isinstance(result, dict) or not isinstance(result.get("metrics"), dict) or "n" not in result:
            raise DataError(str(path), f"task {name!r} has no 'n' and 'metrics'", "Re-score it with `sepit score`.")
    unscored = sorted(name for name, result in tasks.items() if "not_scored" in result)
    return Run(path, model, profile, {n: r for n, r in tasks.items() if n not in unscored}, unscored=unscored)


def merge_runs(runs: list[Run]) -> list[Entry]:
    """One entry per model name; a task reported twice for one model, or two fingerprints under one name,
    is an error naming both files."""
    entries: dict[str, Entry] = {}
    for run in runs:
        name = run.model["name"]
        entry = entries.setdefault(name, Entry(name, dict(run.model)))
        mine, theirs = run.model.get("fingerprint"), entry.model.get("fingerprint")
        if mine and theirs and mine != theirs:
            other = entry.sources[0]
            raise DataError(str(run.path), f"model {name!r} has fingerprint {mine}, but {other} has {theirs} under "
                            "the same name", "Two different models need two names; move one results folder out of "
                            "--results or re-run it under another name.")
        for key, value in run.model.items():
            if entry.model.get(key) is None:
                entry.model[key] = value
        for task in run.tasks:
            if task in entry.runs:
                raise DataError(str(run.path), f"reports task {task!r} of model {name!r}, and so does "
                                f"{entry.runs[task].path}", "Keep one results file per model and task: move "
                                "the other out of the folder given to --results.")
            entry.runs[task] = run
    return list(entries.values())
