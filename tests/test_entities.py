"""Grounded metrics (sepit/metrics/entities.py) against sklearn's per-sample set F1, hand-propagated GO closures,
and the template-versus-biology probe built from SP14's own data."""

import functools
import gzip
import json

import numpy as np
import pytest
from sklearn.metrics import precision_score, recall_score
from sklearn.preprocessing import MultiLabelBinarizer

from sepit.data.errors import DataError
from sepit.evaluation.probe import probe_answers
from sepit.evaluation.scoring import ScoringSettings, score_rows
from sepit.grounding.grounder import default_grounder
from sepit.grounding.ontology import GO_FILE, ROOTS
from sepit.metrics.bootstrap import iter_resample_weights
from sepit.metrics.entities import entity_metrics, entity_statistics, task_kinds
from sepit.tasks import get_task

ANSWERS = [  # (prediction, reference)
    ("It enables ATP binding and adenylate kinase activity.", "This protein enables ATP binding."),
    ("It enables nucleotide binding.", "This protein enables ATP binding and GTP binding."),
    ("No idea.", "This protein enables DNA binding."),
    ("It has protein kinase activity, ATP binding and zinc ion binding.", "Zinc ion binding; kinase activity."),
    ("Found in the nucleus (EC 2.7.11.1).", "Catalytic activity (EC 2.7.11.2). Found in the cytoplasm."),
    ("EC 3.1.3.16 in the mitochondrial matrix", "EC 3.1.3.48, located in the mitochondrion."),
]


def sets(text):
    return default_grounder().reference(text)


def open_rows(pairs, task="my_open"):
    return [{"task": task, "id": f"s{i:03d}", "prediction": p, "reference": r, "kind": "open", "choices": None}
            for i, (p, r) in enumerate(pairs)]


def test_entity_scores_equal_sklearns_per_sample_set_scores():
    """Recall: sklearn's per-sample recall against the reference's entries. Precision: against everything the
    reference makes true (its entries, their GO ancestors, partial EC numbers above them). F1: their harmonic
    mean, per sample."""
    refs, preds = [sets(r) for _, r in ANSWERS], [sets(p) for p, _ in ANSWERS]
    kinds = task_kinds(refs)
    ontology = default_grounder().ontology
    labelled = lambda pairs: {f"{k}:{i}" for k, i in pairs}  # noqa: E731
    own = [labelled((k, i) for k in kinds for i in e[k]) for e in refs]
    true = [labelled(implied_by_hand(e, kinds)) for e in refs]
    guessed = [labelled((k, i) for k in kinds for i in e[k]) for e in preds]
    binarizer = MultiLabelBinarizer().fit(own + true + guessed)
    y_own, y_true, y_pred = (binarizer.transform(x) for x in (own, true, guessed))
    precision = np.array([precision_score(t[None], p[None], average="samples", zero_division=0)
                          for t, p in zip(y_true, y_pred)])
    recall = np.array([recall_score(t[None], p[None], average="samples", zero_division=0)
                       for t, p in zip(y_own, y_pred)])
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0)
    stats = entity_statistics(preds, refs, kinds, ontology)
    covered = stats["mask_entity"]
    for name, expected in (("entity_precision", precision), ("entity_recall", recall), ("entity_f1", f1)):
        assert stats[name][covered] == pytest.approx(expected[covered], abs=1e-12), name
    # a true but more general term costs no precision: nucleotide binding for ATP binding
    assert stats["entity_precision"][1] == 1.0 and stats["entity_recall"][1] == 0.0


def implied_by_hand(ref, kinds):
    """The reference's entries, their GO ancestors (walked in the shipped file) and the partial EC numbers."""
    out = set()
    for kind in kinds:
        for entry in ref[kind]:
            out.add((kind, entry))
            if kind.startswith("go_"):
                out |= {(kind, a) for a in _closure_by_hand([entry])}
            if kind == "ec":
                levels = entry.split(".")
                out |= {("ec", ".".join(levels[:k] + ["-"] * (4 - k))) for k in (1, 2, 3) if "-" not in levels[:k]}
    return out


@functools.cache
def _parents():
    return {go_id: row[2] for go_id, row in json.loads(gzip.decompress(GO_FILE.read_bytes()))["terms"].items()}


