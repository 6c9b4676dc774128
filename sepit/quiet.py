"""Warnings Lightning prints on every run that no user can act on: silenced once, for training and predicting."""

from __future__ import annotations

import logging
import warnings


def quiet_lightning() -> None:
    # "Seed set to 0" on stderr before anything else, even before a one-line error; the seed is in config.yaml.
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")  # inside Lightning
    # Lightning's own use of deprecated jsonargparse calls.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"lightning\.pytorch\.cli")
