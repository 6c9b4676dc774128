"""Self-describing SEPIT checkpoints: what `sepit fit` writes and `sepit bench --model <checkpoint>` reads.

A stage checkpoint is Lightning's `.ckpt` plus `checkpoint["sepit"]`, the architecture in plain types:

    {"format": 1, "stage": 0|1|2,
     "esm": {num_layers, embed_dim, attention_heads, token_dropout},
     "encoder": {num_kernels, window, encoding_scale, sequence_only, kernel_epsilon, bias_masking, pad_to},
     "projector": "mlp"|"linear"|"qformer", "qformer": {num_queries, num_layers, num_heads} (Q-Former only),
     "llm_config": {the Hugging Face config, MoE settings included}, "lora": {r, alpha, ...} or null,
     "protein_token_ids": [<protein>, <bop>, <eop>], "tokenizer": "tokenizer"}     (stages 1 and 2)

A checkpoint converted from the official release (`sepit convert official`) also holds
"official": {system_prompt, text_length, feature_strategy} (`OfficialLayout`), and its encoder and MoE settings
say how the official inference masks the bias and combines the experts (docs/fidelity.md).

A model that reads the sequence as text has no "esm", "encoder", "projector" or "protein_token_ids" but
"sequence_format" and "max_residues". The LLM tokenizer (with the protein tokens) is in `tokenizer/` beside the
file; a LoRA run also writes its peft adapter in `adapter/`. Everything loads with
`torch.load(..., weights_only=True)`: no code is unpickled, so a downloaded checkpoint runs nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import json
import mmap
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

import torch
from esm.model.esm2 import ESM2
from torch import nn

from sepit.data.errors import DataError
from sepit.data.files import atomic_folder
from sepit.models.encoder import StructureAwareESM
from sepit.models.lora import LoraSettings, add_lora, is_lora
from sepit.models.moe import MOE_CONFIG_KEY, ExpertSettings, upcycle_to_moe
from sepit.models.network import (OfficialLanguageModel, ProteinLanguageModel, SplicedLanguageModel,
                                  TextLanguageModel)
from sepit.models.prompts import OfficialLayout
from sepit.models.qformer import QFormerSettings

CHECKPOINT_FORMAT = 1
FLOAT32_BUFFERS = ("inv_freq",)  # rotary frequencies: kept in float32 whatever the weights' dtype
TOKENIZER_DIR = "tokenizer"


def encoder_record(encoder: StructureAwareESM) -> dict[str, Any]:
    esm = encoder.esm
    return {"esm": {"num_layers": esm.num_layers, "embed_dim": esm.embed_dim,
                    "attention_heads": esm.attention_heads, "token_dropout": bool(esm.token_dropout)},
            "encoder": {"num_kernels": encoder.structure.num_kernels, "window": encoder.window,
                        "encoding_scale": encoder.encoding_scale, "sequence_only": encoder.sequence_only,
                        "kernel_epsilon": encoder.structure.kernel_epsilon,
                        "bias_masking": encoder.structure.masking, "pad_to": encoder.pad_to}}


def model_record(model: ProteinLanguageModel, lora: LoraSettings | None = None) -> dict[str, Any]:
    llm = model.llm.get_base_model() if is_lora(model.llm) else model.llm
    record = {"llm_config": json.loads(llm.config.to_json_string(use_diff=False)),
              "lora": lora.to_record() if lora else None, "tokenizer": TOKENIZER_DIR}
    if model.encoder is None:
        return {**record, "sequence_format": model.sequence_format, "max_residues": model.max_residues}
    ids = model.token_ids
    record.update(encoder_record(model.encoder), projector=model.projector.kind,
                  protein_token_ids=[ids.protein, ids.bop, ids.eop])
    if model.projector.kind == "qformer":
        record["qformer"] = dataclasses.asdict(model.projector.settings)
    if model.official is not None:
        record["official"] = dataclasses.asdict(model.official)
    return record


def read_stage_checkpoint(path: str | Path, stages: tuple[int, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(architecture record, state dict) of a checkpoint written by `sepit fit`, read without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "checkpoint not found", "Give a .ckpt written by `sepit fit` (in the "
                        "stage's checkpoints/ folder; train the previous stage first).")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # tensors read on demand
    except Exception as err:  # a truncated file, or one holding objects weights_only refuses
        raise DataError(str(path), f"cannot be read as a weights-only checkpoint ({type(err).__name__})",
                        "Give a complete .ckpt written by `sepit fit`.") from None
    record = data.get("sepit") if isinstance(data, dict) else None
    if not isinstance(record, dict) or "stage" not in record:
        raise DataError(str(path), "not a SEPIT stage checkpoint (it has no 'sepit' architecture record)",
                        "Give a .ckpt written by `sepit fit --config configs/sepit/...`.")
    if record.get("format") != CHECKPOINT_FORMAT:
        raise DataError(str(path), f"has checkpoint format {record.get('format')!r}; this version reads "
                        f"{CHECKPOINT_FORMAT}", "Evaluate it with the sepit-bench version that wrote it.")
    if record["stage"] not in stages:
        raise DataError(str(path), f"is a stage-{record['stage']} checkpoint",
                        f"This needs a checkpoint of stage {' or '.join(map(str, stages))}.")
    return record, data["state_dict"]


def registered_model_for(record: dict[str, Any]) -> str:
    """The registered model name that evaluates a checkpoint of this architecture (`sepit bench --model X.ckpt`
    picks it, so a baseline never appears on a leaderboard under SEPIT's name)."""
    if "esm" not in record:
        return "text_llm"
    if record.get("projector") == "qformer":
        return "qformer"
    return "plm_projector" if record["encoder"]["sequence_only"] else "sepit"


def load_into(module: nn.Module, state: dict[str, torch.Tensor], prefix: str, path: str | Path,
              dtype: torch.dtype | None = None, mapped: bool = False) -> None:
    """Load the entries of `state` under `prefix` into `module`, strictly, with an error that says what to fix.
    With `dtype`, the tensors are cast to it and take the place of the module's own (a module built with
    `parameters_on_meta`): the weights exist once, in the target dtype, and tied parameters stay tied. `mapped`:
    `state` is memory-mapped from a file, whose pages may be released once cast."""
    picked = {name[len(prefix):]: tensor for name, tensor in state.items() if name.startswith(prefix)}
    if dtype is not None:
        picked = cast_state(picked, dtype, release=mapped)
    ties = _tied_parameters(module) if dtype is not None else []
    try:
        module.load_state_dict(picked, strict=True, assign=dtype is not None)
    except RuntimeError as err:
        raise DataError(str(path), f"does not fit this model: {' '.join(str(err).split())[:300]}",
                        "Use the same esm, llm, num_kernels and projector as the run that wrote it.") from None
    for names in ties:  # assign=True gives every name its own Parameter: tie them again
        first = module.get_parameter(names[0])
        for name in names[1:]:
            owner, _, attribute = name.rpartition(".")
            setattr(module.get_submodule(owner) if owner else module, attribute, first)


def _tied_parameters(module: nn.Module) -> list[list[str]]:
    """Names that share one Parameter (tied embeddings), in groups."""
    groups: dict[int, list[str]] = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Modules built inside get their parameters on the meta device: no memory and no initialisation, the
    checkpoint's tensors take their place (`load_into(..., dtype=...)`). Buffers stay real: some are in no state
    dict (rotary frequencies), and they are small."""
    register = nn.Module.register_parameter

    def on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def cast_state(state: dict[str, torch.Tensor], dtype: torch.dtype, release: bool = False
               ) -> dict[str, torch.Tensor]:
    """The floating-point tensors in `dtype` (others as they are; rotary frequencies stay float32, as Hugging
    Face keeps them: in bfloat16, positions past 256 would collide), each source read once: tensors that share
    storage (tied embeddings) stay shared, and a tensor already in `dtype` is used as it is (from a memory-mapped
    file, not copied). With `release` (a memory-mapped `state`), the pages of a cast tensor's source are released
    as soon as it is copied, so reading a float32 file into bfloat16 does not hold both."""
    out: dict[str, torch.Tensor] = {}
    done: dict[tuple, torch.Tensor] = {}
    for name, tensor in state.items():
        if not tensor.is_floating_point() or tensor.dtype == dtype or name.endswith(FLOAT32_BUFFERS):
            out[name] = tensor
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride())
        if key not in done:
            done[key] = tensor.to(dtype)
            if release:
                release_pages(tensor)
        out[name] = done[key]
    return out


def cast_module(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """`module.to(dtype)`, but rotary frequencies stay float32 (`cast_state`); tied parameters stay tied."""
    keep = {name: buffer for name, buffer in module.named_buffers() if name.endswith(FLOAT32_BUFFERS)}
    module.to(dtype)
    for name, buffer in keep.items():
        owner, _, attribute = name.rpartition(".")
        (module.get_submodule(owner) if owner else module)._buffers[attribute] = buffer
    return module


def release_pages(tensor: torch.Tensor) -> None:
    """Drop a memory-mapped tensor's pages from this process (they are re-read from the file if touched again):
    madvise(MADV_DONTNEED) on the whole pages it spans. A no-op where that is not available."""
    if _LIBC is None or tensor.device.type != "cpu":
        return
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    first, last = -(-start // _PAGE) * _PAGE, end // _PAGE * _PAGE  # only pages wholly inside the tensor
    if last > first:
        _LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), mmap.MADV_DONTNEED)


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return libc if sys.platform.startswith("linux") else None
    except (OSError, AttributeError):
        return None


_LIBC = _libc()
_PAGE = mmap.PAGESIZE


def save_tokenizer(tokenizer: Any, directory: Path) -> None:
    """`save_pretrained` into a fresh folder renamed into place: a reader never sees half a tokenizer."""
    with atomic_folder(directory) as staging:
        tokenizer.save_pretrained(staging)


def build_from_record(record: dict[str, Any], tokenizer: Any, sequence_only: bool = False,
                      empty: bool = False) -> ProteinLanguageModel:
    """The stage-1/2 model (or baseline) the record describes, randomly initialised (load the state dict next);
    with `empty`, its parameters on the meta device (`parameters_on_meta`: load with a dtype)."""
    with parameters_on_meta() if empty else nullcontext():
        return _build(record, tokenizer, sequence_only)


def _build(record: dict[str, Any], tokenizer: Any, sequence_only: bool) -> ProteinLanguageModel:
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config_dict = dict(record["llm_config"])
    moe = config_dict.pop(MOE_CONFIG_KEY, None)
    config = CONFIG_MAPPING[config_dict["model_type"]].from_dict(config_dict)
    llm = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # float32 whatever the saved config says
    if "esm" not in record:  # the sequence as text
        model = TextLanguageModel(llm, tokenizer, record["sequence_format"], record["max_residues"])
    else:
        settings = record["encoder"]
        encoder = StructureAwareESM(ESM2(alphabet="ESM-1b", **record["esm"]), settings["num_kernels"],
                                    sequence_only or settings["sequence_only"],
                                    encoding_scale=settings["encoding_scale"], window=settings["window"],
                                    # checkpoints written before these were recorded used 1e-2 and ours
                                    kernel_epsilon=settings.get("kernel_epsilon", 1e-2),
                                    bias_masking=settings.get("bias_masking", "observed"),
                                    pad_to=settings.get("pad_to"))
        qformer = QFormerSettings(**record["qformer"]) if record.get("qformer") else None
        model = OfficialLanguageModel(encoder, llm, tokenizer, record["projector"], OfficialLayout(**record["official"])) \
            if record.get("official") else SplicedLanguageModel(encoder, llm, tokenizer, record["projector"], qformer)
        found = [model.token_ids.protein, model.token_ids.bop, model.token_ids.eop]
        if found != list(record["protein_token_ids"]):
            raise DataError(str(getattr(tokenizer, "name_or_path", "tokenizer")),
                            f"protein token ids {found} differ from the checkpoint's {record['protein_token_ids']}",
                            "Use the tokenizer/ folder saved beside the checkpoint.")
    lora = LoraSettings(**record["lora"]) if record.get("lora") else None
    return extend_llm(model, ExpertSettings(**moe) if moe else None, lora)


def extend_llm(model: ProteinLanguageModel, experts: ExpertSettings | None, lora: LoraSettings | None
               ) -> ProteinLanguageModel:
    """The last step of assembling a network, in training (`sepit.training.stages`, after loading the previous
    stage's dense weights) as in evaluation (`build_from_record`): upcycle the LLM's FFNs into experts, or wrap it
    in LoRA adapters."""
    if experts and lora:
        raise ValueError("choose experts (MoE upcycling, full fine-tuning) or LoRA, not both")
    if experts:
        upcycle_to_moe(model.llm, experts)
    if lora:
        model.llm = add_lora(model.llm, lora)
    return model