def _closure_by_hand(ids):
    """Ancestors by walking the shipped file's parent lists: independent of GeneOntology.closure."""
    parents = _parents()
    found, todo = set(), list(ids)
    while todo:
        term = todo.pop()
        if term not in found:
            found.add(term)
            todo += parents[term]
    return found - ROOTS


def test_go_hf1_is_set_f1_of_the_true_path_closures():
    refs, preds = [sets(r) for _, r in ANSWERS], [sets(p) for p, _ in ANSWERS]
    kinds = task_kinds(refs)
    stats = entity_statistics(preds, refs, kinds, default_grounder().ontology)
    go_kinds = [k for k in kinds if k.startswith("go_")]
    for i, (pred, ref) in enumerate(zip(preds, refs)):
        truth = _closure_by_hand([t for k in go_kinds for t in ref[k]])
        guess = _closure_by_hand([t for k in go_kinds for t in pred[k]])
        assert stats["mask_go"][i] == bool(truth)
        if truth:
            expected = 2 * len(truth & guess) / (len(truth) + len(guess)) if truth & guess else 0.0
            assert stats["go_hf1"][i] == pytest.approx(expected)
    # a parent of the right term earns partial credit; the exact term earns it all
    assert 0 < stats["go_hf1"][1] < 1 and stats["entity_f1"][1] == 0  # nucleotide binding for ATP binding


def test_ec_levels_and_location_accuracy():
    refs, preds = [sets(r) for _, r in ANSWERS], [sets(p) for p, _ in ANSWERS]
    stats = entity_statistics(preds, refs, task_kinds(refs), default_grounder().ontology)
    assert [stats[f"ec_l{k}"][4] for k in (1, 2, 3, 4)] == [1.0, 1.0, 1.0, 0.0]  # 2.7.11.1 for 2.7.11.2
    assert [stats[f"ec_l{k}"][5] for k in (1, 2, 3, 4)] == [1.0, 1.0, 1.0, 0.0]  # 3.1.3.16 for 3.1.3.48
    assert list(stats["mask_ec4"]) == [False] * 4 + [True] * 2
    assert stats["location_accuracy"][4] == 0.0 and stats["location_accuracy"][5] == 1.0  # matrix -> mitochondrion
    # a partial reference counts only at the levels it reaches
    grounder = default_grounder()
    partial = [grounder.from_annotations({"ec": ["3.1.-.-"]}, "x")]
    stats = entity_statistics([grounder.ground("EC 3.1.-.-")], partial, ("ec",), grounder.ontology)
    assert stats["ec_l2"][0] == 1.0 and not stats["mask_ec3"][0] and not stats["mask_ec4"][0]
    assert stats["entity_f1"][0] == 1.0


def test_location_accuracy_asks_for_the_deeploc_label_and_nothing_the_annotations_deny():
    grounder = default_grounder()
    ref = grounder.from_annotations({"go": ["GO:0005634", "GO:0005783"], "location": ["Nucleus"]}, "x")
    answers = {"It is found in the nucleus.": 1.0, "Nucleus and endoplasmic reticulum.": 1.0,
               "It is found in the endoplasmic reticulum.": 0.0, "Nucleus and mitochondrion.": 0.0}
    stats = entity_statistics([grounder.ground(a) for a in answers], [ref] * len(answers), ("go_cc", "location"),
                              grounder.ontology)
    assert list(stats["location_accuracy"]) == list(answers.values())


def test_weighted_metrics_are_means_over_the_samples_each_covers():
    refs, preds = [sets(r) for _, r in ANSWERS], [sets(p) for p, _ in ANSWERS]
    stats = entity_statistics(preds, refs, task_kinds(refs), default_grounder().ontology)
    for W in iter_resample_weights(len(refs), 50, seed=3):
        values = entity_metrics(stats, W)
        for b, row in enumerate(W):
            mask = stats["mask_ec4"] & (row > 0)
            expected = np.average(stats["ec_l4"][mask], weights=row[mask]) if mask.any() else np.nan
            assert values["ec_l4"][b] == pytest.approx(expected, nan_ok=True)


