"""A self-contained install: a wheel built from the tree, installed into a bare venv and run from another folder,
finds its shipped configs, task formats and recipes as package data (no clone beside it)."""

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# In the bare venv: the recipe of the pretrained tiny parts cut to a few steps (as tests/conftest.py does), then
# `sepit pretrain` and one training step of the tiny stage 0, by config name.
RUN = """
import sepit, sepit_configs
assert "{venv}" in sepit.__file__ and "{venv}" in sepit_configs.__file__, (sepit.__file__, sepit_configs.__file__)
from sepit.tiny import pretrained
original = pretrained.recipe
pretrained.recipe = lambda name: {{**original(name), "steps": 2}}
from sepit.cli import main
main(["pretrain"])
main(["fit", "--config", "sepit/tiny/stage0", "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0"])
"""


@pytest.mark.slow
def test_a_wheel_in_a_bare_venv_pretrains_and_trains_from_another_folder(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(REPO)], check=True, cwd=tmp_path)
    wheel, = (tmp_path / "dist").glob("sepit_bench-*.whl")
    assert "sepit/evaluation/rubrics/default.md" in zipfile.ZipFile(wheel).namelist()  # the judge's rubric
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True)
    # The dependencies come from this environment, after the venv's own site-packages (where sepit now is).
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "SEPIT_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([str(python), "-c", RUN.format(venv=venv)], capture_output=True, text=True, cwd=elsewhere,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (elsewhere / "runs/tiny/stage0/checkpoints/last.ckpt").is_file()
    formats = subprocess.run([str(venv / "bin" / "sepit"), "data", "formats"], capture_output=True, text=True,
                             cwd=elsewhere, env=env)
    assert formats.returncode == 0 and "mol_instructions" in formats.stdout, formats.stderr[-2000:]


def test_config_names_and_paths_resolve_to_the_shipped_copy_from_anywhere(tmp_path, monkeypatch):
    from sepit.configs import resolve_config, rewrite_config_arguments, shipped_names
    from sepit.data.errors import DataError

    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    shipped = resolve_config("sepit/tiny/stage1")
    assert shipped.read_text() == (REPO / "configs/sepit/tiny/stage1.yaml").read_text()
    assert resolve_config("configs/sepit/tiny/stage1.yaml") == shipped == resolve_config("sepit/tiny/stage1.yaml")
    assert {"sepit/tiny/stage0", "baselines/paper/qformer", "pretrain/tiny"} <= set(shipped_names())
    (tmp_path / "mine.yaml").write_text("seed_everything: 1\n")
    assert rewrite_config_arguments(["--config", "mine.yaml", "--config=sepit/tiny/stage0", "--x", "y"]) == [
        "--config", "mine.yaml", f"--config={resolve_config('sepit/tiny/stage0')}", "--x", "y"]
    with pytest.raises(DataError, match=r"no shipped config of that name.*sepit/tiny/stage2"):
        resolve_config("sepit/tiny/stage9")
    with pytest.raises(DataError, match="no shipped config"):
        resolve_config("../pyproject")


def test_inline_yaml_for_config_passes_through():
    from sepit.configs import rewrite_config_arguments

    assert rewrite_config_arguments(["--config", "trainer: {max_steps: 1}"]) == ["--config", "trainer: {max_steps: 1}"]
