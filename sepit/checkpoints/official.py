"""Reading a checkpoint of the official SEPIT code (its `save_pretrained` folder, `model_type: pit`).

    SRC/config.json                      PITConfig: protein_config (HF EsmConfig), text_config (LlamaConfig), moe_config
    SRC/model.safetensors                (or sharded with model.safetensors.index.json, or pytorch_model*.bin)
    SRC/global_*/layer_{l}_expert_{e}_mp_rank_00_model_states.pt    experts of a DeepSpeed-trained model
    SRC/text_tokenizer/                  the slow SentencePiece files, as released
    SRC/protein_tokenizer/vocab.txt      HF EsmTokenizer vocabulary

`official_architecture` turns the config into our architecture record (`sepit.checkpoints.stage`) with the
official inference layout; `map_official_name` says where each official tensor goes in our
`ProteinLanguageModel` (Hugging Face Esm names -> fair-esm, the projector, Llama, the MoE experts in the
inference and in the DeepSpeed naming), or why it is dropped. `sepit convert official` (sepit.checkpoints.convert)
does the rest. The mapping and every behaviour it implies are listed in docs/fidelity.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from sepit.data.errors import DataError
from sepit.data.protein import ESM2_WINDOW
from sepit.checkpoints.stage import CHECKPOINT_FORMAT, TOKENIZER_DIR
from sepit.models.moe import MOE_CONFIG_KEY, ExpertSettings
from sepit.models.prompts import OFFICIAL_SYSTEM_PROMPT

PROTEIN_LENGTH = 1024  # the official inference pads every protein to 1024 positions
TEXT_LENGTH = 256  # and every prompt to 256 tokens
KERNEL_EPSILON = 1e-3  # official GaussianLayer: |std| + 1e-3
EXPERT_FILE = "layer_{l}_expert_{e}_mp_rank_00_model_states.pt"
FIX = "Give the folder the official code saved (save_pretrained), unchanged."

# Official name -> ours (regex, replacement); applied to the first rule that matches.
_ESM_LAYER = [("attention.self.query.", "self_attn.q_proj."), ("attention.self.key.", "self_attn.k_proj."),
              ("attention.self.value.", "self_attn.v_proj."), ("attention.output.dense.", "self_attn.out_proj."),
              ("attention.self.rotary_embeddings.inv_freq", "self_attn.rot_emb.inv_freq"),
              ("attention.LayerNorm.", "self_attn_layer_norm."), ("intermediate.dense.", "fc1."),
              ("output.dense.", "fc2."), ("LayerNorm.", "final_layer_norm.")]
RULES: list[tuple[str, str]] = [
    (r"protein_model\.embeddings\.word_embeddings\.weight", "encoder.esm.embed_tokens.weight"),
    *[(rf"protein_model\.encoder\.layer\.(\d+)\.{re.escape(a)}", rf"encoder.esm.layers.\1.{b}") for a, b in _ESM_LAYER],
    (r"protein_model\.encoder\.emb_layer_norm_after\.", "encoder.esm.emb_layer_norm_after."),
    (r"protein_model\.contact_head\.regression\.", "encoder.esm.contact_head.regression."),
    (r"protein_model\.structure_bias\.gbf\.(means|stds)$", r"encoder.structure.\1"),
    (r"protein_model\.structure_bias\.gbf_proj\.layer1\.", "encoder.structure.bias_mlp.0."),
    (r"protein_model\.structure_bias\.gbf_proj\.layer2\.", "encoder.structure.bias_mlp.2."),
    (r"protein_model\.structure_bias\.edge_proj\.", "encoder.structure.encoding_proj."),
    (r"multi_modal_projector\.linear_1\.", "projector.net.0."),
    (r"multi_modal_projector\.linear_2\.", "projector.net.2."),
    (r"text_model\.model\.layers\.(\d+)\.mlp\.(?:deepspeed_moe\.gate\.wg|gate)\.weight", r"llm.model.layers.\1.mlp.router.weight"),
    (r"text_model\.model\.layers\.(\d+)\.mlp\.(?:deepspeed_moe\.experts\.deepspeed_experts|experts)\.(\d+)\.",
     r"llm.model.layers.\1.mlp.experts.\2."),
    (r"text_model\.", "llm."),
]
# Official tensors the official inference never reads.
DROPPED = {
    r"protein_model\.embeddings\.position_embeddings\.weight": "built by HF Esm, unused with rotary positions",
    r"protein_model\.pooler\.": "the Esm pooler, unused by SEPIT",
    r"text_model\.model\.(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq": "recomputed from the config",
}
# Ours only: the ESM-2 masked-LM head, used in stage 0 and never at inference; kept at fair-esm's init.
OURS_ONLY = re.compile(r"encoder\.esm\.lm_head\.(dense|layer_norm)\.|encoder\.esm\.lm_head\.bias$")


def map_official_name(name: str) -> tuple[str | None, str | None]:
    """-> (our name, None), (None, why it is dropped), or (None, None) for a name the mapping does not know."""
    for pattern, reason in DROPPED.items():
        if re.match(pattern, name):
            return None, reason
    for pattern, replacement in RULES:
        if re.match(pattern, name):
            return re.sub(f"^{pattern}", replacement, name, count=1), None
    return None, None


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not folder.is_dir():
        raise DataError(str(folder), "not a folder", "Give the official checkpoint folder (with config.json).")
    if not path.is_file():
        raise DataError(str(path), "not found: this is not an official SEPIT checkpoint folder", FIX)
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(str(path), f"is not valid JSON ({err})", FIX) from None
    if config.get("model_type") != "pit" or not isinstance(config.get("protein_config"), dict) \
            or not isinstance(config.get("text_config"), dict):
        raise DataError(str(path), f"has model_type {config.get('model_type')!r} and no protein_config/text_config; "
                        "an official SEPIT checkpoint has model_type 'pit'", FIX)
    return config


def _require(path: Path, what: str, ok: bool, found: Any) -> None:
    if not ok:
        raise DataError(str(path / "config.json"), f"{what} (found {found!r}); this converter supports the "
                        "official SEPIT architecture only", "Convert a checkpoint of the official SEPIT code.")


def official_architecture(folder: Path, config: dict[str, Any], num_kernels: int,
                          protein_token_ids: list[int]) -> dict[str, Any]:
    """Our architecture record for the official model `config` describes, in the official inference layout."""
    esm, text = config["protein_config"], dict(config["text_config"])
    for part, keys in (("protein_config", ("num_hidden_layers", "hidden_size", "num_attention_heads",
                                           "intermediate_size")),
                       ("text_config", ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size"))):
        missing = [k for k in keys if not isinstance(config[part].get(k), int)]
        if missing:
            raise DataError(str(folder / "config.json"), f"{part} lacks {missing}", FIX)
    _require(folder, "protein_config.position_embedding_type must be 'rotary'",
             esm.get("position_embedding_type") == "rotary", esm.get("position_embedding_type"))
    _require(folder, "protein_config.emb_layer_norm_before must be false", not esm.get("emb_layer_norm_before"),
             esm.get("emb_layer_norm_before"))
    _require(folder, "protein_config.intermediate_size must be 4 x hidden_size (ESM-2)",
             esm.get("intermediate_size") == 4 * esm.get("hidden_size", 0), esm.get("intermediate_size"))
    _require(folder, "protein_config.vocab_size must be 33 (the ESM-2 alphabet)", esm.get("vocab_size") == 33,
             esm.get("vocab_size"))
    _require(folder, "protein_config.layer_norm_eps must be 1e-5", esm.get("layer_norm_eps") == 1e-5,
             esm.get("layer_norm_eps"))
    _require(folder, "protein_feature_layer must be -2", config.get("protein_feature_layer", -2) == -2,
             config.get("protein_feature_layer"))
    strategy = config.get("protein_feature_select_strategy", "full")
    _require(folder, "protein_feature_select_strategy must be 'full' or 'default'", strategy in ("full", "default"),
             strategy)
    _require(folder, "projector_hidden_act must be 'gelu'", config.get("projector_hidden_act", "gelu") == "gelu",
             config.get("projector_hidden_act"))
    _require(folder, "sequence_only checkpoints (HF Esm without the structure module) are not supported",
             not config.get("sequence_only"), config.get("sequence_only"))
    _require(folder, "text_config.model_type must be 'llama'", text.get("model_type") == "llama",
             text.get("model_type"))
    moe = config.get("moe_config") or {}
    if config.get("use_moe"):
        _require(folder, "moe_config.use_residual must be false", not moe.get("use_residual"), moe.get("use_residual"))
    for key in ("_name_or_path", "moe_config", "num_experts", "router_aux_loss_coef", "architectures"):
        text.pop(key, None)
    llm_config = text
    if config.get("use_moe"):
        llm_config[MOE_CONFIG_KEY] = asdict(ExpertSettings(
            num_experts=int(moe.get("num_experts", 4)), top_k=int(moe.get("k", 1)),
            aux_loss_coef=float(moe.get("router_aux_loss_coef", 0.01)), normalize_top_k=False))
    return {"format": CHECKPOINT_FORMAT, "stage": 2 if config.get("use_moe") else 1,
            "esm": {"num_layers": esm["num_hidden_layers"], "embed_dim": esm["hidden_size"],
                    "attention_heads": esm["num_attention_heads"], "token_dropout": bool(esm.get("token_dropout"))},
            "encoder": {"num_kernels": num_kernels, "window": ESM2_WINDOW, "encoding_scale": 0.0,
                        "sequence_only": False, "kernel_epsilon": KERNEL_EPSILON, "bias_masking": "official",
                        "pad_to": PROTEIN_LENGTH},
            "projector": "mlp", "llm_config": llm_config, "lora": None, "protein_token_ids": protein_token_ids,
            "tokenizer": TOKENIZER_DIR,
            "official": {"system_prompt": OFFICIAL_SYSTEM_PROMPT, "text_length": TEXT_LENGTH,
                         "feature_strategy": strategy}}


def weight_files(folder: Path) -> list[Path]:
    """The files holding the model's tensors: one safetensors or .bin file, or the shards an index lists."""
    for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                               ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        index = folder / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
            missing = [s for s in shards if not (folder / s).is_file()]
            if missing:
                raise DataError(str(index), f"lists shards that are missing: {missing}", FIX)
            return [folder / s for s in shards]
        if (folder / single).is_file():
            return [folder / single]
    raise DataError(str(folder), "holds no model.safetensors (or pytorch_model.bin)", FIX)


