"""The pretrained tiny parts (sepit/tiny/pretrained.py): built once from the committed recipe, loadable
where the random tiny models load, and trained (the loss falls)."""

import json

import pytest
import torch

from sepit.tiny import corpus, pretrained
from sepit.models.encoder import esm2_from_checkpoint
from sepit.model_paths import resolve_model_path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEPIT_CACHE", str(tmp_path))
    return tmp_path


def test_parts_are_built_once_per_recipe_and_load_like_the_random_ones(cache, monkeypatch):
    from transformers import AutoModelForCausalLM

    esm = resolve_model_path("pretrained:esm2")
    assert esm.name == "esm2.pt" and esm2_from_checkpoint(esm).num_layers == pretrained.recipe("esm2")["model"]["num_layers"]
    llm = resolve_model_path("pretrained:llm")
    assert AutoModelForCausalLM.from_pretrained(llm).config.hidden_size == pretrained.recipe("llm")["model"]["hidden_size"]
    record = json.loads((llm / "pretraining.json").read_text())
    assert record["steps"] == 4 and record["items"] == 4 * record["recipe"]["batch_size"] and record["tokens"] > 0

    built = esm.stat().st_mtime_ns
    assert resolve_model_path("pretrained:esm2") == esm and esm.stat().st_mtime_ns == built  # cached
    original = pretrained.recipe
    monkeypatch.setattr(pretrained, "recipe", lambda name: {**original(name), "seed": 1})
    assert resolve_model_path("pretrained:esm2") != esm  # another recipe, another part
    with pytest.raises(Exception, match="unknown pretrained part"):
        resolve_model_path("pretrained:gpt")


def test_an_install_without_the_recipes_says_where_they_come_from(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "RECIPE_NAME", "pretrain/missing.yaml")
    with pytest.raises(pretrained.DataError, match="missing.yaml: the recipes .*package data"):
        resolve_model_path("pretrained:esm2")

    def not_installed():
        raise ModuleNotFoundError("No module named 'sepit_configs'")

    monkeypatch.setattr(corpus, "shipped_root", not_installed)  # a clone pulled without re-installing
    with pytest.raises(pretrained.DataError, match="sepit_configs: the shipped configs are not installed.*pip "
                                                   "install -e"):
        resolve_model_path("pretrained:esm2")


@pytest.mark.parametrize("part", ["esm2", "llm"])
def test_pretraining_lowers_the_loss(part, cache, monkeypatch):
    original = pretrained.recipe
    monkeypatch.setattr(pretrained, "recipe", lambda name: {**original(name), "steps": 40})
    path = pretrained.resolve_pretrained(part)
    record = pretrained.pretraining_record(path)
    assert record["loss_last_10pc"] < record["loss_first_10pc"] - 0.3, record
    assert record["corpus"].startswith(tuple("0123456789"))
