"""The SEPIT stages through `sepit fit`: configs, checkpoints, chaining, resume, and evaluation of the result.

The slow tests run the shipped tiny configs for two steps each (stage 0 -> 1 -> 2) in a temporary folder,
with the tiny models built there ($SEPIT_CACHE), exactly as a user runs them.
"""

import json
import math
from pathlib import Path

import pytest
import torch

from sepit.cli import main
from sepit.data.errors import DataError
from sepit.errors import InputError
from sepit.data.protein import make_protein
from sepit.data.sample import CaptionPair, make_sample
from sepit.data.sepit_format import write_sepit_data
from sepit.checkpoints.stage import read_stage_checkpoint
from sepit.models.lora import LoraSettings
from sepit.models.moe import ExpertSettings, count_parameters, moe_layers
from sepit.models.decoding import position_ids_from_mask
from sepit.training.callbacks import LossTrend
from sepit.training.data import stage_items
from sepit.training.settings import EncoderSettings
from sepit.training.stages import warmup_decay

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = {"encoder": EncoderSettings(num_kernels=16), "window": 256}  # as in configs/sepit/tiny
QUICK = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
         "--data.init_args.batch_size", "2", "--trainer.enable_progress_bar", "false"]


@pytest.mark.parametrize("config", sorted(set(CONFIGS.rglob("*.yaml")) - set(CONFIGS.glob("pretrain/*.yaml"))),
                         ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_prints_offline(config, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "class_path: sepit.training.stages." in printed and "trainer:" in printed


def test_the_pretraining_recipes_parse():
    """configs/pretrain/*.yaml are recipes for sepit.tiny.pretrained, not LightningCLI configs."""
    import yaml

    from sepit.configs import shipped_root
    from sepit.tiny.pretrained import PARTS, RECIPE_NAME

    RECIPES = shipped_root() / RECIPE_NAME

    assert sorted(CONFIGS.glob("pretrain/*.yaml")) == [RECIPES]
    recipes = yaml.safe_load(RECIPES.read_text())
    assert sorted(recipes) == sorted([*PARTS, "corpus"]) and recipes["corpus"] == "sp14"
    for part in (recipes[name] for name in PARTS):
        assert {"model", "seed", "steps", "batch_size", "lr"} <= set(part) and part["steps"] > 0


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-cache")


@pytest.mark.parametrize("options", [{}, {"esm": None, "lora": LoraSettings(r=4)},
                                     {"experts": ExpertSettings(num_experts=2)}], ids=["full", "lora", "moe"])
def test_the_llm_is_built_in_train_mode(options, tiny_cache, monkeypatch):
    """from_pretrained returns eval mode and Lightning keeps submodule modes: dropout would silently stay off."""
    from sepit.training.stages import InstructionStage

    monkeypatch.setenv("SEPIT_CACHE", str(tiny_cache))
    stage = InstructionStage("tiny:llm", **{"esm": "tiny:esm2", "encoder": EncoderSettings(num_kernels=16), **options})
    assert all(module.training for module in stage.model.llm.modules())


@pytest.mark.parametrize("options, message", [
    ({"esm": "tiny:esm2", "lora": LoraSettings(r=4)}, "lora: .*<bop>/<eop> embeddings trained"),
    ({"esm": None, "projector": "qformer"}, "projector: qformer needs a protein encoder"),
    ({"esm": None, "init_from": "x.ckpt"}, "init_from: .*init_from is for encoder"),
    ({"esm": None, "experts": ExpertSettings(num_experts=2), "lora": LoraSettings(r=4)}, "lora: .*not both"),
    ({"esm": None, "lora": LoraSettings(dropout=1.0)}, "lora.dropout: must be in"),
    ({"esm": "tiny:esm2", "experts": ExpertSettings(num_experts=2, top_k=3)}, "experts.top_k: must be between 1"),
    ({"esm": "tiny:esm2", "encoder": EncoderSettings(drop_structure_rate=1.5)}, "encoder.drop_structure_rate"),
    ({"esm": "tiny:esm2", "window": 2000}, "window: .*at most ESM-2's 1022"),
])
def test_bad_settings_are_refused_before_anything_loads(options, message, monkeypatch):
    from sepit.training import stages

    monkeypatch.setattr(stages, "resolve_model_path", lambda spec: pytest.fail(f"{spec} loaded before the check"))
    with pytest.raises(InputError, match="model.init_args." + message):  # named by its key in the config
        stages.InstructionStage("tiny:llm", **options)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_warmup_then_decay_schedule(schedule):
    factor = warmup_decay(warmup_steps=4, total_steps=104, schedule=schedule)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(54) == pytest.approx(0.5)  # half-way through the decay, for both
    assert factor(29) == pytest.approx(0.75 if schedule == "linear" else 0.5 * (1 + math.cos(math.pi / 4)))
    assert factor(104) == pytest.approx(0.0) and factor(500) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="schedule"):
        warmup_decay(4, 104, "step")


def test_warmup_from_zero_is_hugging_faces_linear_schedule():
    """The official trainer's schedule (Hugging Face's linear warm-up and decay): lr 0 at step 0, step / w during
    the warm-up; ours by default starts at 1 / w."""
    from transformers import get_linear_schedule_with_warmup

    w, total = 4, 104
    official = warmup_decay(w, total, "linear", from_zero=True)
    ours = warmup_decay(w, total, "linear")
    assert [official(s) for s in (0, 1, w - 1, w)] == [0.0, 0.25, 0.75, 1.0]
    assert [ours(s) for s in (0, 1, w - 1, w)] == [0.25, 0.5, 1.0, 1.0]
    hf = get_linear_schedule_with_warmup(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), w, total)
    assert [official(s) for s in range(total + 3)] == pytest.approx([hf.lr_lambdas[0](s) for s in range(total + 3)])
    no_warmup = warmup_decay(0, total, "linear", from_zero=True)  # warmup_ratio 0: no step at lr 0
    assert no_warmup(0) == 1.0 and no_warmup(52) == pytest.approx(0.5)


