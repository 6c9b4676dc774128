"""Results files -> the board: one row per model with its per-task headline scores and 95 % CIs, an average, a
rank, paired significance against the best and against a reference model, and slices (identity to train,
with vs without structure, sequence length).

The board is a plain dict (written as leaderboard.json); the table, page and plot writers only format it.
Each task has one headline metric: for open tasks entity F1 (the grounded biology, docs/evaluation.md) where the
task's references name ontology entries, else ROUGE-L; accuracy for closed ones. An open task whose headline is
grounded shows ROUGE-L beside it. The average over tasks, and so the rank, exists only for a model with complete
results on every task on the board: an average over a different or partial set of tasks would rank models on
different questions. Each row also has the average of its grounded headlines (`biology_average`), its
paired gap to the question-only control (`vs_control`: what the model knows beyond what the questions give
away) and, where the board holds the model's option prior (`sepit bench --model option_prior`), its gap to that
(`vs_prior`: what the protein adds to the same model's choice).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from sepit.data.errors import DataError
from sepit.evaluation.scoring import IDENTITY_BINS
from sepit.metrics.entities import MASKS
from sepit_leaderboard.results import Entry, Run, merge_runs
from sepit_leaderboard.significance import ALPHA, PairedDraws, compare, paired_draws, task_seed

HEADLINE = {"open": "entity_f1", "closed": "accuracy"}
TEXT_METRIC = "rougeL"  # shown beside a grounded headline, and the headline of an open task that grounds nothing
GROUNDED = tuple(MASKS)  # the grounded metrics
JUDGE_METRICS = ("judge_score", "judge_failure")  # the LLM judge's: in their own tables, never a headline
CONTROL = "question-majority"  # the question-only control's name on a board (`sepit bench --model question_majority`)
LENGTH_BINS = (("<200", 0, 200), ("200-400", 200, 400), ("400-700", 400, 700), (">=700", 700, float("inf")))
STRUCTURE_BINS = ("with structure", "sequence only")
SLICES = {"identity": tuple(label for label, _, _ in IDENTITY_BINS), "structure": STRUCTURE_BINS,
          "length": tuple(label for label, _, _ in LENGTH_BINS)}


def build_board(runs: list[Run], reference: str | None = None, profile: str | None = None,
                open_metric: str = HEADLINE["open"], closed_metric: str = HEADLINE["closed"],
                n_resamples: int = 1000, seed: int = 0, alpha: float = ALPHA,
                structure_pairs: Sequence[tuple[str, str]] = (), control: str = CONTROL) -> dict[str, Any]:
    judged = {open_metric, closed_metric} & set(JUDGE_METRICS)
    if judged:
        raise DataError(f"--{'open' if open_metric in judged else 'closed'}_metric", f"{judged.pop()} is the LLM "
                        "judge's score, shown in its own table under the judge's name and never averaged with "
                        "other metrics", "Choose a reference-based headline metric; the board adds the judge table.")
    runs = _one_profile(runs, profile)
    _one_bertscore_model(runs)
    entries = merge_runs(runs)
    notes: list[str] = []
    tasks = _tasks(entries, {"open": open_metric, "closed": closed_metric}, notes)
    rows = [_row(entry, tasks) for entry in entries]
    _rank(rows)
    values = _SampleValues(entries, tasks, n_resamples, seed)
    _mark_ties(rows, tasks, values, alpha, notes)
    ref = _reference(rows, reference)
    if ref is not None:
        for row in rows:
            row["vs_reference"] = None if row["model"] == ref else _versus(row["model"], ref, tasks, values)
    if control in {row["model"] for row in rows}:
        for row in rows:
            row["vs_control"] = None if row["model"] == control else _versus(row["model"], control, tasks, values)
    else:
        notes.append(f"no question-only control ({control}) among the results: add `sepit bench --model "
                     "question_majority` to show how much of each score the questions give away without the protein "
                     "(it needs a train split; for a benchmark without one, `--control random-option` compares "
                     "with a chance floor)")
        control = None
    priors: dict[str, str] = {}
    for entry in sorted(entries, key=lambda e: e.name):
        subject = entry.model.get("control_of")
        if subject and subject in priors:
            notes.append(f"{entry.name} and {priors[subject]} are both controls of {subject}: its gap is to "
                         f"{priors[subject]}")
        elif subject:
            priors[subject] = entry.name
    for row in rows:
        prior = priors.get(row["model"])
        row["prior"] = prior
        # The prior answers closed questions only: its average gap is over the tasks it answers.
        row["vs_prior"] = _versus(row["model"], prior, tasks, values, shared_only=True) if prior else None
    notes += _scope_notes(runs, entries)
    if not any(row["modality"] == "retrieval" for row in rows):
        notes.append("no retrieval baseline among the results: add `sepit bench --model retrieval` to show how far "
                     "copying the nearest training protein's answer goes")
    board = {"metric_profile": next((r.profile for r in runs if r.grounding_key), runs[0].profile), "tasks": tasks, "reference": ref, "control": control, "alpha": alpha,
             "bootstrap": {"method": "paired percentile", "resamples": n_resamples, "seed": seed},
             "rows": rows, "slices": _slices(entries, tasks, values), "notes": notes}
    agreement = _agreement(entries)
    if agreement:
        board["agreement"] = agreement
    judge = _judge_tables(entries)
    if judge:
        board["judge"] = judge
    if structure_pairs:
        board["structure_ablations"] = [_structure_ablation(a, b, tasks, values, rows) for a, b in structure_pairs]
    return board


def _agreement(entries: list[Entry]) -> list[dict[str, Any]]:
    """Each model's rank agreement, per task, between a model-based score (the LLM judge, BERTScore) and the
    grounded F1, as its results file reports it (`sepit.metrics.agreement`): which score to trust."""
    return [{"model": entry.name, "task": name, "pair": pair, **found}
            for entry in sorted(entries, key=lambda e: e.name) for name, run in sorted(entry.runs.items())
            for pair, found in sorted(run.tasks[name].get("agreement", {}).items())]


def _judge_tables(entries: list[Entry]) -> list[dict[str, Any]]:
    """One table per judge (its model and rubric version, from each results file's `metric_profile.judge`):
    grades of two judges are not comparable, and a judge's grades enter no average or rank."""
    found: dict[str, dict[str, Any]] = {}
    for entry in sorted(entries, key=lambda e: e.name):
        for name, run in sorted(entry.runs.items()):
            judge, result = run.profile.get("judge"), run.tasks[name]
            if not judge or "judge_score" not in result["metrics"]:
                continue
            label = f"LLM judge ({judge.get('model')}, {judge.get('rubric_version')})"
            table = found.setdefault(label, {"label": label, "model": judge.get("model"),
                                             "rubric_version": judge.get("rubric_version"), "tasks": set(), "rows": {}})
            table["tasks"].add(name)
            table["rows"].setdefault(entry.name, {})[name] = {
                "value": result["metrics"]["judge_score"], "ci": result.get("ci", {}).get("judge_score"),
                "failure": result["metrics"].get("judge_failure"), "n": result["n"]}
    return [{**table, "tasks": sorted(table["tasks"]),
             "rows": [{"model": model, "tasks": cells} for model, cells in table["rows"].items()]}
            for _, table in sorted(found.items())]


def _scope_notes(runs: list[Run], entries: list[Entry]) -> list[str]:
    """What the board leaves out and why: tasks predicted without references, and leakage reports skipped."""
    notes = [f"{name}: predicted without reference answers, so not on the board"
             for name in sorted({name for run in runs for name in run.unscored})]
    skipped: dict[str, tuple[list[str], str]] = {}
    for entry in entries:
        for name, run in sorted(entry.runs.items()):
            why = run.tasks[name].get("not_reported", {}).get("leakage")
            if why:
                skipped.setdefault(name, ([], why))[0].append(entry.name)
    notes += [f"{name}: no identity-to-train slice for {', '.join(models)}: {why}"
              for name, (models, why) in skipped.items()]
    return notes


def _structure_ablation(model: str, ablated: str, tasks: list[dict], values: _SampleValues,
                        rows: list[dict]) -> dict[str, Any]:
    """`model` minus `ablated` (the same weights, coordinates withheld) on the test proteins that have
    coordinates: per task the two headline values, the paired difference, its 95 % CI and p; and over the
    tasks with such proteins. The rest of each task cannot differ, so it is left out."""
    names = {r["model"] for r in rows}
    for name in (model, ablated):
        if name not in names:
            raise DataError("--structure_pairs", f"no model named {name!r} on the board",
                            f"Choose among: {', '.join(sorted(names))}.")
    out: dict[str, Any] = {"model": model, "ablated": ablated, "tasks": {}}
    parts = []
    for task in tasks:
        name = task["name"]
        mine, theirs, run = values.get(model, name), values.get(ablated, name), values.run(model, name)
        facts = run.sample_facts(name) if run else None
        if mine is None or theirs is None or facts is None:
            continue
        with_structure = {i for i, (_, has) in facts.items() if has}
        a = {i: v for i, v in mine.items() if i in with_structure}
        b = {i: v for i, v in theirs.items() if i in with_structure}
        draws = paired_draws(a, b, values.n_resamples, task_seed(values.seed, name))
        if draws is None:
            continue
        parts.append(draws)
        out["tasks"][name] = {"n": draws.n_shared, "model": float(np.mean(list(a.values()))),
                              "ablated": float(np.mean(list(b.values()))), **compare([draws]).as_dict()}
    out["average"] = compare(parts).as_dict() if parts else None
    return out


def _one_profile(runs: list[Run], profile: str | None) -> list[Run]:
    """Numbers of two metric profiles are not comparable, so a board holds one."""
    if profile is not None:
        runs = [r for r in runs if profile in (r.profile.get("name"), r.profile_key)]
        if not runs:
            raise DataError("--results", f"no results were scored with the metric profile {profile!r}",
                            "Choose a profile the results use, or re-score with `sepit score --scoring.profile`.")
    # A run that grounded nothing (closed tasks only: a floor, an option prior) fits any grounding.
    keys = defaultdict(list)
    for run in runs:
        keys[run.base_profile_key].append(str(run.path))
    if len(keys) == 1:
        keys = defaultdict(list)
        for run in runs:
            if run.grounding_key:
                keys[run.profile_key].append(str(run.path))
    if len(keys) > 1:
        listing = "; ".join(f"{key}: {', '.join(paths[:3])}" for key, paths in sorted(keys.items()))
        raise DataError("--results", f"the results use different metric profiles ({listing})",
                        "Scores of two profiles are not comparable: choose one with --profile, or re-score.")
    return runs


def _one_bertscore_model(runs: list[Run]) -> None:
    """BERTScores of two models (or layers) are not comparable, so a board holds one model's (its fingerprint in
    `metric_profile.bertscore`); a run without BERTScore fits any."""
    keys = defaultdict(list)
    for run in runs:
        if run.profile.get("bertscore"):
            keys[str(run.profile["bertscore"].get("fingerprint"))].append(str(run.path))
    if len(keys) > 1:
        listing = "; ".join(f"{key[:12]}: {', '.join(paths[:3])}" for key, paths in sorted(keys.items()))
        raise DataError("--results", f"the results hold BERTScores of different models ({listing})",
                        "Re-score them with one --scoring.bertscore_model, or leave BERTScore out of some.")


def _tasks(entries: list[Entry], metrics: dict[str, str], notes: list[str]) -> list[dict]:
    """Every task on the board with its headline metric (and, for an open task with a grounded headline, the text
    metric shown beside it); versions and dataset hashes must agree."""
    found: dict[str, dict] = {}
    for entry in entries:
        for name, run in entry.runs.items():
            result = run.tasks[name]
            task = found.setdefault(name, {"name": name, "kind": result.get("kind"), "version": result.get("version"),
                                           "dataset_hash": None, "expected_n": result.get("expected_n"),
                                           "first": run.path})
            if result.get("version") != task["version"]:
                raise DataError(str(run.path), f"task {name!r} is version {result.get('version')!r} but "
                                f"{task['first']} has version {task['version']!r}",
                                "Re-run the older model on the current task version before comparing them.")
            if result.get("dataset_hash"):
                if task["dataset_hash"] and task["dataset_hash"] != result["dataset_hash"]:
                    raise DataError(str(run.path), f"task {name!r} was scored on other samples (dataset hash "
                                    f"{result['dataset_hash'][:12]}) than in other results ({task['dataset_hash'][:12]})",
                                    "Compare results of the same task data; re-run one of them.")
                task["dataset_hash"] = result["dataset_hash"]
    for task in found.values():
        task["metric"] = metrics.get(task["kind"] or "open", metrics["open"])
        del task["first"]
        reported = [run.tasks[task["name"]]["metrics"] for entry in entries for run in [entry.runs.get(task["name"])]
                    if run and run.tasks[task["name"]]["n"]]
        if task["metric"] in GROUNDED and reported and not any(task["metric"] in m for m in reported):
            fallback = HEADLINE["open"] if all(HEADLINE["open"] in m for m in reported) else TEXT_METRIC
            why = ("its references name no entry of that kind" if fallback != TEXT_METRIC
                   else "its references name no GO term, EC number or location")
            notes.append(f"{task['name']}: no {task['metric']} ({why}), so its headline is {fallback}")
            task["metric"] = fallback
        task["text_metric"] = (TEXT_METRIC if task["metric"] in GROUNDED and all(TEXT_METRIC in m for m in reported)
                               else None)
        for entry in entries:
            run = entry.runs.get(task["name"])
            if run and task["metric"] not in run.tasks[task["name"]]["metrics"] and run.tasks[task["name"]]["n"]:
                known = ", ".join(sorted(run.tasks[task["name"]]["metrics"]))
                raise DataError(str(run.path), f"task {task['name']!r} has no metric {task['metric']!r} (it has "
                                f"{known})", f"Choose the headline metric with --{task['kind']}_metric.")
    return sorted(found.values(), key=lambda t: (t["kind"] != "open", t["name"]))


def _row(entry: Entry, tasks: list[dict]) -> dict:
    cells = {}
    for task in tasks:
        run = entry.runs.get(task["name"])
        if run is None:
            continue
        result, metric = run.tasks[task["name"]], task["metric"]
        ci = result.get("ci", {}).get(metric)
        complete = result.get("complete")
        cells[task["name"]] = {"value": result["metrics"].get(metric), "ci": ci, "n": result["n"],
                               "expected_n": result.get("expected_n"), "complete": complete is not False,
                               "best": False, "tied": None, "p_vs_best": None}
        if task.get("text_metric"):
            cells[task["name"]]["text"] = {"metric": task["text_metric"],
                                           "value": result["metrics"].get(task["text_metric"]),
                                           "ci": result.get("ci", {}).get(task["text_metric"])}
    everything = len(cells) == len(tasks) and all(c["complete"] and c["value"] is not None for c in cells.values())
    average = float(np.mean([c["value"] for c in cells.values()])) if everything and cells else None
    grounded = [cells[t["name"]]["value"] for t in tasks if t["metric"] in GROUNDED and t["name"] in cells]
    biology = float(np.mean(grounded)) if everything and grounded else None
    model = entry.model
    return {"model": entry.name, "modality": model.get("modality"), "params_total": model.get("params_total"),
            "params_active": model.get("params_active"), "fingerprint": model.get("fingerprint"),
            "sources": entry.sources, "tasks": cells, "average": average, "biology_average": biology, "rank": None,
            "average_best": False, "average_tied": None, "average_p_vs_best": None, "vs_reference": None,
            "vs_control": None}


def _rank(rows: list[dict]) -> None:
    """Competition ranking by average (1, 2, 2, 4); rows without an average follow, unranked, by name."""
    ranked = sorted((r for r in rows if r["average"] is not None), key=lambda r: -r["average"])
    for i, row in enumerate(ranked):
        same = i and abs(row["average"] - ranked[i - 1]["average"]) < 1e-12
        row["rank"] = ranked[i - 1]["rank"] if same else i + 1
    rows.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0, r["model"]))


