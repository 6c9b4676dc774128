"""What the tiny parts learn from: the train splits of the task suite that the committed recipe
(configs/pretrain/tiny.yaml, installed as `sepit_configs`) names under `corpus`, never a test sample."""

from __future__ import annotations

from typing import Any

import yaml

from sepit.configs import shipped_root
from sepit.data.errors import DataError
from sepit.data.sample import InstructionSample

RECIPE_NAME = "pretrain/tiny.yaml"


def recipes() -> dict[str, Any]:
    """The whole recipe file: `corpus` and one recipe per pretrained part."""
    try:
        path = shipped_root() / RECIPE_NAME
    except ModuleNotFoundError:  # a clone updated without re-installing
        raise DataError("sepit_configs", "the shipped configs are not installed",
                        "Re-run `pip install -e .` (or `make env`) in the clone.") from None
    if not path.is_file():
        raise DataError(str(path), "the recipes of the pretrained tiny parts are missing",
                        "Reinstall sepit-bench: they are package data (sepit_configs).")
    return yaml.safe_load(path.read_text())


def training_samples() -> list[InstructionSample]:
    """The train-split samples of the recipe's task suite, task by task in name order."""
    from sepit.tasks import suites

    name = recipes()["corpus"]
    known = suites()
    if name not in known:
        raise DataError(str(shipped_root() / RECIPE_NAME), f"names the corpus suite {name!r}, which is not registered",
                        f"Name one of {', '.join(sorted(known))}.")
    return [sample for task in sorted(known[name].tasks, key=lambda task: task.name)
            for sample in task.samples("train")]
