"""Every paper-scale YAML (configs/sepit/paper, configs/baselines/paper) built as `sepit fit` builds its model,
with the YAML's own init_args, on the meta device: the constructors' guards run on the exact paper settings and
the modules have the paper's sizes, with no weights and no memory (test_stages.py only prints these configs).

The models the YAMLs name under models/ are stand-ins written here with the released architectures and no
weights: ESM-2 650M as a fair-esm file in the released layout whose tensors are on the meta device (read by the
real `esm2_from_checkpoint`), and TinyLlama-1.1B-Chat and PubMedBERT as their published config.json with a
tokenizer of the real vocabulary size. Hugging Face refuses `from_pretrained` under a meta device (and a
folder without weights), so the LLM and the text encoder come from `from_config` there. The stages chain as on
a cluster: each stage's checkpoint (meta tensors, a few hundred kB) is written where the next YAML's init_from
looks for it, so the strict state-dict checks of `init_from` run too.

Parameter counts are checked against hand counts from the published sizes; the published totals are
651,043,254 (ESM-2 650M), 1,100,048,384 (TinyLlama-1.1B) and 109,482,240 (BERT-base, pooler included).
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.cli import LightningArgumentParser
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerFast

from sepit.checkpoints.stage import load_into, read_stage_checkpoint
from sepit.models.encoder import ESM2_SIZES, esm2_tiny
from sepit.models.moe import MoEFeedForward, count_parameters, moe_layers
from sepit.tiny.builders import save_esm2_checkpoint

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PAPER = sorted([*CONFIGS.glob("sepit/paper/*.yaml"), *CONFIGS.glob("baselines/paper/*.yaml")])
ESM = "esm2_t33_650M_UR50D"
LLM = "TinyLlama-1.1B-Chat-v1.0"
TEXT_ENCODER = "BiomedNLP-PubMedBERT-base-uncased-abstract"
# The published config.json files (Hugging Face hub, TinyLlama/TinyLlama-1.1B-Chat-v1.0 and
# microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract); the LLM's says bfloat16, the stages build float32.
LLM_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
              "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 2048,
              "initializer_range": 0.02, "intermediate_size": 5632, "max_position_embeddings": 2048,
              "num_attention_heads": 32, "num_hidden_layers": 22, "num_key_value_heads": 4, "pretraining_tp": 1,
              "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 10000.0, "tie_word_embeddings": False,
              "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": 32000}
TEXT_ENCODER_CONFIG = {"architectures": ["BertForMaskedLM"], "model_type": "bert", "attention_probs_dropout_prob": 0.1,
                       "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
                       "intermediate_size": 3072, "max_position_embeddings": 512, "num_attention_heads": 12,
                       "num_hidden_layers": 12, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": 30522}


# Hand counts from the published sizes.
def esm2_layer(d: int = 1280) -> int:
    """One fair-esm layer: q/k/v/out with biases, two LayerNorms, a 4x FFN."""
    return 4 * (d * d + d) + 2 * 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)


def esm2_lm_head(d: int = 1280, alphabet: int = 33) -> int:
    """Dense, LayerNorm and output bias; its weight is the token embedding (tied)."""
    return d * d + d + 2 * d + alphabet


def esm2_parameters(layers: int = 33, d: int = 1280, heads: int = 20, alphabet: int = 33) -> int:
    """fair-esm's ESM2: token embedding, the layers, the final LayerNorm, the LM head, and the contact head's
    logistic regression over every layer's heads."""
    return alphabet * d + layers * esm2_layer(d) + 2 * d + esm2_lm_head(d, alphabet) + layers * heads + 1


def structure_parameters(kernels: int = 128, heads: int = 20, d: int = 1280) -> int:
    """Kernel means and widths, the bias MLP (K -> K -> heads), the encoding projection (K -> d)."""
    return 2 * kernels + (kernels * kernels + kernels) + (kernels * heads + heads) + (kernels * d + d)