class _SampleValues:
    """Per-sample headline values by (model, task), read once from the runs' sample logs, and the paired
    bootstrap draws of two models on a task, drawn once however many comparisons use them."""

    def __init__(self, entries: list[Entry], tasks: list[dict], n_resamples: int, seed: int):
        self._runs = {(e.name, t): run for e in entries for t, run in e.runs.items()}
        self._metric = {t["name"]: t["metric"] for t in tasks}
        self.n_resamples, self.seed = n_resamples, seed
        self._cache: dict[tuple[str, str], dict[str, float] | None] = {}
        self._draws: dict[tuple[str, str, str], PairedDraws | None] = {}

    def get(self, model: str, task: str) -> dict[str, float] | None:
        key = (model, task)
        if key not in self._cache:
            run = self._runs.get(key)
            self._cache[key] = run.sample_values(task, self._metric[task]) if run else None
        return self._cache[key]

    def run(self, model: str, task: str) -> Run | None:
        return self._runs.get((model, task))

    def draws(self, a: str, b: str, task: str) -> PairedDraws | None:
        """Paired draws of mean(a - b) on `task`; None when either has no per-sample values."""
        key = (a, b, task)
        if key not in self._draws:
            mine, theirs = self.get(a, task), self.get(b, task)
            self._draws[key] = (None if mine is None or theirs is None
                                else paired_draws(mine, theirs, self.n_resamples, task_seed(self.seed, task)))
        return self._draws[key]


