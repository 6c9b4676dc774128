import json

import pytest

from sepit.data.errors import DataError
from sepit.evaluation.predictions import PredictionStore, read_predictions


def row(task="t", id="a", prediction="yes", reference="yes", kind="closed", choices=("yes", "no"), **extra):
    return {"task": task, "id": id, "prediction": prediction, "reference": reference, "kind": kind,
            "choices": list(choices) if choices else None, **extra}


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_reads_a_file_or_a_directory_by_task(tmp_path):
    write(tmp_path / "a.jsonl", [row(id="1"), row(id="2")])
    write(tmp_path / "b.jsonl", [row(task="u", id="1", kind="open", choices=None, reference="text")])
    by_task = read_predictions(tmp_path)
    assert {k: [r["id"] for r in v] for k, v in by_task.items()} == {"t": ["1", "2"], "u": ["1"]}
    assert list(read_predictions(tmp_path / "a.jsonl")) == ["t"]


@pytest.mark.parametrize("bad, message", [
    (row(prediction=None), r"line 2 \(record 'b'\): field 'prediction' must be a string"),
    (row(kind="multi"), "kind must be 'open' or 'closed'"),
    (row(choices=None), "a closed-set row needs 'choices'"),
    (row(reference="maybe"), "reference 'maybe' is not one of the choices"),
    (row(id="a"), r"sample 'a' of task 't' appears twice \(first at .*line 1"),
    (row(loglikelihoods=[0.1]), "'loglikelihoods' must hold one finite number per choice"),
    (row(loglikelihoods=[0.1, float("-inf")]), "'loglikelihoods' must hold one finite number per choice"),
    (row(reference="yes ", choices=("Yes", "yes")), "duplicate choices"),
])
def test_bad_rows_are_named_by_file_and_line(tmp_path, bad, message):
    if bad["id"] == "a" and "appears" not in message:
        bad = {**bad, "id": "b"}
    path = write(tmp_path / "p.jsonl", [row(id="a"), bad])
    with pytest.raises(DataError, match=message):
        read_predictions(path)


def test_store_resumes_from_journals_and_drops_a_torn_last_line(tmp_path):
    store = PredictionStore(tmp_path, "fp", "gh")
    journal = store.journal(0)
    journal.append([row(id="1", fingerprint="fp", generation_hash="gh")])
    journal.append([row(id="2", fingerprint="fp", generation_hash="gh")])
    journal.close()
    with open(journal.path, "a") as handle:  # a kill in the middle of a write
        handle.write('{"task": "t", "id": "3", "predi')
    assert sorted(store.done()) == [("t", "1"), ("t", "2")]
    paths = store.finish(store.done().values())
    assert [json.loads(line)["id"] for line in paths["t"].read_text().splitlines()] == ["1", "2"]
    assert not list(store.journals.glob("*.jsonl"))
    assert sorted(store.done()) == [("t", "1"), ("t", "2")]


def test_rows_of_another_model_are_not_reused(tmp_path):
    PredictionStore(tmp_path, "old", "gh").finish([row(id="1", fingerprint="old", generation_hash="gh")])
    with pytest.raises(DataError, match="predictions of another model or other generation settings.*--fresh"):
        PredictionStore(tmp_path, "new", "gh").done()
