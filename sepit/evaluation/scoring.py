"""Scoring: prediction rows -> per-task metrics, bootstrap CIs, leakage report and per-sample logs.

A function of the rows and of the tasks they answer (no model, no deep-learning import), so predictions made
anywhere score the same way. Its only other input is the leakage report's identity search, cached on disk by what
it compares. Every metric is computed from per-sample statistics and a weight matrix W (B, n): the point estimate is
W = ones, a bootstrap resample is a row of multinomial counts, an identity bin is a 0/1 row. One code path
therefore gives the value, its confidence interval and its value per leakage bin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Sequence

import numpy as np

from sepit.data.errors import DataError
from sepit.data.sample import InstructionSample, answer_key, is_yes_no
from sepit.evaluation.judge import Judge, JudgeSettings, judge_statistics, load_rubric
from sepit.evaluation.predictions import mismatch
from sepit.evaluation.training_set import NO_TRAINING_SET, named_training_set, task_training_set
from sepit.grounding.grounder import KINDS, default_grounder, paused_gc
from sepit.metrics.bootstrap import intervals_missing_their_point, percentile_cis
from sepit.metrics.extraction import last_option_text, last_yes_no, multiple_choice
from sepit.registry import METRICS, RegistryError, call_if_factory
from sepit.tasks import Task, get_task, sample_hash

if TYPE_CHECKING:
    from sepit.metrics.bertscore import BertScorer
    from sepit.metrics.entities import Grounding

CLOSED_METHODS = ("last_match", "choice", "loglikelihood")
NO_REFERENCES = ("the task's data has no reference answers (a file of questions only): its predictions are in "
                 "predictions/<task>.jsonl, and no metric is computed")
# Test-to-train identity bins of the leakage report, in percent: [lo, hi).
IDENTITY_BINS = (("<30", 0.0, 30.0), ("30-50", 30.0, 50.0), ("50-70", 50.0, 70.0), ("70-90", 70.0, 90.0),
                 (">=90", 90.0, float("inf")))


@dataclass(frozen=True)
class ScoringSettings:
    """How prediction rows become numbers, the same for `sepit bench`, `sepit score` and a submission
    (`--scoring.leakage false`, `--scoring.n_resamples 200`, ...). Unknown closed-set methods are refused when
    the settings are made, before anything is predicted.

    Args:
        profile: metric profile (sepit_v1: the official SEPIT metric formulas; corpus_v1: corpus BLEU like ProtT3).
        vocab: a WordPiece vocab.txt (e.g. PubMedBERT's) for BLEU/METEOR tokens; default: word tokens.
        closed_methods: per task (or "*"): last_match, choice or loglikelihood; default from the task.
        leakage: add the test-to-train identity report for known tasks (registered, or given as task files or
            mappings; test split only).
        identity_backend: the leakage report's search: "auto" (MMseqs2 where `mmseqs` is installed, else
            Biopython), "mmseqs" or "biopython" (docs/evaluation.md, "Leakage report", has how they differ).
        train: the proteins the model was trained on, for the leakage report of every task: a task or suite name
            (their train splits), a task file or mapping, or a FASTA file; default each task's own train split
            (a task without one gets no report, and a note saying why).
        entities: the grounded metrics of open tasks (docs/evaluation.md): "auto" scores every open task whose
            references name ontology entries, "require" also stops on an open task whose references name none,
            "off" leaves them out.
        n_resamples: bootstrap resamples for the 95 % CIs.
        seed: bootstrap seed (each task draws from its own stream: `task_seed`).
        judge: an LLM judge of the open tasks' answers (`JudgeSettings`: model, base_url, rubric, ...;
            docs/evaluation.md, "LLM judge"); its `judge_score` is reported under its own label, never averaged.
        bertscore: the official BERTScore of open tasks (`bertscore_precision`, `_recall`, `_f1`); needs
            `bertscore_model`, since nothing is downloaded.
        bertscore_model: a local folder holding the BERT model to score with (the official one is PubMedBERT,
            `sepit.metrics.bertscore.OFFICIAL_MODEL`); giving it turns BERTScore on.
    """

    profile: str = "sepit_v1"
    vocab: Path | None = None
    closed_methods: dict[str, str] | None = None
    leakage: bool = True
    train: str | None = None
    identity_backend: Literal["auto", "mmseqs", "biopython"] = "auto"
    entities: Literal["auto", "require", "off"] = "auto"
    n_resamples: int = 1000
    seed: int = 0
    judge: JudgeSettings | None = None
    bertscore: bool = False
    bertscore_model: Path | None = None

    def method_for(self, task: str) -> str | None:
        """The closed-set method asked for this task, or None for the task's default."""
        methods = self.closed_methods or {}
        return methods.get(task, methods.get("*"))

    def __post_init__(self) -> None:
        if self.identity_backend not in ("auto", "mmseqs", "biopython"):
            raise DataError("--scoring.identity_backend", f"unknown backend {self.identity_backend!r}",
                            "Use auto, mmseqs or biopython.")
        if self.entities not in ("auto", "require", "off"):
            raise DataError("--scoring.entities", f"unknown setting {self.entities!r}", "Use auto, require or off.")
        if self.judge is not None:
            load_rubric(self.judge.rubric)  # a missing or unversioned rubric stops here, before anything is predicted
        for task, method in (self.closed_methods or {}).items():
            if method not in CLOSED_METHODS:
                raise DataError(f"--scoring.closed_methods {task}", f"unknown method {method!r}",
                                f"Use one of {', '.join(CLOSED_METHODS)}.")
        if self.bertscore_model is not None:
            from sepit.metrics.bertscore import model_files  # torch-free: the folder's files only

            model_files(self.bertscore_model)
            object.__setattr__(self, "bertscore", True)
        elif self.bertscore:
            from sepit.metrics.bertscore import GET_MODEL

            raise DataError("--scoring.bertscore", "BERTScore needs a local model folder (--scoring.bertscore_model "
                            "DIR), and nothing is ever downloaded", GET_MODEL)


