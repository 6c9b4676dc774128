"""`sepit score`: saved predictions -> results.json (+ per-sample logs). No model, no deep-learning import.

The scoring itself (`score_rows`, `score_and_write`) lives in sepit.evaluation, shared with `sepit bench` and the
leaderboard, so all of them write the same numbers from the same rows.
"""

from __future__ import annotations

import time
from pathlib import Path

from sepit.evaluation.predictions import read_predictions
from sepit.evaluation.results import now, score_and_write
from sepit.evaluation.scoring import ScoringSettings, summary_table
from sepit.interface import ModelCard
from sepit.tasks import resolve_tasks


def score(predictions: Path, output: Path = Path("results.json"), scoring: ScoringSettings = ScoringSettings(),
          split: str = "test", tasks: list[str] | None = None) -> None:
    """Score saved predictions into a results file.

    Args:
        predictions: a predictions JSONL file, or a directory of them (docs/evaluation.md).
        output: where results.json goes; per-sample logs go to `samples/` beside it.
        scoring: metric profile, tokens, closed-set methods, leakage report, bootstrap (`ScoringSettings`).
        split: the split registered tasks are checked against.
        tasks: task files or YAML task mappings the rows answer (registered tasks are found by name): their rows
            are checked against them and get a dataset hash and the leakage report, as in `sepit bench`.
    """
    started, clock = now(), time.perf_counter()
    known = {task.name: task for task in resolve_tasks(tasks)} if tasks else None
    rows = read_predictions(predictions)
    fingerprints = sorted({str(r["fingerprint"]) for task in rows.values() for r in task if r.get("fingerprint")})
    names = sorted({str(r.get("model")) for task in rows.values() for r in task if r.get("model")})
    model = ModelCard(name=names[0] if len(names) == 1 else ("mixed: " + ", ".join(names) if names else "unknown"),
                      modality=None, params_total=None, params_active=None,
                      fingerprint=fingerprints[0] if len(fingerprints) == 1 else None).record()
    config = {"predictions": str(predictions), "split": split}
    document = score_and_write(Path(output), rows, model, config, started, scoring, split, known)
    print(summary_table(document["tasks"]))
    print(f"wrote {output} ({sum(len(r) for r in rows.values())} predictions, {time.perf_counter() - clock:.1f} s)")
