"""Callbacks the stage configs add."""

from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from sepit.errors import InputError


class LossTrend(L.Callback):
    """At the end of fit, the mean training loss over the first and the last `share` of the steps, so a run
    says in one line whether it learned (`train/loss: 3.91 (first 10 % of 200 steps) -> 2.47 (last 10 %)`)."""

    def __init__(self, share: float = 0.1, key: str = "train/loss"):
        if not 0 < share <= 0.5:
            raise InputError("trainer.callbacks: LossTrend.share", f"must be in (0, 0.5], got {share}", "Set e.g. 0.1.")
        self.share, self.key = share, key
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        value = trainer.callback_metrics.get(self.key)
        if value is not None:
            self.losses.append(float(value))

    def summary(self) -> tuple[float, float] | None:
        """(mean of the first share, mean of the last share) of the recorded losses; None before 2 steps."""
        if len(self.losses) < 2:
            return None
        n = max(1, math.floor(len(self.losses) * self.share))
        return sum(self.losses[:n]) / n, sum(self.losses[-n:]) / n

    def on_fit_end(self, trainer, pl_module) -> None:
        found = self.summary()
        if found is not None:
            first, last = found
            percent = round(100 * self.share)
            rank_zero_info(f"{self.key}: {first:.4f} (first {percent} % of {len(self.losses)} steps) -> "
                           f"{last:.4f} (last {percent} %)")

    def state_dict(self) -> dict:
        return {"losses": list(self.losses)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.losses = list(state_dict.get("losses", []))