def llama_parameters(vocab: int, d: int = 2048, layers: int = 22, heads: int = 32, kv_heads: int = 4,
                     ffn: int = 5632) -> int:
    """Untied input and output embeddings; per layer q/o (d x d), k/v (d x kv_heads x head_dim), the SwiGLU FFN
    and two RMSNorms; the final RMSNorm. No biases."""
    kv = kv_heads * d // heads
    return 2 * vocab * d + layers * (2 * d * d + 2 * d * kv + 3 * d * ffn + 2 * d) + d


def bert_parameters(vocab: int = 30522, d: int = 768, layers: int = 12, ffn: int = 3072, positions: int = 512) -> int:
    embeddings = vocab * d + positions * d + 2 * d + 2 * d
    layer = 4 * (d * d + d) + 2 * d + (d * ffn + ffn) + (ffn * d + d) + 2 * d
    return embeddings + layers * layer + d * d + d  # + the pooler


def mlp_projector_parameters(d_in: int = 1280, d_out: int = 2048) -> int:
    return (d_in * d_out + d_out) + (d_out * d_out + d_out)


def qformer_parameters(queries: int = 32, layers: int = 2, d: int = 1280, d_out: int = 2048) -> int:
    """Per layer: three LayerNorms, self- and cross-attention (in-projection 3 d x d, out-projection, biases),
    a 4x GELU FFN; then the final LayerNorm and the output projection."""
    layer = 3 * 2 * d + 2 * (4 * d * d + 4 * d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    return queries * d + layers * layer + 2 * d + d * d_out + d_out


def test_the_hand_counts_give_the_published_totals():
    assert esm2_parameters() == 651_043_254
    assert llama_parameters(32000) == 1_100_048_384
    assert bert_parameters() == 109_482_240


def count(parameters) -> int:
    return sum(p.numel() for p in parameters)


def trainable(module: torch.nn.Module) -> int:
    return count(p for p in module.parameters() if p.requires_grad)


# Stand-ins for the released models: their architecture, no weights.
def word_level_tokenizer(size: int, specials: list[str], **roles: str) -> PreTrainedTokenizerFast:
    """`size` ids, `specials` first (as the real vocabulary numbers them), then filler words."""
    vocab = {token: i for i, token in enumerate(specials)}
    vocab.update({f"w{i}": i for i in range(len(specials), size)})
    raw = Tokenizer(models.WordLevel(vocab, unk_token=roles["unk_token"]))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=raw, **roles)


def write_stand_ins(models_dir: Path) -> None:
    with torch.device("meta"):
        save_esm2_checkpoint(esm2_tiny(*ESM2_SIZES[ESM]), models_dir / f"{ESM}.pt")
    llm = models_dir / LLM
    llm.mkdir(parents=True)
    (llm / "config.json").write_text(json.dumps(LLM_CONFIG))
    # TinyLlama's tokenizer: 32,000 ids, <unk> <s> </s> first, no pad token.
    word_level_tokenizer(32000, ["<unk>", "<s>", "</s>"], unk_token="<unk>", bos_token="<s>",
                         eos_token="</s>").save_pretrained(llm)
    text = models_dir / TEXT_ENCODER
    text.mkdir()
    (text / "config.json").write_text(json.dumps(TEXT_ENCODER_CONFIG))
    word_level_tokenizer(30522, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], unk_token="[UNK]", pad_token="[PAD]",
                         cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]").save_pretrained(text)


class FromConfig:
    """`from_pretrained` of a folder holding only config.json: the architecture from `from_config`, on the
    current device (meta here), in eval mode as `from_pretrained` returns it; the arguments are recorded."""

    def __init__(self, auto_class):
        self.auto_class, self.calls = auto_class, []

    def from_pretrained(self, path, **kwargs):
        self.calls.append((Path(path).name, kwargs))
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        return self.auto_class.from_config(config, dtype=kwargs["dtype"]).eval()


def checkpoint_dir(config: dict) -> str:
    (callback,) = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
    return callback["init_args"]["dirpath"]