def get_profile(name: str):
    from sepit.metrics.profiles import MetricProfile

    return call_if_factory(METRICS.get(name), (MetricProfile,))


def default_closed_method(choices: Sequence[str], answer_format: str | None = None) -> str:
    if answer_format == "multiple_choice":
        return "choice"
    if answer_format == "yes_no" or is_yes_no(choices):
        return "last_match"
    return "choice"


def extract_answer(row: dict, method: str) -> str | None:
    """The option a closed-set row chose, by one of the three methods, or None (an extraction failure)."""
    choices = row["choices"]
    if method == "loglikelihood":
        scores = row.get("loglikelihoods")
        if scores is None:
            raise DataError(f"task {row['task']!r}, sample {row['id']!r}", "has no 'loglikelihoods' to score by",
                            "Predict with a model that supports log-likelihood scoring, or choose the "
                            "'last_match' or 'choice' method for this task.")
        return choices[int(np.argmax(scores))]
    if method == "choice":
        return multiple_choice(row["prediction"], choices)
    if method == "last_match":
        if is_yes_no(choices):
            return last_yes_no(row["prediction"])
        return last_option_text(row["prediction"], choices)
    raise DataError(f"task {row['task']!r}", f"unknown closed-set method {method!r}",
                    f"Use one of {', '.join(CLOSED_METHODS)}.")


