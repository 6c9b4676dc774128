"""Memory and time of `sepit convert official` against the size of the weights it converts.

Builds an official-layout checkpoint folder (the golden test model's config and tokenizers, scaled up by
`--scale`: widths and layer counts multiplied, random float32 weights, so the shapes are real but the numbers
mean nothing), then converts it in a child process and reads that process's peak RSS. The target is that the
conversion holds about one copy of the weights: peak RSS - the RSS of a bare `import torch, transformers`
process should be close to the weights' size, never a multiple of it.

    .venv/bin/python bench/convert.py [--scale 8] [--deepspeed] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.common` from `python bench/...`

import torch
from safetensors.torch import save_file

from bench.common import REPO, describe, machine, run, save_json, table

GOLDEN = REPO / "tests" / "data" / "official_golden" / "model"
PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def scaled_folder(folder: Path, scale: int, deepspeed: bool) -> int:
    """The golden model's layout at `scale` x the widths and layers; -> bytes of weights written."""
    shutil.copytree(GOLDEN, folder, ignore=shutil.ignore_patterns("model.safetensors"))
    config = json.loads((GOLDEN / "config.json").read_text())
    esm, text = config["protein_config"], config["text_config"]
    esm.update(hidden_size=esm["hidden_size"] * scale, intermediate_size=esm["intermediate_size"] * scale,
               num_hidden_layers=esm["num_hidden_layers"] * scale)
    text.update(hidden_size=text["hidden_size"] * scale, intermediate_size=text["intermediate_size"] * scale,
                num_hidden_layers=text["num_hidden_layers"] * scale)
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    from safetensors import safe_open

    generator = torch.Generator().manual_seed(0)
    state, experts = {}, {}
    with safe_open(str(GOLDEN / "model.safetensors"), framework="pt") as f:
        template = {name: f.get_slice(name).get_shape() for name in f.keys()}
    for name, shape in template.items():
        layers = [name]
        for key, count in (("protein_model.encoder.layer.", esm["num_hidden_layers"]),
                           ("text_model.model.layers.", text["num_hidden_layers"])):
            if name.startswith(key + "0."):
                layers = [name.replace(key + "0.", f"{key}{i}.", 1) for i in range(count)]
            elif name.startswith(key):
                layers = []  # layer 1 of the template: layer 0 stands for every layer
        for layer_name in layers:
            state[layer_name] = torch.randn(*_scaled(layer_name, shape, scale), generator=generator)
    if deepspeed:
        step = folder / "global_step1"
        step.mkdir()
        for name in [n for n in state if ".mlp.experts." in n]:
            layer, expert = name.split(".layers.")[1].split(".")[0], name.split(".experts.")[1].split(".")[0]
            experts.setdefault((layer, expert), {})[name.replace(
                ".mlp.experts.", ".mlp.deepspeed_moe.experts.deepspeed_experts.")] = state.pop(name)
        for (layer, expert), tensors in experts.items():
            torch.save(tensors, step / f"layer_{layer}_expert_{expert}_mp_rank_00_model_states.pt")
        for name in [n for n in state if n.endswith(".mlp.gate.weight")]:
            state[name.replace(".mlp.gate.", ".mlp.deepspeed_moe.gate.wg.")] = state.pop(name)
    save_file(state, str(folder / "model.safetensors"))
    return sum(t.numel() * t.element_size() for t in state.values()) + sum(
        t.numel() * t.element_size() for tensors in experts.values() for t in tensors.values())


def _scaled(name: str, shape: list[int], scale: int) -> list[int]:
    """Every dimension that is a model width (64 hidden, 32 key/value, 128 and 256 FFN, 8 rotary in the golden
    model) times `scale`; vocabularies, kernel counts, heads, experts and the position table stay."""
    out = []
    for axis, size in enumerate(shape):
        fixed = (axis == 0 and any(k in name for k in ("word_embeddings", "embed_tokens", "lm_head"))) \
            or "gbf" in name or ("edge_proj.weight" in name and axis == 1) or "position_embeddings" in name \
            or "contact_head" in name or ("mlp.gate" in name and axis == 0)
        out.append(size * scale if size in (8, 32, 64, 128, 256) and not fixed else size)
    if "contact_head.regression.weight" in name:
        out = [1, shape[1] * scale]  # one weight per (layer, head): the layers scale
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=8)
    parser.add_argument("--deepspeed", action="store_true", help="experts in per-expert DeepSpeed files")
    parser.add_argument("--json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "official"
        weights = scaled_folder(folder, args.scale, args.deepspeed)
        baseline, _ = run([sys.executable, "-c", PEAK, sys.executable, "-c", "import torch, transformers, esm"],
                          "baseline")
        done, seconds = run([sys.executable, "-c", PEAK, sys.executable, "-m", "sepit.cli", "convert", "official",
                             str(folder), str(Path(tmp) / "out" / "sepit.ckpt")], "sepit convert official")
        peak, bare = int(done.stdout.split()[-1]) * 1024, int(baseline.stdout.split()[-1]) * 1024
        written = (Path(tmp) / "out" / "sepit.ckpt").stat().st_size
    mib = 1 << 20
    rows = [[args.scale, "deepspeed" if args.deepspeed else "safetensors", weights / mib, written / mib,
             peak / mib, (peak - bare) / mib, (peak - bare) / weights, seconds]]
    print(table(["scale", "layout", "weights MiB", "ckpt MiB", "peak RSS MiB", "peak - bare MiB",
                 "(peak - bare) / weights", "seconds"], rows))
    print(describe(machine()))
    save_json(args.json, {"machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