def instantiate_model(config: dict) -> L.LightningModule:
    """The model section through the parser LightningCLI uses (subclass mode: class_path + init_args, dataclass
    settings from nested mappings), instantiated."""
    parser = LightningArgumentParser()
    parser.add_lightning_class_args(L.LightningModule, "model", subclass_mode=True)
    return parser.instantiate(parser.parse_object({"model": config["model"]})).model


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    """config path -> (its YAML, the module it describes), built on demand on the meta device, inside a folder
    holding models/ (the stand-ins) and runs/ (each built stage's last.ckpt, where the YAMLs chain them)."""
    from transformers import AutoModel, AutoModelForCausalLM

    from sepit.models import warmup
    from sepit.training import stages

    root = tmp_path_factory.mktemp("paper")
    write_stand_ins(root / "models")
    configs = {path: yaml.safe_load(path.read_text()) for path in PAPER}
    producers = {f"{checkpoint_dir(c)}/last.ckpt": path for path, c in configs.items()}
    starts = {c["model"]["init_args"].get("init_from") for c in configs.values()} - {None}
    built: dict[Path, tuple[dict, L.LightningModule]] = {}
    resize = PreTrainedModel.resize_token_embeddings
    loaders = {"llm": FromConfig(AutoModelForCausalLM), "text_encoder": FromConfig(AutoModel)}
    loaded: list[tuple[str, str, int]] = []  # init_from: (checkpoint, prefix, tensors loaded)

    def recording_load_into(module, state, prefix, path, *args, **kwargs):
        loaded.append((str(path), prefix, sum(name.startswith(prefix) for name in state)))
        return load_into(module, state, prefix, path, *args, **kwargs)

    def meta_resize(self, new_num_tokens=None, pad_to_multiple_of=None, mean_resizing=True):
        # Mean resizing draws the new rows from the old rows' mean and covariance, values a meta tensor lacks.
        return resize(self, new_num_tokens, pad_to_multiple_of, mean_resizing=False)

    def build(path: Path) -> tuple[dict, L.LightningModule]:
        if path in built:
            return built[path]
        config = configs[path]
        init_from = config["model"]["init_args"].get("init_from")
        if init_from:
            build(producers[init_from])  # the previous stage, and its checkpoint where this YAML reads it
        with pytest.MonkeyPatch.context() as patch, torch.device("meta"):
            patch.chdir(root)
            patch.setattr(stages, "AutoModelForCausalLM", loaders["llm"])
            patch.setattr(warmup, "AutoModel", loaders["text_encoder"])
            patch.setattr(PreTrainedModel, "resize_token_embeddings", meta_resize)
            patch.setattr(stages, "load_into", recording_load_into)
            module = instantiate_model(config)
        if f"{checkpoint_dir(config)}/last.ckpt" in starts:  # a later stage starts from this one
            checkpoint = {"state_dict": module.state_dict()}
            module.on_save_checkpoint(checkpoint)  # the architecture record, as Lightning's save calls it
            target = root / checkpoint_dir(config) / "last.ckpt"
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.save(checkpoint, target)
        built[path] = config, module
        return built[path]

    build.root, build.loaders, build.loaded = root, loaders, loaded
    return build


def test_the_paper_configs_are_the_ones_checked_here():
    """A new paper YAML, or one naming another model, needs its checks (and a stand-in) here."""
    assert [str(p.relative_to(CONFIGS)) for p in PAPER] == [
        "baselines/paper/plm_projector.yaml", "baselines/paper/qformer.yaml", "baselines/paper/text_llm.yaml",
        "baselines/paper/text_llm_lora.yaml", "sepit/paper/stage0.yaml", "sepit/paper/stage1.yaml",
        "sepit/paper/stage2.yaml"]
    named = {value for path in PAPER for key, value in yaml.safe_load(path.read_text())["model"]["init_args"].items()
             if key in ("esm", "llm", "text_encoder") and value}
    assert named == {f"models/{ESM}.pt", f"models/{LLM}", f"models/{TEXT_ENCODER}"}


def test_the_paper_configs_train_as_the_official_trainer():
    """Clipping as the official DeepSpeed configs (stage 0's zero3.json: none; zero3_offload.json: "auto" = 1.0),
    Hugging Face's warm-up from lr 0, the added token rows as transformers 4.39 drew them in tables padded to 8;
    the tiny CPU configs keep our defaults."""
    for path in PAPER:
        config = yaml.safe_load(path.read_text())
        settings = config["model"]["init_args"]
        assert config["trainer"]["gradient_clip_val"] == (None if path.name == "stage0.yaml" else 1.0), path
        assert settings["optimizer"]["warmup_from_zero"] is True, path
        if "llm" in settings:
            assert settings["token_embeddings"] == {"init": "normal", "pad_to_multiple_of": 8}, path
    for path in sorted(CONFIGS.glob("*/tiny/*.yaml")):
        settings = yaml.safe_load(path.read_text())["model"]["init_args"]
        assert "token_embeddings" not in settings and "warmup_from_zero" not in settings.get("optimizer", {}), path