def score_task(rows: Sequence[dict], profile, tokenizer, method: str | None = None,
               answer_format: str | None = None, identities: Mapping[str, float] | None = None,
               n_resamples: int = 1000, seed: int = 0,
               grounding: Grounding | None = None,
               judged: Mapping[str, Any] | None = None,
               bertscore: BertScorer | None = None) -> tuple[dict[str, Any], list[dict]]:
    """(task results, per-sample log rows) for the rows of one task. `grounding`: the grounded metrics of an open
    task, from the reference entities it holds and the answers grounded here; `judged`: the LLM judge's verdicts
    by sample id (sepit.evaluation.judge); `bertscore`: scores open rows by BERTScore (sepit.metrics.bertscore)."""
    rows = sorted(rows, key=lambda r: r["id"])
    n = len(rows)
    kinds = {r["kind"] for r in rows}
    if len(kinds) > 1:
        raise DataError(f"task {rows[0]['task']!r}", "mixes open and closed rows", "Give one kind per task.")
    logs = [{"id": r["id"], **{k: r[k] for k in ("prompt_hash", "protein_hash", "reference_hash") if k in r}}
            for r in rows]
    result: dict[str, Any] = {"n": n, "kind": kinds.pop() if kinds else None}
    if result["kind"] == "closed":
        method = method or default_closed_method(rows[0]["choices"], answer_format)
        answers = [extract_answer(r, method) for r in rows]
        labels = sorted({answer_key(c) for r in rows for c in r["choices"]})
        gold = np.array([labels.index(answer_key(r["reference"])) for r in rows])
        pred = np.array([labels.index(answer_key(a)) if a is not None else -1 for a in answers])
        if len({frozenset(answer_key(c) for c in r["choices"]) for r in rows}) > 1:
            result["not_reported"] = {"macro_f1": "the questions offer different option sets, so classes are not "
                                                  "shared across samples; accuracy is the metric"}
        # A withheld macro-F1 is never computed (values, CIs, identity bins); the keyword only when needed, so a
        # third-party profile with the four-argument method keeps working on fixed label sets.
        skip = {"macro_f1": False} if "macro_f1" in result.get("not_reported", {}) else {}
        metrics = lambda w: profile.closed_metrics(gold, pred, len(labels), w, **skip)  # noqa: E731
        result["closed_method"] = method
        for log, answer, g in zip(logs, answers, gold):
            correct = answer is not None and answer_key(answer) == labels[g]
            log.update(answer=answer, correct=correct, accuracy=100.0 * correct)  # accuracy: the board's value
    else:
        stats = profile.open_statistics([r["prediction"] for r in rows], [r["reference"] for r in rows], tokenizer)
        grounded = grounding.statistics(rows) if grounding else None
        metrics = lambda w: {**profile.open_metrics(stats, w),  # noqa: E731
                             **(grounding.metrics(grounded, w) if grounding else {})}
        per_sample = {name: [float(v) for v in values] for name, values in profile.per_sample(stats).items()}
        if grounding:
            per_sample.update(grounding.per_sample(grounded))
            result["grounding"] = grounding.summary(grounded)
        if bertscore:
            from sepit.metrics.bertscore import bertscore_metrics

            bert = bertscore.per_sample([r["prediction"] for r in rows], [r["reference"] for r in rows])
            metrics = lambda w, text=metrics: {**text(w), **bertscore_metrics(bert, w)}  # noqa: E731
            per_sample.update({name: [float(v) for v in values] for name, values in bert.items()})
        for name, values in per_sample.items():
            for log, value in zip(logs, values):
                log[name] = value
    if judged is not None:
        judge_metrics, judge_logs = judge_statistics([judged[r["id"]] for r in rows])
        metrics = lambda w, text=metrics: {**text(w), **judge_metrics(w)}  # noqa: E731
        for log, fields in zip(logs, judge_logs):
            log.update(fields)
    result["metrics"] = {name: _finite(v[0]) for name, v in metrics(np.ones((1, n))).items()} if n else {}
    cis = percentile_cis(metrics, n, n_resamples, seed)
    ci_notes = intervals_missing_their_point(result["metrics"], cis)
    for name, (lo, hi) in cis.items():
        if result["metrics"].get(name) is not None and np.isnan([lo, hi]).any():
            ci_notes[name] = ("undefined on some resamples (a resample without any sample this metric covers), "
                              "so no interval is reported")
    result["ci"] = {name: None if name in ci_notes else [_finite(lo), _finite(hi)] for name, (lo, hi) in cis.items()}
    if ci_notes:
        result["ci_notes"] = ci_notes
    if identities is not None:
        identity = np.array([identities.get(r["id"], np.nan) for r in rows], dtype=float)
        for log, value in zip(logs, identity):
            log["train_identity"] = None if np.isnan(value) else float(value)
        result["leakage"] = leakage_report(identity, metrics)
    return result, logs


def _finite(value: float) -> float | None:
    """JSON has no NaN: a metric undefined on a set (e.g. a bin with no samples) is null."""
    return None if np.isnan(value) else float(value)


def leakage_report(identity: np.ndarray, metrics: Callable[[np.ndarray], dict[str, np.ndarray]]) -> dict:
    """How close test proteins are to training proteins, and the metrics within each identity bin."""
    known = ~np.isnan(identity)
    masks = np.array([known & (identity >= lo) & (identity < hi) for _, lo, hi in IDENTITY_BINS], dtype=float)
    counts = masks.sum(1).astype(int)
    values = metrics(masks) if counts.any() else {}
    bins = {}
    for i, (label, _, _) in enumerate(IDENTITY_BINS):
        bins[label] = {"n": int(counts[i]),
                       "metrics": {name: _finite(v[i]) for name, v in values.items()} if counts[i] else {}}
    return {"bins": bins, "median_identity": float(np.median(identity[known])) if known.any() else None,
            "unknown": int((~known).sum())}