@pytest.mark.parametrize("from_zero, first_lrs", [(False, [1 / 3, 2 / 3, 1.0, 1.0]), (True, [0.0, 1 / 3, 2 / 3, 1.0])])
def test_the_stage_schedule_follows_warmup_from_zero(from_zero, first_lrs):
    """`configure_optimizers` with 100 steps: warm-up ceil(0.03 x 100) = 3 steps; the lr of the first four steps."""
    from types import SimpleNamespace

    from sepit.training.settings import OptimizerSettings
    from sepit.training.stages import _Stage

    stage = SimpleNamespace(optimizer_settings=OptimizerSettings(lr=1.0, schedule="linear", warmup_from_zero=from_zero),
                            parameter_groups=lambda: [([torch.nn.Parameter(torch.zeros(1))], 1.0)],
                            trainer=SimpleNamespace(estimated_stepping_batches=100))
    configured = _Stage.configure_optimizers(stage)
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(4):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx(first_lrs)


def test_loss_trend_compares_first_and_last_share():
    trend = LossTrend(share=0.25)
    assert trend.summary() is None
    trend.losses = [8.0, 6.0, 5.0, 4.0, 3.0, 2.0, 2.0, 1.0]
    assert trend.summary() == (7.0, 1.5)
    restored = LossTrend(share=0.25)
    restored.load_state_dict(trend.state_dict())  # resumed runs keep their first steps
    assert restored.summary() == (7.0, 1.5)


def test_stage_items_from_the_bundled_suite():
    pairs = stage_items("sp14", 0, "train")
    captions = stage_items("sp14", 1, "train")
    everything = stage_items("sp14", 2, "train")
    assert all(isinstance(p, CaptionPair) for p in pairs)
    assert len({p.protein.id for p in pairs}) == len(pairs) == len(captions)  # one caption per protein
    assert {s.task for s in captions} == {"sp14_caption"}
    assert len(everything) > len(captions) and "sp14_membrane" in {s.task for s in everything}
    assert stage_items("sp14", 1, "valid") and not {s.id for s in stage_items("sp14", 1, "valid")} & {
        s.id for s in captions}


def test_stage_items_from_a_sepit_data_folder(tmp_path):
    protein = make_protein("1abc_A", "MKVLAG", [[0, 0, 0], [1, 2, 3], [4, 5, 6], None, [7, 8, 9], [1, 1, 1]])
    sample = make_sample("s1", "qa", protein, "Is <protein> a kinase?", "no", ["yes", "no"])
    write_sepit_data(tmp_path, [protein], {("stage1", "train"): [sample], ("stage2", "qa_test"): [sample]},
                     {"train": [CaptionPair("c1", protein, "A small protein.")]})
    assert [p.caption for p in stage_items(str(tmp_path), 0, "train")] == ["A small protein."]
    assert [s.id for s in stage_items(str(tmp_path), 1, "train")] == ["s1"]
    assert stage_items(str(tmp_path), 1, "valid") == []  # the release has no validation split
    assert [s.reference for s in stage_items(str(tmp_path), 2, "test")] == ["no"]