def read_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) one at a time: safetensors memory-mapped, .pt/.bin with weights_only=True."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            for name in f.keys():
                yield name, f.get_tensor(name)
        return
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # files written before torch's zip format cannot be memory-mapped
            if "mmap" not in str(err):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated file, or one holding objects weights_only refuses
        raise DataError(str(path), f"cannot be read as a weights-only file ({type(err).__name__}: "
                        f"{str(err)[:200]})", FIX) from None
    if not isinstance(state, dict):
        raise DataError(str(path), f"holds a {type(state).__name__}, not a dict of tensors", FIX)
    for name, tensor in state.items():
        if isinstance(tensor, torch.Tensor):
            yield name, tensor


def deepspeed_expert_files(folder: Path, num_layers: int, num_experts: int) -> list[tuple[int, int, Path]]:
    """(layer, expert, file) of a DeepSpeed-trained checkpoint, or [] when it has no global_* folder."""
    found = sorted(p for p in folder.glob("global_*") if p.is_dir())
    if not found:
        return []
    if len(found) > 1:
        raise DataError(str(folder), f"holds several DeepSpeed checkpoints: {[p.name for p in found]}",
                        "Keep only the global_* folder of the step to convert.")
    files = [(l, e, found[0] / EXPERT_FILE.format(l=l, e=e)) for l in range(num_layers) for e in range(num_experts)]
    missing = [str(path) for _, _, path in files if not path.is_file()]
    if missing:
        raise DataError(str(found[0]), f"misses {len(missing)} DeepSpeed expert file(s): {missing[:8]}",
                        "Copy every layer_*_expert_*_mp_rank_00_model_states.pt of the run into this folder.")
    return files