def summary_table(tasks: Mapping[str, dict]) -> str:
    """A plain-text table of the headline metrics with 95 % CIs and the identity bins, for the terminal."""
    lines = []
    for name, result in tasks.items():
        if "not_scored" in result:
            lines.append(f"{name} (n={result['n']}): not scored, {result['not_scored']}")
            continue
        shown = [m for m in ("entity_f1", "go_hf1", "accuracy", "macro_f1", "extraction_failure_rate", "bleu2", "bleu4",
                             "rougeL", "meteor", "corpus_bleu4", "judge_score", "judge_failure")
                 if result["metrics"].get(m) is not None]
        cells = [f"{m} {result['metrics'][m]:.2f}" + (f" [{result['ci'][m][0]:.2f}, {result['ci'][m][1]:.2f}]"
                                                     if result.get("ci", {}).get(m) else "") for m in shown]
        lines.append(f"{name} (n={result['n']}): " + "; ".join(cells))
        leakage = result.get("leakage")
        if leakage:
            main = shown[0] if shown else None
            parts = [f"{label}: n={b['n']}" + (f" {main} {b['metrics'][main]:.1f}" if main and b["n"] else "")
                     for label, b in leakage["bins"].items()]
            lines.append("    identity to train " + ", ".join(parts))
    return "\n".join(lines)


def score_rows(rows_by_task: Mapping[str, list[dict]], scoring: ScoringSettings = ScoringSettings(),
               split: str = "test", tasks: Mapping[str, Task] | None = None,
               samples: Mapping[str, Sequence[InstructionSample]] | None = None,
               rows_checked: bool = False) -> tuple[dict, dict, dict]:
    """(results per task, per-sample logs per task, the metric profile's record). Tasks are looked up in
    `tasks`, then in the registry; rows of an unknown task are scored from the rows alone. `samples`: each
    task's samples of the split as the caller built them (`sepit bench`), not built a second time; `rows_checked`:
    the caller has checked the rows against them already (`check_reusable`), so they are not checked again."""
    from sepit.metrics.agreement import task_agreement
    from sepit.metrics.text import make_tokenizer

    metric_profile, tokenizer = get_profile(scoring.profile), make_tokenizer(scoring.vocab)
    judge = Judge(scoring.judge) if scoring.judge else None
    if scoring.bertscore:
        from sepit.metrics.bertscore import BertScorer

        bertscore = BertScorer(scoring.bertscore_model)
    found = {name: (tasks or {}).get(name) or _registered(name) for name in rows_by_task}
    given = {name for name in found if samples is not None and name in samples}
    expected_by_task = {name: samples[name] if name in given else task.samples(split)
                        for name, task in found.items() if task is not None}
    if judge:  # the whole run's cost, before the first call
        judge.estimate({name: (rows, {s.id: s.instruction for s in expected_by_task.get(name, ())})
                        for name, rows in sorted(rows_by_task.items())
                        if rows and rows[0]["kind"] == "open" and not _without_references(name, rows, found[name])})
    results, logs = {}, {}
    for name in sorted(rows_by_task):
        rows = rows_by_task[name]
        task = found[name]
        identities, by_id = None, {}
        info: dict[str, Any] = {"version": None, "dataset_hash": None, "complete": None}
        if task is not None:
            expected = expected_by_task[name]
            by_id = {s.id: s for s in expected}
            if not (name in given and rows_checked):
                _check_rows(task, rows, by_id)
            ids = {r["id"] for r in rows}
            missing = sum(s.id not in ids for s in expected)
            unknown = len(ids - {s.id for s in expected})
            info = {"version": task.version, "split": split, "expected_n": len(expected), "missing": missing,
                    "unknown_ids": unknown, "complete": missing == 0 and unknown == 0,
                    "dataset_hash": sample_hash(expected) if missing == 0 and unknown == 0 else None}
            if scoring.leakage and task.has_references and split == "test":
                training = named_training_set(scoring.train) if scoring.train else task_training_set(task)
                if training is None:
                    info["not_reported"] = {"leakage": NO_TRAINING_SET}
                else:
                    from sepit.identity import max_train_identity, resolve_backend

                    backend = resolve_backend(scoring.identity_backend)
                    by_sample = max_train_identity(task, training, backend=backend)
                    identities = {sid: found[0] for sid, found in by_sample.items()}
        if _without_references(name, rows, task):
            results[name] = {**info, "n": len(rows), "kind": rows[0]["kind"] if rows else None, "metrics": {},
                             "not_scored": NO_REFERENCES}
            logs[name] = [{"id": r["id"]} for r in sorted(rows, key=lambda r: r["id"])]
            continue
        grounding = None
        if scoring.entities != "off" and rows and rows[0]["kind"] == "open":
            grounding = task_grounding(name, rows, by_id, scoring.entities == "require")
        judged = None
        if judge and rows and rows[0]["kind"] == "open":
            judged = judge.judge_rows(name, rows, {sid: sample.instruction for sid, sample in by_id.items()})
        result, logs[name] = score_task(rows, metric_profile, tokenizer, scoring.method_for(name),
                                        task.answer_format if task else None, identities, scoring.n_resamples,
                                        scoring.seed, grounding, judged,
                                        bertscore if scoring.bertscore else None)
        if identities is not None:
            result["leakage"].update(train=training.record(), backend=backend)
        not_reported = {**info.pop("not_reported", {}), **result.pop("not_reported", {})}
        results[name] = {**info, **result, **({"not_reported": not_reported} if not_reported else {})}
        if task is not None:  # what the board's slices need, so it never rebuilds the task
            for log in logs[name]:
                if log["id"] in by_id:
                    protein = by_id[log["id"]].protein
                    log.update(protein_length=len(protein.sequence), has_structure=protein.coords is not None)
        agreement = task_agreement(logs[name], scoring.n_resamples, scoring.seed)
        if agreement:  # a model-based score beside the grounded F1: how far to trust it (sepit.metrics.agreement)
            results[name]["agreement"] = agreement
    record = {"name": metric_profile.name, "version": metric_profile.version,
              "description": metric_profile.description, "tokenizer": tokenizer.name,
              "bootstrap": {"method": "percentile", "level": 0.95, "resamples": scoring.n_resamples,
                            "seed": scoring.seed}}
    if any("grounding" in result for result in results.values()):
        record["grounding"] = default_grounder().record()
    if judge:
        record["judge"] = judge.record()
    if scoring.bertscore:
        record["bertscore"] = bertscore.record()
    return results, logs, record


