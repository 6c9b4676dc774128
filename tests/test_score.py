"""`sepit score` on hand-made predictions reproduces the reference libraries' numbers."""

import json

import numpy as np
import pytest
from nltk.translate.bleu_score import corpus_bleu
from nltk.translate.meteor_score import meteor_score
from rouge_score import rouge_scorer
from sklearn.metrics import f1_score

from sepit.cli import main
from sepit.data.errors import DataError
from sepit.metrics.text import word_tokens

OPEN = [
    ("This protein binds ATP and hydrolyses it.", "This protein enables ATP binding and ATP hydrolysis activity."),
    ("Located in the nucleus.", "This protein is found in the nucleus and the cytoplasm."),
    ("", "This protein is involved in DNA repair."),
    ("This protein is involved in DNA repair.", "This protein is involved in DNA repair."),
    ("Kinase.", "A serine/threonine kinase that phosphorylates histone H3."),
]
CLOSED = [("Yes, it is.", "yes"), ("No.", "yes"), ("It might be.", "no"), ("no", "no"), ("Yes! Actually no.", "no")]
BLEU_WEIGHTS = {"bleu1": (1, 0, 0, 0), "bleu2": (0.5, 0.5, 0, 0), "bleu3": (0.33, 0.33, 0.33, 0),
                "bleu4": (0.25, 0.25, 0.25, 0.25)}


@pytest.fixture
def predictions(tmp_path):
    rows = [{"task": "my_open", "id": f"o{i}", "prediction": p, "reference": r, "kind": "open", "choices": None}
            for i, (p, r) in enumerate(OPEN)]
    rows += [{"task": "my_closed", "id": f"c{i}", "prediction": p, "reference": r, "kind": "closed",
              "choices": ["yes", "no"]} for i, (p, r) in enumerate(CLOSED)]
    path = tmp_path / "api_model.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_reproduces_nltk_and_rouge_score(predictions, tmp_path, capsys):
    main(["score", "--predictions", str(predictions), "--output", str(tmp_path / "results.json")])
    results = json.loads((tmp_path / "results.json").read_text())
    metrics = results["tasks"]["my_open"]["metrics"]
    hyps, refs = [word_tokens(p) for p, _ in OPEN], [word_tokens(r) for _, r in OPEN]
    for name, weights in BLEU_WEIGHTS.items():
        expected = np.mean([corpus_bleu([[r]], [h], weights=weights) for h, r in zip(hyps, refs)]) * 100
        assert metrics[name] == pytest.approx(expected, abs=1e-9), name
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for name in ("rouge1", "rouge2", "rougeL"):
        expected = np.mean([scorer.score(r, p)[name].fmeasure for p, r in OPEN]) * 100
        assert metrics[name] == pytest.approx(expected, abs=1e-9), name
    expected = np.mean([meteor_score([r], h) for h, r in zip(hyps, refs)]) * 100
    assert metrics["meteor"] == pytest.approx(expected, abs=1e-9)

    closed = results["tasks"]["my_closed"]
    assert closed["metrics"]["accuracy"] == pytest.approx(60.0)  # rows 0, 3 and 4 (the last yes/no counts)
    gold = [r for _, r in CLOSED]
    pred = ["yes", "no", "none", "no", "no"]
    assert closed["metrics"]["extraction_failure_rate"] == pytest.approx(20.0)
    assert closed["metrics"]["macro_f1"] == pytest.approx(
        100 * f1_score(gold, pred, labels=sorted(set(gold)), average="macro", zero_division=0), abs=1e-9)
    assert results["metric_profile"]["name"] == "sepit_v1"
    assert results["model"]["name"] == "unknown" and "leakage" not in closed  # unregistered task
    for name in metrics:
        if results["tasks"]["my_open"]["ci"][name] is None:  # location_accuracy covers one sample
            assert "undefined on some resamples" in results["tasks"]["my_open"]["ci_notes"][name]
            continue
        lo, hi = results["tasks"]["my_open"]["ci"][name]
        assert lo <= metrics[name] + 1e-9 and metrics[name] <= hi + 1e-9
    assert "my_closed (n=5)" in capsys.readouterr().out


def test_a_bad_predictions_file_fails_with_its_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task": "t", "id": "1", "prediction": "x", "reference": "y", "kind": "open"}\n{"task": "t"\n')
    with pytest.raises(SystemExit) as exit:
        main(["score", "--predictions", str(bad), "--output", str(tmp_path / "r.json")])
    assert exit.value.code == 1
    assert "bad.jsonl, line 2: malformed JSON" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_rows_of_a_registered_task_are_scored_against_its_own_references(tmp_path):
    from sepit.evaluation.scoring import ScoringSettings, score_rows
    from sepit.tasks import get_task

    samples = get_task("sp14_membrane").samples("test")
    rows = [{"task": s.task, "id": s.id, "prediction": "yes", "reference": "yes", "kind": "closed",
             "choices": list(s.choices)} for s in samples]  # every gold answer rewritten to "yes"
    with pytest.raises(DataError, match=r"task 'sp14_membrane' \(version [^)]*\), sample .* its reference 'yes' is "
                                        r"not the task's 'no'"):
        score_rows({"sp14_membrane": rows}, ScoringSettings(leakage=False))


