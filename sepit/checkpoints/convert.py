"""The official SEPIT checkpoint folder -> a checkpoint `sepit bench` reads (`sepit convert official SRC OUT.ckpt`).

Every official tensor is mapped (`sepit.checkpoints.official`) and checked against the model the config describes,
built on the meta device (no memory): a tensor the mapping does not know, one the model needs and the folder
lacks, or one of the wrong shape stops the conversion with the list of names. Tensors are read one at a time
(memory-mapped) and written in their saved dtype, so memory stays at the weights' size. The text tokenizer is
rebuilt from the released SentencePiece files as the official inference saw it (`sepit.checkpoints.llama_tokenizer`)
and saved as `tokenizer/` beside OUT.ckpt. The checkpoint records the official inference layout
(docs/fidelity.md) and the conversion summary.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from sepit.checkpoints import official as spec
from sepit.data.errors import DataError
from sepit.data.files import atomic_path
from sepit.data.manifest import sha256_folder


def convert_official(src: Path, out: Path) -> dict[str, Any]:
    """Convert an official SEPIT checkpoint folder (`save_pretrained` layout, model_type pit) into `out` (a
    .ckpt, with tokenizer/ beside it) -> the conversion summary, which the checkpoint also records."""
    from sepit.checkpoints.llama_tokenizer import fast_tokenizer_from_sentencepiece
    from sepit.checkpoints.stage import TOKENIZER_DIR, save_tokenizer

    src, out = Path(src), Path(out)
    if out.suffix != ".ckpt":
        raise DataError(str(out), "the output must be a .ckpt file", "Name it e.g. runs/official/sepit.ckpt.")
    config = spec.read_config(src)
    _check_protein_tokenizer(src)
    tokenizer = fast_tokenizer_from_sentencepiece(src / "text_tokenizer")
    files = spec.weight_files(src)
    shapes = _shapes(files)
    record = _official_record(src, config, tokenizer, files, shapes)
    target = _meta_state(record, tokenizer)
    moe = record["llm_config"].get("moe_upcycling")
    experts = spec.deepspeed_expert_files(src, config["text_config"]["num_hidden_layers"],
                                          moe["num_experts"]) if moe else []
    state, dropped, superseded, deepspeed_named = _read_state(files, experts, target, len(shapes))
    _fill_ours_only(state, target, record)
    _tie(state, target, bool(record["llm_config"].get("tie_word_embeddings")))
    _check_complete(src, state, target, deepspeed_named and not experts)
    tokenizer_dir = out.parent / TOKENIZER_DIR
    _check_tokenizer_folder(tokenizer, tokenizer_dir)
    summary = _summary(src, state, dropped, superseded, experts)
    record["conversion"] = summary
    _save({"sepit": record, "state_dict": {f"model.{k}": v for k, v in state.items()}}, out)
    save_tokenizer(tokenizer, tokenizer_dir)
    return summary


def _official_record(src: Path, config: dict[str, Any], tokenizer: Any, files: list[Path],
                     shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """The architecture record of the model the folder holds, checked against its tokenizer."""
    kernels = shapes.get("protein_model.structure_bias.gbf.means")
    if kernels is None:
        raise DataError(str(files[0]), "has no protein_model.structure_bias.gbf.means: not a structure-aware "
                        "SEPIT model", spec.FIX)
    token_ids = tokenizer.convert_tokens_to_ids(["<protein>", "<bop>", "<eop>"])
    if token_ids[0] != config.get("protein_token_index"):
        raise DataError(str(src / "config.json"), f"protein_token_index is {config.get('protein_token_index')}, "
                        f"but the text tokenizer gives <protein> the id {token_ids[0]}",
                        "Keep the text_tokenizer/ the checkpoint was saved with.")
    return spec.official_architecture(src, config, int(kernels[-1]), token_ids)


def _meta_state(record: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    """The names and shapes of the model the record describes, built on the meta device (no memory)."""
    import torch

    from sepit.checkpoints.stage import build_from_record

    with torch.device("meta"):
        return build_from_record(record, tokenizer).state_dict()


def _read_state(files: list[Path], experts: list, target: dict[str, Any], tensors: int
                ) -> tuple[dict[str, Any], dict[str, str], list[str], bool]:
    """Every official tensor under our name, one at a time -> (state, dropped name -> reason, names superseded
    by a DeepSpeed expert file, whether any name was DeepSpeed's)."""
    from tqdm import tqdm

    state, dropped, superseded, deepspeed_named = {}, {}, [], False
    sources = [(path, None, None) for path in files] + [(path, layer, e) for layer, e, path in experts]
    progress = tqdm(total=tensors + len(experts), desc="converting", unit="tensor")  # an expert file counts 1
    for path, layer, expert in sources:
        progress.update(int(layer is not None))
        for name, tensor in spec.read_tensors(path):
            progress.update(int(layer is None))
            ours, reason = spec.map_official_name(name)
            if reason is not None:
                dropped[name] = reason
                continue
            if ours is None or ours not in target:
                raise DataError(str(path), f"holds tensor {name!r}, which the official SEPIT model of this config "
                                "does not have" + (f" (it maps to {ours!r})" if ours else ""), spec.FIX)
            if layer is not None and not ours.startswith(f"llm.model.layers.{layer}.mlp.experts.{expert}."):
                raise DataError(str(path), f"holds {name!r}, not a tensor of layer {layer}, expert {expert}", spec.FIX)
            if ours in state:
                if layer is None:
                    raise DataError(str(path), f"holds {name!r}, and {ours!r} already came from another name",
                                    "Keep one naming (the inference's or DeepSpeed's) per tensor.")
                superseded.append(name)  # DeepSpeed expert files win, as in the official loader
            state[ours] = tensor
            deepspeed_named = deepspeed_named or "deepspeed_moe" in name
    progress.close()
    return state, dropped, superseded, deepspeed_named


def _check_complete(src: Path, state: dict[str, Any], target: dict[str, Any], experts_missing: bool) -> None:
    problems = _compare(state, target)
    if problems and experts_missing:
        raise DataError(str(src), "uses the DeepSpeed naming but has no global_*/ folder with the expert files "
                        f"({spec.EXPERT_FILE})", "Copy the global_* folder the official training wrote beside "
                        "model.safetensors.")
    if problems:
        raise DataError(str(src), "does not fit the model its config.json describes:\n  " + "\n  ".join(problems[:40])
                        + (f"\n  ... and {len(problems) - 40} more" if len(problems) > 40 else ""),
                        "Convert the folder the official code saved, with its own config.json.")


def _check_tokenizer_folder(tokenizer: Any, tokenizer_dir: Path) -> None:
    """A tokenizer/ folder already there must hold this very tokenizer: a checkpoint's tokenizer lives beside it."""
    if tokenizer_dir.exists():
        with tempfile.TemporaryDirectory() as staged:
            tokenizer.save_pretrained(staged)
            if sha256_folder(tokenizer_dir) != sha256_folder(staged):
                raise DataError(str(tokenizer_dir), "already holds another tokenizer",
                                "Convert into a folder of its own: the tokenizer of a checkpoint lives beside it.")


def _check_protein_tokenizer(src: Path) -> None:
    from esm.data import Alphabet

    vocab = src / "protein_tokenizer" / "vocab.txt"
    if not vocab.is_file():
        raise DataError(str(vocab), "protein tokenizer not found", "Keep the protein_tokenizer/ folder the "
                        "official code saved beside config.json.")
    tokens = vocab.read_text().split()
    if tokens != Alphabet.from_architecture("ESM-1b").all_toks:
        raise DataError(str(vocab), "is not the ESM-2 alphabet in ESM-2's order",
                        "Only ESM-2 protein models (the official choice) are supported.")


def _shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    if files[0].suffix != ".safetensors":
        return {name: tuple(t.shape) for path in files for name, t in spec.read_tensors(path)}
    from safetensors import safe_open

    shapes = {}
    for path in files:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            shapes.update({name: tuple(f.get_slice(name).get_shape()) for name in f.keys()})
    return shapes


def _fill_ours_only(state: dict[str, Any], target: dict[str, Any], record: dict[str, Any]) -> None:
    """The ESM-2 masked-LM head, which the official model lacks and inference never runs: fair-esm's init,
    seeded."""
    import torch
    from esm.modules import RobertaLMHead

    esm = record["esm"]
    with torch.random.fork_rng(devices=[]):  # the same folder always converts to the same file
        torch.manual_seed(0)
        head = RobertaLMHead(esm["embed_dim"], 33, torch.zeros(33, esm["embed_dim"]))
    for name, tensor in head.state_dict().items():
        ours = f"encoder.esm.lm_head.{name}"
        if ours in target and spec.OURS_ONLY.match(ours) and ours not in state:
            state[ours] = tensor


def _tie(state: dict[str, Any], target: dict[str, Any], tied_llm: bool) -> None:
    """Names that share one tensor in our model (ESM-2's LM head weight; a tied LLM head, saved under either
    name) from the one the folder holds."""
    ties = [("encoder.esm.lm_head.weight", "encoder.esm.embed_tokens.weight")]
    if tied_llm:
        ties += [("llm.lm_head.weight", "llm.model.embed_tokens.weight"),
                 ("llm.model.embed_tokens.weight", "llm.lm_head.weight")]
    for name, source in ties:
        if name in target and name not in state and source in state:
            state[name] = state[source]


def _compare(state: dict[str, Any], target: dict[str, Any]) -> list[str]:
    problems = [f"missing: {name} {tuple(t.shape)}" for name, t in target.items() if name not in state]
    for name, tensor in state.items():
        want = tuple(target[name].shape)
        if tuple(tensor.shape) != want:
            if tensor.numel() == target[name].numel() and name.endswith(("structure.means", "structure.stds")):
                state[name] = tensor.reshape(want)  # the official GaussianLayer keeps them as (1, K)
                continue
            problems.append(f"wrong shape: {name} is {tuple(tensor.shape)}, the config gives {want}")
    return problems


def _summary(src: Path, state: dict[str, Any], dropped: dict[str, str], superseded: list[str],
             experts: list) -> dict[str, Any]:
    groups = Counter("experts" if ".mlp.experts." in name else name.split(".")[0] for name in state)
    dtypes = Counter(str(t.dtype).replace("torch.", "") for t in state.values())
    return {"source": src.resolve().name, "tensors": len(state), "parameters": sum(t.numel() for t in state.values()),
            "by_part": dict(sorted(groups.items())), "dtypes": dict(dtypes),
            "dropped": dict(sorted(dropped.items())), "superseded_by_deepspeed": sorted(superseded),
            "deepspeed_expert_files": len(experts),
            "initialised_not_official": sorted(n for n in state if n.startswith("encoder.esm.lm_head.")
                                               and not n.endswith("lm_head.weight"))}


def _save(checkpoint: dict[str, Any], out: Path) -> None:
    """torch.save to a temporary file beside `out`, renamed over it once complete."""
    import torch

    with atomic_path(out) as temporary:
        torch.save(checkpoint, temporary)


def report(summary: dict[str, Any], out: Path) -> str:
    lines = [f"converted {summary['source']} -> {out}",
             f"  {summary['tensors']} tensors, {summary['parameters']:,} parameters ({summary['dtypes']}), "
             f"by part: {summary['by_part']}"]
    if summary["deepspeed_expert_files"]:
        lines.append(f"  experts from {summary['deepspeed_expert_files']} DeepSpeed files"
                     + (f" ({len(summary['superseded_by_deepspeed'])} safetensors copies superseded)"
                        if summary["superseded_by_deepspeed"] else ""))
    for name, reason in summary["dropped"].items():
        lines.append(f"  dropped {name}: {reason}")
    if summary["initialised_not_official"]:
        lines.append(f"  not in the official model, fair-esm init (stage-0 MLM head, unused at inference): "
                     f"{', '.join(summary['initialised_not_official'])}")
    lines.append("  layout: official inference (docs/fidelity.md); evaluate with "
                 f"`sepit bench --model {out} --tasks ...`")
    return "\n".join(lines)