def test_unknown_source_says_what_is_accepted():
    with pytest.raises(DataError, match="neither a task suite nor a SEPIT-Data folder.*sp14"):
        stage_items("no_such_suite", 1, "train")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs/tiny/stage{0,1,2} after `sepit fit` of each tiny config (two steps each)."""
    root = tmp_path_factory.mktemp("stages")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("SEPIT_CACHE", str(root / "cache"))
        for stage in (0, 1, 2):
            main(["fit", "--config", str(CONFIGS / f"sepit/tiny/stage{stage}.yaml"), *QUICK])
        yield root / "runs" / "tiny"


@pytest.mark.slow
def test_checkpoints_describe_themselves(runs):
    for stage in (0, 1, 2):
        path = runs / f"stage{stage}" / "checkpoints" / "last.ckpt"
        data = torch.load(path, map_location="cpu", weights_only=True)  # no code unpickled
        assert data["global_step"] == 2 and data["sepit"]["stage"] == stage
        trained = data["sepit"]["training"]  # what the demo's training card prints
        assert trained["steps"] == 2 and trained["items"] == 2 * 2 and trained["seconds"] > 0  # QUICK's batch of 2
        assert trained["parts"]["esm"] == "pretrained:esm2"
        assert data["sepit"]["encoder"] == {"num_kernels": 16, "window": 256, "encoding_scale": 0.01,
                                            "sequence_only": False, "kernel_epsilon": 1e-3,
                                            "bias_masking": "observed", "pad_to": None}
        assert (path.parent.parent / "logs" / "version_0" / "config.yaml").is_file()  # the resolved config
        # The settings groups are kept as plain dicts, unset fields at their defaults.
        assert data["hyper_parameters"]["optimizer"] == {"lr": 1e-3 if stage < 2 else 3e-3, "weight_decay": 0.0,
                                                         "warmup_ratio": 0.03, "betas": [0.9, 0.999],
                                                         "schedule": "cosine", "warmup_from_zero": False}
        if stage:
            assert data["hyper_parameters"]["encoder"] == {"num_kernels": 16, "sequence_only": False,
                                                           "drop_structure_rate": 0.15 if stage == 1 else 0.0,
                                                           "lr_scale": 0.1 if stage == 1 else 0.0}
    record, state = read_stage_checkpoint(runs / "stage2" / "checkpoints" / "last.ckpt", (2,))
    assert record["llm_config"]["moe_upcycling"] == {"num_experts": 4, "top_k": 1, "aux_loss_coef": 0.01,
                                                     "router_jitter": 0.0, "normalize_top_k": True}
    assert any(".mlp.experts.3." in name for name in state) and any(".mlp.router." in name for name in state)
    tokenizer = json.loads((runs / "stage2" / "checkpoints" / "tokenizer" / "tokenizer_config.json").read_text())
    assert {"<protein>", "<bop>", "<eop>"} <= set(json.dumps(tokenizer).replace('"', " ").split())


@pytest.mark.slow
def test_stage1_starts_from_the_stage0_encoder(runs):
    from sepit.training.stages import InstructionStage

    stage0 = runs / "stage0" / "checkpoints" / "last.ckpt"
    module = InstructionStage("tiny:llm", "tiny:esm2", init_from=str(stage0), **TINY)
    _, state = read_stage_checkpoint(stage0, (0,))
    for name, tensor in module.model.encoder.state_dict().items():
        assert torch.equal(tensor, state["objectives.encoder." + name]), name


def _logits(model, samples):
    inputs_embeds, attention_mask, _ = model.embed(model.collate(samples, with_answers=False))
    return model.llm(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                     position_ids=position_ids_from_mask(attention_mask)).logits, attention_mask


@pytest.mark.slow
def test_stage2_after_upcycling_computes_what_stage1_did(runs, monkeypatch):
    from sepit.checkpoints.model import SepitModel
    from sepit.training.stages import InstructionStage

    monkeypatch.setenv("SEPIT_CACHE", str(runs.parent.parent / "cache"))
    stage1 = runs / "stage1" / "checkpoints" / "last.ckpt"
    dense = SepitModel(str(stage1)).model
    upcycled = InstructionStage("pretrained:llm", "pretrained:esm2", init_from=str(stage1), experts=ExpertSettings(),
                                **TINY).model.eval()
    assert len(moe_layers(upcycled.llm)) == dense.llm.config.num_hidden_layers
    samples = sorted(stage_items("sp14", 2, "valid")[:6], key=lambda s: len(s.protein))  # different lengths
    with torch.no_grad():
        (before, mask), (after, _) = _logits(dense, samples), _logits(upcycled, samples)
    real = mask.bool()
    assert (before[real] - after[real]).abs().max() < 1e-5
    dense_total, _ = count_parameters(dense)
    total, active = count_parameters(upcycled)
    assert active == dense_total and total > dense_total


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(runs, monkeypatch):
    monkeypatch.chdir(runs.parent.parent)
    monkeypatch.setenv("SEPIT_CACHE", str(runs.parent.parent / "cache"))
    last = runs / "stage1" / "checkpoints" / "last.ckpt"
    main(["fit", "--config", str(CONFIGS / "sepit/tiny/stage1.yaml"), *QUICK, "--trainer.max_steps", "3",
          "--ckpt_path", str(last)])
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 3


@pytest.mark.slow
def test_bench_evaluates_a_stage2_checkpoint(runs, tmp_path):
    checkpoint = runs / "stage2" / "checkpoints" / "last.ckpt"
    main(["bench", "--model", str(checkpoint), "--tasks", "sp14_membrane,sp14_function", "--limit", "3",
          "--output", str(tmp_path), "--generation.max_new_tokens", "6", "--scoring.n_resamples", "20",
          "--scoring.leakage", "false"])
    results = json.loads((tmp_path / "results.json").read_text())
    model = results["model"]
    assert model["name"] == "sepit" and model["modality"] == "seq+structure"
    assert model["params_active"] < model["params_total"]
    assert {name: task["n"] for name, task in results["tasks"].items()} == {"sp14_membrane": 3, "sp14_function": 3}


@pytest.mark.slow
def test_choice_loglikelihoods_batched_equal_one_at_a_time(runs):
    from sepit.checkpoints.model import SepitModel

    model = SepitModel(str(runs / "stage2" / "checkpoints" / "last.ckpt"))
    closed = [s for s in stage_items("sp14", 2, "valid") if s.choices][:4]
    together = model.loglikelihood(closed)
    alone = [model.loglikelihood([s])[0] for s in closed]
    assert [len(s.choices) for s in closed] == [len(v) for v in together]
    assert torch.allclose(torch.tensor(together), torch.tensor(alone), atol=1e-4)


@pytest.mark.slow
def test_init_from_the_wrong_stage_is_a_clear_error(runs, capsys):
    from sepit.training.stages import InstructionStage

    with pytest.raises(DataError, match="is a stage-0 checkpoint. This needs a checkpoint of stage 1"):
        InstructionStage("tiny:llm", "tiny:esm2", init_from=str(runs / "stage0/checkpoints/last.ckpt"),
                         experts=ExpertSettings(), **TINY)
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--config", str(CONFIGS / "sepit/tiny/stage1.yaml"), "--model.init_args.init_from",
              "missing.ckpt"])
    assert exit.value.code == 1
    assert "missing.ckpt: checkpoint not found" in capsys.readouterr().err


@pytest.mark.slow
def test_llm_weights_load_in_float32_whatever_the_saved_dtype(runs, tmp_path):
    from transformers import AutoModelForCausalLM

    from sepit.checkpoints.stage import model_record
    from sepit.tiny.builders import build_tiny_llm
    from sepit.training.stages import InstructionStage

    folder = build_tiny_llm(tmp_path / "llm", corpus=["a bf16 model", "saved as such"])
    AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).save_pretrained(folder)  # as TinyLlama
    module = InstructionStage(str(folder), "tiny:esm2", **TINY)
    assert {p.dtype for p in module.parameters()} == {torch.float32}
    module.model.encoder.structure.means.data = torch.empty(0)  # a rank holding no shard of it, under FSDP
    assert model_record(module.model)["encoder"]["num_kernels"] == 16


def test_training_continues_with_the_kernel_width_the_weights_learned():
    from sepit.models.encoder import StructureAwareESM, esm2_tiny
    from sepit.training.stages import adopt_kernel_epsilon

    encoder = StructureAwareESM(esm2_tiny(), num_kernels=4)
    assert encoder.structure.kernel_epsilon == 1e-3  # new runs: the official width
    adopt_kernel_epsilon(encoder, {"encoder": {"num_kernels": 4}})  # recorded before the width was
    assert encoder.structure.kernel_epsilon == 1e-2
    adopt_kernel_epsilon(encoder, {"encoder": {"kernel_epsilon": 1e-3}})
    assert encoder.structure.kernel_epsilon == 1e-3


@pytest.mark.parametrize("power, share_of_big", [(0.0, 0.5), (0.5, 0.75)])
def test_task_balance_draws_tasks_by_size_to_the_power(power, share_of_big):
    from sepit.training.data import StageData, task_balanced_sampler

    protein = make_protein("P1", "MKTAYIAK")
    items = [make_sample(f"a{i}", "big", protein, "<protein>?", "x") for i in range(90)] + \
        [make_sample(f"b{i}", "small", protein, "<protein>?", "y") for i in range(10)]
    torch.manual_seed(0)
    sampler = task_balanced_sampler(items, power)
    drawn = [items[i].task for _ in range(100) for i in sampler]
    assert len(drawn) == 100 * len(items)
    assert abs(drawn.count("big") / len(drawn) - share_of_big) < 0.02
    with pytest.raises(InputError, match="data.init_args.task_balance"):
        StageData(stage=2, task_balance=1.5)