def test_references_match_their_choices_whatever_the_case_and_spacing(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"task": "t", "id": "1", "prediction": "Yes", "reference": "yes ", "kind": "closed",
                                "choices": ["Yes", "No"]}) + "\n")
    main(["score", "--predictions", str(path), "--output", str(tmp_path / "r.json")])
    assert json.loads((tmp_path / "r.json").read_text())["tasks"]["t"]["metrics"]["accuracy"] == 100.0


def _many_class_rows(rng, task, classes, options_per_question=None, n=200):
    """Closed rows whose gold classes follow Zipf's law (a few common, many rare); the model answers right 60 %
    of the time, a random option 35 %, and nothing readable 5 %. Each question offers its own
    `options_per_question` classes, or all of them."""
    from sepit.data.sample import OPTION_LETTERS

    frequency = 1 / np.arange(1, len(classes) + 1)
    rows = []
    for i in range(n):
        gold = classes[rng.choice(len(classes), p=frequency / frequency.sum())]
        choices = list(classes)
        if options_per_question:
            others = [c for c in classes if c != gold]
            choices = [gold, *rng.choice(others, options_per_question - 1, replace=False)]
            rng.shuffle(choices)
        u = rng.random()
        answer = gold if u < 0.6 else None if u > 0.95 else choices[rng.integers(len(choices))]
        prediction = f"Answer: {OPTION_LETTERS[choices.index(answer)]}" if answer else "I cannot tell."
        rows.append({"task": task, "id": f"q{i:03d}", "prediction": prediction, "reference": gold,
                     "kind": "closed", "choices": choices})
    return rows


def test_every_reported_interval_contains_its_point_estimate():
    from sepit.evaluation.scoring import get_profile, score_task
    from sepit.metrics.text import make_tokenizer

    rng = np.random.default_rng(0)
    words = ["binds", "binding", "atp", "the", "a", "kinase", "of", "dna", "zinc", "membrane", ".", ","]
    open_rows = [{"task": "open", "id": f"o{i:03d}", "kind": "open", "choices": None,
                  "prediction": " ".join(rng.choice(words, rng.integers(1, 15))),
                  "reference": " ".join(rng.choice(words, rng.integers(1, 15)))} for i in range(200)]
    own_options = _many_class_rows(rng, "own_options", [f"class {k:02d}" for k in range(30)], 4)
    # 26 options, the most a question can name by letter (check_choices): one fixed label set
    fixed = _many_class_rows(rng, "fixed", [f"class {k:02d}" for k in range(26)])
    identities = {f"{p}{i:03d}": float(rng.uniform(0, 100)) for p in "oq" for i in range(200)}
    profile, tokenizer = get_profile("sepit_v1"), make_tokenizer(None)
    results = {rows[0]["task"]: score_task(rows, profile, tokenizer, identities=identities, seed=1)[0]
               for rows in (open_rows, own_options, fixed)}

    assert "macro_f1" in results["fixed"]["metrics"] and "not_reported" not in results["fixed"]
    assert set(results["own_options"]["not_reported"]) == {"macro_f1"}
    assert "different option sets" in results["own_options"]["not_reported"]["macro_f1"]
    for name, result in results.items():
        assert "ci_notes" not in result, name  # every interval holds its point without the guard's help
        assert set(result["ci"]) == set(result["metrics"]), name
        for metric, point in result["metrics"].items():
            lo, hi = result["ci"][metric]
            assert lo - 1e-9 <= point <= hi + 1e-9, (name, metric, lo, point, hi)
    bins = results["own_options"]["leakage"]["bins"].values()
    assert all(b["metrics"] and "macro_f1" not in b["metrics"] for b in bins)
    assert all("macro_f1" in b["metrics"] for b in results["fixed"]["leakage"]["bins"].values())


class _DistinctShare:
    """A profile whose one closed metric, the share of distinct samples drawn, is 100 on the data and about 63
    on every resample: a statistic biased on resamples, whose percentile interval misses its point."""

    def closed_metrics(self, gold, pred, n_classes, W):
        return {"distinct": 100 * (W > 0).sum(1) / W.shape[1], "accuracy": 100 * (W @ (gold == pred)) / W.sum(1)}


def test_an_interval_that_misses_its_point_is_withheld_with_the_reason():
    from sepit.evaluation.scoring import score_task, summary_table

    rows = [{"task": "t", "id": f"q{i}", "prediction": "yes" if i % 3 else "no", "reference": "yes",
             "kind": "closed", "choices": ["yes", "no"]} for i in range(50)]
    result, _ = score_task(rows, _DistinctShare(), None)
    assert result["metrics"]["distinct"] == 100.0 and result["ci"]["distinct"] is None
    assert "does not contain the point estimate 100" in result["ci_notes"]["distinct"]
    assert set(result["ci_notes"]) == {"distinct"} and result["ci"]["accuracy"] is not None
    assert "accuracy 66.00 [" in summary_table({"t": result})
