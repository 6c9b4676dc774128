"""SP14: the bundled benchmark, nine tasks built from real Swiss-Prot/GO/ENZYME/DeepLoc/PDB data.

The tasks are defined in tasks.yaml and built by builders.py; the data and its NOTICE live in data/,
checked against data/MANIFEST.sha256 whenever a task is built. Registered as the `sp14` entry point of
the `sepit.tasks` group.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from sepit.tasks import Task, TaskSuite

HERE = Path(__file__).parent


@cache
def suite() -> TaskSuite:
    config = yaml.safe_load((HERE / "tasks.yaml").read_text())
    return TaskSuite(
        name=config["name"], version=config["version"], description=config["description"],
        tasks=tuple(_task(name, spec, config) for name, spec in config["tasks"].items()),
        sources=tuple(config["sources"]), licences=tuple(config["licences"]),
        caption_task=config["caption_task"])


def _task(name: str, spec: dict, config: dict) -> Task:
    from sepit_benchmarks.sp14 import builders

    @cache
    def build():
        return builders.build(name, spec, config)

    return Task(name=name, version=f"{config['version']}/{spec['version']}", kind=spec["kind"],
                description=" ".join(spec["description"].split()),
                answer_format=spec.get("answer_format", "free_text"), build=build,
                manifest=HERE / "data" / "MANIFEST.sha256", data_files=tuple(config["data_files"]))
