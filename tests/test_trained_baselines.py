"""The trainable baselines (configs/baselines/tiny): each shipped tiny config trains through `sepit fit` for two
steps, its checkpoint describes itself, and `sepit bench` evaluates it under its own registered name."""

import json
from pathlib import Path

import pytest
import torch

from sepit.cli import main
from sepit.data.errors import DataError
from sepit.checkpoints.stage import read_stage_checkpoint
from sepit.training.data import stage_items

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "baselines" / "tiny"
QUICK = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
         "--data.init_args.batch_size", "2", "--trainer.enable_progress_bar", "false"]
# config -> (registered model, name in results, modality)
BASELINES = {"text_llm": ("text_llm", "text-llm", "seq"), "text_llm_lora": ("text_llm", "text-llm-lora", "seq"),
             "plm_projector": ("plm_projector", "plm-projector", "seq"), "qformer": ("qformer", "qformer", "seq")}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("SEPIT_CACHE", str(root / "cache"))
        for name in BASELINES:
            main(["fit", "--config", str(CONFIGS / f"{name}.yaml"), *QUICK])
        yield root / "runs" / "tiny"


def _checkpoint(runs, name):
    return runs / name / "checkpoints" / "last.ckpt"


def test_every_tiny_baseline_config_is_tested():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(BASELINES)


def test_checkpoints_record_what_each_baseline_is(runs):
    records = {name: read_stage_checkpoint(_checkpoint(runs, name), (1,))[0] for name in BASELINES}
    text = records["text_llm"]
    assert "esm" not in text and text["sequence_format"] == "galactica" and text["max_residues"] == 256
    assert text["lora"] is None
    assert records["text_llm_lora"]["lora"] == {"r": 8, "alpha": 16, "dropout": 0.05,
                                                "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "lm_head"]}
    assert records["plm_projector"]["encoder"]["sequence_only"] and records["plm_projector"]["projector"] == "mlp"
    assert records["qformer"]["projector"] == "qformer"
    assert records["qformer"]["qformer"] == {"num_queries": 8, "num_layers": 2, "num_heads": 4}


@pytest.mark.parametrize("baseline", sorted(BASELINES))
def test_bench_picks_the_baseline_from_its_checkpoint(runs, baseline, tmp_path):
    main(["bench", "--model", str(_checkpoint(runs, baseline)), "--tasks", "sp14_membrane,sp14_location",
          "--limit", "2", "--output", str(tmp_path), "--generation.max_new_tokens", "4", "--scoring.n_resamples", "20",
          "--scoring.leakage", "false"])
    results = json.loads((tmp_path / "results.json").read_text())
    _, name, modality = BASELINES[baseline]
    model = results["model"]
    assert (model["name"], model["modality"]) == (name, modality)
    assert model["params_total"] == model["params_active"] > 0
    assert {task: entry["n"] for task, entry in results["tasks"].items()} == {"sp14_membrane": 2, "sp14_location": 2}


def test_a_checkpoint_under_another_baseline_name_is_refused(runs):
    from sepit_baselines.plm_projector import PlmProjectorModel

    with pytest.raises(DataError, match="holds a qformer model, not plm_projector.*--model qformer"):
        PlmProjectorModel(str(_checkpoint(runs, "qformer")))


def test_only_the_lora_adapters_train_and_the_base_stays_as_released(runs, monkeypatch):
    from transformers import AutoModelForCausalLM

    from sepit.model_paths import resolve_model_path

    monkeypatch.setenv("SEPIT_CACHE", str(runs.parent.parent / "cache"))
    _, state = read_stage_checkpoint(_checkpoint(runs, "text_llm_lora"), (1,))
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path("pretrained:llm")).state_dict()  # the config's
    prefix = "model.llm.base_model.model."
    frozen = {name[len(prefix):].replace(".base_layer", ""): t for name, t in state.items() if "lora_" not in name}
    assert set(frozen) == set(base)
    assert all(torch.equal(frozen[name], base[name]) for name in base)
    lora_b = [t for name, t in state.items() if "lora_B" in name]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)  # B starts at zero: it moved


def test_the_saved_adapter_loads_onto_the_base_model_and_answers_the_same(runs, monkeypatch):
    from sepit_baselines.text_llm import TextLLMModel

    monkeypatch.setenv("SEPIT_CACHE", str(runs.parent.parent / "cache"))
    checkpoint = _checkpoint(runs, "text_llm_lora")
    from_checkpoint = TextLLMModel(checkpoint=str(checkpoint))
    adapter = checkpoint.parent / "adapter"
    assert json.loads((adapter / "sepit_prompt.json").read_text()) == {"sequence_format": "galactica",
                                                                        "max_residues": 256}
    from_adapter = TextLLMModel(llm="pretrained:llm", adapter=str(adapter))  # prompt settings from the adapter
    closed = [s for s in stage_items("sp14", 2, "valid") if s.choices][:3]
    assert torch.allclose(torch.tensor(from_checkpoint.loglikelihood(closed)),
                          torch.tensor(from_adapter.loglikelihood(closed)), atol=1e-4)
    assert from_adapter.describe().name == "text-llm-lora"
    with pytest.raises(DataError, match="trained with max_residues=256, not 1022"):
        TextLLMModel(llm="pretrained:llm", adapter=str(adapter), max_residues=1022)
    with pytest.raises(ValueError, match="sequence_format go"):
        TextLLMModel(checkpoint=str(checkpoint), sequence_format="raw")
    with pytest.raises(ValueError, match="either checkpoint"):
        TextLLMModel()


@pytest.mark.parametrize("baseline", ["text_llm", "qformer"])
def test_batched_answers_equal_one_at_a_time(runs, baseline):
    from sepit.commands.bench import build_model
    from sepit.interface import GenerationSettings

    model = build_model(str(_checkpoint(runs, baseline)))
    samples = stage_items("sp14", 2, "valid")[:4]
    config = GenerationSettings(max_new_tokens=5)
    assert model.generate(samples, config) == [model.generate([s], config)[0] for s in samples]