def test_results_report_coverage_and_logs_leave_uncovered_samples_empty():
    results, logs, record = score_rows({"my_open": open_rows(ANSWERS)}, ScoringSettings(n_resamples=100), tasks={})
    task = results["my_open"]
    assert task["grounding"]["kinds"] == ["go_mf", "go_cc", "ec", "location"]
    assert task["grounding"]["n"]["ec_l1"] == 2 and task["grounding"]["samples_without_entities"] == 0
    assert all(task["ci"][m][0] <= task["metrics"][m] <= task["ci"][m][1] for m in ("entity_f1", "go_hf1"))
    assert logs["my_open"][0]["ec_l1"] is None and logs["my_open"][4]["ec_l1"] == 100.0
    assert record["grounding"]["go"] == "GO 2022-07-01" and record["grounding"]["synonyms"] == "multiword"


def test_a_task_that_requires_entities_but_names_none_stops_with_the_count():
    rows = open_rows([("Hello.", "A friendly greeting."), ("Bye.", "A short farewell.")], task="chat")
    results, _, _ = score_rows({"chat": rows}, ScoringSettings(n_resamples=0), tasks={})
    assert results["chat"]["grounding"]["share_without_entities"] == 100.0
    assert "entity_f1" not in results["chat"]["metrics"]
    with pytest.raises(DataError, match=r"task 'chat': .*none of its 2 references.*100 % without"):
        score_rows({"chat": rows}, ScoringSettings(n_resamples=0, entities="require"), tasks={})
    off, _, record = score_rows({"chat": rows}, ScoringSettings(n_resamples=0, entities="off"), tasks={})
    assert "grounding" not in off["chat"] and "grounding" not in record


@pytest.mark.parametrize("task_name", ["sp14_function", "sp14_process", "sp14_catalytic_activity"])
def test_the_headline_prefers_right_biology_in_plain_words_to_the_wrong_biology_in_the_template(task_name):
    """Answers built from the data (sepit/evaluation/probe.py): A = another protein's reference sharing no
    annotation, B = this protein's GO term names or EC numbers in plain words. The board's headline, entity F1,
    must rank B above A on >= 95 % of samples and give A at most 10 on average."""
    task = get_task(task_name)
    triples = probe_answers(task.samples("test"), default_grounder())
    assert len(triples) >= 0.9 * len(task.samples("test"))
    scores = {}
    for label, index in (("A", 1), ("B", 2)):
        rows = [{"task": task_name, "id": s.id, "prediction": t[index], "reference": s.reference, "kind": "open",
                 "choices": None} for t in triples for s in [t[0]]]
        results, logs, _ = score_rows({task_name: rows}, ScoringSettings(leakage=False, n_resamples=0),
                                      samples={task_name: [t[0] for t in triples]}, tasks={task_name: task})
        scores[label] = {log["id"]: log["entity_f1"] for log in logs[task_name]}
        scores[label + "_mean"] = results[task_name]["metrics"]["entity_f1"]
    preferred = np.mean([scores["B"][i] > scores["A"][i] for i in scores["A"]])
    assert preferred >= 0.95, preferred
    assert scores["A_mean"] <= 10 and scores["B_mean"] >= 80


def test_a_samples_score_does_not_depend_on_which_rows_are_scored():
    """The kinds a task is scored on come from its whole split: a --limit run scores a sample as a full run does."""
    from sepit.data.protein import make_protein
    from sepit.data.sample import make_sample
    from sepit.tasks import Task

    protein = make_protein("P1", "MKVL")
    samples = [make_sample("a", "mixed", protein, "What does <protein> do?", "It binds DNA.",
                           metadata={"entities": {"go": ["GO:0003677"]}}),
               make_sample("b", "mixed", protein, "Where is <protein>?", "In the nucleus.",
                           metadata={"entities": {"location": ["Nucleus"]}})]
    task = Task("mixed", "1", "open", "two kinds", "free_text", build=lambda: {"test": samples})
    answers = {"a": "DNA binding, in the nucleus.", "b": "Nucleus."}
    rows = [{"task": "mixed", "id": s.id, "prediction": answers[s.id], "reference": s.reference, "kind": "open",
             "choices": None} for s in samples]

    def entity_f1(scored):
        _, logs, _ = score_rows({"mixed": scored}, ScoringSettings(leakage=False, n_resamples=0),
                                tasks={"mixed": task}, samples={"mixed": samples})
        return {log["id"]: log["entity_f1"] for log in logs["mixed"]}

    assert entity_f1(rows[:1])["a"] == entity_f1(rows)["a"] == pytest.approx(200 / 3)  # the location counts
