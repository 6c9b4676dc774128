"""Deterministic stand-in models for engine tests: no network, no weights, answers fixed by the sample id."""

from __future__ import annotations

import hashlib
import os
import signal

from sepit.interface import ModelCard, ProteinLLM


def _coin(sample_id: str) -> bool:
    return hashlib.sha256(sample_id.encode()).digest()[0] % 2 == 0


class CoinModel(ProteinLLM):
    """Right on about half the samples (chosen by a hash of the id), wrong or unparsable on the rest."""

    def __init__(self, kill_after_batches: int | None = None):
        self.kill_after_batches, self.batches = kill_after_batches, 0

    def generate(self, samples, config):
        self.batches += 1
        if self.kill_after_batches is not None and self.batches > self.kill_after_batches:
            os.kill(os.getpid(), signal.SIGKILL)  # what a crash or a pre-empted job looks like
        return [s.reference if _coin(s.id) else ("I am not sure." if s.choices else "an unrelated answer")
                for s in samples]

    def loglikelihood(self, samples):
        return [[0.0 if (c == s.reference) == _coin(s.id) else -1.0 for c in s.choices] for s in samples]

    def answer(self, samples, config):
        return [(text, {"coin": _coin(s.id)}) for text, s in zip(self.generate(samples, config), samples)]

    def describe(self):
        return ModelCard("coin", "text-only", 0, 0, "coin-v1")
