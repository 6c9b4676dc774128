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