def _without_references(name: str, rows: Sequence[dict], task: Task | None) -> bool:
    """Whether a task's rows are questions without answers (predicted, never scored); a mix is an error."""
    missing = sum(r["reference"] is None for r in rows)
    if missing and missing < len(rows):
        raise DataError(f"task {name!r}", f"{missing} of its {len(rows)} prediction rows have no reference",
                        "Score rows of one task either all with references or all without.")
    return (task is not None and not task.has_references) or bool(rows) and missing == len(rows)


def task_grounding(task: str, rows: Sequence[dict], samples: Mapping[str, InstructionSample], required: bool):
    """The grounded metrics' references for an open task's rows ({id, reference}): a sample's annotations
    (metadata.entities) where it has them, else its reference text grounded. An unknown id in the annotations,
    or (with `required`) a task whose references name nothing, stops with the sample or the count. `sepit bench`
    calls it before predicting, so bad annotations cost no prediction time."""
    from sepit.metrics.entities import Grounding, task_kinds

    grounder = default_grounder()

    def reference(sample_id: str, text: str):
        sample = samples.get(sample_id)
        annotations = sample.metadata.get("entities") if sample is not None else None
        return (grounder.reference(text) if annotations is None
                else grounder.from_annotations(annotations, f"task {task!r}, sample {sample_id!r}"))

    with paused_gc():
        references = {row["id"]: reference(row["id"], row["reference"]) for row in rows}
        # The kinds come from the task's whole split where it is known, not from the rows scored (a --limit run).
        split = ([references.get(s.id) or reference(s.id, s.reference) for s in samples.values()]
                 or list(references.values()))
    without = sum(not any(ref[k] for k in KINDS) for ref in split)
    if required and without == len(split):
        raise DataError(f"task {task!r}", f"--scoring.entities require, but none of its {len(split)} references "
                        "names a GO term, EC number or location (100 % without entities)",
                        "Give each sample its annotations as metadata.entities (docs/data.md), or score with "
                        "--scoring.entities auto.")
    return Grounding(grounder, references, task_kinds(list(split)))


def _check_rows(task: Task, rows: Sequence[dict], by_id: Mapping[str, InstructionSample]) -> None:
    """Every row answers the very sample of the task it names (its reference, prompt and protein)."""
    for row in rows:
        problem = row["id"] in by_id and mismatch(row, by_id[row["id"]])
        if problem:
            raise DataError(f"task {task.name!r} (version {task.version}), sample {row['id']!r}",
                            f"the prediction row does not match the task: {problem}",
                            "Predictions are scored against the registered task's own references; "
                            "re-predict with this version of the task.")


def _registered(name: str) -> Task | None:
    try:
        return get_task(name)
    except RegistryError:
        return None
