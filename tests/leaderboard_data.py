"""Results folders for leaderboard tests: seeded predictions on three toy tasks, scored by the real `sepit
score`, then given the model card `sepit bench` would write. Unregistered tasks keep it fast (no leakage
search); the registered-task paths are covered by test_submission.py and the must-show run."""

from __future__ import annotations

import json
import random
from pathlib import Path

from sepit.commands.score import score
from sepit.evaluation.scoring import ScoringSettings

N = 40
ANSWERS = ["This protein binds ATP and hydrolyses it.", "This protein is found in the nucleus.",
           "This protein is involved in DNA repair.", "A serine/threonine kinase that phosphorylates histone H3.",
           "This protein transports sodium ions across the membrane."]
LOCATIONS = ["nucleus", "cytoplasm", "membrane", "mitochondrion"]
# name -> (modality, params total, params active, fraction answered right, tasks answered (None: all))
MODELS = {"oracle": ("seq+structure", 7_000_000_000, 7_000_000_000, 0.9, None),
          "retrieval": ("retrieval", 0, 0, 0.7, None),
          "majority": ("text-only", 0, 0, 0.0, None),
          "partial": ("seq", 1_100_000_000, 1_100_000_000, 0.8, 20)}


def references() -> dict[str, list[dict]]:
    rng = random.Random(0)
    tasks = {"toy_caption": [], "toy_membrane": [], "toy_location": []}
    for i in range(N):
        tasks["toy_caption"].append({"id": f"P{i:03d}", "reference": rng.choice(ANSWERS), "kind": "open",
                                     "choices": None})
        tasks["toy_membrane"].append({"id": f"P{i:03d}", "reference": rng.choice(["yes", "no"]), "kind": "closed",
                                      "choices": ["yes", "no"]})
        tasks["toy_location"].append({"id": f"P{i:03d}", "reference": rng.choice(LOCATIONS), "kind": "closed",
                                      "choices": list(LOCATIONS)})
    return tasks


def predictions(model: str, right: float, limit: int | None) -> list[dict]:
    rng = random.Random(model)
    rows = []
    for task, samples in references().items():
        for sample in samples[:limit]:
            if model == "majority":
                answer = {"toy_caption": ANSWERS[0], "toy_membrane": "yes", "toy_location": "nucleus"}[task]
            elif rng.random() < right:
                answer = sample["reference"]
            else:
                answer = rng.choice(ANSWERS if sample["kind"] == "open" else sample["choices"])
            rows.append({**sample, "task": task, "prediction": answer, "model": model, "fingerprint": model[:8]})
    return rows


def write_run(folder: Path, model: str) -> Path:
    """`folder/<model>/results.json` (+ samples/, predictions/) for one of MODELS."""
    modality, total, active, right, limit = MODELS[model]
    run = folder / model
    (run / "predictions").mkdir(parents=True)
    path = run / "predictions" / "all.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in predictions(model, right, limit)))
    score(path, run / "results.json", scoring=ScoringSettings(n_resamples=200))
    results = json.loads((run / "results.json").read_text())
    results["model"].update(modality=modality, params_total=total, params_active=active)
    for result in results["tasks"].values():
        result.update(expected_n=N, complete=result["n"] == N)
    (run / "results.json").write_text(json.dumps(results))
    return run / "results.json"


def write_all(folder: Path) -> Path:
    for model in MODELS:
        write_run(folder, model)
    return folder
