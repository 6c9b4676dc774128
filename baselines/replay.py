"""Replay: predictions made elsewhere (the official SEPIT code, a closed system, a colleague's run), served
through the common interface so they are benchmarked and put on the leaderboard like any model.

    sepit bench --model replay --model_args '{"predictions": "their_predictions.jsonl", "name": "sepit-official"}' \
        --tasks sp14 --output runs/sepit-official

The file (or folder of `*.jsonl`) holds rows in the predictions format (docs/evaluation.md). A row is
matched by (task, id) and must be about the same question (`mismatch`, as for resumed runs: reference,
choices, and prompt and protein hashes where the row has them), so predictions of another version of a task
are refused, not scored.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from sepit.data.errors import DataError
from sepit.data.sample import InstructionSample
from sepit.evaluation.predictions import mismatch, read_predictions
from sepit.interface import GenerationSettings, ModelCard, Modality, ProteinLLM


def _fingerprint(path: Path) -> str:
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


class ReplayModel(ProteinLLM):
    """Answers with the saved prediction of each (task, id); a sample without one is an error."""

    def __init__(self, predictions: str, name: str = "replay",
                 modality: Modality = "api",
                 params_total: int | None = None, params_active: int | None = None):
        """
        Args:
            predictions: a predictions JSONL file or a folder of them.
            name: the system's name in results and on the leaderboard.
            modality: what the system reads (api when unknown).
            params_total: its parameter count, where known.
            params_active: its parameters used per token (default: params_total).
        """
        self.path = Path(predictions)
        self.rows = {(row["task"], row["id"]): row for rows in read_predictions(self.path).values() for row in rows}
        self.card = ModelCard(name, modality, params_total,
                              params_total if params_active is None else params_active, _fingerprint(self.path))

    def _row(self, sample: InstructionSample) -> dict:
        row = self.rows.get((sample.task, sample.id))
        if row is None:
            raise DataError(str(self.path), f"has no prediction for sample {sample.id!r} of task {sample.task!r}",
                            "Replay needs a row for every sample benchmarked; use --limit or --tasks to bench "
                            "what the file covers.")
        problem = mismatch(row, sample)
        if problem:
            raise DataError(str(self.path), f"the row for sample {sample.id!r} of task {sample.task!r} answers "
                            f"a different question: {problem}", "Replay predictions made on the same task version.")
        return row

    def generate(self, samples: Sequence[InstructionSample], config: GenerationSettings) -> list[str]:
        return [text for text, _ in self.answer(samples, config)]

    def answer(self, samples: Sequence[InstructionSample], config: GenerationSettings) -> list[tuple[str, dict]]:
        rows = [self._row(sample) for sample in samples]
        return [(row["prediction"], {"replayed_from": row.get("fingerprint")}) for row in rows]

    def describe(self) -> ModelCard:
        return self.card
