"""`sepit score`: saved predictions -> results.json (+ per-sample logs). No model, no deep-learning import.

Also the scoring half of `sepit bench`, so both write the same numbers from the same rows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from sepit.data.jsonl import write_jsonl_atomic
from sepit.data.errors import DataError
from sepit.evaluation.predictions import mismatch, read_predictions
from sepit.evaluation.results import now, results_document, write_json_atomic
from sepit.evaluation.scoring import get_profile, score_task, summary_table
from sepit.models.interface import ModelCard
from sepit.registry import RegistryError
from sepit.tasks import Task, get_task, sample_hash


def score_rows(rows_by_task: Mapping[str, list[dict]], profile: str = "sepit_v1", vocab: Path | None = None,
               closed_methods: Mapping[str, str] | None = None, split: str = "test", leakage: bool = True,
               n_resamples: int = 1000, seed: int = 0,
               tasks: Mapping[str, Task] | None = None) -> tuple[dict, dict, dict]:
    """(results per task, per-sample logs per task, the metric profile's record). Tasks are looked up in
    `tasks`, else in the registry; rows of an unknown task are scored from the rows alone."""
    from sepit.metrics.text import make_tokenizer

    metric_profile, tokenizer = get_profile(profile), make_tokenizer(vocab)
    closed_methods = dict(closed_methods or {})
    results, logs = {}, {}
    for name in sorted(rows_by_task):
        rows = rows_by_task[name]
        task = tasks.get(name) if tasks is not None else _registered(name)
        identities = None
        info: dict[str, Any] = {"version": None, "dataset_hash": None, "complete": None}
        if task is not None:
            expected = task.samples(split)
            by_id = {s.id: s for s in expected}
            for row in rows:
                problem = row["id"] in by_id and mismatch(row, by_id[row["id"]])
                if problem:
                    raise DataError(f"task {name!r} (version {task.version}), sample {row['id']!r}",
                                    f"the prediction row does not match the task: {problem}",
                                    "Predictions are scored against the registered task's own references; "
                                    "re-predict with this version of the task.")
            ids = {r["id"] for r in rows}
            missing = sum(s.id not in ids for s in expected)
            unknown = len(ids - {s.id for s in expected})
            info = {"version": task.version, "split": split, "expected_n": len(expected), "missing": missing,
                    "unknown_ids": unknown, "complete": missing == 0 and unknown == 0,
                    "dataset_hash": sample_hash(expected) if missing == 0 and unknown == 0 else None}
            if leakage and split == "test":
                from sepit.identity import max_train_identity

                by_sample = max_train_identity(task)
                identities = {sid: found[0] for sid, found in by_sample.items()}
        method = closed_methods.get(name, closed_methods.get("*"))
        result, logs[name] = score_task(rows, metric_profile, tokenizer, method,
                                        task.answer_format if task else None, identities, n_resamples, seed)
        results[name] = {**info, **result}
    record = {"name": metric_profile.name, "version": metric_profile.version,
              "description": metric_profile.description, "tokenizer": tokenizer.name,
              "bootstrap": {"method": "percentile", "level": 0.95, "resamples": n_resamples, "seed": seed}}
    return results, logs, record


def write_results(output: Path, rows_by_task: Mapping[str, list[dict]], model: dict, config: dict,
                  started: str, **scoring: Any) -> dict:
    """Score, then write results.json and `samples/<task>.jsonl` beside it; returns the results document."""
    tasks, logs, record = score_rows(rows_by_task, **scoring)
    for name, task_logs in logs.items():
        write_jsonl_atomic(output.parent / "samples" / f"{name}.jsonl", task_logs)
    document = results_document(model, record, tasks, config, started)
    write_json_atomic(output, document)
    return document


def score(predictions: Path, output: Path = Path("results.json"), profile: str = "sepit_v1",
          vocab: Path | None = None, closed_methods: dict[str, str] | None = None, split: str = "test",
          leakage: bool = True, n_resamples: int = 1000, seed: int = 0) -> None:
    """Score saved predictions into a results file.

    Args:
        predictions: a predictions JSONL file, or a directory of them (docs/evaluation.md).
        output: where results.json goes; per-sample logs go to `samples/` beside it.
        profile: metric profile (sepit_v1: the official SEPIT metric formulas; corpus_v1: corpus BLEU like ProtT3).
        vocab: a WordPiece vocab.txt (e.g. PubMedBERT's) for BLEU/METEOR tokens; default: word tokens.
        closed_methods: per task (or "*"): last_match, choice or loglikelihood; default from the task.
        split: the split registered tasks are checked against.
        leakage: add the test-to-train identity report for registered tasks.
        n_resamples: bootstrap resamples for the 95 % CIs.
        seed: bootstrap seed.
    """
    started, clock = now(), time.perf_counter()
    rows = read_predictions(predictions)
    fingerprints = sorted({str(r["fingerprint"]) for task in rows.values() for r in task if r.get("fingerprint")})
    names = sorted({str(r.get("model")) for task in rows.values() for r in task if r.get("model")})
    model = ModelCard(name=names[0] if len(names) == 1 else ("mixed: " + ", ".join(names) if names else "unknown"),
                      modality=None, params_total=None, params_active=None,
                      fingerprint=fingerprints[0] if len(fingerprints) == 1 else None).record()
    config = {"predictions": str(predictions), "split": split}
    document = write_results(Path(output), rows, model, config, started, profile=profile, vocab=vocab,
                             closed_methods=closed_methods, split=split, leakage=leakage,
                             n_resamples=n_resamples, seed=seed)
    print(summary_table(document["tasks"]))
    print(f"wrote {output} ({sum(len(r) for r in rows.values())} predictions, {time.perf_counter() - clock:.1f} s)")


def _registered(name: str) -> Task | None:
    try:
        return get_task(name)
    except RegistryError:
        return None
