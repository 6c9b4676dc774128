"""`sepit leaderboard build|validate|add`: registered under the `sepit.commands` entry-point group, the way a
third-party package would add a command. Pure functions of files: no deep-learning import.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from pathlib import Path
from typing import Any

from sepit.data.errors import DataError
from sepit.data.files import atomic_folder, atomic_open
from sepit.evaluation.results import now, write_json_atomic
from sepit.interface import ModelCard
from sepit_leaderboard import submission as sub_format
from sepit_leaderboard import tables
from sepit_leaderboard.board import CONTROL, HEADLINE, build_board
from sepit_leaderboard.results import find_results, load_run


def build(results: str, output: Path = Path("leaderboard"), reference: str | None = None,
          profile: str | None = None, open_metric: str = HEADLINE["open"],
          closed_metric: str = HEADLINE["closed"], n_resamples: int = 1000, seed: int = 0,
          plots: bool = True, structure_pairs: list[str] | None = None, control: str = CONTROL) -> dict:
    """Build the leaderboard from results files.

    Writes leaderboard.md, .csv, .tex, .json, slices.csv, plots/ and a static index.html into `output`.

    Args:
        results: a results.json, a directory searched recursively for them, or a glob.
        output: the board's directory.
        reference: model to test every other model against (default: the best by average).
        profile: metric profile to use when the results were scored with several.
        open_metric: headline metric of open-ended tasks (entity_f1: the grounded biology; an open task whose
            references name no ontology entry falls back to rougeL, with a note).
        closed_metric: headline metric of closed-set tasks.
        n_resamples: paired bootstrap resamples.
        seed: bootstrap seed.
        plots: draw the bar and radar charts (matplotlib).
        structure_pairs: "MODEL:ABLATED" pairs (e.g. sepit:sepit-no-structure, the same weights with the
            coordinates withheld) compared on the test proteins that have coordinates, with paired CIs.
        control: the question-only control every model is compared with (paired, per task and on average).
    """
    pairs = []
    for pair in structure_pairs or []:
        model, _, ablated = pair.partition(":")
        if not model or not ablated:
            raise DataError("--structure_pairs", f"{pair!r} is not MODEL:ABLATED", "Write e.g. sepit:sepit-no-structure.")
        pairs.append((model, ablated))
    runs = [load_run(path) for path in find_results(results)]
    board = build_board(runs, reference, profile, open_metric, closed_metric, n_resamples, seed,
                        structure_pairs=pairs, control=control)
    _relative_sources(board, results)
    write_board(board, Path(output), plots)
    print(tables.markdown(board))
    print(f"wrote {Path(output) / 'index.html'} (and leaderboard.md, .csv, .tex, .json)")
    return board


def _relative_sources(board: dict, results: str) -> None:
    """Results files named relative to what `--results` gave (a folder, a file's folder, or a glob's fixed
    part): a published leaderboard.json or page must not show the folders of the machine that built it."""
    spec = Path(results)
    root = spec if spec.is_dir() else spec.parent if spec.is_file() else Path(glob_root(results))
    for row in board["rows"]:
        row["sources"] = sorted(os.path.relpath(source, root) for source in row["sources"])


def glob_root(pattern: str) -> str:
    """The folder part of a glob before its first wildcard ('runs/*/results.json' -> 'runs')."""
    fixed = pattern.split("*")[0].split("?")[0].split("[")[0]
    return os.path.dirname(fixed) or "."


def write_board(board: dict, output: Path, plots: bool = True) -> None:
    from sepit_leaderboard.page import render

    drawn = {}
    if plots:
        from sepit_leaderboard.plots import bar_chart, radar_chart

        drawn["tasks"] = bar_chart(board, output / "plots")
        radar = radar_chart(board, output / "plots")
        if radar:
            drawn["radar"] = radar
    write_json_atomic(output / "leaderboard.json", board)
    for name, text in (("leaderboard.md", tables.markdown(board)), ("leaderboard.csv", tables.to_csv(board)),
                       ("leaderboard.tex", tables.latex(board)), ("slices.csv", slices_csv(board)),
                       ("index.html", render(board, drawn, now()))):
        with atomic_open(output / name) as handle:
            handle.write(text)


def slices_csv(board: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["slice", "model", "task", "bin", "n", "value"])
    for kind, models in board["slices"].items():
        for model, by_task in models.items():
            for task, bins in by_task.items():
                for label, b in bins.items():
                    writer.writerow([kind, model, task, label, b["n"], tables.blank(b["value"], tables.score)])
    return buffer.getvalue()


def validate(submission: Path, split: str = "test") -> dict:
    """Check a submission and re-score it from its predictions: exit 0, or every problem with file and line.

    Args:
        submission: a submission folder or archive (.zip, .tar, .tar.gz, .tgz); see docs/leaderboard.md.
        split: the task split the predictions answer.
    """
    from sepit.evaluation.scoring import ScoringSettings, score_rows, summary_table

    with sub_format.opened(submission) as folder:
        sub, tasks = _checked(submission, folder, split)
        scoring = ScoringSettings(profile=sub.metadata["metric_profile"], leakage=False)
        results, _, _ = score_rows(_rows(sub), scoring, split, tasks)
        _claims(submission, sub, results)
    print(summary_table(results))
    print(f"{submission}: valid; {sum(len(r) for r in sub.rows.values())} predictions of {len(results)} task(s) "
          f"re-scored with {sub.metadata['metric_profile']}")
    return results


def add(submission: Path, results: Path, board: Path | None = None, split: str = "test",
        replace: bool = False) -> Path:
    """Validate a submission, re-score it (with the leakage report) and place it among the results.

    Writes `<results>/<name>/results.json`, `samples/` and a copy of the submission; with --board, rebuilds it.

    Args:
        submission: a submission folder or archive; see docs/leaderboard.md.
        results: the folder of results the board is built from.
        board: rebuild this board directory afterwards.
        split: the task split the predictions answer.
        replace: replace an earlier submission of the same name.
    """
    from sepit.evaluation.results import score_and_write
    from sepit.evaluation.scoring import ScoringSettings

    started = now()
    with sub_format.opened(submission) as folder:
        sub, tasks = _checked(submission, folder, split)
        meta = sub.metadata
        target = Path(results) / re.sub(r"[^a-z0-9._-]+", "-", meta["name"].lower()).strip("-.")
        if target.exists() and not replace:
            raise DataError(str(target), f"already holds a submission named {meta['name']!r}",
                            "Pass --replace true to replace it, or submit under another name.")
        card = ModelCard(meta["name"], meta["modality"], meta.get("params_total"), meta.get("params_active"),
                         sub_format.fingerprint(sub.rows))
        model = {**card.record(),
                 "submission": {k: meta[k] for k in ("description", "training_data", "licence", "contact")}}
        with atomic_folder(target) as staging:
            document = score_and_write(staging / "results.json", _rows(sub), model,
                                       {"submission": Path(submission).name, "split": split}, started,
                                       ScoringSettings(profile=meta["metric_profile"]), split, tasks)
            _claims(submission, sub, document["tasks"])
            # Its own results.json is kept as claimed-results.json: the board reads every results.json it finds.
            shutil.copytree(folder, staging / "submission", ignore=shutil.ignore_patterns(sub_format.CLAIMS))
            if (folder / sub_format.CLAIMS).is_file():
                shutil.copy(folder / sub_format.CLAIMS, staging / "submission" / "claimed-results.json")
    print(f"added {meta['name']!r}: {target / 'results.json'}")
    if board is not None:
        build(str(results), Path(board))
    return target


def _checked(submission: Path, folder: Path, split: str):
    sub = sub_format.read_submission(folder)
    tasks = sub_format.check_tasks(sub, split)
    if sub.problems:
        raise DataError(str(submission), sub_format.report(
            sub.problems, "Fix them all and validate again (docs/leaderboard.md describes the format)"))
    return sub, tasks


def _claims(submission: Path, sub, results: dict[str, Any]) -> None:
    sub_format.check_claims(sub, results)
    if sub.problems:
        raise DataError(str(submission), sub_format.report(
            sub.problems, "Numbers in a submission must be what its predictions score: drop results.json, or "
            "write it again with `sepit score`"))


def _rows(sub) -> dict[str, list[dict]]:
    return {task: [{k: v for k, v in row.items() if k != "_where"} for row in rows]
            for task, rows in sub.rows.items()}


COMMANDS = {"_help": "Build the leaderboard from results; validate and add submissions.", "build": build,
            "validate": validate, "add": add}
