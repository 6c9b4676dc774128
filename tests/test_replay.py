"""Replay: predictions made elsewhere are benchmarked exactly as if the model had run here."""

import json

import pytest

from sepit_baselines.replay import ReplayModel
from sepit.cli import main
from sepit.data.errors import DataError
from sepit.interface import GenerationSettings
from sepit.tasks import get_task

TASKS = "sp14_membrane,sp14_location"


def _bench(model, output, *extra):
    main(["bench", "--model", model, "--tasks", TASKS, "--limit", "6", "--output", str(output),
          "--scoring.n_resamples", "50", "--scoring.leakage", "false", *extra])
    return json.loads((output / "results.json").read_text())


@pytest.mark.slow
def test_replaying_predictions_reproduces_their_scores(tmp_path):
    original = _bench("majority", tmp_path / "majority")
    args = json.dumps({"predictions": str(tmp_path / "majority" / "predictions"), "name": "majority-replayed",
                       "params_total": 0})
    replayed = _bench("replay", tmp_path / "replay", "--model_args", args)
    assert replayed["model"]["name"] == "majority-replayed" and replayed["model"]["modality"] == "api"
    assert replayed["model"]["params_total"] == replayed["model"]["params_active"] == 0
    for task, result in original["tasks"].items():
        assert replayed["tasks"][task]["metrics"] == result["metrics"]
        assert replayed["tasks"][task]["n"] == 6


def test_a_missing_or_foreign_row_is_refused(tmp_path):
    sample = get_task("sp14_membrane").samples("test")[0]
    row = {"task": sample.task, "id": sample.id, "prediction": "yes", "reference": sample.reference,
           "kind": "closed", "choices": list(sample.choices)}
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(row) + "\n")
    model = ReplayModel(str(path))
    assert model.generate([sample], GenerationSettings()) == ["yes"]
    other = get_task("sp14_membrane").samples("test")[1]
    with pytest.raises(DataError, match=f"has no prediction for sample '{other.id}'"):
        model.generate([other], GenerationSettings())
    flipped = {**row, "reference": "no" if sample.reference == "yes" else "yes"}
    path.write_text(json.dumps(flipped) + "\n")
    with pytest.raises(DataError, match="answers a different question"):
        ReplayModel(str(path)).generate([sample], GenerationSettings())