def _mark_ties(rows, tasks, values: _SampleValues, alpha: float, notes: list[str]) -> None:
    """The best model per task and overall, and which others are not significantly different from it."""
    for task in tasks:
        name = task["name"]
        present = [r for r in rows if name in r["tasks"] and r["tasks"][name]["value"] is not None]
        if not present:
            continue
        # A partial run (a --limit smoke test) is compared, but does not set the bar when complete ones exist.
        contenders = [r for r in present if r["tasks"][name]["complete"]] or present
        top = max(r["tasks"][name]["value"] for r in contenders)
        best = next(r for r in contenders if r["tasks"][name]["value"] == top)
        for row in present:
            cell = row["tasks"][name]
            if row in contenders and cell["value"] == top:
                cell.update(best=True, tied=True)
                continue
            draws = values.draws(row["model"], best["model"], name)
            if draws is None:
                notes.append(f"{row['model']} on {name}: no per-sample {task['metric']} values shared with "
                             f"{best['model']}, so no significance test")
                continue
            result = compare([draws])
            cell.update(p_vs_best=result.p_value, tied=result.p_value >= alpha)
    ranked = [r for r in rows if r["rank"] is not None]
    if not ranked:
        return
    leader = ranked[0]
    for row in ranked:
        if row["average"] == leader["average"]:
            row.update(average_best=True, average_tied=True)
            continue
        result = _versus_average(row["model"], leader["model"], tasks, values)
        if result is not None:
            row.update(average_p_vs_best=result.p_value, average_tied=result.p_value >= alpha)