@pytest.mark.parametrize("path", PAPER, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_paper_config_builds_on_the_meta_device(path, paper):
    """Built from the YAML's own settings; nothing allocated; LLMs in train mode, float32 master weights; the
    classes its FSDP policy wraps are there (22 decoder layers and the encoder)."""
    config, module = paper(path)
    assert {p.device.type for p in module.parameters()} == {"meta"}
    assert {p.dtype for p in module.parameters()} == {torch.float32}
    llm = getattr(getattr(module, "model", None), "llm", None)
    if llm is not None:
        assert all(m.training for m in llm.modules())
    strategy = config["trainer"]["strategy"]
    if isinstance(strategy, dict):  # FSDP: each named class is a shard
        wrapped = strategy["init_args"]["auto_wrap_policy"]
        names = [f"{type(m).__module__}.{type(m).__qualname__}" for m in module.modules()]
        expected = {"sepit.models.encoder.StructureAwareESM": 1,
                    "transformers.models.llama.modeling_llama.LlamaDecoderLayer": 22}
        assert {name: names.count(name) for name in wrapped} == {name: expected[name] for name in wrapped}
        assert (getattr(module.model, "encoder", None) is None) == (len(wrapped) == 1)


def test_stage0_at_paper_scale(paper):
    _, stage = paper(CONFIGS / "sepit/paper/stage0.yaml")
    objectives = stage.objectives
    encoder, esm = objectives.encoder, objectives.encoder.esm
    assert (esm.num_layers, esm.embed_dim, esm.attention_heads, bool(esm.token_dropout)) == (33, 1280, 20, True)
    assert count(esm.parameters()) == esm2_parameters() == 651_043_254
    assert (encoder.structure.num_kernels, encoder.window, encoder.sequence_only) == (128, 1022, False)
    assert count(encoder.structure.parameters()) == structure_parameters() == 184_468
    caption = objectives.caption_encoder
    assert caption.embed_dim == 768 and caption.model.config.num_hidden_layers == 12
    assert count(caption.parameters()) == bert_parameters() == 109_482_240 and trainable(caption) == 0
    assert not any(m.training for m in caption.model.modules())  # frozen, dropout off
    assert (objectives.protein_projection.weight.shape, objectives.text_projection.weight.shape) == \
        ((512, 1280), (512, 768))
    assert (objectives.denoising_head.num_heads, objectives.denoising_head.head_dim) == (20, 64)
    assert (objectives.mask_rate, objectives.noise_scale) == (0.15, 0.2)
    # What AdamW trains at lr 1e-6 (ESM-2 without its contact head) and at 10 x (the new modules).
    groups = [(scale, count(p for p in params if p.requires_grad)) for params, scale in stage.parameter_groups()]
    denoising = 3 * (1280 * 1280 + 1280) + 1280
    assert groups == [(1.0, 651_043_254 - 661),
                      (10.0, structure_parameters() + denoising + 1280 * 512 + 768 * 512 + 1)]
    assert stage.optimizer_settings.lr == 1e-6 and stage.optimizer_settings.schedule == "linear"
    assert stage.optimizer_settings.warmup_from_zero
    assert paper.loaders["text_encoder"].calls == [
        (TEXT_ENCODER, {"trust_remote_code": False, "local_files_only": True, "dtype": torch.float32})]


# ESM-2 parameters that `features` never reads, frozen in the instruction stages: the last layer, the final
# LayerNorm, the LM head but its tied weight, the contact head.
UNUSED_BY_FEATURES = esm2_layer() + 2 * 1280 + esm2_lm_head() + 33 * 20 + 1


def test_stage1_at_paper_scale(paper):
    _, stage = paper(CONFIGS / "sepit/paper/stage1.yaml")
    model = stage.model
    assert stage.stage == 1
    # Local files only, no code from the folder, float32 master weights although the config says bfloat16.
    assert {(name, tuple(sorted(kwargs.items()))) for name, kwargs in paper.loaders["llm"].calls} == \
        {(LLM, (("dtype", torch.float32), ("local_files_only", True), ("trust_remote_code", False)))}
    llm = model.llm.config
    assert (llm.hidden_size, llm.num_hidden_layers, llm.num_attention_heads, llm.num_key_value_heads,
            llm.intermediate_size) == (2048, 22, 32, 4, 5632)
    # TinyLlama's 32,000 ids + <protein> <bop> <eop> <pad>, in that order; both embeddings grown, padded to a
    # multiple of 8 as the official code's (4 rows that belong to no token).
    assert (model.token_ids.protein, model.token_ids.bop, model.token_ids.eop, model.tokenizer.pad_token_id) == \
        (32000, 32001, 32002, 32003)
    assert len(model.tokenizer) == 32004
    assert model.llm.get_input_embeddings().weight.shape == model.llm.get_output_embeddings().weight.shape == \
        (32008, 2048)
    assert count(model.llm.parameters()) == llama_parameters(32008) == 1_100_081_152
    assert model.projector.kind == "mlp" and count(model.projector.parameters()) == mlp_projector_parameters() \
        == 6_819_840
    encoder = model.encoder
    assert (encoder.esm.num_layers, encoder.embed_dim, encoder.structure.num_kernels, encoder.window,
            encoder.drop_structure_rate, encoder.sequence_only) == (33, 1280, 128, 1022, 0.15, False)
    groups = [(scale, count(p for p in params if p.requires_grad)) for params, scale in stage.parameter_groups()]
    assert groups == [(0.1, esm2_parameters() + structure_parameters() - UNUSED_BY_FEATURES),
                      (1.0, mlp_projector_parameters() + llama_parameters(32008))]
    assert count(stage.parameters()) == esm2_parameters() + structure_parameters() + 6_819_840 + 1_100_081_152 \
        == 1_758_128_714


def test_stage2_at_paper_scale(paper):
    """4 experts, top-1, on every one of the 22 FFNs; active parameters = the dense LLM's (the paper's
    'same activated parameters'); the encoder frozen."""
    _, stage = paper(CONFIGS / "sepit/paper/stage2.yaml")
    model = stage.model
    assert stage.stage == 2
    layers = moe_layers(model.llm)
    assert sorted(layers) == list(range(22))
    assert {(m.num_experts, m.top_k, m.aux_loss_coef, m.normalize_top_k) for m in layers.values()} == \
        {(4, 1, 0.01, True)}
    assert {tuple(m.router.weight.shape) for m in layers.values()} == {(4, 2048)}
    ffn = 3 * 2048 * 5632
    total, active = count_parameters(model.llm)
    assert active == llama_parameters(32008) == 1_100_081_152
    assert total == active + 22 * (3 * ffn + 4 * 2048) == 3_384_059_904
    assert model.llm.config.moe_upcycling == {"num_experts": 4, "top_k": 1, "aux_loss_coef": 0.01,
                                              "router_jitter": 0.0, "normalize_top_k": True}
    assert trainable(model.encoder) == 0 and model.encoder.drop_structure_rate == 0.15
    assert trainable(stage) == total + mlp_projector_parameters()
    assert sum(isinstance(m, MoEFeedForward) for m in stage.modules()) == 22


def test_the_paper_stages_chain_through_their_checkpoints(paper):
    """Stage 1 loads stage 0's last.ckpt (the encoder) and stage 2 stage 1's (encoder, projector, dense LLM),
    strictly, where the YAMLs point: every key and shape fits at paper scale."""
    _, stage0 = paper(CONFIGS / "sepit/paper/stage0.yaml")
    _, stage1 = paper(CONFIGS / "sepit/paper/stage1.yaml")
    paper(CONFIGS / "sepit/paper/stage2.yaml")
    encoder_tensors = len(stage0.objectives.encoder.state_dict())
    # ESM-2: embedding, 17 per layer (rotary frequencies included), final LayerNorm, LM head, contact head;
    # then the structure module.
    assert encoder_tensors == len(stage1.model.encoder.state_dict()) == 1 + 33 * 17 + 2 + 6 + 2 + 8 == 580
    assert paper.loaded == [("runs/paper/stage0/checkpoints/last.ckpt", "objectives.encoder.", encoder_tensors),
                            ("runs/paper/stage1/checkpoints/last.ckpt", "model.", len(stage1.state_dict()))]
    records = [read_stage_checkpoint(paper.root / f"runs/paper/stage{n}/checkpoints/last.ckpt", (n,))[0]
               for n in (0, 1)]
    for record in records:
        assert record["esm"] == {"num_layers": 33, "embed_dim": 1280, "attention_heads": 20, "token_dropout": True}
        assert record["encoder"] == {"num_kernels": 128, "window": 1022, "encoding_scale": 0.01,
                                     "sequence_only": False, "kernel_epsilon": 1e-3, "bias_masking": "observed",
                                     "pad_to": None}
    stage1 = records[1]
    assert (stage1["projector"], stage1["protein_token_ids"], stage1["lora"]) == ("mlp", [32000, 32001, 32002], None)
    llm = stage1["llm_config"]
    assert (llm["hidden_size"], llm["num_hidden_layers"], llm["vocab_size"], "moe_upcycling" in llm) == \
        (2048, 22, 32008, False)  # stage 2 upcycles after loading the dense weights


@pytest.mark.parametrize("name, sequence_only, lr_scale", [("plm_projector", True, 0.1), ("qformer", True, 0.0)])
def test_spliced_baselines_at_paper_scale(name, sequence_only, lr_scale, paper):
    _, stage = paper(CONFIGS / f"baselines/paper/{name}.yaml")
    model = stage.model
    assert (model.encoder.sequence_only, stage.encoder_settings.lr_scale) == (sequence_only, lr_scale)
    assert model.llm.get_input_embeddings().weight.shape == (32008, 2048)
    projector = model.projector
    if name == "qformer":
        assert (projector.settings.num_queries, projector.settings.num_layers, projector.settings.num_heads) == \
            (32, 2, 8)
        assert projector.queries.shape == (32, 1280) and projector.out.weight.shape == (2048, 1280)
        assert count(projector.parameters()) == qformer_parameters() == 55_144_448
        assert trainable(model.encoder) == 0
    else:
        assert count(projector.parameters()) == mlp_projector_parameters()
        # Structure unused without coordinates: frozen with the parameters features never read.
        assert trainable(model.encoder) == esm2_parameters() - UNUSED_BY_FEATURES == 629_720_320
    assert trainable(stage) == trainable(model.encoder) + count(projector.parameters()) + llama_parameters(32008)


@pytest.mark.parametrize("name", ["text_llm", "text_llm_lora"])
def test_text_baselines_at_paper_scale(name, paper):
    """No encoder: only <pad> is added (32,001 ids, 32,008 rows). LoRA r 16 on q/k/v/o of the 22 layers trains
    22 x 16 x ((2048 + 2048) x 2 + (2048 + 256) x 2) = 4,505,600 parameters; the LLM stays frozen."""
    _, stage = paper(CONFIGS / f"baselines/paper/{name}.yaml")
    model = stage.model
    assert model.encoder is None and not hasattr(model, "projector")
    assert (model.sequence_format, model.max_residues, model.tokenizer.pad_token_id) == ("galactica", 1022, 32000)
    assert model.llm.get_input_embeddings().weight.shape == (32008, 2048)
    lora = 22 * 16 * ((2048 + 2048) * 2 + (2048 + 256) * 2)
    if name == "text_llm":
        assert trainable(stage) == count(stage.parameters()) == llama_parameters(32008) == 1_100_081_152
    else:
        peft = model.llm.peft_config["default"]
        assert (peft.r, peft.lora_alpha, peft.lora_dropout, sorted(peft.target_modules)) == \
            (16, 16, 0.05, ["k_proj", "o_proj", "q_proj", "v_proj"])
        assert trainable(stage) == lora == 4_505_600
        assert count(stage.parameters()) == llama_parameters(32008) + lora
