"""A third-party package adds a model, a task and a metric profile through entry points alone."""

import json
import textwrap

import pytest

from sepit.registry import METRICS, MODELS, TASKS

PACKAGE = '''
"""An outside package: nothing in the sepit repository names it."""
import dataclasses

from sepit.data.protein import make_protein
from sepit.data.sample import make_sample
from sepit.metrics.profiles import SEPIT_V1
from sepit.interface import ModelCard, ProteinLLM
from sepit.tasks import Task


class ShoutModel(ProteinLLM):
    def generate(self, samples, config):
        return [s.reference.upper() for s in samples]

    def describe(self):
        return ModelCard("shout", "text-only", 1, 1, "shout-1")


def _samples():
    protein = make_protein("P1", "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ")
    return {split: [make_sample(f"{split}{i}", "shout_task", protein, "Describe <protein>.", "a small protein")
                    for i in range(3)] for split in ("train", "test")}


TASK = Task("shout_task", "1", "open", "third-party task", "free_text", build=_samples)
PROFILE = dataclasses.replace(SEPIT_V1, name="shout_v1")
'''


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    (tmp_path / "shout_plugin.py").write_text(PACKAGE)
    info = tmp_path / "shout_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shout-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""
        [sepit.models]
        shout = shout_plugin:ShoutModel
        [sepit.tasks]
        shout_task = shout_plugin:TASK
        [sepit.metrics]
        shout_v1 = shout_plugin:PROFILE
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SEPIT_CACHE", str(tmp_path / "cache"))
    for registry in (MODELS, TASKS, METRICS):  # rescan as a fresh process would
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        monkeypatch.setattr(registry, "_sources", dict(registry._sources))
        monkeypatch.setattr(registry, "_scanned", False)
    return tmp_path


def test_entry_points_of_an_installed_package_reach_every_registry(third_party):
    assert "shout" in MODELS.names() and "retrieval" in MODELS.names()
    assert "shout_task" in TASKS.names() and "sp14" in TASKS.names()
    assert "shout_v1" in METRICS.names() and "sepit_v1" in METRICS.names()


def test_sepit_bench_runs_the_third_party_model_task_and_profile(third_party, tmp_path):
    from sepit.cli import main

    main(["bench", "--model", "shout", "--tasks", "shout_task", "--output", str(tmp_path / "run"),
          "--scoring.profile", "shout_v1", "--scoring.n_resamples", "100"])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["model"]["name"] == "shout" and results["metric_profile"]["name"] == "shout_v1"
    task = results["tasks"]["shout_task"]
    assert task["n"] == 3 and task["version"] == "1"
    assert task["metrics"]["bleu1"] == pytest.approx(100.0)  # word tokens are lower-cased
    assert task["leakage"]["bins"][">=90"]["n"] == 3  # the same protein is in train and test


def test_every_package_folder_installs_under_its_unambiguous_name():
    """pyproject.toml lists the packages by hand (baselines/ installs as sepit_baselines, ...): a new subpackage
    folder must be listed there, and no generic top-level name may reach site-packages."""
    import importlib.util
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[1]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    installed_as = {folder: name for name, folder in setuptools["package-dir"].items()}
    assert set(installed_as) == {"baselines", "benchmarks", "leaderboard", "configs"}
    assert all(name == f"sepit_{folder}" for folder, name in installed_as.items())
    folders = {init.parent.relative_to(root).parts for init in root.glob("*/**/__init__.py")}
    expected = {".".join((installed_as.get(parts[0], parts[0]), *parts[1:])) for parts in folders
                if parts[0] in {"sepit", *installed_as}}
    assert sorted(setuptools["packages"]) == sorted(expected)
    for folder, name in installed_as.items():
        assert Path(importlib.util.find_spec(name).origin) == root / folder / "__init__.py"