def _versus_average(a: str, b: str, tasks, values: _SampleValues):
    parts = [values.draws(a, b, t["name"]) for t in tasks]
    return None if any(p is None for p in parts) else compare(parts)


def _versus(model: str, ref: str, tasks, values: _SampleValues, shared_only: bool = False) -> dict:
    """Difference to the reference (this model minus it) per task and on average, with p-values. The average
    needs both on every task, or with `shared_only` on the tasks both answered."""
    out: dict[str, Any] = {}
    for task in tasks:
        draws = values.draws(model, ref, task["name"])
        out[task["name"]] = compare([draws]).as_dict() if draws else None
    shared = [t for t in tasks if out[t["name"]] is not None] if shared_only else tasks
    average = _versus_average(model, ref, shared, values) if shared else None
    out["average"] = average.as_dict() if average else None
    return out


def _reference(rows: list[dict], reference: str | None) -> str | None:
    if reference is None:
        ranked = [r for r in rows if r["rank"] is not None]
        return ranked[0]["model"] if ranked else None
    if reference not in {r["model"] for r in rows}:
        raise DataError("--reference", f"no model named {reference!r} on the board",
                        f"Choose one of: {', '.join(sorted(r['model'] for r in rows))}.")
    return reference


def _slices(entries: list[Entry], tasks: list[dict], values: _SampleValues) -> dict:
    """slice -> model -> task -> bin -> {n, value}: the identity bins come from each run's leakage report; the
    structure and length bins from the per-sample values and the proteins' facts in the same per-sample logs."""
    out: dict[str, dict] = {kind: {} for kind in SLICES}
    for entry in entries:
        for task in tasks:
            name, metric = task["name"], task["metric"]
            run = entry.runs.get(name)
            if run is None:
                continue
            leakage = run.tasks[name].get("leakage")
            if leakage:
                out["identity"].setdefault(entry.name, {})[name] = {
                    label: {"n": b["n"], "value": b["metrics"].get(metric) if b["n"] else None}
                    for label, b in leakage["bins"].items()}
            facts = run.sample_facts(name)
            per_sample = values.get(entry.name, name)
            if facts is None or per_sample is None:
                continue
            for kind, label_of in (("structure", lambda f: STRUCTURE_BINS[0] if f[1] else STRUCTURE_BINS[1]),
                                   ("length", _length_bin)):
                groups: dict[str, list[float]] = defaultdict(list)
                for sample_id, value in per_sample.items():
                    if sample_id in facts:
                        groups[label_of(facts[sample_id])].append(value)
                out[kind].setdefault(entry.name, {})[name] = {
                    label: {"n": len(groups[label]), "value": float(np.mean(groups[label])) if groups[label] else None}
                    for label in SLICES[kind]}
    return out


def _length_bin(fact: tuple[int, bool]) -> str:
    return next(label for label, lo, hi in LENGTH_BINS if lo <= fact[0] < hi)
