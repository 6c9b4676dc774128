"""Warnings Lightning prints on every run that no user can act on: silenced once, for training and predicting."""

from __future__ import annotations

import warnings


def quiet_lightning() -> None:
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")  # inside Lightning
    # Lightning's own use of deprecated jsonargparse calls.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"lightning\.pytorch\.cli")
